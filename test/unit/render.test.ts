import { describe, expect, test } from 'vitest';

import { PortwallError } from '../../src/errors.js';
import { F, accept, and, counter, dnat, eq, inSet, limit, log, mapOf, or, rule, set, snat, vmap, type Part } from '../../src/nft/match.js';
import { raiseRule } from '../../src/nft/raise.js';
import { partText, renderOperations } from '../../src/nft/render.js';
import type { Expr, Family, NftSet, Operation, Rule } from '../../src/nft/types.js';
import { CASES, SETS } from '../kernel/cases.js';
import { thrown } from '../helpers/thrown.js';

const r = (family: Family, exprs: Expr[], extra: Partial<Rule> = {}): Rule =>
  ({ kind: 'rule', family, table: 't', chain: 'c', exprs, ...extra });
const text = (family: Family, ...parts: Part[]): string => raiseRule(family, rule(family, parts)).map(partText).join(' ');

const refused = (fn: () => unknown, code = 'ERR_RENDER'): PortwallError => thrown(fn, code);

const allow4: NftSet = {
  kind: 'set', family: 'inet', table: 't', name: 'allow4', key: ['ifname', 'inet_proto', 'inet_service', 'ipv4_addr'],
  flags: ['interval'], counter: true, comment: 'sg rules',
};

describe('renderOperations', () => {
  test('a transaction as an nft -f script', () => {
    const ops: Operation[] = [
      { verb: 'add', object: { kind: 'table', family: 'inet', name: 'portwall' } },
      { verb: 'add', object: { kind: 'table', family: 'ip', name: 'off', flags: 1 } },
      { verb: 'add', object: { kind: 'chain', family: 'inet', table: 'portwall', name: 'in', type: 'filter', hook: 'input', priority: 0, policy: 'drop', comment: 'ports in' } },
      { verb: 'add', object: { kind: 'chain', family: 'netdev', table: 'n', name: 'ing', hook: 'ingress', device: 'lo', priority: -10 } },
      { verb: 'add', object: { kind: 'chain', family: 'inet', table: 'portwall', name: 'sg-web.1' } },
      { verb: 'add', object: { ...allow4, table: 'portwall' } },
      { verb: 'add', object: { kind: 'set', family: 'inet', table: 'portwall', name: 'm', key: ['ifname', 'inet_proto'], data: 'verdict' } },
      { verb: 'create', object: { kind: 'set', family: 'inet', table: 'portwall', name: 'z', key: ['ifname'], data: 'mark', flags: ['timeout'], timeout: 30000, size: 1024 } },
      { verb: 'add', object: { kind: 'elements', family: 'inet', table: 'portwall', set: 'allow4', elements: [
        { key: ['tap0', 'tcp', 80, '192.0.2.0/24'], comment: 'r1' },
        { key: ['tap1', 17, '1000-2000', '198.51.100.7'] },
      ] } },
      { verb: 'add', object: { kind: 'elements', family: 'inet', table: 'portwall', set: 'm', elements: [{ key: ['tap0', 6], verdict: { code: 'jump', chain: 'sg-web.1' }, comment: 'p1' }] } },
      { verb: 'add', object: { kind: 'elements', family: 'inet', table: 'portwall', set: 'z', elements: [{ key: ['tap*'], data: 16, timeout: 1500 }] } },
      { verb: 'delete', object: { kind: 'elements', family: 'inet', table: 'portwall', set: 'allow4', elements: [{ key: ['tap0', 'tcp', 80, '192.0.2.0/24'], comment: 'r1' }] } },
      { verb: 'add', object: { ...r('inet', rule('inet', eq(F.ct.state, 'established,related'), accept()), { table: 'portwall', chain: 'in', comment: 'base' }) } },
      { verb: 'insert', object: { ...r('inet', rule('inet', inSet([F.meta.oifname, F.meta.l4proto, F.th.dport, F.ip.saddr], allow4), counter(), accept()), { table: 'portwall', chain: 'in', position: 4n }) } },
      { verb: 'replace', object: { ...r('inet', rule('inet', vmap([F.meta.iifname, F.meta.l4proto], 'm')), { table: 'portwall', chain: 'in', handle: 7n }) } },
      { verb: 'delete', object: { ...r('inet', [], { table: 'portwall', chain: 'in', handle: 9n }) } },
      { verb: 'flush', object: { kind: 'elements', family: 'inet', table: 'portwall', set: 'm', elements: [] } },
      { verb: 'flush', object: { kind: 'chain', family: 'inet', table: 'portwall', name: 'in' } },
      { verb: 'delete', object: { kind: 'set', family: 'inet', table: 'portwall', name: 'm', key: ['ifname', 'inet_proto'], data: 'verdict' } },
      { verb: 'destroy', object: { kind: 'table', family: 'ip', name: 'off' } },
      { verb: 'add', object: { kind: 'elements', family: 'inet', table: 'portwall', set: 'allow4', elements: [] } },
    ];
    expect(renderOperations(ops)).toBe(`add table inet portwall
add table ip off { flags dormant; }
add chain inet portwall in { type filter hook input priority 0; policy drop; comment "ports in"; }
add chain netdev n ing { type filter hook ingress device "lo" priority -10; }
add chain inet portwall sg-web.1
add set inet portwall allow4 { type ifname . inet_proto . inet_service . ipv4_addr; flags interval; counter; comment "sg rules"; }
add map inet portwall m { type ifname . inet_proto : verdict; }
create map inet portwall z { type ifname : mark; flags timeout; timeout 30000ms; size 1024; }
add element inet portwall allow4 { "tap0" . tcp . 80 . 192.0.2.0/24 comment "r1", "tap1" . udp . 1000-2000 . 198.51.100.7 }
add element inet portwall m { "tap0" . tcp comment "p1" : jump sg-web.1 }
add element inet portwall z { "tap*" timeout 1500ms : 0x10 }
delete element inet portwall allow4 { "tap0" . tcp . 80 . 192.0.2.0/24 }
add rule inet portwall in ct state established,related accept comment "base"
insert rule inet portwall in position 4 oifname . meta l4proto . th dport . ip saddr @allow4 counter accept
replace rule inet portwall in handle 7 iifname . meta l4proto vmap @m
delete rule inet portwall in handle 9
flush map inet portwall m
flush chain inet portwall in
delete map inet portwall m
destroy table ip off
# add element inet portwall allow4: no elements
`);
  });

  test('element sets come from knownSets when the transaction does not add them', () => {
    const op: Operation = { verb: 'add', object: { kind: 'elements', family: 'inet', table: 't', set: 'allow4', elements: [{ key: ['tap0', 6, 22, '192.0.2.1'] }] } };
    expect(renderOperations([op], [allow4])).toBe('add element inet t allow4 { "tap0" . tcp . 22 . 192.0.2.1 }\n');
    const e = refused(() => renderOperations([op]), 'ERR_UNKNOWN_SET');
    expect(e.opIndex).toBe(0);
  });

  test('what has no nft spelling is ERR_RENDER with the operation index', () => {
    const add = (exprs: Expr[], extra: Partial<Rule> = {}): Operation[] => [
      { verb: 'add', object: { kind: 'table', family: 'inet', name: 't' } },
      { verb: 'add', object: r('inet', exprs, extra) },
    ];
    expect(refused(() => renderOperations(add([{ type: 'meta', key: 'mark', dreg: 1 }]))).opIndex).toBe(1);
    refused(() => renderOperations(add([{ type: 'meta', key: 'cpu', dreg: 1 }, { type: 'cmp', sreg: 1, op: 'eq', data: new Uint8Array(4) }])));
    refused(() => renderOperations(add([{ type: 'reject', rejectType: 0, code: 3 }])));
    refused(() => renderOperations(add([{ type: 'cmp', sreg: 1, op: 'eq', data: new Uint8Array(4) }])));
    refused(() => renderOperations(add([])));
    refused(() => renderOperations(add(rule('inet', accept()), { comment: 'say "hi"' })));
    refused(() => renderOperations(add([{ type: 'immediate', dreg: 0, verdict: { code: 'break' } }])));
    refused(() => renderOperations([{ verb: 'create', object: r('inet', rule('inet', accept())) }]));
    refused(() => renderOperations([{ verb: 'insert', object: { kind: 'table', family: 'inet', name: 't' } }]));
    // nft would build `ct state == established` differently from the flag test `ct state established`.
    refused(() => renderOperations(add([{ type: 'ct', key: 'state', dreg: 1 }, { type: 'cmp', sreg: 1, op: 'eq', data: Uint8Array.of(2, 0, 0, 0) }])));
  });
});

describe('raising expressions back to statements', () => {
  test('dependencies nft adds by itself are left out', () => {
    expect(text('inet', eq(F.icmp.type, 'echo-request'))).toBe('icmp type echo-request');
    expect(text('inet', eq(F.ip.saddr, '192.0.2.1'), eq(F.udp.sport, 67), eq(F.udp.dport, 68), accept())).toBe('ip saddr 192.0.2.1 udp sport 67 udp dport 68 accept');
    expect(text('bridge', eq(F.ether.saddr, '00:11:22:33:44:55'), eq(F.arp.operation, 'reply'))).toBe('ether saddr 00:11:22:33:44:55 arp operation reply');
  });

  test('a transport header the field table lacks reads as th', () => {
    expect(text('inet', eq(F.meta.l4proto, 'esp'), eq(F.th.dport, 80))).toBe('meta l4proto esp th dport 80');
    expect(text('inet', eq(F.meta.l4proto, 'gre'), eq(F.th.sport, 1), eq(F.th.dport, 2))).toBe('meta l4proto gre th sport 1 th dport 2');
  });

  test('explicit protocol matches that change the expressions are kept', () => {
    expect(text('inet', eq(F.meta.l4proto, 'ipv6-icmp'), eq(F.icmpv6.type, 'nd-router-advert'))).toBe('meta l4proto ipv6-icmp icmpv6 type nd-router-advert');
    // nft moves the merged ports after iifname; the explicit l4proto keeps the dependency in front.
    expect(text('inet', eq(F.tcp.dport, 80), eq(F.meta.iifname, 'x'), eq(F.tcp.sport, 5))).toBe('meta l4proto tcp iifname "x" tcp sport 5 tcp dport 80');
  });

  test('every kernel-test statement raises to parts that rebuild the same expressions', () => {
    for (const [family, cases] of Object.entries(CASES) as [Family, (typeof CASES)['inet']][]) {
      const interval = (name: string): boolean | undefined => SETS[family]?.find((s) => s.name === name)?.flags?.includes('interval');
      for (const c of cases) {
        const exprs = rule(family, c.parts);
        expect(rule(family, raiseRule(family, exprs, interval)), `${family}: ${c.nft}`).toEqual(exprs);
      }
    }
  });

  test('dumped forms print like what was sent: counter values, nat max registers and flags, default log level', () => {
    const sent = rule('ip', eq(F.tcp.dport, 80), counter(), log(), dnat('192.0.2.1', { port: '8775-8776' }));
    const dumped = sent.map((e): Expr => {
      if (e.type === 'counter') return { type: 'counter', packets: 12n, bytes: 3456n };
      if (e.type === 'log') return { type: 'log', level: 4 };
      if (e.type === 'nat') return { ...e, regAddrMax: e.regAddrMin, regProtoMax: e.regProtoMax, flags: 3 };
      if (e.type === 'payload') return { dreg: e.dreg, len: e.len, offset: e.offset, base: e.base, type: 'payload' };
      return e;
    });
    expect(raiseRule('ip', dumped).map(partText).join(' ')).toBe('tcp dport 80 counter log level warn dnat ip to 192.0.2.1:8775-8776');
    const lookup = rule('ip', inSet(F.ip.saddr, 'members'));
    const decoded = lookup.map((e): Expr => (e.type === 'lookup' ? { ...e, dreg: undefined, invert: false } : e));
    expect(raiseRule('ip', decoded).map(partText).join(' ')).toBe('ip saddr @members');
  });

  test('statements print in nft syntax', () => {
    expect(text('inet', limit({ rate: 3, per: 'hour', burst: 1 }), log({ prefix: 'pw ', group: 2 }))).toBe('limit rate 3/hour burst 1 packets log prefix "pw " group 2');
    expect(text('inet', eq(F.meta.l4proto, 'tcp'), snat('2001:db8::1', { port: 80, flags: ['random', 'persistent'] }))).toBe('meta l4proto tcp snat ip6 to [2001:db8::1]:80 random,persistent');
  });
});

describe('set statements from a field or a map (the bridged-port tag, docs/dataplane.md)', () => {
  const tags: NftSet = { kind: 'set', family: 'bridge', table: 't', name: 'port_tag', key: ['ifname'], data: 'mark' };
  test('lowered as nft does: lookup into a register, then the store', () => {
    expect(rule('bridge', [set(F.meta.mark, mapOf(F.meta.iifname, tags))])).toEqual([
      { type: 'meta', key: 'iifname', dreg: 1 },
      { type: 'lookup', sreg: 1, set: 'port_tag', dreg: 1 },
      { type: 'meta', key: 'mark', sreg: 1 },
    ]);
    expect(rule('inet', [set(F.meta.mark, and(F.meta.mark, 0xffff0000))])).toEqual([
      { type: 'meta', key: 'mark', dreg: 1 },
      { type: 'bitwise', sreg: 1, dreg: 1, len: 4, mask: Uint8Array.from([0, 0, 0xff, 0xff]), xor: new Uint8Array(4) },
      { type: 'meta', key: 'mark', sreg: 1 },
    ]);
  });
  test('raised and printed back', () => {
    expect(text('bridge', set(F.meta.mark, mapOf(F.meta.oifname, tags)))).toBe('meta mark set oifname map @port_tag');
    expect(text('inet', set(F.meta.mark, and(F.meta.mark, 0xffff0000)), set(F.ct.zone, 7))).toBe('meta mark set meta mark and 0xffff0000 ct zone set 7');
    expect(text('inet', set(F.ct.mark, F.meta.mark))).toBe('ct mark set meta mark');
  });
  test('`or` (the bridge-forwarded flag): nft\'s (x & ~C) ^ C, raised back to the same statement', () => {
    const flagged = set(F.meta.mark, or(F.meta.mark, 0x8000));
    expect(rule('bridge', [flagged])).toEqual([
      { type: 'meta', key: 'mark', dreg: 1 },
      { type: 'bitwise', sreg: 1, dreg: 1, len: 4, mask: Uint8Array.from([0xff, 0x7f, 0xff, 0xff]), xor: Uint8Array.from([0, 0x80, 0, 0]) },
      { type: 'meta', key: 'mark', sreg: 1 },
    ]);
    expect(raiseRule('bridge', rule('bridge', [flagged]))).toEqual([flagged]);
    expect(text('bridge', flagged)).toBe('meta mark set meta mark or 0x8000');
    expect(() => rule('inet', [eq(or(F.meta.mark, 1), 1)])).toThrow(/only in set statements/);
  });
});
