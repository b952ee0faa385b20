/**
 * One instance of every expression type with every optional field, for wire and kernel round trips.
 */
import type { Expr } from '../../src/nft/types.js';

const b = (...bytes: number[]) => Uint8Array.from(bytes);

export const EVERY_EXPR: Expr[] = [
  { type: 'payload', base: 'network', offset: 12, len: 4, dreg: 1 },
  { type: 'payload', base: 'transport', offset: 0, len: 2, sreg: 8, csumType: 1, csumOffset: 16, csumFlags: 1 },
  { type: 'meta', key: 'iifname', dreg: 1 },
  { type: 'meta', key: 'mark', sreg: 9 },
  { type: 'ct', key: 'state', dreg: 10 },
  { type: 'ct', key: 'zone', sreg: 11, dir: 'original' },
  { type: 'cmp', sreg: 1, op: 'neq', data: b(1, 2, 3, 4) },
  { type: 'bitwise', sreg: 1, dreg: 1, len: 4, mask: b(0xff, 0xff, 0, 0), xor: b(0, 0, 0, 0) },
  { type: 'range', sreg: 1, op: 'eq', from: b(0, 10), to: b(0, 20) },
  { type: 'lookup', sreg: 1, set: 'allow4' },
  { type: 'lookup', sreg: 1, set: 'allow4', invert: true },
  { type: 'lookup', sreg: 1, dreg: 0, set: 'vm' },
  { type: 'lookup', sreg: 1, dreg: 2, set: 'dm' },
  { type: 'byteorder', sreg: 1, dreg: 1, op: 'hton', len: 4, size: 4 },
  { type: 'immediate', dreg: 1, data: b(0xde, 0xad) },
  { type: 'immediate', dreg: 0, verdict: { code: 'accept' } },
  { type: 'immediate', dreg: 0, verdict: { code: 'goto', chain: 'other' } },
  { type: 'counter' },
  { type: 'counter', packets: 5n, bytes: 300n },
  { type: 'log' },
  { type: 'log', prefix: 'pw: ', group: 2, snaplen: 64, qthreshold: 10 },
  { type: 'log', level: 2, flags: 0x2f },
  { type: 'nat', nat: 'dnat', family: 'ip', regAddrMin: 1, regProtoMin: 2, flags: 2 },
  { type: 'nat', nat: 'snat', family: 'ip6', regAddrMin: 1, regAddrMax: 2 },
  { type: 'limit', rate: 10n, unit: 60n, burst: 5, kind: 'pkts' },
  { type: 'limit', rate: 1000n, unit: 1n, burst: 0, kind: 'bytes', invert: true },
  { type: 'notrack' },
  { type: 'reject', rejectType: 2, code: 3 },
  { type: 'masq' },
  { type: 'masq', flags: 4, regProtoMin: 1, regProtoMax: 2 },
  { type: 'redir', regProtoMin: 1 },
];
