// A persistent client's netlink socket and optimistic commits (NFNL_BATCH_GENID), against the kernel.
//
// Sockets are counted from outside the addon: the socket inodes among this process's file descriptors that the
// namespace's own /proc/net/netlink lists as NETLINK_NETFILTER (protocol 12). Commits are tied to one socket by
// the kernel itself: a table with the `owner` flag (2) accepts changes only from the socket that created it and
// is dropped when that socket closes, so every successful change to it came through that still-open socket.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { PortwallError } from '../../src/errors.js';
import { binding } from '../../src/native.js';
import type { NativeNftSocket, NftBinding } from '../../src/native.js';
import { Nft, openNft } from '../../src/nft/client.js';
import { SMALL_BATCH_ELEMENTS } from '../../src/nft/transaction.js';
import type { Elements, NftSet, Table } from '../../src/nft/types.js';
import { writeRecords } from '../../src/nft/wire-records.js';
import { comparable } from '../helpers/compare.js';
import { Netns, isRoot } from '../helpers/netns.js';
import { netfilterSockets } from '../helpers/sockets.js';

const family = 'inet' as const;
const OWNER = 2; // NFT_TABLE_F_OWNER

const table = (name: string, flags?: number): Table => ({ kind: 'table', family, name, ...(flags ? { flags } : {}) });
const hashSet = (t: string): NftSet => ({ kind: 'set', family, table: t, name: 'hosts', key: ['ipv4_addr'] });
const elements = (t: string, addrs: string[]): Elements =>
  ({ kind: 'elements', family, table: t, set: 'hosts', elements: addrs.map((a) => ({ key: [a] })) });

describe.skipIf(!isRoot)('a persistent netlink socket', () => {
  let ns: Netns;
  beforeAll(() => {
    ns = new Netns('socket');
  });
  afterAll(() => ns?.destroy());

  test('200 commits and 20 lists through one persistent client use exactly one netlink socket', async () => {
    const nft = new Nft({ netns: ns.name, persistent: true });
    try {
      expect(netfilterSockets(ns)).toEqual([]); // nothing is opened before the first call
      const first = await nft.transaction().add(table('own', OWNER)).add(hashSet('own')).commit();
      const held = netfilterSockets(ns);
      expect(held).toHaveLength(1);
      // The proof holds: any other socket is refused changes to the owned table.
      const stranger = openNft({ netns: ns.name });
      stranger.rememberSets([hashSet('own')]);
      await expect(stranger.transaction().add(elements('own', ['192.0.2.200'])).commit())
        .rejects.toMatchObject({ code: 'ERR_KERNEL', errnoName: 'EPERM' });

      let genid = first.genid;
      let lists = 0;
      const expected = new Set<string>();
      for (let k = 0; k < 100; k++) {
        // A delete after every add: the commits that make a per-call socket's close slow.
        const a = `198.51.100.${k + 1}`;
        const b = `203.0.113.${k + 1}`;
        const add = await nft.transaction().add(elements('own', [a, b])).commit();
        const del = await nft.transaction().delete(elements('own', [k % 2 === 0 ? a : b])).commit();
        expected.add(k % 2 === 0 ? b : a);
        // One generation per batch, and no other writer: the socket is ours alone.
        expect([add.genid, del.genid]).toEqual([genid + 1, genid + 2]);
        genid = del.genid;
        if (k % 5 === 4) {
          const listing = await nft.list({ family, table: 'own' });
          lists++;
          expect(listing.genid).toBe(genid);
          const els = listing.objects.find((o): o is Elements => o.kind === 'elements')!;
          expect(els.elements).toHaveLength(expected.size);
        }
      }
      expect(lists).toBe(20);
      expect(await nft.genid()).toBe(genid);

      // Still the same one socket; the owned table still exists, so it was never closed or replaced.
      expect(netfilterSockets(ns)).toEqual(held);
      const text = ns.nftText();
      expect(text).toMatch(/table inet own \{[^\n]*\n\s*flags owner/);
      for (const a of expected) expect(text).toContain(a);
      const listed = (await nft.list({ family, table: 'own' })).objects.find((o): o is Elements => o.kind === 'elements')!;
      expect(listed.elements.map((e) => e.key[0]).sort()).toEqual([...expected].sort());
    } finally {
      await nft.close();
    }
    // Closing the socket made the kernel drop the table it owned.
    expect(netfilterSockets(ns)).toEqual([]);
    expect(ns.nftText()).not.toContain('table inet own');
  });

  test('a commit with a stale genid is refused as ERR_CONFLICT and changes nothing; the current genid commits', async () => {
    const nft = new Nft({ netns: ns.name, persistent: true });
    const other = openNft({ netns: ns.name });
    try {
      await nft.transaction().add(table('occ', OWNER)).add(hashSet('occ')).add(elements('occ', ['192.0.2.1'])).commit();
      const held = netfilterSockets(ns);
      const seen = await nft.genid();
      // Another writer commits after our read.
      await other.transaction().add(table('theirs')).commit();
      const beforeText = ns.nftText();
      const before = await nft.list();
      expect(before.genid).toBe(seen + 1);

      const tx = nft.transaction().add(elements('occ', ['192.0.2.2'])).delete(elements('occ', ['192.0.2.1']));
      const err = await tx.commit({ genid: seen }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(PortwallError);
      expect(err).toMatchObject({ code: 'ERR_CONFLICT', errno: 85, errnoName: 'ERESTART', opIndex: -1 });
      expect((err as PortwallError).message).toContain(`generation ${seen}`);

      expect(ns.nftText()).toBe(beforeText);
      const after = await nft.list();
      expect(after.genid).toBe(before.genid);
      expect(comparable(after.objects)).toEqual(comparable(before.objects));

      // A refusal leaves the socket as it was (no reopen: the owned table is still ours to change).
      const current = await nft.genid();
      expect(current).toBe(before.genid);
      const ok = await nft.transaction().add(elements('occ', ['192.0.2.2'])).delete(elements('occ', ['192.0.2.1'])).commit({ genid: current });
      expect(ok.genid).toBe(current + 1);
      expect(netfilterSockets(ns)).toEqual(held);
      expect(ns.nftText()).toContain('192.0.2.2');
      expect(ns.nftText()).not.toContain('192.0.2.1');
    } finally {
      await nft.close();
      await other.transaction().destroy(table('theirs')).commit();
    }
  });

  test('the addon refuses a stale genid as netlink ERESTART on the batch envelope, on a socket and per call', async () => {
    const native = binding();
    const batch = writeRecords([{ verb: 1, family: 1, kind: 'table', name: 'raw' }]);
    const sock = await native.nftSocketOpen(ns.name);
    try {
      const genid = await native.nftGenid(sock);
      const stale = { kind: 'netlink', errno: 85, errnoName: 'ERESTART', opIndex: -1 };
      await expect(native.nftCommit(sock, batch, genid - 1)).rejects.toMatchObject(stale);
      await expect(native.nftCommit(ns.name, batch, genid - 1)).rejects.toMatchObject(stale);
      expect(ns.nftText()).not.toContain('table inet raw');
      await expect(native.nftCommit(sock, batch, genid)).resolves.toMatchObject({ genid: genid + 1, messages: 3 });
      await expect(native.nftCommit(ns.name, writeRecords([{ verb: 7, family: 1, kind: 'table', name: 'raw' }]), genid + 1))
        .resolves.toMatchObject({ genid: genid + 2 });
      expect(() => native.nftCommit(sock, batch, 0)).toThrow(/genid/);
      expect(() => native.nftCommit(sock, batch, 2 ** 32)).toThrow(/genid/);
    } finally {
      sock.close();
    }
  });

  test('nftCommit with `release` reads the batch in place and gives its memory back once done: its own ArrayBuffer is detached, a slice is left alone', async () => {
    const native = binding();
    const records = writeRecords([{ verb: 1, family: 1, kind: 'table', name: 'rel' }]);
    const own = Buffer.allocUnsafeSlow(records.length);
    records.copy(own);
    const kept = Buffer.from(own);
    const committing = native.nftCommit(ns.name, own, undefined, true);
    expect(own.length).toBe(records.length); // lent to the pool thread, not copied: held until the commit is done
    await expect(committing).resolves.toMatchObject({ messages: 3 });
    expect(own.length).toBe(0); // detached
    expect(ns.nftText()).toContain('table inet rel');
    // A refused batch is given back as well.
    const absent = writeRecords([{ verb: 5, family: 1, kind: 'table', name: 'absent' }]);
    const refused = Buffer.allocUnsafeSlow(absent.length);
    absent.copy(refused);
    await expect(native.nftCommit(ns.name, refused, undefined, true)).rejects.toMatchObject({ kind: 'netlink', errnoName: 'ENOENT' });
    expect(refused.length).toBe(0);
    // Without the flag, or a view that does not start its ArrayBuffer, the caller's bytes stay.
    const del = writeRecords([{ verb: 5, family: 1, kind: 'table', name: 'rel' }]);
    const padded = Buffer.concat([Buffer.alloc(8), del]).subarray(8);
    await native.nftCommit(ns.name, padded, undefined, true);
    expect(padded.length).toBe(del.length);
    await native.nftCommit(ns.name, kept);
    expect(kept.length).toBe(records.length);
    expect(ns.nftText()).toContain('table inet rel');
    await native.nftCommit(ns.name, del);
    expect(ns.nftText()).not.toContain('table inet rel');
  });

  test('close() releases the socket; a closed native socket rejects; the client reopens on its next call', async () => {
    const native = binding();
    const sock = await native.nftSocketOpen(ns.name);
    expect(netfilterSockets(ns)).toHaveLength(1);
    sock.close();
    sock.close(); // idempotent
    expect(netfilterSockets(ns)).toEqual([]);
    await expect(native.nftGenid(sock)).rejects.toMatchObject({ kind: 'system', errnoName: 'EBADF', message: expect.stringMatching(/closed/) });
    await expect(native.nftList(sock, 0, null)).rejects.toMatchObject({ kind: 'system', errnoName: 'EBADF' });

    const nft = new Nft({ netns: ns.name, persistent: true });
    await nft.transaction().add(table('mine', OWNER)).commit();
    const first = netfilterSockets(ns);
    expect(first).toHaveLength(1);
    await nft.close();
    expect(netfilterSockets(ns)).toEqual([]);
    expect(ns.nftText()).not.toContain('table inet mine');
    await nft.close(); // nothing left to close

    // The next call opens a new socket.
    await nft.transaction().add(table('mine', OWNER)).commit();
    const second = netfilterSockets(ns);
    expect(second).toHaveLength(1);
    expect(second[0]!.inode).not.toBe(first[0]!.inode);
    await nft.close();
    expect(netfilterSockets(ns)).toEqual([]);
  });

  test('calls made together on one client all complete, in order, over its one socket', async () => {
    const nft = new Nft({ netns: ns.name, persistent: true });
    try {
      await nft.transaction().add(table('par', OWNER)).add(hashSet('par')).commit();
      const g = await nft.genid();
      const results = await Promise.all(Array.from({ length: 16 }, (_, i) =>
        i % 4 === 3
          ? nft.list({ family, table: 'par' }).then((l) => l.genid)
          : nft.transaction().add(elements('par', [`192.0.2.${i + 1}`])).commit().then((r) => r.genid)));
      // Calls run in the order they were made: each commit bumps the generation by one.
      let expectGen = g;
      for (let i = 0; i < 16; i++) {
        if (i % 4 !== 3) expectGen++;
        expect(results[i]).toBe(expectGen);
      }
      expect(netfilterSockets(ns)).toHaveLength(1);
    } finally {
      await nft.close();
    }
  });

  test('small element batches commit on the JS thread over the held socket; anything else, and a busy socket, through the pool', async () => {
    const native = binding();
    const calls: string[] = [];
    // The real binding, with its two commit paths recorded ("sync" only when it committed, not when it declined).
    const spy: NftBinding = {
      ...native,
      nftSocketOpen: (n) => native.nftSocketOpen(n),
      nftCommit: (t, b, g) => (calls.push('pool'), native.nftCommit(t, b, g)),
      nftCommitSync: (t, b, g) => {
        let r;
        try {
          r = native.nftCommitSync(t, b, g);
        } catch (e) {
          calls.push('sync');
          throw e;
        }
        calls.push(r ? 'sync' : 'declined');
        return r;
      },
    };
    const nft = new Nft({ netns: ns.name, persistent: true, binding: spy });
    const pipapo: NftSet = { kind: 'set', family, table: 'quick', name: 'pairs', key: ['ipv4_addr', 'inet_service'], flags: ['interval'] };
    const pair = (a: string) => ({ kind: 'elements' as const, family, table: 'quick', set: 'pairs', elements: [{ key: [a, 80] }] });
    try {
      const first = await nft.transaction().add(table('quick', OWNER)).add(hashSet('quick')).add(pipapo).commit();
      expect(calls).toEqual(['pool']); // tables and sets: the pool

      calls.length = 0;
      const add = await nft.transaction().add(elements('quick', ['192.0.2.1', '192.0.2.2'])).add(pair('192.0.2.1')).commit({ genid: first.genid });
      const del = await nft.transaction().delete(elements('quick', ['192.0.2.1'])).commit({ genid: add.genid });
      expect(calls).toEqual(['sync', 'sync']);
      expect([add.genid, del.genid]).toEqual([first.genid + 1, first.genid + 2]);
      const text = ns.nftText();
      expect(text).toMatch(/elements = \{ 192\.0\.2\.2 \}/);
      expect(text).toMatch(/192\.0\.2\.1 \. 80/);

      // A stale generation is refused on the JS thread just as through the pool: nothing applied.
      calls.length = 0;
      const err = await nft.transaction().add(elements('quick', ['192.0.2.9'])).commit({ genid: first.genid }).then(() => undefined, (e: unknown) => e);
      expect(err).toMatchObject({ code: 'ERR_CONFLICT', errnoName: 'ERESTART', opIndex: -1 });
      expect(calls).toEqual(['sync']); // refused by the kernel, so nothing was "declined"
      expect(ns.nftText()).not.toContain('192.0.2.9');
      // A refusal in the middle names its operation (only the last message asks for an ACK; errors come anyway).
      calls.length = 0;
      const mid = await nft.transaction().add(elements('quick', ['192.0.2.10'])).delete(elements('quick', ['192.0.2.99']))
        .add(elements('quick', ['192.0.2.11'])).commit().then(() => undefined, (e: unknown) => e);
      expect(mid).toMatchObject({ code: 'ERR_KERNEL', errnoName: 'ENOENT', opIndex: 1 });
      expect(calls).toEqual(['sync']);
      expect(ns.nftText()).not.toMatch(/192\.0\.2\.1[01]\b/);

      // Through the pool: a delete from a concatenated interval set, more than 64 elements, a rule-free set
      // definition; and a commit made while another call is queued on the socket (order is kept).
      calls.length = 0;
      await nft.transaction().delete(pair('192.0.2.1')).commit();
      const many = Array.from({ length: SMALL_BATCH_ELEMENTS + 1 }, (_, i) => `198.51.100.${i + 1}`);
      await nft.transaction().add(elements('quick', many)).commit();
      await nft.transaction().add({ ...hashSet('quick'), name: 'more' }).commit();
      expect(calls).toEqual(['pool', 'pool', 'pool']);
      calls.length = 0;
      const listing = nft.list({ family, table: 'quick' });
      const queued = nft.transaction().add(elements('quick', ['203.0.113.1'])).commit();
      const [l, q] = await Promise.all([listing, queued]);
      expect(calls).toEqual(['pool']);
      expect(q.genid).toBe(l.genid + 1);
      expect(ns.nftText()).toContain('203.0.113.1');
      expect(netfilterSockets(ns)).toHaveLength(1); // the owned table's one socket throughout
    } finally {
      await nft.close();
    }

    // The binding itself declines what is not a free held socket: a namespace name, a closed socket.
    const batch = writeRecords([{ verb: 1, family: 1, kind: 'table', name: 'never' }]);
    expect(native.nftCommitSync(ns.name, batch)).toBeUndefined();
    const sock = await native.nftSocketOpen(ns.name);
    sock.close();
    expect(native.nftCommitSync(sock, batch)).toBeUndefined();
    expect(() => native.nftCommitSync(ns.name, batch, 0)).toThrow(/genid/);
    expect(ns.nftText()).not.toContain('never');
  });

  test('a socket JS lets go of is closed by the collector, after the call still using it', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const native = binding();
    // Neither the socket nor the promise's call keeps a JS reference to the socket object.
    const pending = native.nftSocketOpen(ns.name).then((s: NativeNftSocket) =>
      native.nftCommit(s, writeRecords([{ verb: 1, family: 1, kind: 'table', name: 'gc', flags: OWNER }])));
    gc();
    await expect(pending).resolves.toMatchObject({ messages: 3 });
    // Bounded: collection and finalisation take a few rounds of the event loop.
    for (let i = 0; i < 50 && netfilterSockets(ns).length > 0; i++) {
      gc();
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(netfilterSockets(ns)).toEqual([]);
    expect(ns.nftText()).not.toContain('table inet gc');
  });

  test('the per-call path (a namespace name) holds no socket and behaves as before', async () => {
    const nft = openNft({ netns: ns.name });
    expect(nft.persistent).toBe(false);
    const r = await nft.transaction().add(table('percall')).add(hashSet('percall')).add(elements('percall', ['203.0.113.7'])).commit();
    expect(netfilterSockets(ns)).toEqual([]);
    const listing = await nft.list({ family, table: 'percall' });
    expect(listing.genid).toBe(r.genid);
    expect(await nft.genid()).toBe(r.genid);
    expect(netfilterSockets(ns)).toEqual([]);
    // Optimistic commits work per call too.
    const err = await nft.transaction().delete(table('percall')).commit({ genid: r.genid - 1 }).then(() => undefined, (e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_CONFLICT', errnoName: 'ERESTART', opIndex: -1 });
    expect(ns.nftText()).toContain('203.0.113.7');
    await expect(nft.transaction().delete(table('percall')).commit({ genid: r.genid })).resolves.toMatchObject({ genid: r.genid + 1 });
    await nft.close(); // a no-op for a per-call client
    expect(ns.nftText()).not.toContain('percall');
    // The addon's per-call functions take a namespace as before.
    const native = binding();
    const g = await native.nftGenid(ns.name);
    await expect(native.nftList(ns.name, 0, null)).resolves.toMatchObject({ genid: g });
    await expect(native.nftSendEncoded(ns.name, await native.nftEncode(writeRecords([{ verb: 1, family: 1, kind: 'table', name: 'enc' }]))))
      .resolves.toMatchObject({ genid: g + 1, messages: 3 });
    await native.nftCommit(ns.name, writeRecords([{ verb: 5, family: 1, kind: 'table', name: 'enc' }]));
    expect(netfilterSockets(ns)).toEqual([]);
  });
});
