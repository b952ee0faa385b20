// Transaction semantics (first error kept, one commit) and the mapping of native errors.
import { describe, expect, test } from 'vitest';

import { PortwallError } from '../../src/errors.js';
import type { NftBinding } from '../../src/native.js';
import { Nft } from '../../src/nft/client.js';
import { FakeNft } from '../../src/nft/fake.js';
import { Transaction } from '../../src/nft/transaction.js';
import type { Chain, Rule, Table } from '../../src/nft/types.js';

const table: Table = { kind: 'table', family: 'inet', name: 'pw' };
const input: Chain = { kind: 'chain', family: 'inet', table: 'pw', name: 'ingress' };
const accept: Rule = { kind: 'rule', family: 'inet', table: 'pw', chain: 'ingress', exprs: [{ type: 'immediate', dreg: 0, verdict: { code: 'accept' } }] };

/** A binding whose calls all reject with `err` (shaped like the addon's errors). */
function failing(err: Record<string, unknown>): NftBinding {
  const reject = async () => {
    throw Object.assign(new Error(String(err.message ?? '')), err);
  };
  return { nftCommit: reject, nftEncode: reject, nftSendEncoded: reject, nftList: reject, nftGenid: reject };
}

describe('transaction', () => {
  test('the first error is kept, later calls are no-ops, commit rejects with it and sends nothing', async () => {
    const fake = new FakeNft();
    const tx = new Nft({ binding: fake }).transaction();
    tx.add(table).add({ ...input, name: '' }).add(input).add(accept);
    expect(tx.size).toBe(1);
    expect(tx.error).toMatchObject({ code: 'ERR_INVALID_OBJECT', field: 'name', opIndex: 1 });
    const first = tx.error;
    await expect(tx.commit()).rejects.toBe(first);
    expect(fake.commits).toBe(0);
    expect(() => tx.encode()).toThrow(first!);
  });

  test('a transaction commits once, and cannot grow after commit', async () => {
    const tx = new Nft({ binding: new FakeNft() }).transaction().add(table);
    await expect(tx.commit()).resolves.toEqual({ genid: 2, messages: 3 });
    await expect(tx.commit()).rejects.toMatchObject({ code: 'ERR_TRANSACTION_STATE' });
    expect(() => tx.add(input)).toThrow(expect.objectContaining({ code: 'ERR_TRANSACTION_STATE' }));
  });

  test('a standalone transaction encodes but cannot commit', async () => {
    const tx = new Transaction().add(table);
    expect(tx.encode().length).toBeGreaterThan(8);
    await expect(tx.commit()).rejects.toMatchObject({ code: 'ERR_TRANSACTION_STATE' });
  });

  test('toString() prints the operations as nft syntax, resolving element types through known sets', () => {
    const ports = { kind: 'set', family: 'inet', table: 'pw', name: 'ports', key: ['inet_service'] } as const;
    const tx = new Transaction({ resolveSet: () => ({ ...ports, key: ['inet_service'] }) })
      .add(table)
      .add({ kind: 'elements', family: 'inet', table: 'pw', set: 'ports', elements: [{ key: [22], comment: 'ssh' }] })
      .add({ ...accept, comment: 'c' });
    const text = tx.toString();
    expect(text).toMatch(/^add table inet pw$/m);
    expect(text).toMatch(/^add element inet pw ports \{ 22 comment "ssh" \}$/m);
    expect(text).toMatch(/^add rule inet pw ingress accept comment "c"$/m);
  });

  test('elements of a set defined earlier in the transaction resolve; after its deletion they do not', () => {
    const set = { kind: 'set', family: 'inet', table: 'pw', name: 's', key: ['inet_service'] } as const;
    const elements = { kind: 'elements', family: 'inet', table: 'pw', set: 's', elements: [{ key: [22] }] } as const;
    const ok = new Transaction().add({ ...set, key: [...set.key] }).add({ ...elements, elements: [{ key: [22] }] });
    expect(ok.error).toBeUndefined();
    const gone = new Transaction({ resolveSet: () => ({ ...set, key: ['inet_service'] }) })
      .delete({ kind: 'table', family: 'inet', name: 'pw' })
      .add({ ...elements, elements: [{ key: [22] }] });
    expect(gone.error).toMatchObject({ code: 'ERR_UNKNOWN_SET', opIndex: 1 });
    // Deleted and added again: a set added after the deletion resolves, one added before it does not.
    const again = () => new Transaction().add({ ...set, key: [...set.key] })
      .delete({ kind: 'table', family: 'inet', name: 'pw' })
      .add({ kind: 'table', family: 'inet', name: 'pw' });
    expect(again().add({ ...elements, elements: [{ key: [22] }] }).error).toMatchObject({ code: 'ERR_UNKNOWN_SET', opIndex: 3 });
    expect(again().add({ ...set, key: [...set.key] }).add({ ...elements, elements: [{ key: [22] }] }).error).toBeUndefined();
  });
});

describe('kernel errors', () => {
  test('a refused operation names its index, verb, object and errno; nothing is applied', async () => {
    const fake = new FakeNft();
    const nft = new Nft({ binding: fake });
    const tx = nft.transaction().add(table).add(input).add({ ...accept, chain: 'missing' }).add(accept);
    const err = (await tx.commit().catch((e: unknown) => e)) as PortwallError;
    expect(err).toBeInstanceOf(PortwallError);
    expect(err).toMatchObject({ code: 'ERR_KERNEL', errno: 2, errnoName: 'ENOENT', opIndex: 2 });
    expect(err.object).toBe(tx.operations[2]!.object);
    expect(err.message).toMatch(/^add rule inet\/pw\/missing \(operation 3 of \d+\): No such file or directory/);
    expect((await nft.list()).objects).toEqual([]);
  });

  test('an error on the batch envelope (opIndex −1) has no object', async () => {
    const nft = new Nft({ binding: failing({ kind: 'netlink', errno: 1, errnoName: 'EPERM', opIndex: -1, message: 'sendmsg' }) });
    await expect(nft.transaction().add(table).commit()).rejects.toMatchObject({
      code: 'ERR_KERNEL',
      errno: 1,
      opIndex: -1,
      object: undefined,
      message: 'batch: Operation not permitted (sendmsg)',
    });
  });

  test('namespace failures are ERR_NETNS, other system errors ERR_SYSTEM, wire errors ERR_WIRE', async () => {
    const missing = new Nft({ netns: 'nope', binding: new FakeNft({ namespaces: ['pw-a'] }) });
    await expect(missing.genid()).rejects.toMatchObject({ code: 'ERR_NETNS', errno: 2, errnoName: 'ENOENT' });
    await expect(missing.transaction().add(table).commit()).rejects.toMatchObject({ code: 'ERR_NETNS' });
    const sys = new Nft({ binding: failing({ kind: 'system', errno: 105, message: 'recvmsg: No buffer space available' }) });
    await expect(sys.list()).rejects.toMatchObject({ code: 'ERR_SYSTEM', errno: 105, errnoName: 'ENOBUFS' });
    const wire = new Nft({ binding: failing({ kind: 'wire', errno: 0, message: 'wire offset 9 (record 0): bad' }) });
    await expect(wire.transaction().add(table).commit()).rejects.toMatchObject({ code: 'ERR_WIRE' });
  });

  test('the fake refuses a corrupt batch like the addon: ERR_WIRE', async () => {
    const fake = new FakeNft();
    const err = await fake.nftCommit(null, Buffer.from('junk')).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'wire' });
  });
});

describe('canonical(): operations from portwall\'s own layout', () => {
  const set = { kind: 'set', family: 'inet', table: 'pw', name: 's', key: ['ipv4_addr', 'inet_service'] } as const;
  const base = () => new Transaction().add({ kind: 'table', family: 'inet', name: 'pw' }).add({ ...set, key: [...set.key] });

  test('encodes to the same batch as the validated path when the values are canonical', () => {
    const elements = [{ key: ['192.0.2.1', 80] }, { key: ['192.0.2.2', 443], comment: 'x' }];
    const a = base().add({ kind: 'elements', family: 'inet', table: 'pw', set: 's', elements });
    const b = base().canonical('add', { kind: 'elements', family: 'inet', table: 'pw', set: 's', elements });
    expect(b.error).toBeUndefined();
    expect(b.encode()).toEqual(a.encode());
  });

  test('still refuses an unknown set or a key of the wrong width at once, and a bad value when encoding', () => {
    expect(base().canonical('add', { kind: 'elements', family: 'inet', table: 'pw', set: 'nope', elements: [{ key: ['192.0.2.1', 80] }] }).error?.code).toBe('ERR_UNKNOWN_SET');
    expect(base().canonical('add', { kind: 'elements', family: 'inet', table: 'pw', set: 's', elements: [{ key: ['192.0.2.1'] }] }).error?.field).toBe('elements[0].key');
    const bad = base().canonical('add', { kind: 'elements', family: 'inet', table: 'pw', set: 's', elements: [{ key: ['192.0.2.300', 80] }] });
    expect(bad.error).toBeUndefined();
    expect(() => bad.encode()).toThrow(PortwallError);
  });
});
