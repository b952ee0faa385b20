// ConntrackClient.count() without the kernel: no filter asks the binding's conntrackCount (the namespace's
// counter) on the client's target; a filter, or a binding without conntrackCount, counts a dump instead.
import { describe, expect, test } from 'vitest';

import { ConntrackClient, ENTRY_BYTES } from '../../src/conntrack.js';
import type { ConntrackBinding, ConntrackTarget, NativeConntrackSocket } from '../../src/native.js';

class FakeSocket implements NativeConntrackSocket {
  closed = false;
  close(): void {
    this.closed = true;
  }
}

/** Records which call went where; counts 7, dumps 3 entries. */
class FakeConntrack implements ConntrackBinding {
  readonly calls: string[] = [];
  readonly sockets: FakeSocket[] = [];
  countError: Error | undefined;

  constructor(withCount = true) {
    if (!withCount) this.conntrackCount = undefined;
  }

  #where(target: ConntrackTarget): string {
    return target instanceof FakeSocket ? `socket ${this.sockets.indexOf(target) + 1}` : `netns ${target}`;
  }

  conntrackSocketOpen = async (): Promise<NativeConntrackSocket> => {
    const s = new FakeSocket();
    this.sockets.push(s);
    return s;
  };
  conntrackCount? = async (target: ConntrackTarget): Promise<number> => {
    this.calls.push(`count on ${this.#where(target)}`);
    if (this.countError) throw this.countError;
    return 7;
  };
  conntrackDump = async (target: ConntrackTarget, filters: Buffer | null): Promise<Buffer> => {
    this.calls.push(`dump${filters ? ' filtered' : ''} on ${this.#where(target)}`);
    return Buffer.alloc(3 * ENTRY_BYTES);
  };
  conntrackDelete = async () => 0;
  conntrackDeleteEntries = async () => 0;
  conntrackCreate = async () => 0;
  conntrackFlushZone = async () => undefined;
  conntrackSubscribe = async () => ({ close: async () => undefined, ref: () => undefined, unref: () => undefined });
}

describe('ConntrackClient.count', () => {
  test('without filters: the binding counter, on the namespace per call', async () => {
    const fake = new FakeConntrack();
    const ct = new ConntrackClient({ netns: 'ns1', binding: fake });
    expect(await ct.count()).toBe(7);
    expect(fake.calls).toEqual(['count on netns ns1']);
    expect(fake.sockets).toHaveLength(0);
  });

  test('without filters, persistent: the counter on the held socket, queued with the other calls', async () => {
    const fake = new FakeConntrack();
    const ct = new ConntrackClient({ netns: 'ns1', persistent: true, binding: fake });
    expect(await Promise.all([ct.count(), ct.list(), ct.count()])).toMatchObject([7, [{}, {}, {}], 7]);
    expect(fake.calls).toEqual(['count on socket 1', 'dump on socket 1', 'count on socket 1']);
    await ct.close();
    expect(fake.sockets[0]!.closed).toBe(true);
  });

  test('with filters: a dump, counted', async () => {
    const fake = new FakeConntrack();
    const ct = new ConntrackClient({ netns: 'ns1', binding: fake });
    expect(await ct.count({ zone: 3 })).toBe(3);
    expect(await ct.count([{ zone: 3 }, { zone: 4 }])).toBe(3);
    expect(fake.calls).toEqual(['dump filtered on netns ns1', 'dump filtered on netns ns1']);
  });

  test('a binding without conntrackCount is asked for a whole dump', async () => {
    const fake = new FakeConntrack(false);
    expect(await new ConntrackClient({ netns: 'ns1', binding: fake }).count()).toBe(3);
    expect(await new ConntrackClient({ netns: 'ns1', persistent: true, binding: fake }).count()).toBe(3);
    expect(fake.calls).toEqual(['dump on netns ns1', 'dump on socket 1']);
  });

  test('rejections are mapped like the other calls', async () => {
    const fake = new FakeConntrack();
    const ct = new ConntrackClient({ netns: 'gone', binding: fake });
    fake.countError = Object.assign(new Error('open network namespace /run/netns/gone: No such file or directory'), {
      kind: 'system', errno: 2, errnoName: 'ENOENT',
    });
    await expect(ct.count()).rejects.toMatchObject({ code: 'ERR_NETNS', errnoName: 'ENOENT' });
    fake.countError = Object.assign(new Error('conntrack count: Operation not permitted'), { kind: 'netlink', errno: 1, errnoName: 'EPERM' });
    await expect(ct.count()).rejects.toMatchObject({ code: 'ERR_KERNEL', errnoName: 'EPERM' });
  });
});
