/**
 * compilePolicy: Neutron's semantics on small states (no root).
 */
import { describe, expect, test } from 'vitest';

import { linkLocalOf } from '../../src/compile/addr.js';
import { allows, evaluate } from '../../src/compile/evaluate.js';
import { compilePolicy, markBits, tagSpace } from '../../src/compile/policy.js';
import { validateState } from '../../src/model/validate.js';
import { DEFAULT_CONFIG } from '../../src/model/types.js';
import { formatIPv6 } from '../../src/nft/addresses.js';
import { mulberry32 } from '../helpers/prng.js';
import { network, port, state, webGroup } from '../helpers/states.js';

const compile = (doc: unknown, config = DEFAULT_CONFIG, tags?: Map<string, number>) =>
  compilePolicy(validateState(doc, config), config, tags ? { tags } : {});

describe('compilePolicy', () => {
  test('a port with two groups gets the union of their rules', () => {
    const extra = { id: 'sg-db', security_group_rules: [{ id: 'db', direction: 'ingress' as const, ethertype: 'IPv4' as const, protocol: 'tcp', port_range_min: 5432, port_range_max: 5432 }] };
    const ir = compile(state('routed', [webGroup(), extra], [port(1, ['sg-web', 'sg-db']), port(2, ['sg-db'])]));
    const [p1, p2] = ir.ports;
    expect(p1!.rules.map((r) => r.ruleId).sort()).toEqual(['db', 'sg-web-http', 'sg-web-out4', 'sg-web-out6', 'sg-web-ping', 'sg-web-ping6', 'sg-web-ssh']);
    expect(p2!.rules.map((r) => r.ruleId)).toEqual(['db']);
    expect(p1!.rules.find((r) => r.ruleId === 'sg-web-ssh')!.remote).toEqual({ kind: 'group', groupId: 'sg-web' });
    expect(p1!.rules.find((r) => r.ruleId === 'db')!.remote).toEqual({ kind: 'any' });
  });

  test('remote-group members: fixed IPs and address pairs, never a /0 pair (LP 1867119)', () => {
    const pairs = [{ ip_address: '0.0.0.0/0' }, { ip_address: '198.51.100.0/28', mac_address: 'fa:16:3e:00:00:aa' }, { ip_address: '::/0' }];
    const ir = compile(state('routed', [webGroup()], [port(1, ['sg-web'], { allowed_address_pairs: pairs }), port(2, ['sg-web'])]));
    const m4 = ir.members.find((m) => m.groupId === 'sg-web' && m.family === 4)!;
    expect(m4.prefixes).toEqual(['192.0.2.2/32', '192.0.2.3/32', '198.51.100.0/28']);
    // Only the families some rule needs: sg-web's remote-group rule is IPv4.
    expect(ir.members.filter((m) => m.groupId === 'sg-web').map((m) => m.family)).toEqual([4]);
    // The /0 pair is still an allowed source for the port itself.
    expect(ir.ports[0]!.spoof).toContainEqual({ mac: ir.ports[0]!.mac, prefix: '0.0.0.0/0', family: 4 });
  });

  test('anti-spoof pairs: fixed IPs with the port MAC, pairs with theirs, link-local per MAC, 0.0.0.0 for DHCP', () => {
    const ir = compile(state('bridged', [], [port(1, [], { allowed_address_pairs: [{ ip_address: '192.0.2.100', mac_address: 'fa:16:3e:00:00:01' }, { ip_address: '192.0.2.101' }] })]));
    const p = ir.ports[0]!;
    expect(p.spoof).toEqual(expect.arrayContaining([
      { mac: 'fa:16:3e:00:00:01', prefix: '192.0.2.2/32', family: 4 },
      { mac: 'fa:16:3e:00:00:01', prefix: '2001:db8:1::1/128', family: 6 },
      { mac: 'fa:16:3e:00:00:01', prefix: '192.0.2.100/32', family: 4 },
      { mac: 'fa:16:3e:00:00:01', prefix: '192.0.2.101/32', family: 4 },
      { mac: 'fa:16:3e:00:00:01', prefix: 'fe80::f816:3eff:fe00:1/128', family: 6 },
      { mac: 'fa:16:3e:00:00:01', prefix: '0.0.0.0/32', family: 4 },
    ]));
    expect(p.spoof).toHaveLength(6);
  });

  test('link-local: modified EUI-64 of the MAC', () => {
    expect(linkLocalOf('fa:16:3e:f3:1e:c0')).toBe('fe80::f816:3eff:fef3:1ec0/128');
    expect(linkLocalOf('00:11:22:33:44:55')).toBe('fe80::211:22ff:fe33:4455/128');
    // Zero groups in the interface id: the longest run of zeros (fe80's own) is the one written ::.
    expect(linkLocalOf('02:00:00:00:00:00')).toBe('fe80::ff:fe00:0/128');
    expect(linkLocalOf('FE:FF:FF:00:00:01')).toBe('fe80::fcff:ffff:fe00:1/128');
    expect(() => linkLocalOf('fa:16:3e:f3:1e')).toThrow(/not a MAC/);
  });

  test('link-local agrees with the big-integer spelling of RFC 4291 appendix A on random MACs', () => {
    const rnd = mulberry32(4291);
    for (let i = 0; i < 2000; i++) {
      const bytes = Array.from({ length: 6 }, () => Math.floor(rnd() * 256));
      const mac = bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
      const m = BigInt(`0x${mac.replaceAll(':', '')}`);
      const iid = (((m >> 24n) ^ 0x020000n) << 40n) | (0xfffen << 24n) | (m & 0xffffffn);
      expect(linkLocalOf(mac), mac).toBe(`${formatIPv6((0xfe80n << 112n) | iid)}/128`);
    }
  });

  test('system ports and port_security_enabled=false are not filtered', () => {
    const ir = compile(state('routed', [webGroup()], [
      port(1, ['sg-web']),
      port(2, ['sg-web'], { kind: 'system' }),
      port(3, [], { port_security_enabled: false }),
    ]));
    expect(ir.ports.map((p) => p.filtered)).toEqual([true, false, false]);
    expect(allows(ir, ir.ports[2]!, 'ingress', { family: 4, protocol: 6, src: '203.0.113.9', dst: '192.0.2.4', dport: 9999 })).toBe(true);
  });

  test('stateless groups make a stateless port; no group keeps the stateful default', () => {
    const g = { id: 'sg-nostate', stateful: false, security_group_rules: [] };
    const ir = compile(state('routed', [g], [port(1, ['sg-nostate']), port(2, [])]));
    expect(ir.ports.map((p) => p.stateful)).toEqual([false, true]);
  });

  test('DHCP servers and routers come from the network; tags only for bridged ports', () => {
    const doc = { networks: [network('bridged'), network('routed', 'net-r', 202)], security_groups: [], ports: [port(1, []), port(2, [], {}, 'net-r')] };
    const ir = compile(doc);
    expect(ir.ports[0]).toMatchObject({ dhcpServers: ['192.0.2.254/32'], routers: ['fe80::1/128'], tag: 1, mode: 'bridged', bridge: 'br-a', zone: 101 });
    expect(ir.ports[1]!.tag).toBeUndefined();
    expect(ir.ports[1]).toMatchObject({ mode: 'routed', zone: 202 });
  });

  test('tags: port-id order from 1, hints kept, under the mask', () => {
    const ports = [port(3, []), port(1, []), port(2, [])];
    expect(compile(state('bridged', [], ports)).ports.map((p) => [p.portId, p.tag])).toEqual([
      ['port-00003', 3], ['port-00001', 1], ['port-00002', 2],
    ]);
    const hinted = compile(state('bridged', [], ports), DEFAULT_CONFIG, new Map([['port-00003', 7], ['port-00002', 7]]));
    // Two ports claim 7: the first by id keeps it, the other takes the lowest free tag.
    expect(hinted.ports.map((p) => p.tag)).toEqual([2, 1, 7]);
    const kept = compile(state('bridged', [], [...ports, port(0, [])]), DEFAULT_CONFIG, new Map([['port-00001', 1], ['port-00002', 2], ['port-00003', 3]]));
    expect(kept.ports.map((p) => p.tag)).toEqual([3, 1, 2, 4]); // a new port never retags the others
    const high = { ...DEFAULT_CONFIG, markMask: 0xff00 };
    expect(compile(state('bridged', [], ports), high).ports.map((p) => p.tag)).toEqual([0x300, 0x100, 0x200]);
    // The mask's highest bit is the bridge-forwarded flag; tags use the bits below it.
    expect(tagSpace(0xff00)).toEqual({ shift: 8, count: 127 });
    expect(markBits(0xff00)).toEqual({ tagMask: 0x7f00, flag: 0x8000 });
    expect(markBits(0xffffffff)).toEqual({ tagMask: 0x7fffffff, flag: 0x80000000 });
    expect(() => tagSpace(0xf0f0)).toThrow(/one run of bits/);
    expect(() => compile(state('bridged', [], ports), { ...DEFAULT_CONFIG, markMask: 0x3 })).toThrow(/only 1 tags/);
    expect(() => compile(state('bridged', [], ports), { ...DEFAULT_CONFIG, markMask: 0x1 })).toThrow(/too small.*flag/);
    // A hinted tag on the flag bit is not a tag: the port takes a free one.
    expect(compile(state('bridged', [], ports), DEFAULT_CONFIG, new Map([['port-00001', 0x8000]])).ports.map((p) => p.tag)).toEqual([3, 1, 2]);
  });
});

describe('evaluate', () => {
  const ir = compile(state('routed', [webGroup()], [port(1, ['sg-web']), port(2, ['sg-web'])]));
  const p1 = ir.ports[0]!;
  const tcp = (src: string, dport: number) => ({ family: 4 as const, protocol: 6, src, dst: '192.0.2.2', sport: 40000, dport });

  test('rules, remote prefixes and remote groups', () => {
    expect(evaluate(ir, p1, 'ingress', tcp('198.51.100.7', 80))).toEqual({ allowed: true, reason: 'rule', ruleId: 'sg-web-http' });
    expect(evaluate(ir, p1, 'ingress', tcp('203.0.113.7', 80))).toEqual({ allowed: false, reason: 'default' });
    expect(evaluate(ir, p1, 'ingress', tcp('192.0.2.3', 22)).ruleId).toBe('sg-web-ssh');
    expect(allows(ir, p1, 'ingress', tcp('192.0.2.99', 22))).toBe(false);
    expect(allows(ir, p1, 'ingress', { family: 4, protocol: 1, src: '203.0.113.1', dst: '192.0.2.2', icmp: { type: 8, code: 0 } })).toBe(true);
    expect(allows(ir, p1, 'ingress', { family: 4, protocol: 1, src: '203.0.113.1', dst: '192.0.2.2', icmp: { type: 13, code: 0 } })).toBe(false);
  });

  test('base policy: anti-spoof, DHCP, ND, RA from routers only', () => {
    const out = (src: string) => ({ family: 4 as const, protocol: 6, src, dst: '203.0.113.1', sport: 1, dport: 2 });
    expect(evaluate(ir, p1, 'egress', out('192.0.2.2')).allowed).toBe(true);
    expect(evaluate(ir, p1, 'egress', out('192.0.2.77'))).toEqual({ allowed: false, reason: 'anti-spoof' });
    expect(evaluate(ir, p1, 'egress', { ...out('192.0.2.2'), srcMac: 'fa:16:3e:00:00:99' }).reason).toBe('anti-spoof');
    const dhcp = { family: 4 as const, protocol: 17, src: '0.0.0.0', dst: '255.255.255.255', sport: 68, dport: 67 };
    expect(evaluate(ir, p1, 'egress', dhcp)).toEqual({ allowed: true, reason: 'dhcp' });
    expect(evaluate(ir, p1, 'egress', { ...dhcp, src: '192.0.2.2', sport: 67, dport: 68 }).allowed).toBe(false);
    const reply = { family: 4 as const, protocol: 17, src: '192.0.2.254', dst: '192.0.2.2', sport: 67, dport: 68 };
    expect(evaluate(ir, p1, 'ingress', reply).allowed).toBe(true);
    expect(evaluate(ir, p1, 'ingress', { ...reply, src: '192.0.2.200' }).allowed).toBe(false);
    const ra = { family: 6 as const, protocol: 58, src: 'fe80::1', dst: 'ff02::1', icmp: { type: 134, code: 0 } };
    expect(evaluate(ir, p1, 'ingress', ra).allowed).toBe(true);
    expect(evaluate(ir, p1, 'ingress', { ...ra, src: 'fe80::2' }).allowed).toBe(false);
    const dad = { family: 6 as const, protocol: 58, src: '::', dst: 'ff02::1:ff00:1', icmp: { type: 135, code: 0 } };
    expect(evaluate(ir, p1, 'egress', dad)).toEqual({ allowed: true, reason: 'nd' });
  });
});
