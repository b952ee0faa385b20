// ConntrackClient.count() (IPCTNL_MSG_CT_GET_STATS) against the kernel: the namespace's own number of entries,
// through a held socket and per call, as `conntrack -C` run inside the namespace reports it; and what it costs
// next to a dump (printed, not asserted).
import { describe, expect, test } from 'vitest';

import { ConntrackClient, type ConntrackEntrySpec } from '../../src/conntrack.js';
import { binding } from '../../src/native.js';
import { Netns, isRoot } from '../helpers/netns.js';
import { netfilterSockets } from '../helpers/sockets.js';
import { twoNamespaces } from '../helpers/two-netns.js';

if (!isRoot) console.warn('skipping conntrack count kernel tests: not root');

/** `conntrack -C` inside `ns`: the oracle. */
const oracle = (ns: Netns): number => Number(ns.exec('conntrack', ['-C']).trim());

/** `n` entries of several zones, families and protocols, numbered from `base` (distinct tuples). */
function flows(n: number, base = 0): ConntrackEntrySpec[] {
  return Array.from({ length: n }, (_, j): ConntrackEntrySpec => {
    const i = base + j;
    const zone = [0, 5, 60000][i % 3]!;
    switch (i % 4) {
      case 0: return { zone, protocol: 'udp', src: `198.51.100.${i % 250 + 1}`, dst: '203.0.113.1', sport: 1000 + i, dport: 53, timeout: 300 };
      case 1: return { zone, protocol: 'tcp', src: `192.0.2.${i % 250 + 1}`, dst: '203.0.113.2', sport: 2000 + i, dport: 443, timeout: 300 };
      case 2: return { zone, protocol: 'udp', src: `2001:db8::${(i + 1).toString(16)}`, dst: '2001:db8:1::1', sport: 3000 + i, dport: 123, timeout: 300 };
      default: return { zone, protocol: 'icmp', src: '192.0.2.200', dst: '203.0.113.3', icmp: { id: 4000 + i }, timeout: 30 };
    }
  });
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[xs.length >> 1]!;

describe.skipIf(!isRoot)('conntrack count', () => {
  let a: Netns;
  let b: Netns;
  twoNamespaces('ctcount', (x, y) => {
    a = x;
    b = y;
  });

  test('is the namespace own number of entries, held socket and per call alike, as conntrack -C says', async () => {
    const held = new ConntrackClient({ netns: a.name, persistent: true });
    const perCall = new ConntrackClient({ netns: a.name });
    const other = new ConntrackClient({ netns: b.name });
    const native = binding();
    const sock = await native.conntrackSocketOpen(a.name);
    // Every way of asking, all of which must agree with the oracle.
    const counts = async () => [await held.count(), await perCall.count(), await native.conntrackCount(a.name), await native.conntrackCount(sock)];
    const expectCount = async (n: number) => {
      expect(await counts()).toEqual([n, n, n, n]);
      expect(oracle(a)).toBe(n);
    };
    try {
      await expectCount(0); // a fresh namespace
      expect(netfilterSockets(a)).toHaveLength(2); // the client's held socket and `sock`; the per-call ones are gone

      // Entries of another namespace are not counted.
      expect(await other.create(flows(25, 1000))).toBe(25);
      expect(await other.count()).toBe(25);
      expect(oracle(b)).toBe(25);
      await expectCount(0);

      const N = 48;
      expect(await held.create(flows(N))).toBe(N);
      await expectCount(N);
      expect(await held.list()).toHaveLength(N); // the dump agrees: every entry is confirmed
      expect(await other.count()).toBe(25);

      // Deletes, by filter, by identity and by zone flush, bring it down at once.
      const udp4 = await held.delete({ family: 'ipv4', protocol: 'udp' });
      expect(udp4).toBe(N / 4);
      await expectCount(N - udp4);
      const [victim] = await held.list({ protocol: 'tcp', zone: 5 });
      expect(await perCall.deleteEntries([victim!])).toBe(1);
      await expectCount(N - udp4 - 1);
      const zone0 = (await held.list({ zone: 0 })).length;
      await held.flushZone(0);
      await expectCount(N - udp4 - 1 - zone0);
      await perCall.flushZone(5);
      await held.flushZone(60000);
      await expectCount(0);
      expect(await other.count()).toBe(25);
      expect(oracle(b)).toBe(25);

      // Still the two sockets: count() neither opened nor replaced the held one.
      expect(netfilterSockets(a)).toHaveLength(2);
      sock.close();
      await expect(native.conntrackCount(sock)).rejects.toMatchObject({ kind: 'system', errnoName: 'EBADF', message: expect.stringMatching(/socket was closed/) });
    } finally {
      sock.close();
      await held.close();
      await other.flushZone(0);
      await other.flushZone(5);
      await other.flushZone(60000);
    }
    expect(oracle(b)).toBe(0);
    expect(netfilterSockets(a)).toEqual([]);
    await expect(new ConntrackClient({ netns: 'pw-no-such-netns' }).count()).rejects.toMatchObject({ code: 'ERR_NETNS' });
    await expect(new ConntrackClient({ netns: 'pw-no-such-netns', persistent: true }).count()).rejects.toMatchObject({ code: 'ERR_NETNS' });
  });

  test('count() vs list() on a held socket, median of 50 each (printed, not asserted)', async () => {
    const held = new ConntrackClient({ netns: a.name, persistent: true });
    const perCall = new ConntrackClient({ netns: a.name });
    const time = async (fn: () => Promise<unknown>) => {
      const xs: number[] = [];
      for (let i = 0; i < 50; i++) {
        const t0 = performance.now();
        await fn();
        xs.push(performance.now() - t0);
      }
      return median(xs).toFixed(3);
    };
    try {
      await held.count(); // opened before the measurement
      const empty = { count: await time(() => held.count()), list: await time(() => held.list()), perCall: await time(() => perCall.count()) };
      await held.create(flows(200));
      const full = { count: await time(() => held.count()), list: await time(() => held.list()) };
      expect(await held.count()).toBe(200);
      const buckets = Number(a.exec('cat', ['/proc/sys/net/netfilter/nf_conntrack_buckets']).trim());
      console.log(`conntrack on a held socket, median of 50 (hash of ${buckets} buckets): empty namespace: count() ${empty.count} ms, ` +
        `list() ${empty.list} ms (per-call count() ${empty.perCall} ms); 200 entries: count() ${full.count} ms, list() ${full.list} ms`);
    } finally {
      for (const zone of [0, 5, 60000]) await held.flushZone(zone);
      await held.close();
    }
  });
});
