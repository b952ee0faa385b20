// subscribeNftEvents over a binding double: the addon's records decoded into typed events, close() final at
// once, a throwing listener or an undecodable delivery reported through onError (never thrown into the event
// loop), native failures mapped to PortwallError codes.
import { afterEach, describe, expect, test, vi } from 'vitest';

import { PortwallError } from '../../src/errors.js';
import type { NativeNftEventSubscription, NativeNftTransaction, NftEventsBinding } from '../../src/native.js';
import { NFT_EVENT_MESSAGES, decodeEvent, decodeTransaction, subscribeNftEvents } from '../../src/nft/events.js';
import type { NftTransactionEvent } from '../../src/nft/events.js';

type Callback = (error: Error | null, transactions: NativeNftTransaction[], lost: number) => void;

/** A binding whose one subscription the test drives by hand. */
function fakeBinding() {
  const handle = { close: vi.fn(async () => {}), ref: vi.fn(), unref: vi.fn() } satisfies NativeNftEventSubscription;
  const fake = {
    callback: undefined as Callback | undefined,
    netns: undefined as string | null | undefined,
    receiveBuffer: undefined as number | undefined,
    handle,
    binding: {
      nftSubscribe: async (netns: string | null, callback: Callback, receiveBuffer?: number) => {
        fake.netns = netns;
        fake.callback = callback;
        fake.receiveBuffer = receiveBuffer;
        return handle;
      },
    } satisfies NftEventsBinding,
  };
  return fake;
}

const raw = (genid: number, events: NativeNftTransaction['events'], extra: Partial<NativeNftTransaction> = {}): NativeNftTransaction =>
  ({ genid, pid: 4242, procName: 'nft', portid: 4242, self: false, events, ...extra });

describe('decoding', () => {
  test('message numbers and families become names; the name is kept only where it means something', () => {
    expect(decodeEvent({ msg: 0, family: 1, table: 'pw', name: '', count: 1 }))
      .toEqual({ type: 'newtable', family: 'inet', table: 'pw', count: 1, msg: 0 });
    expect(decodeEvent({ msg: 12, family: 2, table: 'pw', name: 'allow', count: 5000 }))
      .toEqual({ type: 'newsetelem', family: 'ip', table: 'pw', name: 'allow', count: 5000, msg: 12 });
    expect(decodeEvent({ msg: 8, family: 10, table: 't', name: 'fwd', count: 1 })).toMatchObject({ type: 'delrule', family: 'ip6', name: 'fwd' });
    expect(decodeEvent({ msg: 2, family: 7, table: 'br', name: '', count: 1 })).toMatchObject({ type: 'deltable', family: 'bridge' });
    expect(decodeEvent({ msg: 24, family: 5, table: 't', name: 'ft', count: 1 })).toMatchObject({ type: 'delflowtable', family: 'netdev', name: 'ft' });
    expect(decodeEvent({ msg: 3, family: 3, table: 't', name: 'c', count: 1 })).toMatchObject({ type: 'newchain', family: 'arp', name: 'c' });
    // A message of a newer kernel, and a family portwall does not know.
    expect(decodeEvent({ msg: 34, family: 0, table: '', name: '', count: 1 })).toEqual({ type: 'other', family: null, table: '', count: 1, msg: 34 });
  });

  test('every named type maps to its NFT_MSG_* number and back', () => {
    for (const [type, msg] of Object.entries(NFT_EVENT_MESSAGES)) {
      expect(decodeEvent({ msg, family: 1, table: 't', name: 'x', count: 1 }).type).toBe(type);
    }
    expect(new Set(Object.values(NFT_EVENT_MESSAGES)).size).toBe(Object.keys(NFT_EVENT_MESSAGES).length);
  });

  test('a transaction keeps its frame', () => {
    expect(decodeTransaction(raw(7, [{ msg: 14, family: 1, table: 'pw', name: 's', count: 2 }], { self: true, pid: 99, procName: 'node' })))
      .toEqual({ genid: 7, pid: 99, procName: 'node', portid: 4242, self: true,
                 events: [{ type: 'delsetelem', family: 'inet', table: 'pw', name: 's', count: 2, msg: 14 }] });
  });
});

describe('subscribeNftEvents', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  test('passes the namespace and buffer size, delivers decoded transactions and lost counts', async () => {
    const fake = fakeBinding();
    const got: [NftTransactionEvent[], number][] = [];
    const sub = await subscribeNftEvents('host1', (txs, lost) => got.push([txs, lost]), { binding: fake.binding, receiveBufferBytes: 1 << 20 });
    expect(sub.netns).toBe('host1');
    expect([fake.netns, fake.receiveBuffer]).toEqual(['host1', 1 << 20]);
    fake.callback!(null, [raw(3, [{ msg: 0, family: 1, table: 'pw', name: '', count: 1 }])], 0);
    fake.callback!(null, [], 2); // an overrun with nothing framed: still worth a call
    fake.callback!(null, [], 0); // nothing at all: no call
    expect(got).toEqual([[[expect.objectContaining({ genid: 3, events: [expect.objectContaining({ type: 'newtable' })] })], 0], [[], 2]]);
    sub.unref();
    sub.ref();
    expect(fake.handle.unref).toHaveBeenCalledOnce();
    expect(fake.handle.ref).toHaveBeenCalledOnce();
    await sub.close();
  });

  test('close() is final at once and idempotent', async () => {
    const fake = fakeBinding();
    let calls = 0;
    const errors: PortwallError[] = [];
    const sub = await subscribeNftEvents(null, () => { calls++; }, { binding: fake.binding, onError: (e) => errors.push(e) });
    const closing = sub.close();
    // Deliveries the addon had already queued reach the callback after close(): dropped, errors too.
    fake.callback!(null, [raw(1, [])], 1);
    fake.callback!(Object.assign(new Error('recv failed'), { kind: 'system', errno: 5 }), [], 0);
    expect(sub.close()).toBe(closing);
    await closing;
    expect(fake.handle.close).toHaveBeenCalledOnce();
    expect([calls, errors]).toEqual([0, []]);
  });

  test('a throwing listener goes to onError as ERR_LISTENER; the subscription goes on', async () => {
    const fake = fakeBinding();
    const errors: PortwallError[] = [];
    let calls = 0;
    await subscribeNftEvents(null, () => {
      calls++;
      throw new RangeError('listener bug');
    }, { binding: fake.binding, onError: (e) => errors.push(e) });
    expect(() => fake.callback!(null, [raw(1, [])], 0)).not.toThrow();
    expect(() => fake.callback!(null, [raw(2, [])], 0)).not.toThrow();
    expect(calls).toBe(2);
    expect(errors).toHaveLength(2);
    expect(errors[0]).toBeInstanceOf(PortwallError);
    expect(errors[0]).toMatchObject({ code: 'ERR_LISTENER' });
    expect(errors[0]!.cause).toBeInstanceOf(RangeError);
  });

  test('an onError that throws is contained too', async () => {
    const fake = fakeBinding();
    await subscribeNftEvents(null, () => { throw new Error('a'); }, { binding: fake.binding, onError: () => { throw new Error('b'); } });
    expect(() => fake.callback!(null, [raw(1, [])], 0)).not.toThrow();
  });

  test('an undecodable delivery is ERR_WIRE and counts as lost', async () => {
    const fake = fakeBinding();
    const errors: PortwallError[] = [];
    const got: [NftTransactionEvent[], number][] = [];
    await subscribeNftEvents(null, (txs, lost) => got.push([txs, lost]), { binding: fake.binding, onError: (e) => errors.push(e) });
    fake.callback!(null, [{ genid: 1 } as unknown as NativeNftTransaction], 0);
    expect(errors.map((e) => e.code)).toEqual(['ERR_WIRE']);
    expect(got).toEqual([[[], 1]]);
  });

  test('a reader failure is reported as ERR_SYSTEM after what was read with it', async () => {
    const fake = fakeBinding();
    const order: string[] = [];
    await subscribeNftEvents('host1', () => order.push('listener'), {
      binding: fake.binding,
      onError: (e) => order.push(`${e.code} ${e.errnoName}`),
    });
    fake.callback!(Object.assign(new Error('recv nftables events: Input/output error'), { kind: 'system', errno: 5, errnoName: 'EIO' }), [raw(4, [])], 0);
    expect(order).toEqual(['listener', 'ERR_SYSTEM EIO']);
  });

  test('without onError, errors become process warnings', async () => {
    const fake = fakeBinding();
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    await subscribeNftEvents(null, () => { throw new Error('oops'); }, { binding: fake.binding });
    fake.callback!(null, [raw(1, [])], 0);
    expect(warn).toHaveBeenCalledOnce();
    expect(warn.mock.calls[0]![0]).toMatchObject({ code: 'ERR_LISTENER' });
  });

  test('a failed subscribe is mapped; a bad buffer size is refused before the addon is asked', async () => {
    const nftSubscribe = vi.fn(async () => {
      throw Object.assign(new Error('open network namespace /run/netns/nope: No such file or directory'), { kind: 'system', errno: 2, errnoName: 'ENOENT' });
    });
    await expect(subscribeNftEvents('nope', () => {}, { binding: { nftSubscribe } })).rejects.toMatchObject({ code: 'ERR_NETNS', errnoName: 'ENOENT' });
    for (const bad of [0, -1, 1.5, 2 ** 31, Number.NaN]) {
      await expect(subscribeNftEvents(null, () => {}, { binding: { nftSubscribe }, receiveBufferBytes: bad }))
        .rejects.toMatchObject({ code: 'ERR_INVALID_VALUE', field: 'receiveBufferBytes' });
    }
    expect(nftSubscribe).toHaveBeenCalledOnce();
  });
});
