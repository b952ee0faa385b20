// Byte-level checks of small records against docs/wire.md, written out by hand. The userdata bytes are the
// ones `nft --debug=mnl` (nftables 1.0.6) sends for the same objects.
import { describe, expect, test } from 'vitest';

import { encodeOperations } from '../../src/nft/wire.js';
import { writeExpr } from '../../src/nft/wire-exprs.js';
import { WireReader, WireWriter } from '../../src/nft/cursor.js';
import type { Expr, NftSet, Operation } from '../../src/nft/types.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const h = (s: string): string => s.replace(/\s+/g, '');
const HEADER = (count: number) => `50574231 ${count.toString(16).padStart(2, '0')}000000`;
const str = (s: string) => `${Buffer.byteLength(s).toString(16).padStart(2, '0')}00${Buffer.from(s).toString('hex')}`;

function exprBytes(e: Expr): string {
  const w = new WireWriter();
  writeExpr(w, e, () => 0);
  return hex(w.finish());
}

describe('wire primitives', () => {
  test('little-endian fields, str and bytes, written across buffer growth and read back', () => {
    const w = new WireWriter(1);
    for (let i = 0; i < 200; i++) {
      w.u8(i);
      w.u16(0xbeef);
      w.u32(0xdeadbeef);
      w.i32(-i);
      w.u64(2n ** 64n - 1n - BigInt(i));
      w.str(`é${i}`);
      w.bytes(Uint8Array.of(i, 1, 2));
    }
    const buf = w.finish();
    expect(hex(buf.subarray(0, 31))).toBe(h(`00 efbe efbeadde 00000000 ffffffffffffffff 0300 c3a930 03000000 000102`));
    const r = new WireReader(buf);
    for (let i = 0; i < 200; i++) {
      expect([r.u8(), r.u16(), r.u32(), r.i32(), r.u64(), r.str(), r.bytes()]).toEqual([
        i, 0xbeef, 0xdeadbeef, -i || 0, 2n ** 64n - 1n - BigInt(i), `é${i}`, Uint8Array.of(i, 1, 2),
      ]);
    }
    expect(r.done).toBe(true);
    expect(() => r.u8()).toThrow(expect.objectContaining({ code: 'ERR_WIRE' }));
  });
});

describe('wire golden bytes', () => {
  test('add table inet pw', () => {
    const buf = encodeOperations([{ verb: 'add', object: { kind: 'table', family: 'inet', name: 'pw' } }]);
    expect(hex(buf)).toBe(h(`${HEADER(1)} 01 01 01  01000000 ${str('pw')}`));
  });

  test('delete table by name only sends the name (ip6 = family 10)', () => {
    const buf = encodeOperations([{ verb: 'delete', object: { kind: 'table', family: 'ip6', name: 'pw', flags: 1 } }]);
    expect(hex(buf)).toBe(h(`${HEADER(1)} 05 01 0a  01000000 ${str('pw')}`));
  });

  test('add rule with counter, accept and a comment', () => {
    const buf = encodeOperations([
      {
        verb: 'add',
        object: {
          kind: 'rule',
          family: 'inet',
          table: 'pw',
          chain: 'in',
          comment: 'hi',
          exprs: [{ type: 'counter' }, { type: 'immediate', dreg: 0, verdict: { code: 'accept' } }],
        },
      },
    ]);
    expect(hex(buf)).toBe(
      h(`${HEADER(1)} 01 03 01
         33000000 ${str('pw')} ${str('in')}
         05000000 0003 6869 00
         0200
         09 0000000000000000 0000000000000000
         08 00 01 01000000 0000`),
    );
  });

  test('base chain: hook, priority (i32), policy, type, comment', () => {
    const buf = encodeOperations([
      {
        verb: 'create',
        object: {
          kind: 'chain', family: 'inet', table: 'pw', name: 'in',
          hook: 'input', priority: -10, type: 'filter', policy: 'drop', comment: 'cc',
        },
      },
    ]);
    // mask: table, name, hook, priority, policy, type, userdata = bits 0,1,3,4,5,6,9
    expect(hex(buf)).toBe(
      h(`${HEADER(1)} 02 02 01 7b020000 ${str('pw')} ${str('in')}
         01000000 f6ffffff 00000000 ${str('filter')} 05000000 0003 6363 00`),
    );
  });

  test('verdict map: flags, key/data types, batch id and nft userdata', () => {
    const set: NftSet = { kind: 'set', family: 'inet', table: 'pw', name: 'vm', key: ['ipv4_addr'], data: 'verdict', comment: 'vv' };
    const buf = encodeOperations([{ verb: 'add', object: set }]);
    // mask bits 0,1,3,4,5,6,7,8,12; userdata = keybyteorder BIG, databyteorder INVALID, comment "vv\0"
    expect(hex(buf)).toBe(
      h(`${HEADER(1)} 01 04 01 fb110000 ${str('pw')} ${str('vm')}
         08000000 07000000 04000000 00ffffff 00000000 01000000
         11000000 0004 02000000 0104 00000000 0703 7676 00`),
    );
  });

  test('concatenated interval set: NFT_SET_CONCAT and unpadded field lengths', () => {
    const set: NftSet = {
      kind: 'set', family: 'inet', table: 'pw', name: 'c',
      key: ['ifname', 'inet_proto', 'inet_service', 'ipv4_addr'], flags: ['interval'], counter: true,
    };
    const buf = encodeOperations([{ verb: 'add', object: set }]);
    // key type 0x00a4c347 and length 28 are what nft sends for this key; bits 0,1,3,4,5,8,9,12,13
    expect(hex(buf)).toBe(
      h(`${HEADER(1)} 01 04 01 3b330000 ${str('pw')} ${str('c')}
         84000000 47c3a400 1c000000 01000000 04 10010204
         06000000 0004 00000000
         01`),
    );
  });

  test('rbtree interval elements: start + end (b+1, INTERVAL_END), open interval at the maximum', () => {
    const set: NftSet = { kind: 'set', family: 'inet', table: 'pw', name: 's4', key: ['ipv4_addr'], flags: ['interval'] };
    const ops: Operation[] = [
      { verb: 'add', object: set },
      {
        verb: 'add',
        object: {
          kind: 'elements', family: 'inet', table: 'pw', set: 's4',
          elements: [{ key: ['192.0.2.0/24'], comment: 'e1' }, { key: ['255.255.255.0/24'] }],
        },
      },
    ];
    const buf = encodeOperations(ops);
    const elementsRecord = hex(buf).slice(hex(buf).indexOf(h(`01 05 01`)));
    expect(elementsRecord).toBe(
      h(`01 05 01 07000000 ${str('pw')} ${str('s4')} 01000000
         03000000
         21000000 04000000 c0000200 05000000 0003 6531 00
         11000000 04000000 c0000300 01000000
         21000000 04000000 ffffff00 06000000 0104 01000000`),
    );
  });

  test('expressions', () => {
    expect(exprBytes({ type: 'cmp', sreg: 1, op: 'eq', data: Uint8Array.of(6) })).toBe(h('04 01 00000000 01000000 06'));
    expect(exprBytes({ type: 'payload', base: 'network', offset: 12, len: 4, dreg: 1 })).toBe(
      h('01 01 0c000000 04000000 01 00 00000000 00000000 00000000'),
    );
    expect(exprBytes({ type: 'meta', key: 'l4proto', dreg: 9 })).toBe(h('02 10000000 09 00'));
    expect(exprBytes({ type: 'ct', key: 'state', dreg: 1 })).toBe(h('03 00000000 01 00 ff'));
    expect(exprBytes({ type: 'ct', key: 'zone', sreg: 8, dir: 'reply' })).toBe(h('03 11000000 00 08 01'));
    // lookup without dreg uses 255 (0 is the verdict register of a vmap lookup)
    expect(exprBytes({ type: 'lookup', sreg: 1, set: 'ab', invert: true })).toBe(h(`07 01 ff ${str('ab')} 00000000 01000000`));
    expect(exprBytes({ type: 'lookup', sreg: 1, dreg: 0, set: 'ab' })).toBe(h(`07 01 00 ${str('ab')} 00000000 00000000`));
    expect(exprBytes({ type: 'immediate', dreg: 0, verdict: { code: 'jump', chain: 'x' } })).toBe(h(`08 00 01 fdffffff ${str('x')}`));
    expect(exprBytes({ type: 'log', prefix: 'p', level: 4 })).toBe(h(`0a 11000000 ${str('p')} 04000000`));
    expect(exprBytes({ type: 'limit', rate: 10n, unit: 60n, burst: 5, kind: 'pkts', invert: true })).toBe(
      h('0c 0a00000000000000 3c00000000000000 05000000 00000000 01000000'),
    );
  });
});
