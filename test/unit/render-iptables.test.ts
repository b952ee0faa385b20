import { describe, expect, test } from 'vitest';

import { groupsOfPorts, type CompiledRule, type PolicyIR, type PortPolicy } from '../../src/compile/ir.js';
import { ND_DAD, layout } from '../../src/compile/layout.js';
import { assignProfiles } from '../../src/compile/policy.js';
import { parseInterval } from '../../src/nft/datatypes.js';
import { Transaction } from '../../src/nft/transaction.js';
import { PortwallError } from '../../src/errors.js';
import { DEFAULT_CONFIG, type Network } from '../../src/model/types.js';
import { renderIptables } from '../../src/render/iptables.js';
import { MAX_CHAIN_NAME, memberSetName, portChain } from '../../src/render/iptables-syntax.js';

// A hand-made compiled policy (the compiler is not needed to test the renderer): a bridged port with the
// seed 001 §3.3.3 rules and a remote-group rule, a routed port of a stateless group, an unfiltered port.
const MAC = 'fa:16:3e:f3:1e:c0';
const LL = 'fe80::f816:3eff:fef3:1ec0/128';
const ingress = (ruleId: string, extra: Partial<CompiledRule>): CompiledRule =>
  ({ ruleId, groupId: 'sg-web', direction: 'ingress', family: 4, remote: { kind: 'any' }, ...extra });
const egress = (ruleId: string, extra: Partial<CompiledRule>): CompiledRule => ({ ...ingress(ruleId, extra), direction: 'egress' });

const SEED_RULES: CompiledRule[] = [
  egress('r1-ping-out', { protocol: 1 }),
  ingress('r2-ping-in', { protocol: 1, icmp: { type: 8, code: 0 } }),
  egress('r3-ssh-out', { protocol: 6, ports: { min: 22, max: 22 } }),
  ingress('r4-http-in', { protocol: 6, ports: { min: 80, max: 80 } }),
  egress('r5-http-out', { protocol: 6, ports: { min: 80, max: 80 } }),
  ingress('r6-pop3-in', { protocol: 6, ports: { min: 110, max: 110 }, remote: { kind: 'prefix', prefix: '203.0.113.0/24' } }),
  ingress('r7-dns-in', { protocol: 17, ports: { min: 53, max: 53 }, remote: { kind: 'prefix', prefix: '198.51.100.0/24' } }),
  ingress('r8-ssh-group', { protocol: 6, ports: { min: 22, max: 22 }, remote: { kind: 'group', groupId: 'sg-web' } }),
  ingress('r9-v6-group', { family: 6, protocol: 58, icmp: { type: 128 }, remote: { kind: 'group', groupId: 'sg-web' } }),
  egress('r10-range', { protocol: 17, ports: { min: 1000, max: 2000 } }),
];

const NETWORKS: Network[] = [
  { id: 'net-a', zone: 101, mode: 'bridged', bridge: 'br-a', dhcpServers: ['192.0.2.254/32', '2001:db8::fe/128'], routers: ['fe80::1/128'] },
  { id: 'net-r', zone: 102, mode: 'routed', dhcpServers: [], routers: [] },
];

const web: PortPolicy = {
  portId: '6e3f2eda-3230-45e8-9be5-f382af5b83ea', device: 'tap6e3f2eda-32', networkId: 'net-a', zone: 101, mode: 'bridged',
  bridge: 'br-a', mac: MAC, fixedIps: ['192.0.2.14/32', '2001:db8::14/128'], filtered: true, stateful: true, tag: 1,
  spoof: [
    { mac: MAC, prefix: '192.0.2.14/32', family: 4 },
    { mac: 'fa:16:3e:00:00:01', prefix: '192.0.2.100/32', family: 4 },
    { mac: MAC, prefix: '0.0.0.0/32', family: 4 },
    { mac: MAC, prefix: '2001:db8::14/128', family: 6 },
    { mac: MAC, prefix: LL, family: 6 },
  ],
  dhcpServers: NETWORKS[0]!.dhcpServers, routers: NETWORKS[0]!.routers, rules: SEED_RULES,
  groupIds: ['sg-web'], memberPrefixes: ['192.0.2.14/32', '2001:db8::14/128', '192.0.2.100/32'],
};
const routed: PortPolicy = {
  portId: 'port-r', device: 'veth-r1', networkId: 'net-r', zone: 102, mode: 'routed', mac: 'fa:16:3e:00:00:02',
  fixedIps: ['198.51.100.7/32'], filtered: true, stateful: false,
  spoof: [{ mac: 'fa:16:3e:00:00:02', prefix: '198.51.100.7/32', family: 4 }, { mac: 'fa:16:3e:00:00:02', prefix: '0.0.0.0/32', family: 4 }],
  dhcpServers: [], routers: [], groupIds: ['sg-dns'], memberPrefixes: ['198.51.100.7/32'],
  rules: [{ ruleId: 'dns-out', groupId: 'sg-dns', direction: 'egress', family: 4, protocol: 17, ports: { min: 53, max: 53 }, remote: { kind: 'prefix', prefix: '203.0.113.53/32' } }],
};
const off: PortPolicy = { ...routed, portId: 'port-off', device: 'tap-off', networkId: 'net-a', mode: 'bridged', zone: 101, filtered: false, stateful: true, rules: [] };

const IR: PolicyIR = {
  config: DEFAULT_CONFIG, networks: NETWORKS, ports: [web, routed, off],
  members: [
    { groupId: 'sg-web', family: 4, prefixes: ['192.0.2.100/32', '192.0.2.14/32'] },
    { groupId: 'sg-web', family: 6, prefixes: ['2001:db8::14/128'] },
  ],
  profiles: assignProfiles([web, routed, off], DEFAULT_CONFIG),
  groups: groupsOfPorts([web, routed, off]),
};

/** The `-A` rules of `chain`, in order, without the `-A chain ` head. */
function chain(text: string, name: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(`-A ${name} `)).map((l) => l.slice(name.length + 4));
}
function declared(text: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(':')).map((l) => l.slice(1).split(' ')[0]!);
}
/** The nft layout's rules of `ir` as `nft` text, per chain, and its set elements. */
interface NftRuleText { chain: string; text: string }
function nftRules(ir: PolicyIR): NftRuleText[] & { elements: Map<string, { key: string; data?: string }[]> } {
  const objs = layout(ir);
  const tx = new Transaction();
  for (const o of objs) tx.add(o);
  if (tx.error) throw tx.error;
  const rules = tx.toString().split('\n').flatMap((l) => {
    const m = /^add rule inet \S+ (\S+) (.*)$/.exec(l);
    return m ? [{ chain: m[1]!, text: m[2]! }] : [];
  });
  const elements = new Map<string, { key: string; data?: string }[]>();
  for (const o of objs) {
    if (o.kind === 'elements') elements.set(o.set, o.elements.map((e) => ({ key: String(e.key[0]), ...(e.data === undefined ? {} : { data: String(e.data) }) })));
  }
  return Object.assign(rules, { elements });
}

/** What a base-policy rule does, in words both renderings share ('other' for SG rules and dispatch). */
function iptKind(spec: string): string {
  if (spec.includes('--state INVALID')) return 'invalid';
  if (spec.includes('--state RELATED,ESTABLISHED')) return 'established';
  if (spec.startsWith('-s ::/128 ')) return 'dad';
  if (spec.startsWith('-j portwall-s-')) return 'anti-spoof';
  if (/--icmpv6-type 134 /.test(spec)) return spec.endsWith('RETURN') ? 'ra-router' : 'ra-drop';
  if (/--icmpv6-type \d+ -j RETURN$/.test(spec)) return 'nd';
  if (/--sport (67|547) --dport (68|546)/.test(spec)) return spec.endsWith('RETURN') ? 'dhcp-server' : 'dhcp-reply-drop';
  if (/--sport (68|546) --dport (67|547)/.test(spec)) return 'dhcp-client';
  return 'other';
}
function nftKind(text: string, family: 4 | 6): string {
  const v6Only = /icmpv6|ip6 |nfproto ipv6|sport 54[67]/.test(text);
  const v4Only = /(^| )ip saddr|nfproto ipv4|sport 6[78]/.test(text);
  if ((family === 4 && v6Only && !text.includes('spoof4')) || (family === 6 && v4Only && !text.includes('spoof6'))) return 'other';
  if (text.includes('ct state invalid')) return 'invalid';
  if (text.includes('ct state established,related')) return 'established';
  if (text.includes('@nd_dad')) return 'dad';
  if (text.includes('@spoof')) return 'anti-spoof';
  if (text.includes('nd-router-advert')) return text.includes('@ra6') ? 'ra-router' : 'ra-drop';
  if (/@nd_(in|out)/.test(text)) return 'nd';
  if (/udp sport (67|547) udp dport (68|546)/.test(text)) return text.includes('@dhcp') ? 'dhcp-server' : 'dhcp-reply-drop';
  if (/udp sport (68|546) udp dport (67|547)/.test(text)) return 'dhcp-client';
  return 'other';
}
function collapse(kinds: string[]): string[] {
  return kinds.filter((k, i) => k !== kinds[i - 1]);
}

/** A packet as the raw table sees it: PREROUTING (iif, the bridge port for bridged frames) or OUTPUT (oif). */
interface Packet { family: 4 | 6; hook: 'pre' | 'out'; iif?: string; physin?: string; oif?: string; daddr: string }

function contains(family: 4 | 6, range: string, addr: string): boolean {
  const type = family === 4 ? 'ipv4_addr' : 'ipv6_addr';
  const r = parseInterval(type, range);
  const a = parseInterval(type, addr);
  return r.lo <= a.lo && a.hi <= r.hi;
}

/** iptables: the first `CT --zone` rule that matches wins (xt_CT leaves an attached template be). */
function iptZone(text: string, p: Packet): number | undefined {
  for (const spec of chain(text, p.hook === 'pre' ? 'portwall-PREROUTING' : 'portwall-OUTPUT')) {
    const m = /^(.*) -j CT --zone (\d+)$/.exec(spec);
    if (!m) continue;
    const [, match, zone] = m as unknown as [string, string, string];
    const hit = /^-i \S+$/.test(match) ? p.iif === match.slice(3)
      : /^-o \S+$/.test(match) ? p.oif === match.slice(3)
      : /^-d \S+$/.test(match) ? contains(p.family, match.slice(3), p.daddr)
      : /^-m physdev --physdev-in \S+$/.test(match) ? p.physin === match.split(' ').at(-1)
      : (() => { throw new Error(`unknown zone match ${match}`); })();
    if (hit) return Number(zone);
  }
  return undefined;
}

/**
 * nft: the first `ct zone set` that matches wins — nft_ct_set_zone_eval() returns early once the packet has a
 * conntrack template, as xt_CT does. `matches` counts every rule that would set a zone, to prove the overlaps.
 * Understands the raw chains' forms: matches on iifname/oifname/ip daddr/ip6 daddr against a set, a map used
 * as a set or a literal (optionally negated), then `ct zone set N`, `ct zone set FIELD map @m`, or `jump c`.
 */
function nftZone(rules: ReturnType<typeof nftRules>, p: Packet): { zone?: number; matches: number } {
  let zone: number | undefined;
  let matches = 0;
  const valueOf = (field: string): string | undefined =>
    field === 'iifname' ? p.iif : field === 'oifname' ? p.oif
      : (field === 'ip daddr') === (p.family === 4) ? p.daddr : undefined;
  const isAddr = (field: string) => field.includes('daddr');
  // The element (key, data) a value hits in a set or map, or a literal's match.
  const hit = (ref: string, field: string): { data?: string } | undefined => {
    const v = valueOf(field);
    if (v === undefined) return undefined;
    if (!ref.startsWith('@')) return ref.slice(1, -1) === v ? {} : undefined;
    const els = rules.elements.get(ref.slice(1)) ?? [];
    return els.find((e) => (isAddr(field) ? contains(p.family, e.key, v) : e.key === v));
  };
  const FIELD = '(iifname|oifname|ip daddr|ip6 daddr)';
  const cond = new RegExp(`^${FIELD} (!= )?(@\\S+|"[^"]*") `);
  const run = (chain: string): void => {
    for (const r of rules.filter((x) => x.chain === chain)) {
      let text = r.text;
      let ok = true;
      for (let m = cond.exec(text); m; m = cond.exec(text)) {
        const found = hit(m[3]!, m[1]!) !== undefined;
        if (found === (m[2] !== undefined)) ok = false;
        text = text.slice(m[0].length);
      }
      if (!ok) continue;
      const jumpTo = /^jump (\S+)/.exec(text);
      if (jumpTo) {
        run(jumpTo[1]!);
        continue;
      }
      // goto: the target's rules instead of the rest of this chain's.
      const gotoTo = /^goto (\S+)/.exec(text);
      if (gotoTo) {
        run(gotoTo[1]!);
        return;
      }
      const fixed = /^ct zone set (\d+)/.exec(text);
      const mapped = new RegExp(`^ct zone set ${FIELD} map (@\\S+)`).exec(text);
      if (!fixed && !mapped) {
        if (text.includes('ct zone set')) throw new Error(`unknown zone rule ${r.text}`);
        continue;
      }
      const z = fixed ? fixed[1] : hit(mapped![2]!, mapped![1]!)?.data;
      if (z === undefined) continue;
      zone ??= Number(z);
      matches++;
    }
  };
  run(p.hook === 'pre' ? 'raw_pre' : 'raw_out');
  return { zone, matches };
}

function refusal(fn: () => unknown): PortwallError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(PortwallError);
    expect((e as PortwallError).code).toBe('ERR_RENDER');
    return e as PortwallError;
  }
  throw new Error('expected ERR_RENDER');
}

describe('renderIptables', () => {
  const out = renderIptables(IR);

  test('two tables per family, each committed', () => {
    for (const text of [out.iptables, out.ip6tables]) {
      expect(text.match(/^\*\w+$/gm)).toEqual(['*raw', '*filter']);
      expect(text.match(/^COMMIT$/gm)).toHaveLength(2);
      expect(chain(text, 'FORWARD')).toEqual(['-j portwall-FORWARD']);
      expect(chain(text, 'INPUT')).toEqual(['-j portwall-INPUT']);
      expect(chain(text, 'PREROUTING')).toEqual(['-j portwall-PREROUTING']);
    }
  });

  test('i/o/s chains per filtered port, none for an unfiltered one, all names within 28 bytes', () => {
    for (const text of [out.iptables, out.ip6tables]) {
      const names = declared(text);
      for (const dev of ['tap6e3f2eda-32', 'veth-r1']) {
        for (const k of ['i', 'o', 's'] as const) expect(names).toContain(`portwall-${k}-${dev}`);
      }
      expect(names.filter((n) => n.includes('tap-off'))).toEqual([]);
      expect(names).toEqual(expect.arrayContaining(['portwall-sg-chain', 'portwall-sg-fallback']));
      for (const n of names) expect(Buffer.byteLength(n)).toBeLessThanOrEqual(MAX_CHAIN_NAME);
    }
  });

  test('bridged ports are matched by physdev, routed ports by device; unfiltered ports accepted after all', () => {
    expect(chain(out.iptables, 'portwall-FORWARD')).toEqual([
      '-m physdev --physdev-out tap6e3f2eda-32 --physdev-is-bridged -j portwall-sg-chain',
      '-m physdev --physdev-in tap6e3f2eda-32 --physdev-is-bridged -j portwall-sg-chain',
      '-o veth-r1 -j portwall-sg-chain',
      '-i veth-r1 -j portwall-sg-chain',
      '-m physdev --physdev-out tap-off --physdev-is-bridged -m comment --comment "portwall: port security disabled" -j ACCEPT',
      '-m physdev --physdev-in tap-off --physdev-is-bridged -m comment --comment "portwall: port security disabled" -j ACCEPT',
    ]);
    expect(chain(out.iptables, 'portwall-sg-chain')).toEqual([
      '-m physdev --physdev-out tap6e3f2eda-32 --physdev-is-bridged -j portwall-i-tap6e3f2eda-32',
      '-m physdev --physdev-in tap6e3f2eda-32 --physdev-is-bridged -j portwall-o-tap6e3f2eda-32',
      '-o veth-r1 -j portwall-i-veth-r1',
      '-i veth-r1 -j portwall-o-veth-r1',
      '-j ACCEPT',
    ]);
    // To the host, a bridged packet is not bridged: no --physdev-is-bridged in INPUT.
    expect(chain(out.iptables, 'portwall-INPUT')).toEqual([
      '-m physdev --physdev-in tap6e3f2eda-32 -j portwall-o-tap6e3f2eda-32',
      '-i veth-r1 -j portwall-o-veth-r1',
    ]);
  });

  test('every SG rule carries its id as a comment, in its direction and family', () => {
    for (const r of SEED_RULES) {
      const text = r.family === 4 ? out.iptables : out.ip6tables;
      const other = r.family === 4 ? out.ip6tables : out.iptables;
      const own = chain(text, `portwall-${r.direction === 'ingress' ? 'i' : 'o'}-tap6e3f2eda-32`);
      expect(own.filter((l) => l.includes(`--comment ${r.ruleId} -j RETURN`))).toHaveLength(1);
      expect(other).not.toContain(r.ruleId);
    }
    const i4 = chain(out.iptables, 'portwall-i-tap6e3f2eda-32');
    expect(i4).toContain('-s 203.0.113.0/24 -p tcp -m tcp --dport 110 -m comment --comment r6-pop3-in -j RETURN');
    expect(i4).toContain('-p icmp -m icmp --icmp-type 8/0 -m comment --comment r2-ping-in -j RETURN');
    expect(i4).toContain(`-p tcp -m tcp --dport 22 -m set --match-set ${memberSetName('sg-web', 4)} src -m comment --comment r8-ssh-group -j RETURN`);
    expect(chain(out.iptables, 'portwall-o-tap6e3f2eda-32')).toContain('-p udp -m udp --dport 1000:2000 -m comment --comment r10-range -j RETURN');
    expect(chain(out.ip6tables, 'portwall-i-tap6e3f2eda-32')).toContain(
      `-p ipv6-icmp -m icmp6 --icmpv6-type 128 -m set --match-set ${memberSetName('sg-web', 6)} src -m comment --comment r9-v6-group -j RETURN`,
    );
  });

  test('anti-spoof: one mac/IP pair per line, DHCP only after it, fallback drop last', () => {
    expect(chain(out.iptables, 'portwall-s-tap6e3f2eda-32')).toEqual([
      `-s 0.0.0.0/32 -m mac --mac-source ${MAC} -j RETURN`,
      `-s 192.0.2.100/32 -m mac --mac-source fa:16:3e:00:00:01 -j RETURN`,
      `-s 192.0.2.14/32 -m mac --mac-source ${MAC} -j RETURN`,
      '-m comment --comment "portwall: not an address pair of the port" -j DROP',
    ]);
    expect(chain(out.ip6tables, 'portwall-s-tap6e3f2eda-32').slice(0, 2)).toEqual([
      `-s 2001:db8::14/128 -m mac --mac-source ${MAC} -j RETURN`,
      `-s ${LL} -m mac --mac-source ${MAC} -j RETURN`,
    ]);
    const o4 = chain(out.iptables, 'portwall-o-tap6e3f2eda-32');
    expect(o4.slice(0, 7)).toEqual([
      '-j portwall-s-tap6e3f2eda-32',
      '-p udp -m udp --sport 68 --dport 67 -m comment --comment "portwall: DHCP client" -j RETURN',
      '-s 0.0.0.0/32 -m comment --comment "portwall: 0.0.0.0 is for DHCP discover only" -j DROP',
      '-p udp -m udp --sport 67 --dport 68 -m comment --comment "portwall: no DHCP server on a port" -j DROP',
      '-m state --state INVALID -j DROP',
      '-m state --state RELATED,ESTABLISHED -j RETURN',
      '-p icmp -m comment --comment r1-ping-out -j RETURN',
    ]);
    expect(o4.at(-1)).toBe('-j portwall-sg-fallback');
    expect(chain(out.iptables, 'portwall-sg-fallback')).toEqual(['-m comment --comment "portwall: default drop" -j DROP']);
  });

  test('a /0 address pair matches any source with that MAC', () => {
    const lvs: PortPolicy = { ...web, spoof: [{ mac: 'fa:16:3e:00:00:09', prefix: '0.0.0.0/0', family: 4 }] };
    const text = renderIptables({ ...IR, ports: [lvs] }).iptables;
    expect(chain(text, 'portwall-s-tap6e3f2eda-32')[0]).toBe('-m mac --mac-source fa:16:3e:00:00:09 -j RETURN');
  });

  test('IPv6: DAD ahead of anti-spoof, RA only from the routers, none from the port, DHCPv6 from the servers', () => {
    const o6 = chain(out.ip6tables, 'portwall-o-tap6e3f2eda-32');
    const spoofAt = o6.indexOf('-j portwall-s-tap6e3f2eda-32');
    // Any destination, as the nft layout's `ip6 saddr :: icmpv6 type @nd_dad return`.
    expect(o6.slice(0, spoofAt)).toEqual(ND_DAD.map((t) => `-s ::/128 -p ipv6-icmp -m icmp6 --icmpv6-type ${t} -j RETURN`));
    expect(o6).toContain('-p ipv6-icmp -m icmp6 --icmpv6-type 134 -m comment --comment "portwall: no RA from a port" -j DROP');
    expect(o6).toContain('-p udp -m udp --sport 546 --dport 547 -m comment --comment "portwall: DHCP client" -j RETURN');
    const i6 = chain(out.ip6tables, 'portwall-i-tap6e3f2eda-32');
    expect(i6).toContain('-s fe80::1/128 -p ipv6-icmp -m icmp6 --icmpv6-type 134 -m comment --comment "portwall: RA from router" -j RETURN');
    expect(i6).toContain('-s 2001:db8::fe/128 -p udp -m udp --sport 547 --dport 546 -m comment --comment "portwall: DHCP reply" -j RETURN');
    expect(i6.filter((l) => l.includes('--icmpv6-type 134'))).toEqual([
      '-s fe80::1/128 -p ipv6-icmp -m icmp6 --icmpv6-type 134 -m comment --comment "portwall: RA from router" -j RETURN',
      '-p ipv6-icmp -m icmp6 --icmpv6-type 134 -m comment --comment "portwall: RA from anyone else" -j DROP',
    ]);
    expect(chain(out.iptables, 'portwall-i-tap6e3f2eda-32')).toContain(
      '-s 192.0.2.254/32 -p udp -m udp --sport 67 --dport 68 -m comment --comment "portwall: DHCP reply" -j RETURN',
    );
  });

  test('ingress: RAs from non-routers and DHCP replies from non-servers are dropped before the SG rules', () => {
    // Rules as wide as a rule gets ("any ICMPv6", "any UDP") must not admit a rogue router or DHCP server.
    const wide: PortPolicy = {
      ...web, rules: [ingress('any-icmp6', { family: 6, protocol: 58 }), ingress('any-udp4', { protocol: 17 }), ingress('any-udp6', { family: 6, protocol: 17 })],
    };
    const r = renderIptables({ ...IR, ports: [wide], members: [] });
    expect(chain(r.ip6tables, 'portwall-i-tap6e3f2eda-32')).toEqual([
      ...[130, 131, 132, 135, 136, 143].map((t) => `-p ipv6-icmp -m icmp6 --icmpv6-type ${t} -j RETURN`),
      '-s fe80::1/128 -p ipv6-icmp -m icmp6 --icmpv6-type 134 -m comment --comment "portwall: RA from router" -j RETURN',
      '-p ipv6-icmp -m icmp6 --icmpv6-type 134 -m comment --comment "portwall: RA from anyone else" -j DROP',
      '-m state --state INVALID -j DROP',
      '-m state --state RELATED,ESTABLISHED -j RETURN',
      '-s 2001:db8::fe/128 -p udp -m udp --sport 547 --dport 546 -m comment --comment "portwall: DHCP reply" -j RETURN',
      '-p udp -m udp --sport 547 --dport 546 -m comment --comment "portwall: DHCP reply from anyone else" -j DROP',
      '-p ipv6-icmp -m comment --comment any-icmp6 -j RETURN',
      '-p udp -m comment --comment any-udp6 -j RETURN',
      '-j portwall-sg-fallback',
    ]);
    expect(chain(r.iptables, 'portwall-i-tap6e3f2eda-32')).toEqual([
      '-m state --state INVALID -j DROP',
      '-m state --state RELATED,ESTABLISHED -j RETURN',
      '-s 192.0.2.254/32 -p udp -m udp --sport 67 --dport 68 -m comment --comment "portwall: DHCP reply" -j RETURN',
      '-p udp -m udp --sport 67 --dport 68 -m comment --comment "portwall: DHCP reply from anyone else" -j DROP',
      '-p udp -m comment --comment any-udp4 -j RETURN',
      '-j portwall-sg-fallback',
    ]);
  });

  test('the base policy of both directions comes in the nft layout\'s order', () => {
    const ir: PolicyIR = { ...IR, ports: [web], members: [] };
    const r = renderIptables(ir);
    const nft = nftRules(ir);
    for (const [dir, nftChain, ipt] of [['ingress', 'ingress_tag', 'portwall-i-tap6e3f2eda-32'], ['egress', 'egress_tag', 'portwall-o-tap6e3f2eda-32']] as const) {
      for (const family of [4, 6] as const) {
        const ours = collapse(chain(family === 4 ? r.iptables : r.ip6tables, ipt).map(iptKind).filter((k) => k !== 'other'));
        const theirs = collapse(nft.filter((l) => l.chain === nftChain).map((l) => nftKind(l.text, family)).filter((k) => k !== 'other'));
        expect(ours, `${dir} IPv${family}`).toEqual(theirs);
        expect(ours.length).toBeGreaterThan(3);
      }
    }
  });

  test('a port with no group gets only the base policy (routed, stateless, IPv4, exact)', () => {
    const bare: PortPolicy = { ...routed, rules: [] };
    const text = renderIptables({ ...IR, ports: [bare], members: [] }).iptables;
    expect(chain(text, 'portwall-i-veth-r1')).toEqual([
      '-p udp -m udp --sport 67 --dport 68 -m comment --comment "portwall: DHCP reply from anyone else" -j DROP',
      '-j portwall-sg-fallback',
    ]);
    expect(chain(text, 'portwall-o-veth-r1')).toEqual([
      '-j portwall-s-veth-r1',
      '-p udp -m udp --sport 68 --dport 67 -m comment --comment "portwall: DHCP client" -j RETURN',
      '-s 0.0.0.0/32 -m comment --comment "portwall: 0.0.0.0 is for DHCP discover only" -j DROP',
      '-p udp -m udp --sport 67 --dport 68 -m comment --comment "portwall: no DHCP server on a port" -j DROP',
      '-j portwall-sg-fallback',
    ]);
  });

  test('raw: zones per network before conntrack (lowest zone first), stateless ports untracked first', () => {
    expect(chain(out.iptables, 'portwall-PREROUTING')).toEqual([
      '-i veth-r1 -j CT --notrack',
      '-d 198.51.100.7/32 -j CT --notrack',
      '-i br-a -j CT --zone 101',
      '-d 192.0.2.14/32 -j CT --zone 101',
      '-d 192.0.2.100/32 -j CT --zone 101',
      // tap-off (net-a) has veth-r1's address too; the layout gives an address claimed twice to the stateful port.
      '-d 198.51.100.7/32 -j CT --zone 101',
      '-i veth-r1 -j CT --zone 102',
    ]);
    expect(chain(out.iptables, 'portwall-OUTPUT')).toEqual([
      '-o veth-r1 -j CT --notrack',
      '-o br-a -j CT --zone 101',
      '-o veth-r1 -j CT --zone 102',
    ]);
    // Stateless: no conntrack verdicts in the port's chains.
    expect(chain(out.iptables, 'portwall-o-veth-r1').filter((l) => l.includes('--state'))).toEqual([]);
  });

  test('raw: with overlapping matches every packet gets the zone the nft layout gives it', () => {
    // Three networks whose matches overlap: a routed port's address pair covers a bridged port's address and
    // another routed network's port, so one packet meets two or three networks' rules.
    const mac = (n: number) => `fa:16:3e:00:01:0${n}`;
    const nets: Network[] = [
      { id: 'net-a', zone: 300, mode: 'routed', dhcpServers: [], routers: [] },
      { id: 'net-b', zone: 200, mode: 'bridged', bridge: 'br-b', dhcpServers: [], routers: [] },
      { id: 'net-c', zone: 100, mode: 'routed', dhcpServers: [], routers: [] },
    ];
    const base = { filtered: true, stateful: true, dhcpServers: [], routers: [], rules: [], groupIds: [], memberPrefixes: [] };
    const pa: PortPolicy = {
      ...base, portId: 'pa', device: 'veth-a', networkId: 'net-a', zone: 300, mode: 'routed', mac: mac(1),
      fixedIps: ['198.51.100.10/32', '2001:db8:a::10/128'],
      spoof: [
        { mac: mac(1), prefix: '198.51.100.10/32', family: 4 }, { mac: mac(1), prefix: '192.0.2.0/24', family: 4 },
        { mac: mac(1), prefix: '2001:db8:a::10/128', family: 6 }, { mac: mac(1), prefix: 'fe80::a/128', family: 6 },
      ],
    };
    const pb: PortPolicy = {
      ...base, portId: 'pb', device: 'tap-b', networkId: 'net-b', zone: 200, mode: 'bridged', bridge: 'br-b', tag: 1, mac: mac(2),
      fixedIps: ['192.0.2.10/32', '2001:db8:b::10/128'],
      spoof: [{ mac: mac(2), prefix: '192.0.2.10/32', family: 4 }, { mac: mac(2), prefix: '2001:db8:b::10/128', family: 6 }],
    };
    const pc: PortPolicy = {
      ...base, portId: 'pc', device: 'veth-c', networkId: 'net-c', zone: 100, mode: 'routed', mac: mac(3),
      fixedIps: ['198.51.100.20/32'],
      spoof: [
        { mac: mac(3), prefix: '198.51.100.20/32', family: 4 }, { mac: mac(3), prefix: '198.51.100.0/28', family: 4 },
        { mac: mac(3), prefix: '2001:db8:a::/64', family: 6 },
      ],
    };
    const ir: PolicyIR = { config: DEFAULT_CONFIG, networks: nets, ports: [pa, pb, pc], members: [], profiles: assignProfiles([pa, pb, pc], DEFAULT_CONFIG), groups: groupsOfPorts([pa, pb, pc]) };
    const r = renderIptables(ir);
    const nft = nftRules(ir);
    const devices = ['veth-a', 'veth-c', 'br-b', 'eth-up'];
    const daddrs = { 4: ['198.51.100.10', '198.51.100.20', '192.0.2.10', '192.0.2.99', '203.0.113.1'], 6: ['2001:db8:a::10', '2001:db8:b::10', 'fe80::a', '2001:db8:ffff::1'] };
    let overlapping = 0;
    for (const family of [4, 6] as const) {
      for (const hook of ['pre', 'out'] as const) {
        for (const dev of devices) {
          for (const daddr of daddrs[family]) {
            const pkt: Packet = { family, hook, daddr, ...(hook === 'pre' ? { iif: dev, physin: dev === 'br-b' ? 'tap-b' : undefined } : { oif: dev }) };
            const want = nftZone(nft, pkt);
            expect(iptZone(family === 4 ? r.iptables : r.ip6tables, pkt), JSON.stringify(pkt)).toBe(want.zone);
            if (want.matches > 1) overlapping++;
          }
        }
      }
    }
    expect(overlapping).toBeGreaterThan(5);
    // From a port of zone 300 to one of zone 100: both networks' rules match, the flow lives in zone 100,
    // as its replies (from veth-c) do.
    expect(iptZone(r.iptables, { family: 4, hook: 'pre', iif: 'veth-a', daddr: '198.51.100.20' })).toBe(100);
    expect(iptZone(r.iptables, { family: 4, hook: 'pre', iif: 'veth-c', daddr: '198.51.100.10' })).toBe(100);
  });

  test('ipsets: one hash:net per remote group and family, members in ipset save spelling', () => {
    const v4 = memberSetName('sg-web', 4);
    const v6 = memberSetName('sg-web', 6);
    expect(out.ipsets).toBe(
      `create ${v4} hash:net family inet hashsize 1024 maxelem 65536\n` +
        `add ${v4} 192.0.2.100\nadd ${v4} 192.0.2.14\n` +
        `create ${v6} hash:net family inet6 hashsize 1024 maxelem 65536\nadd ${v6} 2001:db8::14\n`,
    );
    // A referenced group with no members still gets its (empty) set, or the rule would not load.
    const lonely = renderIptables({ ...IR, members: [] }).ipsets;
    expect(lonely).toBe(`create ${v4} hash:net family inet hashsize 1024 maxelem 65536\ncreate ${v6} hash:net family inet6 hashsize 1024 maxelem 65536\n`);
  });

  test('deterministic: input order does not matter', () => {
    const shuffled: PolicyIR = {
      ...IR, ports: [off, { ...web, rules: [...SEED_RULES].reverse(), spoof: [...web.spoof].reverse() }, routed],
      networks: [...NETWORKS].reverse(), members: [...IR.members].reverse(),
    };
    expect(renderIptables(shuffled)).toEqual(out);
  });
});

describe('names and quoting', () => {
  test('set names: ≤ 31 bytes, readable, distinct for ids that share a long prefix', () => {
    const a = '0aff643b-7b34-4384-b482-f37eccef5b90';
    const b = '0aff643b-7b34-4384-b482-f37eccef5b91';
    for (const id of [a, b, 'x'.repeat(300), 'sg web/ünïcode']) {
      for (const f of [4, 6] as const) {
        expect(Buffer.byteLength(memberSetName(id, f))).toBeLessThanOrEqual(31);
        expect(memberSetName(id, f)).toMatch(/^pw[46]-[A-Za-z0-9_.-]+-[0-9a-f]{8}$/);
      }
    }
    expect(memberSetName(a, 4)).toMatch(/^pw4-0aff643b-7b34-4384-[0-9a-f]{8}$/);
    expect(memberSetName(a, 4)).not.toBe(memberSetName(b, 4));
    expect(memberSetName(a, 4)).not.toBe(memberSetName(a, 6));
  });

  test('chain names: whole device when plain, hashed when it would need quotes; never sg-chain', () => {
    expect(portChain('s', 'g-chain')).toBe('portwall-s-g-chain');
    expect(portChain('i', 'tap6e3f2eda-32')).toBe('portwall-i-tap6e3f2eda-32');
    const odd = portChain('o', 'vm"1#x');
    expect(odd).toMatch(/^portwall-o-vm_1_x~[0-9a-f]{8}$/);
    expect(Buffer.byteLength(portChain('o', 'ü'.repeat(7)))).toBeLessThanOrEqual(MAX_CHAIN_NAME);
  });

  test('odd devices and rule ids are quoted as iptables-restore reads them', () => {
    const p: PortPolicy = { ...routed, device: 'vm"1', rules: [{ ...routed.rules[0]!, ruleId: 'rule "a"\\b\nc' }] };
    const text = renderIptables({ ...IR, ports: [p], members: [] }).iptables;
    expect(text).toContain('-o "vm\\"1" -j portwall-sg-chain');
    expect(text).toContain('--comment "rule \\"a\\"\\\\b c" -j RETURN');
    const long = renderIptables({ ...IR, ports: [{ ...routed, rules: [{ ...routed.rules[0]!, ruleId: 'é'.repeat(200) }] }], members: [] });
    expect(long.iptables).toContain(`--comment "${'é'.repeat(127)}" -j RETURN`);
    // Quoted exactly when iptables-save would quote: anything beyond letters, digits, `_` and `-`.
    const dotted = renderIptables({ ...IR, ports: [{ ...routed, rules: [{ ...routed.rules[0]!, ruleId: "sg.r'1" }] }], members: [] });
    expect(dotted.iptables).toContain(`--comment "sg.r\\'1" -j RETURN`);
  });

  test('refuses what iptables would misread, naming the object', () => {
    // Seed 001: a full UUID where a device belongs made iptables-restore fail at "line 96".
    const uuid = '406e066f-5d2a-4df9-b763-2bff230738cb';
    expect(refusal(() => renderIptables({ ...IR, ports: [{ ...routed, device: uuid }] })).field).toBe('ports[port-r].device');
    refusal(() => renderIptables({ ...IR, ports: [{ ...routed, device: 'eth+' }] }));
    expect(refusal(() => renderIptables({ ...IR, ports: [routed, { ...web, device: 'veth-r1' }] })).message).toMatch(/port-r.*6e3f2eda|6e3f2eda.*port-r/);
    const badPorts = { ...routed.rules[0]!, protocol: 47 };
    expect(refusal(() => renderIptables({ ...IR, ports: [{ ...routed, rules: [badPorts] }] })).field).toBe('security_group_rules[dns-out].port_range_min');
    const badIcmp: CompiledRule = { ...routed.rules[0]!, ports: undefined, protocol: 6, icmp: { type: 8 } };
    expect(refusal(() => renderIptables({ ...IR, ports: [{ ...routed, rules: [badIcmp] }] })).field).toBe('security_group_rules[dns-out].protocol');
  });
});
