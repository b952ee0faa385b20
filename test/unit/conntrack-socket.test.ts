// A persistent ConntrackClient without the kernel: one socket opened lazily, calls queued on it in order,
// close() after the calls made, the per-call fallback of a binding that cannot open sockets.
import { describe, expect, test } from 'vitest';

import { ConntrackClient, ENTRY_BYTES } from '../../src/conntrack.js';
import type { ConntrackBinding, ConntrackTarget, NativeConntrackSocket } from '../../src/native.js';

class FakeSocket implements NativeConntrackSocket {
  closed = false;
  constructor(readonly netns: string | null, readonly n: number) {}
  close(): void {
    this.closed = true;
  }
}

/** A conntrack binding that records each call's target and can hold calls at a gate. */
class FakeConntrack implements ConntrackBinding {
  readonly calls: string[] = [];
  readonly sockets: FakeSocket[] = [];
  gate: Promise<void> | undefined;
  failOpens = 0;

  constructor(opens = true) {
    if (!opens) this.conntrackSocketOpen = undefined;
  }

  conntrackSocketOpen? = async (netns: string | null): Promise<NativeConntrackSocket> => {
    await Promise.resolve();
    if (this.failOpens > 0) {
      this.failOpens--;
      throw Object.assign(new Error(`cannot enter network namespace ${netns}`), { kind: 'system', errno: 2, errnoName: 'ENOENT' });
    }
    const s = new FakeSocket(netns, this.sockets.length + 1);
    this.sockets.push(s);
    return s;
  };

  async #record(op: string, target: ConntrackTarget): Promise<void> {
    if (target instanceof FakeSocket && target.closed) {
      throw Object.assign(new Error('the conntrack socket was closed'), { kind: 'system', errno: 9, errnoName: 'EBADF' });
    }
    const where = target instanceof FakeSocket ? `socket ${target.n}` : `netns ${target}`;
    this.calls.push(`${op} start on ${where}`);
    if (this.gate) await this.gate;
    this.calls.push(`${op} end`);
  }

  conntrackDump = async (target: ConntrackTarget) => (await this.#record('dump', target), Buffer.alloc(2 * ENTRY_BYTES));
  conntrackDelete = async (target: ConntrackTarget) => (await this.#record('delete', target), 3);
  conntrackDeleteEntries = async (target: ConntrackTarget) => (await this.#record('deleteEntries', target), 1);
  conntrackCreate = async (target: ConntrackTarget) => (await this.#record('create', target), 1);
  conntrackFlushZone = async (target: ConntrackTarget) => this.#record('flush', target);
  conntrackSubscribe = async () => ({ close: async () => undefined, ref: () => undefined, unref: () => undefined });
}

const entry = { family: 'ipv4', protocol: 17, zone: 1, id: 5, orig: { src: '192.0.2.1', dst: '192.0.2.2', sport: 1, dport: 2 } } as const;
const flow = { zone: 1, protocol: 'udp', src: '192.0.2.1', dst: '192.0.2.2', sport: 1, dport: 2 } as const;

describe('a persistent ConntrackClient', () => {
  test('opens one socket lazily for all its calls, concurrent first calls included', async () => {
    const fake = new FakeConntrack();
    const ct = new ConntrackClient({ netns: 'ns1', persistent: true, binding: fake });
    expect(ct.persistent).toBe(true);
    expect(fake.sockets).toHaveLength(0);
    await Promise.all([ct.list(), ct.count(), ct.create([flow])]);
    for (let i = 0; i < 10; i++) {
      await ct.delete({ zone: 1 });
      await ct.deleteEntries([entry]);
      await ct.flushZone(1);
    }
    expect(fake.sockets.map((s) => s.netns)).toEqual(['ns1']);
    expect(fake.calls.filter((c) => c.includes(' start on ')).every((c) => c.endsWith('on socket 1'))).toBe(true);
    expect(fake.calls.filter((c) => c.includes(' start '))).toHaveLength(33);
  });

  test('runs its calls one after another, in the order made, even while one waits', async () => {
    const fake = new FakeConntrack();
    const ct = new ConntrackClient({ persistent: true, binding: fake });
    let release!: () => void;
    fake.gate = new Promise<void>((r) => (release = r));
    const done = Promise.all([ct.create([flow]), ct.list(), ct.delete({ zone: 1 })]);
    await new Promise((r) => setTimeout(r, 5));
    expect(fake.calls).toEqual(['create start on socket 1']);
    release();
    expect(await done).toMatchObject([1, [{}, {}], 3]);
    expect(fake.calls).toEqual([
      'create start on socket 1', 'create end', 'dump start on socket 1', 'dump end', 'delete start on socket 1', 'delete end',
    ]);
  });

  test('a rejected call does not stop the next; nothing to send sends nothing', async () => {
    const fake = new FakeConntrack();
    const ct = new ConntrackClient({ persistent: true, binding: fake });
    fake.conntrackCreate = async () => {
      throw Object.assign(new Error('conntrack create of entry 0: File exists'), { kind: 'netlink', errno: 17, errnoName: 'EEXIST', opIndex: 0 });
    };
    await expect(ct.create([flow])).rejects.toMatchObject({ code: 'ERR_KERNEL', errnoName: 'EEXIST', field: 'entries[0]' });
    expect(await ct.count()).toBe(2);
    expect(await ct.delete([])).toBe(0);
    expect(await ct.deleteEntries([])).toBe(0);
    expect(fake.sockets).toHaveLength(1);
    expect(fake.calls).toEqual(['dump start on socket 1', 'dump end']);
  });

  test('close() waits for the calls made, closes the socket; the next call opens another', async () => {
    const fake = new FakeConntrack();
    const ct = new ConntrackClient({ netns: 'ns1', persistent: true, binding: fake });
    await ct.close(); // nothing open yet
    expect(fake.sockets).toHaveLength(0);
    let release!: () => void;
    fake.gate = new Promise<void>((r) => (release = r));
    const pending = ct.list();
    const closing = ct.close();
    await new Promise((r) => setTimeout(r, 5));
    expect(fake.sockets[0]!.closed).toBe(false); // its call is still running
    release();
    await closing;
    expect(await pending).toHaveLength(2);
    expect(fake.sockets[0]!.closed).toBe(true);
    fake.gate = undefined;
    await ct.flushZone(3);
    expect(fake.sockets).toHaveLength(2);
    expect(fake.calls.at(-2)).toBe('flush start on socket 2');
    await ct.close();
    await ct.close();
    expect(fake.sockets[1]!.closed).toBe(true);
  });

  test('a failed open rejects the calls waiting for it; the next call opens again', async () => {
    const fake = new FakeConntrack();
    fake.failOpens = 1;
    const ct = new ConntrackClient({ netns: 'gone', persistent: true, binding: fake });
    const [a, b] = await Promise.allSettled([ct.list(), ct.count()]);
    expect(a).toMatchObject({ status: 'rejected', reason: { code: 'ERR_NETNS' } });
    expect(b).toMatchObject({ status: 'rejected', reason: { code: 'ERR_NETNS' } });
    expect(await ct.count()).toBe(2);
    expect(fake.sockets).toHaveLength(1);
    await ct.close();
  });

  test('a binding without conntrackSocketOpen is used with a socket per call', async () => {
    const fake = new FakeConntrack(false);
    const ct = new ConntrackClient({ netns: 'ns1', persistent: true, binding: fake });
    await ct.create([flow]);
    await ct.list();
    await ct.close();
    await ct.flushZone(1);
    expect(fake.calls).toEqual([
      'create start on netns ns1', 'create end', 'dump start on netns ns1', 'dump end', 'flush start on netns ns1', 'flush end',
    ]);
  });

  test('a per-call client (the default) never opens a socket', async () => {
    const fake = new FakeConntrack();
    const ct = new ConntrackClient({ binding: fake });
    expect(ct.persistent).toBe(false);
    await Promise.all([ct.list(), ct.delete({ zone: 2 })]);
    await ct.close();
    expect(fake.sockets).toHaveLength(0);
    expect(fake.calls.filter((c) => c.includes(' start '))).toEqual(['dump start on netns null', 'delete start on netns null']);
  });
});
