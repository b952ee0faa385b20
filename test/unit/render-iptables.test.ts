import { describe, expect, test } from 'vitest';

import type { CompiledRule, PolicyIR, PortPolicy } from '../../src/compile/ir.js';
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
};
const routed: PortPolicy = {
  portId: 'port-r', device: 'veth-r1', networkId: 'net-r', zone: 102, mode: 'routed', mac: 'fa:16:3e:00:00:02',
  fixedIps: ['198.51.100.7/32'], filtered: true, stateful: false,
  spoof: [{ mac: 'fa:16:3e:00:00:02', prefix: '198.51.100.7/32', family: 4 }, { mac: 'fa:16:3e:00:00:02', prefix: '0.0.0.0/32', family: 4 }],
  dhcpServers: [], routers: [],
  rules: [{ ruleId: 'dns-out', groupId: 'sg-dns', direction: 'egress', family: 4, protocol: 17, ports: { min: 53, max: 53 }, remote: { kind: 'prefix', prefix: '203.0.113.53/32' } }],
};
const off: PortPolicy = { ...routed, portId: 'port-off', device: 'tap-off', networkId: 'net-a', mode: 'bridged', zone: 101, filtered: false, stateful: true, rules: [] };

const IR: PolicyIR = {
  config: DEFAULT_CONFIG, networks: NETWORKS, ports: [web, routed, off],
  members: [
    { groupId: 'sg-web', family: 4, prefixes: ['192.0.2.100/32', '192.0.2.14/32'] },
    { groupId: 'sg-web', family: 6, prefixes: ['2001:db8::14/128'] },
  ],
};

/** The `-A` rules of `chain`, in order, without the `-A chain ` head. */
function chain(text: string, name: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(`-A ${name} `)).map((l) => l.slice(name.length + 4));
}
function declared(text: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(':')).map((l) => l.slice(1).split(' ')[0]!);
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
    expect(o4.slice(0, 6)).toEqual([
      '-j portwall-s-tap6e3f2eda-32',
      '-p udp -m udp --sport 68 --dport 67 -m comment --comment "portwall: DHCP client" -j RETURN',
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
    expect(o6.slice(0, spoofAt)).toEqual([131, 135, 143].map((t) => `-s ::/128 -d ff02::/16 -p ipv6-icmp -m icmp6 --icmpv6-type ${t} -j RETURN`));
    expect(o6).toContain('-p ipv6-icmp -m icmp6 --icmpv6-type 134 -m comment --comment "portwall: no RA from a port" -j DROP');
    expect(o6).toContain('-p udp -m udp --sport 546 --dport 547 -m comment --comment "portwall: DHCP client" -j RETURN');
    const i6 = chain(out.ip6tables, 'portwall-i-tap6e3f2eda-32');
    expect(i6).toContain('-s fe80::1/128 -p ipv6-icmp -m icmp6 --icmpv6-type 134 -m comment --comment "portwall: RA from router" -j RETURN');
    expect(i6).toContain('-s 2001:db8::fe/128 -p udp -m udp --sport 547 --dport 546 -m comment --comment "portwall: DHCP reply" -j RETURN');
    expect(i6.filter((l) => l.includes('--icmpv6-type 134'))).toHaveLength(1);
    expect(chain(out.iptables, 'portwall-i-tap6e3f2eda-32')).toContain(
      '-s 192.0.2.254/32 -p udp -m udp --sport 67 --dport 68 -m comment --comment "portwall: DHCP reply" -j RETURN',
    );
  });

  test('a port with no group gets only the base policy (routed, stateless, IPv4, exact)', () => {
    const bare: PortPolicy = { ...routed, rules: [] };
    const text = renderIptables({ ...IR, ports: [bare], members: [] }).iptables;
    expect(chain(text, 'portwall-i-veth-r1')).toEqual(['-j portwall-sg-fallback']);
    expect(chain(text, 'portwall-o-veth-r1')).toEqual([
      '-j portwall-s-veth-r1',
      '-p udp -m udp --sport 68 --dport 67 -m comment --comment "portwall: DHCP client" -j RETURN',
      '-p udp -m udp --sport 67 --dport 68 -m comment --comment "portwall: no DHCP server on a port" -j DROP',
      '-j portwall-sg-fallback',
    ]);
  });

  test('raw: zones per network before conntrack, stateless ports untracked first', () => {
    expect(chain(out.iptables, 'portwall-PREROUTING')).toEqual([
      '-i veth-r1 -j CT --notrack',
      '-d 198.51.100.7/32 -j CT --notrack',
      '-m physdev --physdev-in tap-off -j CT --zone 101',
      '-m physdev --physdev-in tap6e3f2eda-32 -j CT --zone 101',
      '-i veth-r1 -j CT --zone 102',
      '-d 198.51.100.7/32 -j CT --zone 102',
      '-i br-a -j CT --zone 101',
    ]);
    expect(chain(out.iptables, 'portwall-OUTPUT')).toEqual([
      '-o veth-r1 -j CT --notrack',
      '-o veth-r1 -j CT --zone 102',
      '-o br-a -j CT --zone 101',
    ]);
    // Stateless: no conntrack verdicts in the port's chains.
    expect(chain(out.iptables, 'portwall-o-veth-r1').filter((l) => l.includes('--state'))).toEqual([]);
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
