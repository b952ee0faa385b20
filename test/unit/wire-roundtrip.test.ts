// encode → decode of every object kind, every verb shape and every expression type: the decoded operations
// equal the transaction's canonical operations field by field.
import { describe, expect, test } from 'vitest';

import { Transaction } from '../../src/nft/transaction.js';
import { decodeOperations, decodeRecords } from '../../src/nft/wire.js';
import { readRecords, writeRecords } from '../../src/nft/wire-records.js';
import type { RawRecord } from '../../src/nft/wire-records.js';
import type { Elements, Expr, NftSet, Rule } from '../../src/nft/types.js';
import { EVERY_EXPR } from '../helpers/every-expr.js';

const b = (...v: number[]) => Uint8Array.from(v);


const allow4: NftSet = { kind: 'set', family: 'inet', table: 'pw', name: 'allow4', key: ['ipv4_addr'], flags: ['interval'], comment: 'm' };
const concat: NftSet = {
  kind: 'set', family: 'inet', table: 'pw', name: 'refs',
  key: ['ifname', 'inet_proto', 'inet_service', 'ipv4_addr'], flags: ['interval', 'timeout'], counter: true, timeout: 60_000,
};
const vm: NftSet = { kind: 'set', family: 'inet', table: 'pw', name: 'vm', key: ['ipv4_addr'], data: 'verdict', size: 1024 };
const dm: NftSet = { kind: 'set', family: 'inet', table: 'pw', name: 'dm', key: ['mark'], data: 'mark', flags: ['constant'] };
const hash6: NftSet = { kind: 'set', family: 'inet', table: 'pw', name: 'h6', key: ['ipv6_addr', 'inet_service'] };

function fullTransaction(): Transaction {
  const rule: Rule = { kind: 'rule', family: 'inet', table: 'pw', chain: 'in', comment: 'sg rule 1', exprs: EVERY_EXPR };
  return new Transaction()
    .add({ kind: 'table', family: 'inet', name: 'pw', flags: 1 })
    .add({ kind: 'chain', family: 'inet', table: 'pw', name: 'in', hook: 'input', priority: 0, type: 'filter', policy: 'drop', comment: 'c' })
    .add({ kind: 'chain', family: 'inet', table: 'pw', name: 'other' })
    .add({ kind: 'chain', family: 'netdev', table: 'nd', name: 'ing', hook: 'ingress', priority: -500, type: 'filter', device: 'lo' })
    .add({ kind: 'chain', family: 'arp', table: 'a', name: 'fw', hook: 'forward', priority: 0, type: 'filter' })
    .add(allow4).add(concat).add(vm).add(dm).add(hash6)
    .add({
      kind: 'elements', family: 'inet', table: 'pw', set: 'allow4',
      elements: [
        { key: ['192.0.2.1'] },
        { key: ['198.51.100.1-198.51.100.9'] },
        { key: ['203.0.113.0/24'], comment: 'doc range' },
        { key: ['255.255.255.0/24'] },
      ],
    })
    .add({
      kind: 'elements', family: 'inet', table: 'pw', set: 'refs',
      elements: [{ key: ['tap0', 'tcp', '1000-2000', '203.0.113.0/24'], comment: 'sg', timeout: 5000 }, { key: ['tap1', 17, 53, '192.0.2.7'] }],
    })
    .add({
      kind: 'elements', family: 'inet', table: 'pw', set: 'vm',
      elements: [{ key: ['192.0.2.1'], verdict: { code: 'jump', chain: 'other' } }, { key: ['192.0.2.2'], verdict: { code: 'drop' } }],
    })
    .add({ kind: 'elements', family: 'inet', table: 'pw', set: 'dm', elements: [{ key: [1], data: '0x12' }] })
    .add({ kind: 'elements', family: 'inet', table: 'pw', set: 'h6', elements: [{ key: ['2001:db8::1', 443] }] })
    .add(rule)
    .add({ ...rule, comment: undefined, exprs: [{ type: 'counter' }], position: 7n })
    .insert({ ...rule, exprs: [{ type: 'notrack' }] })
    .replace({ ...rule, handle: 12n })
    .create({ kind: 'table', family: 'bridge', name: 'br' })
    .delete({ kind: 'rule', family: 'inet', table: 'pw', chain: 'in', handle: 3n, exprs: [] })
    .delete({ kind: 'elements', family: 'inet', table: 'pw', set: 'allow4', elements: [{ key: ['192.0.2.1'] }] })
    .destroy({ kind: 'set', family: 'inet', table: 'pw', name: 'gone', key: ['ipv4_addr'] })
    .flush({ kind: 'set', family: 'inet', table: 'pw', name: 'allow4', key: ['ipv4_addr'] })
    .flush({ kind: 'chain', family: 'inet', table: 'pw', name: 'in' })
    .flush({ kind: 'table', family: 'inet', name: 'pw' })
    .delete({ kind: 'chain', family: 'inet', table: 'pw', name: 'other', handle: 9n })
    .destroy({ kind: 'table', family: 'ip', name: 'old' });
}

describe('wire round trip', () => {
  test('every kind, verb and expression decodes to the canonical operations', () => {
    const tx = fullTransaction();
    expect(tx.error).toBeUndefined();
    expect(tx.size).toBe(28);
    const decoded = decodeOperations(tx.encode());
    expect(decoded).toEqual(tx.operations);
    // Canonical objects carry no undefined-valued keys, so strict equality holds too.
    expect(decoded).toStrictEqual(tx.operations);
  });

  test('rbtree elements come back merged from the dump order (descending, with nft\'s orphan end at 0)', () => {
    const tx = fullTransaction();
    const records = readRecords(tx.encode());
    const setRec = records.find((r) => r.kind === 'set' && r.name === 'allow4')!;
    const elems = records.find((r) => r.kind === 'elements' && r.set === 'allow4')!;
    if (elems.kind !== 'elements') throw new Error('unreachable');
    const orphan = { key: b(0, 0, 0, 0), flags: 1 };
    const dump: RawRecord[] = [
      { ...setRec, verb: 0 },
      { ...elems, verb: 0, setId: undefined, elements: [...elems.elements, orphan].reverse() },
    ];
    const [set, elements] = decodeRecords(writeRecords(dump));
    expect(set).toEqual({ ...allow4, flags: ['interval'] });
    expect(elements).toEqual(tx.operations[10]!.object);
  });

  test('elements of a set the batch creates carry its batch id alone, and decode with its name', () => {
    const set = (name: string): NftSet => ({ kind: 'set', family: 'inet', table: 'pw', name, key: ['ipv4_addr'] });
    const els = (name: string, ip: string): Elements => ({ kind: 'elements', family: 'inet', table: 'pw', set: name, elements: [{ key: [ip] }] });
    const tx = new Transaction().create(set('made')).add(set('added')).add(els('made', '192.0.2.1')).add(els('added', '192.0.2.2'));
    const elements = readRecords(tx.encode()).filter((r) => r.kind === 'elements');
    // 'made' cannot exist before the batch (a create fails if it does): its id finds it. 'added' may have.
    expect(elements.map((r) => r.kind === 'elements' && [r.set, r.setId])).toEqual([[undefined, 1], ['added', 2]]);
    expect(decodeOperations(tx.encode())).toEqual(tx.operations);
  });

  test('dump-only fields (use, expiration, counters, handles) are read', () => {
    const dump: RawRecord[] = [
      { verb: 0, family: 1, kind: 'table', name: 'pw', handle: 4n, use: 3, flags: 0 },
      { verb: 0, family: 1, kind: 'set', table: 'pw', name: 's', handle: 5n, keyType: 13, keyLen: 2, flags: 0x10, counter: true, timeout: 1000n, gcInterval: 1000 },
      {
        verb: 0, family: 1, kind: 'elements', table: 'pw', set: 's',
        elements: [{ key: b(0, 22), counter: { packets: 3n, bytes: 180n }, timeout: 1000n, expiration: 750n }],
      },
      { verb: 0, family: 1, kind: 'elements', table: 'pw', set: 's', elements: [] },
    ];
    expect(decodeRecords(writeRecords(dump))).toEqual([
      { kind: 'table', family: 'inet', name: 'pw', handle: 4n },
      { kind: 'set', family: 'inet', table: 'pw', name: 's', handle: 5n, key: ['inet_service'], flags: ['timeout'], counter: true, timeout: 1000 },
      { kind: 'elements', family: 'inet', table: 'pw', set: 's', elements: [{ key: [22], counter: { packets: 3n, bytes: 180n }, timeout: 1000 }] },
    ]);
  });

  test('an expression portwall has no type for survives a dump as `other`', () => {
    const rule: RawRecord = {
      verb: 0, family: 2, kind: 'rule', table: 't', chain: 'c', handle: 2n,
      exprs: [{ type: 'other', name: 'quota', data: b(1, 2, 3) }],
    };
    expect(decodeRecords(writeRecords([rule]))).toEqual([
      { kind: 'rule', family: 'ip', table: 't', chain: 'c', handle: 2n, exprs: [{ type: 'other', name: 'quota', data: b(1, 2, 3) }] },
    ]);
  });

  test('corrupt streams are ERR_WIRE', () => {
    const good = new Transaction().add({ kind: 'table', family: 'inet', name: 'pw' }).encode();
    expect(() => decodeRecords(good.subarray(0, good.length - 1))).toThrow(expect.objectContaining({ code: 'ERR_WIRE' }));
    expect(() => decodeRecords(Buffer.concat([good, Buffer.of(0)]))).toThrow(/trailing/);
    const bad = Buffer.from(good);
    bad.writeUInt32LE(0x12345678, 0);
    expect(() => decodeRecords(bad)).toThrow(/magic/);
  });
});
