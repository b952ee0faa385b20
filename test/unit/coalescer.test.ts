/**
 * The coalescer without HTTP: ops arriving together share one commit, ops arriving during a commit form the
 * next one, commits never overlap, each submitter gets its own outcome, a throwing commit fails only its batch.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import { describe, expect, test } from 'vitest';

import { Coalescer } from '../../src/agent/coalescer.js';

// A commit that records its batches and how many ran at once; each outcome says which batch and op it was.
function recorder(delayMs = 5) {
  const batches: number[][] = [];
  let running = 0;
  let maxRunning = 0;
  const commit = async (ops: readonly number[]) => {
    running++;
    maxRunning = Math.max(maxRunning, running);
    const batch = batches.push([...ops]) - 1;
    await sleep(delayMs);
    running--;
    return ops.map((op) => ({ batch, op, doubled: op * 2 }));
  };
  return { commit, batches, maxRunning: () => maxRunning };
}

// Submits ops 0…n-1, pausing 1 ms after every `pauseEvery`-th; resolves their outcomes once all are answered.
async function stream<T>(c: Coalescer<number, T>, n: number, pauseEvery = 1): Promise<T[]> {
  const pending: Promise<T>[] = [];
  for (let i = 0; i < n; i++) {
    pending.push(c.submit(i));
    if (i % pauseEvery === 0) await sleep(1);
  }
  return Promise.all(pending);
}

describe('Coalescer', () => {
  test('ops submitted within the window share one commit, each gets its own outcome', async () => {
    const r = recorder();
    const c = new Coalescer({ commit: r.commit, windowMs: 20 });
    const outcomes = await Promise.all([1, 2, 3, 4, 5].map((n) => c.submit(n)));
    expect(r.batches).toEqual([[1, 2, 3, 4, 5]]);
    expect(outcomes.map((o) => o.doubled)).toEqual([2, 4, 6, 8, 10]);
    expect(outcomes.every((o) => o.batch === 0)).toBe(true);
  });

  test('ops arriving while a commit runs form exactly one next batch, in order; commits never overlap', async () => {
    const r = recorder(30);
    const c = new Coalescer({ commit: r.commit, windowMs: 1 });
    const first = c.submit(0);
    await sleep(10); // the first batch is committing now
    expect(c.busy).toBe(true);
    const later = [1, 2, 3].map((n) => c.submit(n));
    expect(c.pending).toBe(3);
    await first;
    const outcomes = await Promise.all(later);
    expect(r.batches).toEqual([[0], [1, 2, 3]]);
    expect(outcomes.map((o) => o.batch)).toEqual([1, 1, 1]);
    expect(r.maxRunning()).toBe(1);
  });

  test('a steady stream is committed one batch at a time, never two at once', async () => {
    const r = recorder(3);
    const c = new Coalescer({ commit: r.commit, windowMs: 1 });
    await stream(c, 60, 5);
    expect(r.maxRunning()).toBe(1);
    expect(r.batches.flat()).toEqual([...Array(60).keys()]);
    expect(r.batches.length).toBeGreaterThan(1);
    expect(r.batches.length).toBeLessThan(60);
  });

  test('ops after the window closed (and the commit finished) start a new batch', async () => {
    const r = recorder(1);
    const c = new Coalescer({ commit: r.commit, windowMs: 1 });
    await c.submit(1);
    await c.submit(2);
    expect(r.batches).toEqual([[1], [2]]);
  });

  test('a commit that throws rejects its own batch only; the next batch still runs', async () => {
    let calls = 0;
    const c = new Coalescer<number, number>({
      windowMs: 1,
      commit: async (ops) => {
        calls++;
        if (ops.includes(13)) throw new Error('unlucky batch');
        return ops.map((o) => o + 100);
      },
    });
    const bad = [c.submit(13), c.submit(14)];
    await expect(bad[0]).rejects.toThrow('unlucky batch');
    await expect(bad[1]).rejects.toThrow('unlucky batch');
    await expect(c.submit(1)).resolves.toBe(101);
    expect(calls).toBe(2);
  });

  test('a commit resolving the wrong number of outcomes rejects every op of the batch', async () => {
    const c = new Coalescer<number, number>({ windowMs: 1, commit: async () => [1] });
    const all = Promise.allSettled([c.submit(1), c.submit(2)]);
    expect((await all).map((s) => s.status)).toEqual(['rejected', 'rejected']);
  });

  test('idle() waits for queued and running batches', async () => {
    const r = recorder(20);
    const c = new Coalescer({ commit: r.commit, windowMs: 1 });
    await c.idle(); // nothing to wait for
    void c.submit(1);
    const done = c.idle().then(() => r.batches.length);
    await expect(done).resolves.toBe(1);
    expect(c.busy).toBe(false);
    expect(c.pending).toBe(0);
  });

  test('a negative window is refused', () => {
    expect(() => new Coalescer({ commit: async () => [], windowMs: -1 })).toThrow(RangeError);
  });

  test('a lone op is committed at once, not after the window', async () => {
    const r = recorder(1);
    const c = new Coalescer({ commit: r.commit, windowMs: 200 });
    const t0 = performance.now();
    await c.submit(1);
    expect(performance.now() - t0).toBeLessThan(100);
    expect(r.batches).toEqual([[1]]);
  });

  // Clients that connected while the agent was busy are accepted one per turn of the event loop, so their ops
  // arrive one turn apart (docs/agent.md, "Coalescing").
  const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

  test('ops arriving one loop turn apart after an idle op share its commit', async () => {
    const r = recorder(1);
    const c = new Coalescer({ commit: r.commit, windowMs: 1000 });
    const all = [c.submit(0)];
    for (let i = 1; i < 10; i++) {
      await nextTurn();
      all.push(c.submit(i));
    }
    await Promise.all(all);
    expect(r.batches).toEqual([[...Array(10).keys()]]);
  });

  test('a stream of ops one turn apart is still committed within 4 windows of its first op', async () => {
    const r = recorder(1);
    const c = new Coalescer({ commit: r.commit, windowMs: 2 });
    const all: Promise<unknown>[] = [];
    for (const t0 = performance.now(); performance.now() - t0 < 60;) {
      all.push(c.submit(all.length));
      await nextTurn();
    }
    await Promise.all(all);
    expect(r.batches.flat()).toEqual([...Array(all.length).keys()]);
    expect(r.batches.length).toBeGreaterThan(1);
  });

  test('a window of 0 commits an idle op in the turn it arrived', async () => {
    const r = recorder(1);
    const c = new Coalescer({ commit: r.commit, windowMs: 0 });
    const all = [c.submit(0)];
    await nextTurn();
    all.push(c.submit(1));
    await Promise.all(all);
    expect(r.batches).toEqual([[0], [1]]);
  });

  test('a burst (ops 1 ms apart for 30 ms, commits of 3 ms) is a few ops per commit, not one; each op is answered', async () => {
    const r = recorder(3);
    const c = new Coalescer({ commit: r.commit, windowMs: 5 });
    const outcomes = await stream(c, 30);
    expect(outcomes.map((o) => o.op)).toEqual([...Array(30).keys()]);
    expect(r.batches.flat()).toEqual([...Array(30).keys()]);
    expect(r.batches.length).toBeLessThanOrEqual(15);
    expect(r.maxRunning()).toBe(1);
  });

  test('under a steady stream a batch takes what queued during the commit before it, without waiting for quiet', async () => {
    // A window far longer than the stream's gaps: a batch that waited for a quiet window would take the whole
    // stream at its end (two batches in all); this one must not wait.
    const r = recorder(3);
    const c = new Coalescer({ commit: r.commit, windowMs: 50 });
    await stream(c, 30);
    expect(r.batches.flat()).toEqual([...Array(30).keys()]);
    expect(r.batches.length).toBeGreaterThan(4);
  });
});
