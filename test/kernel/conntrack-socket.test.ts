// A persistent ConntrackClient's netlink socket, against the kernel.
//
// Sockets are counted from outside the addon (test/helpers/sockets.ts). That every call of a persistent client
// goes through the one socket it opened first is proven by the namespace: the client is given a path, a bind
// mount of namespace A; once its socket is open the path is re-pointed to namespace B. A socket opened from then
// on would live in B — yet every later call of the client reads and writes A's table, and B's stays empty.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { describe, expect, test } from 'vitest';

import { ConntrackClient, type ConntrackEntry, type ConntrackEntrySpec, type ConntrackFilter, encodeEntries } from '../../src/conntrack.js';
import { binding } from '../../src/native.js';
import type { ConntrackBinding, NativeConntrackSocket } from '../../src/native.js';
import { Nft } from '../../src/nft/client.js';
import type { Elements, NftSet, Table } from '../../src/nft/types.js';
import { Netns, isRoot, run } from '../helpers/netns.js';
import { netfilterSockets } from '../helpers/sockets.js';
import { twoNamespaces } from '../helpers/two-netns.js';

if (!isRoot) console.warn('skipping conntrack socket kernel tests: not root');

/** `conntrack -L` lines of one zone in `ns` (the oracle). */
function oracle(ns: Netns, zone: number): string[] {
  return ns.exec('conntrack', ['-L', '-w', String(zone)]).split('\n').filter((l) => l.includes('src='));
}

/** An entry without what changes between two reads of the same entry (its remaining timeout). */
const stable = ({ timeout: _t, ...rest }: ConntrackEntry) => rest;
const stableSorted = (entries: ConntrackEntry[]) =>
  entries.map(stable).sort((a, b) => a.id - b.id || a.orig.src.localeCompare(b.orig.src));

/** One UDP flow 198.51.100.a → 203.0.113.b:53 in `zone`. */
const udp = (zone: number, a: number, b: number, sport = 1000 + a): ConntrackEntrySpec =>
  ({ zone, protocol: 'udp', src: `198.51.100.${a}`, dst: `203.0.113.${b}`, sport, dport: 53, timeout: 300 });

/** A file bind-mounted onto a namespace, to be re-pointed at another one. */
class NetnsPath {
  readonly dir = mkdtempSync(path.join(tmpdir(), 'pw-ctsock-'));
  readonly file = path.join(this.dir, 'net');
  #mounted = false;

  constructor(target: Netns) {
    writeFileSync(this.file, '');
    this.point(target);
  }

  point(target: Netns): void {
    if (this.#mounted) run('umount', [this.file]);
    run('mount', ['--bind', `/run/netns/${target.name}`, this.file]);
    this.#mounted = true;
  }

  remove(): void {
    if (this.#mounted) run('umount', [this.file]);
    this.#mounted = false;
    rmSync(this.dir, { recursive: true, force: true });
  }
}

describe.skipIf(!isRoot)('a persistent conntrack socket', () => {
  let a: Netns;
  let b: Netns;
  twoNamespaces('ctsock', (x, y) => {
    a = x;
    b = y;
  });

  test('creates, dumps and deletes through one persistent client use exactly one netlink socket, with the per-call results', async () => {
    const where = new NetnsPath(a);
    const ct = new ConntrackClient({ netns: where.file, persistent: true });
    const perCall = new ConntrackClient({ netns: a.name });
    try {
      expect(ct.persistent).toBe(true);
      expect(netfilterSockets(a)).toEqual([]); // nothing is opened before the first call
      expect(await ct.count({ zone: 7 })).toBe(0);
      const held = netfilterSockets(a);
      expect(held).toHaveLength(1);

      // From now on a new socket opened through the path would live in B.
      where.point(b);
      const throughPathNow = new ConntrackClient({ netns: where.file });
      expect(await throughPathNow.create([udp(7, 250, 250)])).toBe(1);
      expect(oracle(b, 7)).toHaveLength(1);

      const live = new Map<string, number>(); // src → sport of the flows that should exist in A's zone 7
      for (let k = 1; k <= 40; k++) {
        // Two flows in, one out again: by filter on even rounds, by identity on odd ones.
        expect(await ct.create([udp(7, k, k % 3), udp(7, 100 + k, k % 3)])).toBe(2);
        live.set(`198.51.100.${k}`, 1000 + k).set(`198.51.100.${100 + k}`, 1100 + k);
        const gone = k % 2 === 0 ? `198.51.100.${k}` : `198.51.100.${100 + k}`;
        if (k % 2 === 0) {
          expect(await ct.delete({ zone: 7, protocol: 'udp', src: gone })).toBe(1);
        } else {
          const [victim] = await ct.list({ zone: 7, src: gone });
          expect(await ct.deleteEntries([victim!])).toBe(1);
        }
        live.delete(gone);
        if (k % 4 === 0) {
          // The persistent and the per-call path answer alike, and as the oracle does.
          const filters: ConntrackFilter[] = [{ zone: 7 }, { zone: 7, dst: '203.0.113.1' }, { zone: 7, src: '198.51.100.96/28' }];
          for (const f of filters) {
            const mine = await ct.list(f);
            expect(stableSorted(mine)).toEqual(stableSorted(await perCall.list(f)));
            expect(await ct.count(f)).toBe(mine.length);
          }
          const all = await ct.list({ zone: 7 });
          expect(new Map(all.map((e) => [e.orig.src, e.orig.sport]))).toEqual(live);
          const lines = oracle(a, 7);
          expect(lines).toHaveLength(live.size);
          for (const [src, sport] of live) expect(lines.some((l) => l.includes(`src=${src} `) && l.includes(`sport=${sport} `))).toBe(true);
        }
      }
      await ct.flushZone(7);
      expect(await ct.count({ zone: 7 })).toBe(0);
      expect(oracle(a, 7)).toEqual([]);

      // Still the one socket, in A; nothing of the client ever reached B.
      expect(netfilterSockets(a)).toEqual(held);
      expect(netfilterSockets(b)).toEqual([]);
      expect(oracle(b, 7)).toHaveLength(1);
    } finally {
      await ct.close();
      where.remove();
      await new ConntrackClient({ netns: b.name }).flushZone(7);
    }
    expect(netfilterSockets(a)).toEqual([]);
  });

  test('calls made together run in order on the one socket; a kernel refusal keeps the socket and reads as per call', async () => {
    const ct = new ConntrackClient({ netns: a.name, persistent: true });
    const perCall = new ConntrackClient({ netns: a.name });
    try {
      const flows = Array.from({ length: 8 }, (_, i) => udp(8, i + 1, 1));
      // Made in one go: each list sees exactly the calls made before it.
      const [created, seen1, deleted, seen2, , seen3] = await Promise.all([
        ct.create(flows),
        ct.count({ zone: 8 }),
        ct.delete({ zone: 8, src: '198.51.100.0/30' }),
        ct.count({ zone: 8 }),
        ct.flushZone(8),
        ct.count({ zone: 8 }),
      ]);
      expect([created, seen1, deleted, seen2, seen3]).toEqual([8, 8, 3, 5, 0]);
      const held = netfilterSockets(a);
      expect(held).toHaveLength(1);

      // EEXIST on the third entry: the whole call is undone, the same error as per call, the socket kept.
      await ct.create([udp(8, 200, 1)]);
      const dup = [udp(8, 201, 1), udp(8, 202, 1), udp(8, 200, 1)];
      const mine = await ct.create(dup).catch((e: unknown) => e);
      const theirs = await perCall.create(dup).catch((e: unknown) => e);
      expect(mine).toMatchObject({ code: 'ERR_KERNEL', errnoName: 'EEXIST', opIndex: 2, field: 'entries[2]' });
      expect(theirs).toMatchObject({ code: 'ERR_KERNEL', errnoName: 'EEXIST', opIndex: 2, field: 'entries[2]' });
      expect(await ct.count({ zone: 8 })).toBe(1);
      expect(netfilterSockets(a)).toEqual(held);
      await ct.flushZone(8);
    } finally {
      await ct.close();
    }
    expect(netfilterSockets(a)).toEqual([]);
  });

  test('close() releases the socket; a closed native socket rejects; the client reopens on its next call', async () => {
    const native = binding();
    const sock = await native.conntrackSocketOpen(a.name);
    expect(netfilterSockets(a)).toHaveLength(1);
    await expect(native.conntrackCreate(sock, encodeEntries([udp(9, 1, 1)]))).resolves.toBe(1);
    await expect(native.conntrackDump(sock, null)).resolves.toHaveLength(96);
    sock.close();
    sock.close(); // idempotent
    expect(netfilterSockets(a)).toEqual([]);
    const closed = { kind: 'system', errnoName: 'EBADF', message: expect.stringMatching(/socket was closed/) };
    await expect(native.conntrackDump(sock, null)).rejects.toMatchObject(closed);
    await expect(native.conntrackDelete(sock, Buffer.alloc(64))).rejects.toMatchObject(closed);
    await expect(native.conntrackDeleteEntries(sock, encodeEntries([udp(9, 1, 1)]))).rejects.toMatchObject(closed);
    await expect(native.conntrackCreate(sock, encodeEntries([udp(9, 2, 1)]))).rejects.toMatchObject(closed);
    await expect(native.conntrackFlushZone(sock, 9, 0)).rejects.toMatchObject(closed);
    // An nftables socket is not a conntrack target, nor the other way round.
    const nftSock = await native.nftSocketOpen(a.name);
    expect(() => native.conntrackDump(nftSock as unknown as NativeConntrackSocket, null)).toThrow(/conntrackSocketOpen/);
    nftSock.close();

    const ct = new ConntrackClient({ netns: a.name, persistent: true });
    expect(await ct.count({ zone: 9 })).toBe(1);
    const first = netfilterSockets(a);
    expect(first).toHaveLength(1);
    await ct.close();
    expect(netfilterSockets(a)).toEqual([]);
    await ct.close(); // nothing left to close
    await ct.flushZone(9); // opens a new one
    const second = netfilterSockets(a);
    expect(second).toHaveLength(1);
    expect(second[0]!.inode).not.toBe(first[0]!.inode);
    await ct.close();
    expect(netfilterSockets(a)).toEqual([]);

    // A namespace that does not exist: the open fails as ERR_NETNS for the calls waiting on it, every time.
    const nowhere = new ConntrackClient({ netns: 'pw-no-such-netns', persistent: true });
    await expect(nowhere.count()).rejects.toMatchObject({ code: 'ERR_NETNS' });
    await expect(nowhere.list()).rejects.toMatchObject({ code: 'ERR_NETNS' });
    await nowhere.close();
  });

  test('count() of a persistent client reads the counter on the JS thread when its socket is free, through the pool otherwise', async () => {
    const native = binding();
    const calls: string[] = [];
    const spy: ConntrackBinding = {
      ...native,
      conntrackSocketOpen: (n) => native.conntrackSocketOpen(n),
      conntrackCount: (t) => (calls.push('pool'), native.conntrackCount(t)),
      conntrackCountSync: (t) => {
        const r = native.conntrackCountSync(t);
        calls.push(r === undefined ? 'declined' : 'sync');
        return r;
      },
    };
    const ct = new ConntrackClient({ netns: a.name, persistent: true, binding: spy });
    try {
      await ct.create([udp(11, 1, 1), udp(11, 2, 1), udp(11, 3, 1)]); // opens the socket
      const total = () => Number(a.exec('conntrack', ['-C']).trim());
      calls.length = 0;
      expect(await ct.count()).toBe(total());
      expect(calls).toEqual(['sync']);
      // Made while a dump is queued on the socket: through the pool, after the dump.
      calls.length = 0;
      const [listed, counted] = await Promise.all([ct.list({ zone: 11 }), ct.count()]);
      expect(listed).toHaveLength(3);
      expect(counted).toBe(total());
      expect(calls).toEqual(['pool']);
      expect(netfilterSockets(a)).toHaveLength(1);
    } finally {
      await ct.flushZone(11);
      await ct.close();
    }
    // The binding itself declines a namespace name and a closed socket.
    expect(native.conntrackCountSync(a.name)).toBeUndefined();
    const s = await native.conntrackSocketOpen(a.name);
    s.close();
    expect(native.conntrackCountSync(s)).toBeUndefined();
  });

  test('a socket JS lets go of is closed by the collector, after the call still using it', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const native = binding();
    const pending = native.conntrackSocketOpen(a.name).then((s: NativeConntrackSocket) =>
      native.conntrackCreate(s, encodeEntries([udp(10, 1, 1), udp(10, 2, 1)])));
    gc();
    await expect(pending).resolves.toBe(2);
    for (let i = 0; i < 50 && netfilterSockets(a).length > 0; i++) {
      gc();
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(netfilterSockets(a)).toEqual([]);
    expect(oracle(a, 10)).toHaveLength(2);
    await binding().conntrackFlushZone(a.name, 10, 0);
  });

  test('list() right after nftables commits that delete: per call vs persistent (printed, not asserted)', async () => {
    const family = 'inet' as const;
    const table: Table = { kind: 'table', family, name: 'ctsock' };
    const set: NftSet = { kind: 'set', family, table: 'ctsock', name: 'hosts', key: ['ipv4_addr'] };
    const els = (addr: string): Elements => ({ kind: 'elements', family, table: 'ctsock', set: 'hosts', elements: [{ key: [addr] }] });
    const nft = new Nft({ netns: a.name, persistent: true });
    const perCall = new ConntrackClient({ netns: a.name });
    const held = new ConntrackClient({ netns: a.name, persistent: true });
    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[xs.length >> 1]!;
    try {
      await nft.transaction().add(table).add(set).commit();
      await held.list(); // opened before the measurement
      const times = { perCall: [] as number[], persistent: [] as number[], idle: [] as number[] };
      for (let i = 0; i < 50; i++) {
        const t0 = performance.now();
        await held.list();
        times.idle.push(performance.now() - t0);
      }
      for (let i = 0; i < 100; i++) {
        const addr = `192.0.2.${(i % 200) + 1}`;
        await nft.transaction().add(els(addr)).commit();
        await nft.transaction().delete(els(addr)).commit();
        const client = i % 2 === 0 ? perCall : held;
        const t0 = performance.now();
        expect(await client.list()).toEqual([]);
        (i % 2 === 0 ? times.perCall : times.persistent).push(performance.now() - t0);
      }
      console.log(`conntrack list() after an nft commit with deletes, median of 50: per call ${median(times.perCall).toFixed(2)} ms, ` +
        `persistent ${median(times.persistent).toFixed(2)} ms (persistent without a commit before: ${median(times.idle).toFixed(2)} ms, the dump itself)`);
    } finally {
      await held.close();
      await nft.transaction().destroy(table).commit();
      await nft.close();
    }
  });
});
