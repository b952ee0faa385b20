// Held sockets and optimistic commits without the kernel: the fake's generations and sockets, the persistent
// client's one socket, and the genid a transaction passes through its sink.
import { describe, expect, test } from 'vitest';

import { PortwallError } from '../../src/errors.js';
import type { CommitResult, NftBinding, NftTarget } from '../../src/native.js';
import { fromNative } from '../../src/native-errors.js';
import { Nft } from '../../src/nft/client.js';
import { FakeNft, FakeNftSocket } from '../../src/nft/fake.js';
import { Transaction } from '../../src/nft/transaction.js';
import type { Elements, NftSet, Table } from '../../src/nft/types.js';
import { writeRecords } from '../../src/nft/wire-records.js';

const table: Table = { kind: 'table', family: 'inet', name: 'pw' };
const hosts: NftSet = { kind: 'set', family: 'inet', table: 'pw', name: 'hosts', key: ['ipv4_addr'] };
const elements = (...addrs: string[]): Elements =>
  ({ kind: 'elements', family: 'inet', table: 'pw', set: 'hosts', elements: addrs.map((a) => ({ key: [a] })) });
const tableRecord = (name: string) => writeRecords([{ verb: 1, family: 1, kind: 'table', name }]);
const rejection = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e);

describe('FakeNft generations', () => {
  test('each namespace starts at 1 and counts its committed batches; an empty batch is no transaction', async () => {
    const fake = new FakeNft({ namespaces: ['a', 'b'] });
    expect(await fake.nftGenid('a')).toBe(1);
    await expect(fake.nftCommit('a', tableRecord('t1'))).resolves.toMatchObject({ genid: 2 });
    await expect(fake.nftCommit('a', tableRecord('t2'))).resolves.toMatchObject({ genid: 3 });
    expect(await fake.nftGenid('b')).toBe(1);
    await expect(fake.nftCommit('a', writeRecords([]))).resolves.toMatchObject({ genid: 3 });
    await expect(fake.nftCommit('a', writeRecords([{ verb: 1, family: 1, kind: 'elements', table: 't1', set: 's', elements: [] }])))
      .resolves.toMatchObject({ genid: 3 });
  });

  test('a commit with another genid is refused like the kernel refuses it, and nothing is applied', async () => {
    const fake = new FakeNft();
    await fake.nftCommit(null, tableRecord('keep'));
    const before = await fake.nftList(null, 0, null);
    const commits = fake.commits;
    for (const stale of [1, 3]) {
      const err = await rejection(fake.nftCommit(null, tableRecord('new'), stale));
      expect(err).toMatchObject({ kind: 'netlink', errno: 85, errnoName: 'ERESTART', opIndex: -1 });
      expect((err as Error).message).toMatch(/Interrupted system call should be restarted/);
    }
    expect(await fake.nftList(null, 0, null)).toEqual(before);
    expect(fake.commits).toBe(commits);
    await expect(fake.nftCommit(null, tableRecord('new'), 2)).resolves.toMatchObject({ genid: 3 });
    // Wire errors come first, as the addon encodes before the kernel sees the batch.
    await expect(fake.nftCommit(null, Buffer.from([1, 2, 3]), 1)).rejects.toMatchObject({ kind: 'wire' });
    for (const bad of [0, 1.5, -1, 2 ** 32]) await expect(fake.nftCommit(null, tableRecord('x'), bad)).rejects.toThrow(TypeError);
  });
});

describe('FakeNft sockets', () => {
  test('sockets are counted, serve their namespace, and refuse use after close', async () => {
    const fake = new FakeNft({ namespaces: ['a'] });
    const sock = await fake.nftSocketOpen('a');
    expect(sock).toBeInstanceOf(FakeNftSocket);
    expect(fake.socketsOpened).toBe(1);
    await fake.nftCommit(sock, tableRecord('t'));
    expect(await fake.nftGenid('a')).toBe(2);
    expect(await fake.nftGenid(null)).toBe(1);
    await fake.nftList(sock, 0, null);
    await fake.nftList('a', 0, null);
    await fake.nftList(null, 0, null);
    expect([...fake.lists]).toEqual([['a', 2], [null, 1]]);

    sock.close();
    sock.close();
    const closed = { kind: 'system', errno: 9, errnoName: 'EBADF' };
    await expect(fake.nftGenid(sock)).rejects.toMatchObject(closed);
    await expect(fake.nftList(sock, 0, null)).rejects.toMatchObject(closed);
    await expect(fake.nftCommit(sock, tableRecord('u'))).rejects.toMatchObject(closed);
    expect(fake.lists.get('a')).toBe(2);

    await expect(fake.nftSocketOpen('missing')).rejects.toMatchObject({ kind: 'system', errnoName: 'ENOENT' });
    expect(fake.socketsOpened).toBe(1);
    await expect(fake.nftGenid(new FakeNftSocket('a'))).rejects.toThrow(TypeError); // not one of this fake's
  });

  test('a closed socket maps to ERR_SYSTEM, not to a missing namespace', async () => {
    const fake = new FakeNft({ namespaces: ['a'] });
    const sock = await fake.nftSocketOpen('a');
    sock.close();
    const err = await rejection(fake.nftGenid(sock));
    expect(fromNative(err, 'a')).toMatchObject({ code: 'ERR_SYSTEM', errnoName: 'EBADF' });
  });
});

describe('a persistent Nft client', () => {
  test('opens one socket for all its calls, concurrent first calls included', async () => {
    const fake = new FakeNft({ namespaces: ['ns1'] });
    const nft = new Nft({ netns: 'ns1', persistent: true, binding: fake });
    expect(nft.persistent).toBe(true);
    expect(fake.socketsOpened).toBe(0); // lazily
    await Promise.all([nft.genid(), nft.list(), nft.transaction().add(table).add(hosts).commit()]);
    for (let i = 0; i < 20; i++) {
      await nft.transaction().add(elements(`192.0.2.${i + 1}`)).commit();
      await nft.list({ table: 'pw' });
    }
    expect(fake.socketsOpened).toBe(1);
    expect(fake.lists.get('ns1')).toBe(21);
    expect(await nft.genid()).toBe(22);
  });

  test('runs its calls one after another, in the order they were made', async () => {
    const order: string[] = [];
    const fake = new FakeNft();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const binding: NftBinding = {
      nftSocketOpen: (netns) => fake.nftSocketOpen(netns),
      nftCommit: async (target, batch, genid) => {
        order.push('commit start');
        await gate;
        order.push('commit end');
        return fake.nftCommit(target, batch, genid);
      },
      nftEncode: (batch) => fake.nftEncode(batch),
      nftSendEncoded: (target, netlink) => fake.nftSendEncoded(target, netlink),
      nftList: async (target, family, t) => {
        order.push('list');
        return fake.nftList(target, family, t);
      },
      nftGenid: (target) => fake.nftGenid(target),
    };
    const nft = new Nft({ persistent: true, binding });
    const commit = nft.transaction().add(table).commit();
    const list = nft.list();
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual(['commit start']);
    release();
    await Promise.all([commit, list]);
    expect(order).toEqual(['commit start', 'commit end', 'list']);
  });

  test('close() waits for calls in flight, closes the socket, and the next call opens a new one', async () => {
    const fake = new FakeNft();
    const sockets: FakeNftSocket[] = [];
    const binding: NftBinding = {
      nftSocketOpen: async (netns) => {
        const s = await fake.nftSocketOpen(netns);
        sockets.push(s);
        return s;
      },
      nftCommit: (target, batch, genid) => fake.nftCommit(target, batch, genid),
      nftEncode: (batch) => fake.nftEncode(batch),
      nftSendEncoded: (target, netlink) => fake.nftSendEncoded(target, netlink),
      nftList: (target, family, t) => fake.nftList(target, family, t),
      nftGenid: (target) => fake.nftGenid(target),
    };
    const nft = new Nft({ persistent: true, binding });
    await nft.close(); // nothing open yet
    expect(fake.socketsOpened).toBe(0);
    const inFlight = nft.transaction().add(table).commit();
    const closing = nft.close();
    await expect(inFlight).resolves.toMatchObject({ genid: 2 });
    await closing;
    expect(sockets.map((s) => s.closed)).toEqual([true]);
    await nft.list();
    expect(fake.socketsOpened).toBe(2);
    expect(sockets.map((s) => s.closed)).toEqual([true, false]);
    await nft.close();
    expect(sockets.map((s) => s.closed)).toEqual([true, true]);
  });

  test('a failed open rejects the calls waiting for it and is tried again by the next call', async () => {
    const fake = new FakeNft({ namespaces: ['ns1'] });
    let fail = true;
    const binding: NftBinding = {
      nftSocketOpen: (netns) => (fail ? fake.nftSocketOpen('missing') : fake.nftSocketOpen(netns)),
      nftCommit: (target, batch, genid) => fake.nftCommit(target, batch, genid),
      nftEncode: (batch) => fake.nftEncode(batch),
      nftSendEncoded: (target, netlink) => fake.nftSendEncoded(target, netlink),
      nftList: (target, family, t) => fake.nftList(target, family, t),
      nftGenid: (target) => fake.nftGenid(target),
    };
    const nft = new Nft({ netns: 'ns1', persistent: true, binding });
    const [a, b] = await Promise.all([rejection(nft.genid()), rejection(nft.transaction().add(table).commit())]);
    expect(a).toMatchObject({ code: 'ERR_NETNS' });
    expect(b).toMatchObject({ code: 'ERR_NETNS' });
    fail = false;
    await expect(nft.genid()).resolves.toBe(1);
    expect(fake.socketsOpened).toBe(1);
  });

  test('a binding without nftSocketOpen is used per call', async () => {
    const fake = new FakeNft({ namespaces: ['ns1'] });
    const targets: NftTarget[] = [];
    const binding: NftBinding = {
      nftCommit: (target, batch, genid) => (targets.push(target), fake.nftCommit(target, batch, genid)),
      nftEncode: (batch) => fake.nftEncode(batch),
      nftSendEncoded: (target, netlink) => fake.nftSendEncoded(target, netlink),
      nftList: (target, family, t) => (targets.push(target), fake.nftList(target, family, t)),
      nftGenid: (target) => (targets.push(target), fake.nftGenid(target)),
    };
    const nft = new Nft({ netns: 'ns1', persistent: true, binding });
    await nft.transaction().add(table).commit();
    await nft.list();
    await nft.genid();
    await nft.close();
    expect(targets).toEqual(['ns1', 'ns1', 'ns1']);
  });

  test('commit({ genid }) is optimistic: a stale generation is ERR_CONFLICT with nothing applied', async () => {
    const fake = new FakeNft();
    const nft = new Nft({ persistent: true, binding: fake });
    const other = new Nft({ binding: fake });
    await nft.transaction().add(table).add(hosts).add(elements('192.0.2.1')).commit();
    const seen = await nft.genid();
    await other.transaction().add({ kind: 'table', family: 'inet', name: 'theirs' }).commit();
    const before = await nft.list();

    const err = await rejection(nft.transaction().delete(elements('192.0.2.1')).commit({ genid: seen }));
    expect(err).toBeInstanceOf(PortwallError);
    expect(err).toMatchObject({ code: 'ERR_CONFLICT', errno: 85, errnoName: 'ERESTART', opIndex: -1 });
    expect((err as PortwallError).object).toBeUndefined();
    expect(await nft.list()).toEqual(before);

    const current = await nft.genid();
    const ok = await nft.transaction().delete(elements('192.0.2.1')).commit({ genid: current });
    expect(ok.genid).toBe(current + 1);
    await nft.close();
  });
});

describe('a transaction passes its genid through the sink', () => {
  function recordingSink(result: () => Promise<CommitResult>) {
    const calls: unknown[][] = [];
    return {
      calls,
      sink: {
        netns: 'ns1',
        send: (...args: [Buffer, number?]) => {
          calls.push(args);
          return result();
        },
        committed: () => {},
      },
    };
  }
  const ok = async () => ({ genid: 8, messages: 3 });

  test('commit({ genid }) sends it; commit() sends none', async () => {
    const a = recordingSink(ok);
    await new Transaction({ sink: a.sink }).add(table).commit({ genid: 7 });
    expect(a.calls).toHaveLength(1);
    expect(a.calls[0]![1]).toBe(7);
    const b = recordingSink(ok);
    await new Transaction({ sink: b.sink }).add(table).commit();
    expect(b.calls[0]).toHaveLength(1);
    const c = recordingSink(ok);
    await new Transaction({ sink: c.sink }).add(table).commit({});
    expect(c.calls[0]).toHaveLength(1);
  });

  test('ERESTART is ERR_CONFLICT only for a commit that carried a genid', async () => {
    const restart = async (): Promise<CommitResult> => {
      throw Object.assign(new Error('batch (batch BEGIN genid 7): Interrupted system call should be restarted'),
        { kind: 'netlink', errno: 85, errnoName: 'ERESTART', opIndex: -1 });
    };
    const a = recordingSink(restart);
    const err = await rejection(new Transaction({ sink: a.sink }).add(table).commit({ genid: 7 }));
    expect(err).toMatchObject({ code: 'ERR_CONFLICT', errno: 85, errnoName: 'ERESTART', opIndex: -1 });
    expect((err as Error).message).toContain('generation 7');
    const b = recordingSink(restart);
    expect(await rejection(new Transaction({ sink: b.sink }).add(table).commit())).toMatchObject({ code: 'ERR_KERNEL', errnoName: 'ERESTART' });
  });

  test('a genid that is no generation is refused before anything is sent', async () => {
    for (const genid of [0, -1, 1.5, 2 ** 32, Number.NaN]) {
      const s = recordingSink(ok);
      const err = await rejection(new Transaction({ sink: s.sink }).add(table).commit({ genid }));
      expect(err).toMatchObject({ code: 'ERR_INVALID_VALUE', field: 'genid' });
      expect(s.calls).toEqual([]);
    }
  });
});
