/**
 * Golden expressions of match.ts. Every expected sequence here is what nft 1.0.6 sends for the statement in
 * the test name (taken from `nft --debug=netlink`; test/kernel/match-vs-nft.test.ts re-checks them against
 * nft itself, together with many more statements).
 */
import { describe, expect, test } from 'vitest';

import { slotRegister } from '../../src/nft/linearize.js';
import {
  F, accept, and, counter, dnat, drop, eq, inSet, jump, limit, log, lt, masquerade, ne, notInSet, notrack, rule, set,
  snat, vmap,
} from '../../src/nft/match.js';
import type { Expr } from '../../src/nft/types.js';
import { thrown } from '../helpers/thrown.js';

const b = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h, 'hex'));
const meta = (key: string, dreg = 1): Expr => ({ type: 'meta', key, dreg }) as Expr;
const pl = (base: 'll' | 'network' | 'transport', offset: number, len: number, dreg = 1): Expr =>
  ({ type: 'payload', base, offset, len, dreg });
const cmp = (op: 'eq' | 'neq' | 'lt' | 'lte' | 'gt' | 'gte', h: string): Expr => ({ type: 'cmp', sreg: 1, op, data: b(h) });
const ACCEPT: Expr = { type: 'immediate', dreg: 0, verdict: { code: 'accept' } };
const ipv4 = [meta('nfproto'), cmp('eq', '02')];
const tcp = [meta('l4proto'), cmp('eq', '06')];

const refused = (fn: () => unknown, code = 'ERR_INVALID_OBJECT'): string => thrown(fn, code).message;

describe('matches', () => {
  test('inet: ip saddr 192.0.2.0/24 accept (byte-aligned prefix: 3-byte load, no mask)', () => {
    expect(rule('inet', eq(F.ip.saddr, '192.0.2.0/24'), accept())).toEqual([...ipv4, pl('network', 12, 3), cmp('eq', 'c00002'), ACCEPT]);
  });

  test('ip: ip saddr 192.0.2.0/25 (other prefixes: bitwise mask; no dependency in an ip table)', () => {
    expect(rule('ip', eq(F.ip.saddr, '192.0.2.5/25'))).toEqual([
      pl('network', 12, 4),
      { type: 'bitwise', sreg: 1, dreg: 1, len: 4, mask: b('ffffff80'), xor: b('00000000') },
      cmp('eq', 'c0000200'),
    ]);
  });

  test('inet: tcp dport 80 counter', () => {
    expect(rule('inet', eq(F.tcp.dport, 80), counter())).toEqual([...tcp, pl('transport', 2, 2), cmp('eq', '0050'), { type: 'counter' }]);
  });

  test('inet: th dport 1000-2000 (no dependency; nft 1.0.6 ranges are cmp gte + lte) and != (range expr)', () => {
    expect(rule('inet', eq(F.th.dport, '1000-2000'))).toEqual([pl('transport', 2, 2), cmp('gte', '03e8'), cmp('lte', '07d0')]);
    expect(rule('inet', ne(F.th.dport, '1000-2000'))).toEqual([
      pl('transport', 2, 2), { type: 'range', sreg: 1, op: 'neq', from: b('03e8'), to: b('07d0') },
    ]);
  });

  test('inet: ether saddr (meta iiftype ether first) and ip saddr after it (ether type, merged)', () => {
    const iiftype = [meta('iiftype'), cmp('eq', '0100')];
    expect(rule('inet', eq(F.ether.saddr, '00:11:22:33:44:55'))).toEqual([...iiftype, pl('ll', 6, 6), cmp('eq', '001122334455')]);
    expect(rule('inet', eq(F.ether.saddr, '00:11:22:33:44:55'), eq(F.ip.saddr, '192.0.2.1'))).toEqual([
      ...iiftype, pl('ll', 6, 8), cmp('eq', '0011223344550800'), pl('network', 12, 4), cmp('eq', 'c0000201'),
    ]);
  });

  test('iifname "tap0" / "tap*" (wildcard compares the name bytes only)', () => {
    expect(rule('inet', eq(F.meta.iifname, 'tap0'))).toEqual([meta('iifname'), cmp('eq', '74617030000000000000000000000000')]);
    expect(rule('inet', eq(F.meta.oifname, 'tap*'))).toEqual([meta('oifname'), cmp('eq', '746170')]);
  });

  test('ct state established,related accept / ct state invalid drop / ct state != established', () => {
    const ct: Expr = { type: 'ct', key: 'state', dreg: 1 };
    const flags = (m: string): Expr => ({ type: 'bitwise', sreg: 1, dreg: 1, len: 4, mask: b(m), xor: b('00000000') });
    expect(rule('inet', eq(F.ct.state, 'established,related'), accept())).toEqual([ct, flags('06000000'), cmp('neq', '00000000'), ACCEPT]);
    expect(rule('inet', eq(F.ct.state, 'invalid'), drop())).toEqual([ct, flags('01000000'), cmp('neq', '00000000'),
      { type: 'immediate', dreg: 0, verdict: { code: 'drop' } }]);
    expect(rule('inet', ne(F.ct.state, 'established'))).toEqual([ct, cmp('neq', '02000000')]);
  });

  test('meta mark and 0xff00 == 0x100; meta mark < 0x10 (host order swapped for ordering)', () => {
    expect(rule('inet', eq(and(F.meta.mark, 0xff00), 0x100))).toEqual([
      meta('mark'), { type: 'bitwise', sreg: 1, dreg: 1, len: 4, mask: b('00ff0000'), xor: b('00000000') }, cmp('eq', '00010000'),
    ]);
    expect(rule('inet', lt(F.meta.mark, 0x10))).toEqual([
      meta('mark'), { type: 'byteorder', sreg: 1, dreg: 1, op: 'hton', len: 4, size: 4 }, cmp('lt', '00000010'),
    ]);
  });

  test('udp sport 67 udp dport 68: adjacent payload matches merge into one load', () => {
    expect(rule('inet', eq(F.udp.sport, 67), eq(F.udp.dport, 68))).toEqual([meta('l4proto'), cmp('eq', '11'), pl('transport', 0, 4), cmp('eq', '00430044')]);
  });

  test('merging never crosses an action statement, and keeps the fast path for network loads', () => {
    expect(rule('inet', eq(F.udp.sport, 67), counter(), eq(F.udp.dport, 68))).toEqual([
      meta('l4proto'), cmp('eq', '11'), pl('transport', 0, 2), cmp('eq', '0043'), { type: 'counter' }, pl('transport', 2, 2), cmp('eq', '0044'),
    ]);
    expect(rule('ip', eq(F.ip.saddr, '192.0.2.1'), eq(F.ip.daddr, '192.0.2.2'))).toEqual([
      pl('network', 12, 4), cmp('eq', 'c0000201'), pl('network', 16, 4), cmp('eq', 'c0000202'),
    ]);
  });

  test('icmp in inet needs the network protocol too; icmpv6 likewise', () => {
    expect(rule('inet', eq(F.icmp.type, 'echo-request'))).toEqual([...ipv4, meta('l4proto'), cmp('eq', '01'), pl('transport', 0, 1), cmp('eq', '08')]);
    expect(rule('inet', eq(F.icmpv6.type, 'nd-neighbor-solicit'))).toEqual([
      meta('nfproto'), cmp('eq', '0a'), meta('l4proto'), cmp('eq', '3a'), pl('transport', 0, 1), cmp('eq', '87'),
    ]);
  });

  test('bridge: ip fields test meta protocol, arp fields ether type', () => {
    expect(rule('bridge', eq(F.ip.saddr, '192.0.2.1'))).toEqual([meta('protocol'), cmp('eq', '0800'), pl('network', 12, 4), cmp('eq', 'c0000201')]);
    expect(rule('bridge', eq(F.arp.operation, 'request'))).toEqual([pl('ll', 12, 2), cmp('eq', '0806'), pl('network', 6, 2), cmp('eq', '0001')]);
  });
});

describe('lookups', () => {
  const allow4 = { name: 'allow4', flags: ['interval' as const] };

  test('oifname . meta l4proto . th dport . ip saddr @allow4 accept: slots, registers and byteorder', () => {
    expect(rule('inet', inSet([F.meta.oifname, F.meta.l4proto, F.th.dport, F.ip.saddr], allow4), accept())).toEqual([
      ...ipv4,
      meta('oifname', 1),
      meta('l4proto', 2),
      { type: 'byteorder', sreg: 2, dreg: 2, op: 'hton', len: 1, size: 2 },
      pl('transport', 2, 2, 13),
      pl('network', 12, 4, 14),
      { type: 'lookup', sreg: 1, set: 'allow4' },
      ACCEPT,
    ]);
  });

  test('the same key in a hash set has no byteorder', () => {
    const e = rule('inet', inSet([F.meta.oifname, F.meta.l4proto, F.th.dport], 'hashed'));
    expect(e.some((x) => x.type === 'byteorder')).toBe(false);
  });

  test('meta mark and 0xffff . ip saddr @bridged (interval): mask, then swap', () => {
    expect(rule('inet', inSet([and(F.meta.mark, 0xffff), F.ip.saddr], { name: 'bridged', flags: ['interval'] }))).toEqual([
      ...ipv4,
      meta('mark'),
      { type: 'bitwise', sreg: 1, dreg: 1, len: 4, mask: b('ffff0000'), xor: b('00000000') },
      { type: 'byteorder', sreg: 1, dreg: 1, op: 'hton', len: 4, size: 4 },
      pl('network', 12, 4, 9),
      { type: 'lookup', sreg: 1, set: 'bridged' },
    ]);
  });

  test('negated lookups and verdict maps', () => {
    expect(rule('ip', notInSet(F.ip.saddr, 'members'))).toEqual([pl('network', 12, 4), { type: 'lookup', sreg: 1, set: 'members', invert: true }]);
    expect(rule('inet', vmap([F.meta.iifname, F.meta.l4proto], 'ports'))).toEqual([
      meta('iifname', 1), meta('l4proto', 2), { type: 'lookup', sreg: 1, set: 'ports', dreg: 0 },
    ]);
  });

  test('32-bit slots map to registers as nft converts them', () => {
    expect([1, 2, 4, 5, 6, 9, 13, 16].map(slotRegister)).toEqual([1, 9, 11, 2, 13, 3, 4, 23]);
    refused(() => rule('inet', inSet([F.meta.iifname, F.meta.oifname, F.ip6.saddr, F.ip6.daddr, F.meta.mark], 'x')));
  });
});

describe('statements', () => {
  test('ct zone set 5 (16-bit zone) and meta mark set 0x10', () => {
    expect(rule('inet', set(F.ct.zone, 5))).toEqual([{ type: 'immediate', dreg: 1, data: b('0500') }, { type: 'ct', key: 'zone', sreg: 1 }]);
    expect(rule('inet', set(F.meta.mark, 0x10))).toEqual([{ type: 'immediate', dreg: 1, data: b('10000000') }, { type: 'meta', key: 'mark', sreg: 1 }]);
  });

  test('log, limit, notrack, jump', () => {
    expect(rule('inet', log({ prefix: 'x', level: 'info' }), limit({ rate: 10, per: 'second' }), notrack(), jump('d'))).toEqual([
      { type: 'log', prefix: 'x', level: 6 },
      { type: 'limit', rate: 10n, unit: 1n, burst: 5, kind: 'pkts' },
      { type: 'notrack' },
      { type: 'immediate', dreg: 0, verdict: { code: 'jump', chain: 'd' } },
    ]);
    expect(rule('inet', limit({ rate: 102400, per: 'second', bytes: true, over: true }))).toEqual([
      { type: 'limit', rate: 102400n, unit: 1n, burst: 0, kind: 'bytes', invert: true },
    ]);
  });

  test('snat/dnat to an address, a range, a port (immediates into consecutive registers)', () => {
    expect(rule('inet', snat('192.0.2.1'))).toEqual([{ type: 'immediate', dreg: 1, data: b('c0000201') }, { type: 'nat', nat: 'snat', family: 'ip', regAddrMin: 1 }]);
    expect(rule('inet', snat('192.0.2.1-192.0.2.9', { flags: ['persistent'] }))).toEqual([
      { type: 'immediate', dreg: 1, data: b('c0000201') },
      { type: 'immediate', dreg: 2, data: b('c0000209') },
      { type: 'nat', nat: 'snat', family: 'ip', regAddrMin: 1, regAddrMax: 2, flags: 8 },
    ]);
    expect(rule('ip', eq(F.tcp.dport, 80), dnat('192.0.2.1', { port: 8775 })).slice(4)).toEqual([
      { type: 'immediate', dreg: 1, data: b('c0000201') },
      { type: 'immediate', dreg: 2, data: b('2247') },
      { type: 'nat', nat: 'dnat', family: 'ip', regAddrMin: 1, regProtoMin: 2, flags: 2 },
    ]);
    expect(rule('inet', masquerade(['fully-random']))).toEqual([{ type: 'masq', flags: 16 }]);
  });
});

describe('what nft refuses, the builder refuses', () => {
  test('conflicting protocols', () => {
    expect(refused(() => rule('inet', eq(F.tcp.dport, 80), eq(F.udp.sport, 53)))).toMatch(/conflicting protocols/);
    refused(() => rule('inet', eq(F.ip.saddr, '192.0.2.1'), eq(F.ip6.daddr, '2001:db8::1')));
    refused(() => rule('ip', eq(F.ip6.saddr, '2001:db8::1')));
    refused(() => rule('inet', eq(F.arp.operation, 'request')));
  });

  test('meta nfproto outside inet, a port mapping without a transport match, bad statements', () => {
    refused(() => rule('ip', eq(F.meta.nfproto, 'ipv4')));
    refused(() => rule('inet', dnat('192.0.2.1', { port: 80 })));
    refused(() => rule('inet', log({ level: 'info', group: 1 })));
    refused(() => rule('inet', limit({ rate: 0, per: 'second' })));
    refused(() => rule('inet', set(F.ip.saddr, '192.0.2.1')));
    refused(() => rule('inet', lt(F.tcp.dport, '1-2')));
    refused(() => rule('inet', eq(and(F.meta.mark, 0xff), '1-2')));
  });

  test('bad values are ERR_INVALID_VALUE naming the field', () => {
    expect(refused(() => rule('inet', eq(F.tcp.dport, 70000)), 'ERR_INVALID_VALUE')).toMatch(/^inet_service: 70000 is not/);
    refused(() => rule('inet', eq(F.meta.iifname, 'a-very-long-interface-name')), 'ERR_INVALID_VALUE');
  });
});
