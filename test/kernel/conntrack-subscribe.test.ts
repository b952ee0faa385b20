// Conntrack event subscriptions against the kernel: close() is final at once (nothing is delivered after it,
// even batches already queued for the JS thread), a listener that throws goes to onError, a closed or
// collected subscription releases its socket, eventfd and thread, unref() lets the process exit, and the
// environment's exit stops every subscription it still has.
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Worker } from 'node:worker_threads';

import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { ConntrackClient, type ConntrackEntrySpec } from '../../src/conntrack.js';
import type { PortwallError } from '../../src/errors.js';
import { binding } from '../../src/native.js';
import { Netns, isRoot, run } from '../helpers/netns.js';
import { netfilterSockets } from '../helpers/sockets.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const openFds = (): number => readdirSync('/proc/self/fd').length;
const threads = (): number => readdirSync('/proc/self/task').length;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** `n` UDP entries in `zone`: creating them is `n` NEW events, flushing the zone `n` DESTROY events. */
const flows = (n: number, zone: number): ConntrackEntrySpec[] =>
  Array.from({ length: n }, (_, i) => ({
    zone, protocol: 'udp', src: `198.51.100.${i % 256}`, dst: `203.0.113.${(i >> 8) % 256}`, sport: 1024 + i, dport: 53, timeout: 300,
  }));

/** Keeps the JS thread busy, so that the reader thread queues its batches for it meanwhile. */
function block(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end) { /* busy */ }
}

describe.skipIf(!isRoot)('conntrack event subscriptions', () => {
  let ns: Netns;
  let ct: ConntrackClient;
  beforeAll(() => {
    ns = new Netns('ctsub');
    ct = new ConntrackClient({ netns: ns.name });
  });
  afterAll(() => ns?.destroy());

  test('close() is final: batches already queued for the JS thread are not delivered', async () => {
    let calls = 0;
    let late = 0;
    let closed = false;
    const sub = await ct.subscribe(() => {
      calls++;
      if (closed) late++;
    });
    await ct.create(flows(2000, 60));
    await sleep(100);
    expect(calls).toBeGreaterThan(0);
    // The flush runs on a pool thread while the JS thread is busy: its 2000 DESTROY events are read and
    // queued for the JS thread meanwhile, and are still queued when close() is called.
    const flushing = ct.flushZone(60);
    block(300);
    closed = true;
    const closing = sub.close();
    expect(sub.close()).toBe(closing); // idempotent: the same promise
    await closing;
    await flushing;
    await sleep(200);
    expect(late).toBe(0);
  });

  test('the addon itself delivers nothing after close(), whatever the JS side does', async () => {
    let late = 0;
    let closed = false;
    const handle = await binding().conntrackSubscribe(ns.name, 4, () => {
      if (closed) late++;
    });
    await ct.create(flows(2000, 61));
    const flushing = ct.flushZone(61);
    block(300);
    closed = true;
    await handle.close();
    await flushing;
    await sleep(200);
    expect(late).toBe(0);
  });

  test('a listener that throws goes to onError, and the subscription goes on', async () => {
    const errors: PortwallError[] = [];
    let seen = 0;
    const sub = await ct.subscribe((events) => {
      seen += events.length;
      throw new Error('listener bug');
    }, { events: ['new'], onError: (e) => errors.push(e) });
    try {
      await ct.create(flows(3, 62));
      await ct.create(flows(3, 63));
      const deadline = Date.now() + 3000;
      while (seen < 6 && Date.now() < deadline) await sleep(10);
      expect(seen).toBe(6);
      expect(errors.length).toBeGreaterThanOrEqual(1);
      expect(errors[0]).toMatchObject({ code: 'ERR_LISTENER', cause: { message: 'listener bug' } });
    } finally {
      await sub.close();
      await ct.flushZone(62);
      await ct.flushZone(63);
    }
  });

  test('subscribing and closing 20 times leaves no descriptor, thread or socket behind', async () => {
    const warm = await ct.subscribe(() => {});
    await warm.close();
    const fds = openFds();
    const before = threads();
    const subs = [];
    for (let i = 0; i < 20; i++) subs.push(await ct.subscribe(() => {}));
    expect(netfilterSockets(ns)).toHaveLength(20);
    await Promise.all(subs.map((s) => s.close()));
    expect(netfilterSockets(ns)).toEqual([]);
    expect(openFds()).toBe(fds);
    expect(threads()).toBe(before);
  });

  test('a subscription the collector takes without close() stops its thread and closes its socket', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    gc();
    const before = threads();
    let delivered = 0;
    await (async () => {
      await ct.subscribe(() => { delivered++; });
    })();
    expect(netfilterSockets(ns)).toHaveLength(1);
    expect(threads()).toBe(before + 1);
    for (let i = 0; i < 100 && netfilterSockets(ns).length > 0; i++) {
      gc();
      await sleep(10);
    }
    expect(netfilterSockets(ns)).toEqual([]);
    expect(threads()).toBe(before);
    await ct.create(flows(5, 64));
    await sleep(200);
    expect(delivered).toBe(0);
    await ct.flushZone(64);
  });

  test('a worker that exits with subscriptions open stops their threads and closes their sockets', async () => {
    const before = threads();
    const worker = new Worker(`
      const { parentPort, workerData } = require('node:worker_threads');
      const b = require(workerData.addon);
      Promise.all([
        b.conntrackSubscribe(workerData.netns, 5, () => {}),
        b.nftSubscribe(workerData.netns, () => {}),
      ]).then((subs) => {
        globalThis.subs = subs; // referenced, so that only the worker's exit can stop them
        parentPort.postMessage('subscribed');
      });`,
    { eval: true, workerData: { addon: loadedAddon(), netns: ns.name } });
    await new Promise((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    expect(netfilterSockets(ns)).toHaveLength(2);
    await worker.terminate();
    expect(netfilterSockets(ns)).toEqual([]);
    expect(threads()).toBe(before);
  });

  test('unref() lets the process exit; a referenced subscription keeps it alive until close()', () => {
    const script = (mode: string) => `
      const b = require('node-gyp-build')(${JSON.stringify(ROOT)});
      b.conntrackSubscribe(process.argv[1], 5, () => {}).then((s) => {
        console.log('subscribed');
        if (${JSON.stringify(mode)} === 'unref') s.unref();
        if (${JSON.stringify(mode)} === 'close') setTimeout(() => s.close().then(() => console.log('closed')), 200);
      });`;
    const child = (mode: string, timeout = 5000) =>
      spawnSync(process.execPath, ['-e', script(mode), ns.name], { cwd: ROOT, encoding: 'utf8', timeout });
    expect(child('unref')).toMatchObject({ status: 0, signal: null, stdout: 'subscribed\n' });
    expect(child('close')).toMatchObject({ status: 0, signal: null, stdout: 'subscribed\nclosed\n' });
    const held = child('ref', 1500);
    expect(held.signal).toBe('SIGTERM'); // still running when the timeout killed it
    expect(held.stdout).toBe('subscribed\n');
    expect(run('ip', ['netns', 'list'])).toContain(ns.name);
  });
});

/** The file of the addon this process loaded (the sanitizer run loads another build than node-gyp-build finds). */
function loadedAddon(): string {
  binding();
  const maps = readFileSync('/proc/self/maps', 'utf8');
  const file = /\s(\/\S+\/portwall\.node)$/m.exec(maps)?.[1];
  if (!file) throw new Error('the addon is not loaded');
  return file;
}
