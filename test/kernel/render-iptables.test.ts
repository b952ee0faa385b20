// The iptables renderer against the real tools: its ipset/iptables/ip6tables restore input loads in a fresh
// namespace with both iptables back ends (legacy and nft), iptables-save prints it back rule for rule, and
// real traffic through a bridged and a routed port behaves as the policy says.
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { groupsOfPorts, type CompiledRule, type PolicyIR, type PortPolicy } from '../../src/compile/ir.js';
import { assignProfiles } from '../../src/compile/policy.js';
import { DEFAULT_CONFIG } from '../../src/model/types.js';
import { renderIptables, type IptablesRender } from '../../src/render/iptables.js';
import { commentMatch, memberSetName } from '../../src/render/iptables-syntax.js';
import { Netns, isRoot, ping, spawnIn, veth } from '../helpers/netns.js';
import { Bg, NETPROBE } from '../helpers/probes.js';

const BACKENDS = (['legacy', 'nft'] as const).filter((b) =>
  ['iptables', 'ip6tables'].every((t) => ['/usr/sbin', '/sbin'].some((d) => existsSync(`${d}/${t}-${b}-restore`))),
);
if (!isRoot) console.warn('skipping iptables renderer kernel tests: not root');

const MAC_B = 'fa:16:3e:00:00:0b';
const MAC_R = 'fa:16:3e:00:00:0c';
const rule = (ruleId: string, direction: 'ingress' | 'egress', extra: Partial<CompiledRule>): CompiledRule =>
  ({ ruleId, groupId: 'sg-b', direction, family: 4, remote: { kind: 'any' }, ...extra });

// Bridged port (stateful): ping in from members of sg-c only, ssh from a prefix, anything out; IPv6 ping in
// from the subnet. Routed port (stateless): ping both ways. An unfiltered port on the bridge.
const bridged: PortPolicy = {
  portId: 'port-b', device: 'tapvm-b', networkId: 'net-b', zone: 201, mode: 'bridged', bridge: 'br-pw', mac: MAC_B,
  fixedIps: ['192.0.2.10/32', '2001:db8:1::10/128'], filtered: true, stateful: true, tag: 1,
  spoof: [
    { mac: MAC_B, prefix: '192.0.2.10/32', family: 4 },
    { mac: MAC_B, prefix: '0.0.0.0/32', family: 4 },
    { mac: MAC_B, prefix: '2001:db8:1::10/128', family: 6 },
    { mac: MAC_B, prefix: 'fe80::f816:3eff:fe00:b/128', family: 6 },
  ],
  dhcpServers: ['192.0.2.254/32'], routers: ['fe80::1/128'], groupIds: ['sg-b'], memberPrefixes: ['192.0.2.10/32', '2001:db8:1::10/128'],
  // The IP-level layer-2 guards load and print back too (IPv6 stays on: the traffic tests below use it).
  l2Guards: { arp: true, dhcpSnooping: true, broadcast: true, dropIpv6: false, dropVlan: true },
  rules: [
    rule('11111111-aaaa-4bbb-8ccc-000000000001', 'ingress', { protocol: 1, remote: { kind: 'group', groupId: 'sg-c' } }),
    rule('11111111-aaaa-4bbb-8ccc-000000000002', 'ingress', { protocol: 6, ports: { min: 22, max: 22 }, remote: { kind: 'prefix', prefix: '203.0.113.0/24' } }),
    rule('11111111-aaaa-4bbb-8ccc-000000000003', 'egress', {}),
    rule('11111111-aaaa-4bbb-8ccc-000000000004', 'ingress', { family: 6, protocol: 58, icmp: { type: 128, code: 0 }, remote: { kind: 'prefix', prefix: '2001:db8:1::/64' } }),
    rule('11111111-aaaa-4bbb-8ccc-000000000005', 'egress', { family: 6, protocol: 6, remote: { kind: 'group', groupId: 'sg-c' } }),
    // As wide as rules get: they must still admit no rogue DHCP server or router (the base policy drops those first).
    rule('11111111-aaaa-4bbb-8ccc-000000000006', 'ingress', { protocol: 17 }),
    rule('11111111-aaaa-4bbb-8ccc-000000000007', 'ingress', { family: 6, protocol: 58 }),
  ],
};
const routed: PortPolicy = {
  portId: 'port-r', device: 'vethvm-r', networkId: 'net-r', zone: 202, mode: 'routed', mac: MAC_R,
  fixedIps: ['198.51.100.10/32'], filtered: true, stateful: false,
  spoof: [{ mac: MAC_R, prefix: '198.51.100.10/32', family: 4 }, { mac: MAC_R, prefix: '0.0.0.0/32', family: 4 }],
  dhcpServers: [], routers: [], groupIds: ['sg-r'], memberPrefixes: ['198.51.100.10/32'],
  rules: [
    { ...rule('r-ping-in', 'ingress', { protocol: 1 }), groupId: 'sg-r' },
    { ...rule('r-ping-out', 'egress', { protocol: 1 }), groupId: 'sg-r' },
    // An id that needs quoting and escaping, to prove restore and save agree on the spelling.
    { ...rule(`sg-r.dns "udp" it's \\ 53`, 'egress', { protocol: 17, ports: { min: 53, max: 53 } }), groupId: 'sg-r' },
  ],
};
const unfiltered: PortPolicy = { ...bridged, portId: 'port-off', device: 'tapoff', filtered: false, rules: [], spoof: [] };

function policy(ports: PortPolicy[]): PolicyIR {
  return {
    config: DEFAULT_CONFIG,
    networks: [
      { id: 'net-b', zone: 201, mode: 'bridged', bridge: 'br-pw', dhcpServers: ['192.0.2.254/32'], routers: ['fe80::1/128'] },
      { id: 'net-r', zone: 202, mode: 'routed', dhcpServers: [], routers: [] },
    ],
    ports,
    members: [
      { groupId: 'sg-c', family: 4, prefixes: ['192.0.2.20/32'] },
      { groupId: 'sg-c', family: 6, prefixes: ['2001:db8:1::20/128'] },
    ],
    profiles: assignProfiles(ports, DEFAULT_CONFIG),
    groups: groupsOfPorts(ports),
  };
}

/** `-A` rules of a restore or save text, per `table/chain`, in order. */
function rulesByChain(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let table = '';
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) table = line.slice(1);
    const m = /^-A (\S+) (.*)$/.exec(line);
    if (!m) continue;
    const key = `${table}/${m[1]}`;
    out.set(key, [...(out.get(key) ?? []), m[2]!]);
  }
  return out;
}

/** Older iptables-save prints MACs in upper case. */
function lowerMacs(text: string): string {
  return text.replace(/--mac-source (\S+)/g, (_, mac: string) => `--mac-source ${mac.toLowerCase()}`);
}

/** Loads the three texts into `ns` with back end `backend` (each tool exits 0 or run() throws). */
function load(ns: Netns, backend: string, r: IptablesRender): void {
  ns.exec('ipset', ['restore'], { input: r.ipsets });
  ns.exec(`iptables-${backend}-restore`, [], { input: r.iptables });
  ns.exec(`ip6tables-${backend}-restore`, [], { input: r.ip6tables });
}

/** The kernel's xt_physdev, probed by loading one rule (and removing it again). */
function physdevAvailable(ns: Netns, backend: string): boolean {
  const probe = ['-m', 'physdev', '--physdev-is-bridged', '-j', 'ACCEPT'];
  if (ns.tryExec(`iptables-${backend}`, ['-A', 'FORWARD', ...probe]).status !== 0) return false;
  ns.exec(`iptables-${backend}`, ['-D', 'FORWARD', ...probe]);
  return true;
}

describe.skipIf(!isRoot || BACKENDS.length === 0).each(BACKENDS)('iptables-%s-restore of the rendered policy', (backend) => {
  let ns: Netns;
  let rendered: IptablesRender;

  beforeAll(() => {
    ns = new Netns(`ipt-${backend}`);
    const physdev = physdevAvailable(ns, backend);
    // Without xt_physdev the bridged ports cannot load; the routed output still must.
    if (!physdev) console.warn(`xt_physdev unavailable (${backend}): loading routed ports only`);
    rendered = renderIptables(policy(physdev ? [bridged, routed, unfiltered] : [routed]));
    load(ns, backend, rendered);
  });
  afterAll(() => ns?.destroy());

  it('iptables-save and ip6tables-save print every chain and rule back, in order', () => {
    for (const [text, tool] of [[rendered.iptables, 'iptables'], [rendered.ip6tables, 'ip6tables']] as const) {
      const saved = rulesByChain(lowerMacs(ns.exec(`${tool}-${backend}-save`, [])));
      const ours = rulesByChain(text);
      expect(ours.size).toBeGreaterThan(10);
      for (const [chain, rules] of ours) expect(saved.get(chain), chain).toEqual(rules);
    }
  });

  it('comments carry the rule ids and sets are matched by name', () => {
    const save = ns.exec(`iptables-${backend}-save`, []);
    for (const r of [...bridged.rules, ...routed.rules].filter((r) => r.family === 4)) {
      expect(save).toContain(`${commentMatch(r.ruleId)} -j RETURN`);
    }
    expect(save).toContain(`-m set --match-set ${memberSetName('sg-c', 4)} src`);
    expect(ns.exec(`ip6tables-${backend}-save`, [])).toContain(`-m set --match-set ${memberSetName('sg-c', 6)} dst`);
    expect(ns.exec('ipset', ['list', '-n']).split('\n').filter(Boolean).sort()).toEqual(
      [memberSetName('sg-c', 4), memberSetName('sg-c', 6)].sort(),
    );
  });

  it('loading the same text again is a clean replacement', () => {
    ns.exec('ipset', ['-exist', 'restore'], { input: rendered.ipsets });
    ns.exec(`iptables-${backend}-restore`, [], { input: rendered.iptables });
    const saved = rulesByChain(ns.exec(`iptables-${backend}-save`, []));
    expect(saved.get('filter/FORWARD')).toEqual(['-j portwall-FORWARD']);
  });
});

describe.skipIf(!isRoot || BACKENDS.length === 0)('traffic through the rendered rules', () => {
  // fw: bridge br-pw (192.0.2.1/24) with ports tapvm-b (to vmb), tapoff (unused), upl-b (to cli); routed
  // port vethvm-r (198.51.100.1/24, to vmr). cli 192.0.2.20 (a member of sg-c) and 192.0.2.21 (not one).
  const backend = BACKENDS.includes('nft') ? 'nft' : BACKENDS[0]!;
  let fw: Netns, vmb: Netns, vmr: Netns, cli: Netns;

  beforeAll(() => {
    [fw, vmb, vmr, cli] = [new Netns('fw'), new Netns('vmb'), new Netns('vmr'), new Netns('cli')];
    fw.exec('ip', ['link', 'add', 'br-pw', 'type', 'bridge']);
    fw.exec('ip', ['addr', 'add', '192.0.2.1/24', 'dev', 'br-pw']);
    fw.exec('ip', ['link', 'set', 'br-pw', 'up']);
    veth(fw, 'tapvm-b', vmb, 'eth0');
    veth(fw, 'upl-b', cli, 'eth0');
    veth(fw, 'vethvm-r', vmr, 'eth0', { a: ['198.51.100.1/24'], b: ['198.51.100.10/24'] });
    for (const dev of ['tapvm-b', 'upl-b']) fw.exec('ip', ['link', 'set', dev, 'master', 'br-pw']);
    vmb.exec('ip', ['link', 'set', 'eth0', 'address', MAC_B]);
    vmr.exec('ip', ['link', 'set', 'eth0', 'address', MAC_R]);
    vmb.exec('ip', ['addr', 'add', '192.0.2.10/24', 'dev', 'eth0']);
    vmb.exec('ip', ['addr', 'add', '2001:db8:1::10/64', 'dev', 'eth0', 'nodad']);
    cli.exec('ip', ['addr', 'add', '192.0.2.20/24', 'dev', 'eth0']);
    cli.exec('ip', ['addr', 'add', '192.0.2.21/24', 'dev', 'eth0']);
    cli.exec('ip', ['addr', 'add', '2001:db8:1::21/64', 'dev', 'eth0', 'nodad']);
    cli.exec('ip', ['route', 'add', '198.51.100.0/24', 'via', '192.0.2.1']);
    vmr.exec('ip', ['route', 'add', 'default', 'via', '198.51.100.1']);
    fw.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.bridge.bridge-nf-call-iptables=1', 'net.bridge.bridge-nf-call-ip6tables=1']);
    load(fw, backend, renderIptables(policy([bridged, routed, unfiltered])));
  });
  afterAll(() => {
    for (const ns of [fw, vmb, vmr, cli]) ns?.destroy();
  });

  it('bridged: remote-group members get in, others do not; removing the member cuts new flows', () => {
    expect(cli.tryExec('ping', ['-4', '-c', '1', '-W', '1', '-I', '192.0.2.20', '192.0.2.10'], { timeoutMs: 5000 }).status).toBe(0);
    expect(cli.tryExec('ping', ['-4', '-c', '1', '-W', '1', '-I', '192.0.2.21', '192.0.2.10'], { timeoutMs: 5000 }).status).not.toBe(0);
    // The flow was tracked in the network's zone, not in the default one.
    expect(fw.exec('conntrack', ['-L', '-w', '201', '-d', '192.0.2.10'])).toContain('zone=201');
    fw.exec('ipset', ['del', memberSetName('sg-c', 4), '192.0.2.20']);
    expect(cli.tryExec('ping', ['-4', '-c', '1', '-W', '1', '-I', '192.0.2.20', '192.0.2.10'], { timeoutMs: 5000 }).status).not.toBe(0);
    fw.exec('ipset', ['add', memberSetName('sg-c', 4), '192.0.2.20']);
  });

  it('bridged: the port sends only from its own address and MAC', () => {
    expect(ping(vmb, '192.0.2.20')).toBe(true);
    vmb.exec('ip', ['addr', 'add', '192.0.2.99/24', 'dev', 'eth0']);
    expect(vmb.tryExec('ping', ['-4', '-c', '1', '-W', '1', '-I', '192.0.2.99', '192.0.2.20'], { timeoutMs: 5000 }).status).not.toBe(0);
    vmb.exec('ip', ['addr', 'del', '192.0.2.99/24', 'dev', 'eth0']);
  });

  it('bridged IPv6: neighbour discovery passes, ping in from the allowed prefix', () => {
    expect(ping(cli, '2001:db8:1::10', { count: 1, waitS: 2 })).toBe(true);
  });

  it('bridged: DHCP replies and RAs reach the port only from the network\'s servers and routers, despite "any UDP/ICMPv6" rules', async () => {
    const smac = cli.exec('cat', ['/sys/class/net/eth0/address']).trim();
    const sniff = new Bg(spawnIn(vmb, 'python3', [NETPROBE, 'sniff', '--dev', 'eth0', '--seconds', '10']));
    const dhcp = (src: string) => ({ smac, dmac: MAC_B, src, dst: '192.0.2.10', proto: 'udp', sport: 67, dport: 68, payload: `offer from ${src}` });
    const ra = (src: string) => ({ smac, dmac: '33:33:00:00:00:01', src, dst: 'ff02::1', proto: 'icmpv6', icmp: 'ra', ttl: 255 });
    await sniff.during(async () => {
      await sniff.waitFor((l) => l === 'ready');
      cli.exec('python3', [NETPROBE, 'frame', '--dev', 'eth0', '--json', JSON.stringify([dhcp('192.0.2.254'), dhcp('192.0.2.21'), ra('fe80::1'), ra('fe80::99')])]);
    });
    const got = sniff.records<{ src?: string; sport?: number; icmpType?: number }>();
    const dhcpFrom = [...new Set(got.filter((r) => r.sport === 67).map((r) => r.src))];
    const raFrom = [...new Set(got.filter((r) => r.icmpType === 134).map((r) => r.src))];
    expect(dhcpFrom).toEqual(['192.0.2.254']);
    expect(raFrom).toEqual(['fe80::1']);
  });

  it('routed, stateless: ping passes both ways by rule and leaves no conntrack entry', () => {
    expect(ping(cli, '198.51.100.10')).toBe(true);
    expect(ping(vmr, '192.0.2.20')).toBe(true);
    expect(fw.tryExec('conntrack', ['-L', '-d', '198.51.100.10']).out).not.toContain('198.51.100.10');
    // A spoofed source from the routed port is dropped.
    vmr.exec('ip', ['addr', 'add', '198.51.100.99/24', 'dev', 'eth0']);
    expect(vmr.tryExec('ping', ['-4', '-c', '1', '-W', '1', '-I', '198.51.100.99', '192.0.2.20'], { timeoutMs: 5000 }).status).not.toBe(0);
  });
});
