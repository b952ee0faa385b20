// Guards in the native layer for input the TypeScript side never produces but a bug could: each is refused
// before any netlink message is sent. And a promise of the addon always settles.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { binding } from '../../src/native.js';
import { openNft } from '../../src/nft/client.js';
import { writeRecords } from '../../src/nft/wire-records.js';
import { Netns, isRoot } from '../helpers/netns.js';

describe.skipIf(!isRoot)('native input guards', () => {
  let ns: Netns;
  beforeAll(async () => {
    ns = new Netns('guards');
    await openNft({ netns: ns.name }).transaction()
      .add({ kind: 'table', family: 'inet', name: 'keep' })
      .add({ kind: 'set', family: 'inet', table: 'keep', name: 's', key: ['ipv4_addr'], flags: ['timeout'] })
      .add({ kind: 'elements', family: 'inet', table: 'keep', set: 's', elements: [{ key: ['192.0.2.1'], timeout: 60_000 }] })
      .add({ kind: 'set', family: 'inet', table: 'keep', name: 'plain', key: ['ipv4_addr'] })
      .commit();
  });
  afterAll(() => ns?.destroy());

  test('a table delete, destroy or flush without name or handle is refused (the kernel would drop every table)', async () => {
    for (const verb of [5, 6, 7]) {
      const batch = writeRecords([{ verb, family: 1, kind: 'table' }]);
      await expect(binding().nftCommit(ns.name, batch)).rejects.toMatchObject({ kind: 'wire' });
    }
    expect(ns.nftText()).toContain('table inet keep');
  });

  test('a listing\'s look must name its sets as strings and say namedSetsOnly as a boolean', async () => {
    const list = binding().nftList as (...args: unknown[]) => Promise<unknown>;
    expect(() => list(ns.name, 0, 'keep', 'plain')).toThrow(/elementsOf must be an array/);
    expect(() => list(ns.name, 0, 'keep', ['plain', 7])).toThrow(/elementsOf must hold set names/);
    expect(() => list(ns.name, 0, 'keep', ['plain'], 'yes')).toThrow(/namedSetsOnly must be a boolean/);
    // Well-formed: the named set alone, with its (empty) element list.
    const named = await openNft({ netns: ns.name }).list({ table: 'keep', elementsOf: ['plain'], namedSetsOnly: true });
    expect(named.objects.filter((o) => o.kind === 'set').map((o) => (o as { name: string }).name)).toEqual(['plain']);
  });

  test('family 0 (AF_UNSPEC) is refused for every record', async () => {
    const batch = writeRecords([{ verb: 5, family: 0, kind: 'table', name: 'keep' }]);
    await expect(binding().nftCommit(ns.name, batch)).rejects.toMatchObject({ kind: 'wire' });
    expect(ns.nftText()).toContain('table inet keep');
  });

  test('an element record carrying a (dump-only) expiration is sent without it', async () => {
    // The kernel refuses an expiration on a set without timeouts (EINVAL) and would reset timers on others.
    const records = writeRecords([{ verb: 1, family: 1, kind: 'elements', table: 'keep', set: 'plain',
      elements: [{ key: Uint8Array.of(192, 0, 2, 7), expiration: 59_000n }] }]);
    await expect(binding().nftCommit(ns.name, records)).resolves.toMatchObject({ messages: 3 });
    expect(ns.nftText()).toContain('192.0.2.7');
  });

  test('a promise settles when building its result or its error throws: it rejects with what was thrown', async () => {
    // A setter on Object.prototype runs when the addon sets that property on a result (or error) object it
    // builds on the JS thread; before, the exception escaped into the event loop and the promise never settled.
    const boom = new Error('setter threw');
    const trap = (name: string) =>
      Object.defineProperty(Object.prototype, name, { configurable: true, set() { throw boom; } });
    const withTimeout = <T>(p: Promise<T>) =>
      Promise.race([p, new Promise((_, reject) => setTimeout(() => reject(new Error('the promise never settled')), 5000))]);
    const empty = writeRecords([]);
    const refused = writeRecords([{ verb: 5, family: 0, kind: 'table', name: 'keep' }]);
    try {
      trap('messages'); // the result of nftCommit: { genid, messages }
      await expect(withTimeout(binding().nftCommit(ns.name, empty))).rejects.toBe(boom);
    } finally {
      delete (Object.prototype as Record<string, unknown>).messages;
    }
    try {
      trap('opIndex'); // every rejection's error carries kind, errno, opIndex
      await expect(withTimeout(binding().nftCommit(ns.name, refused))).rejects.toBe(boom);
    } finally {
      delete (Object.prototype as Record<string, unknown>).opIndex;
    }
    await expect(binding().nftCommit(ns.name, empty)).resolves.toMatchObject({ messages: 2 });
  });

  test('an encoded batch has no unwritten bytes: every attribute\'s padding is zero', async () => {
    // Names of every length modulo 4, so that most attributes are padded; encoded repeatedly, so that the
    // buffers reuse memory that held other data. libmnl before 1.0.5 does not write the padding itself.
    const nonZero: string[] = [];
    for (let round = 0; round < 20; round++) {
      const names = ['a', 'ab', 'abc', 'abcd', 'abcde'].map((n) => `${n}${round}`);
      const batch = writeRecords(names.flatMap((name) => [
        { verb: 1, family: 1, kind: 'table' as const, name },
        { verb: 1, family: 1, kind: 'chain' as const, table: name, name: `${name}c`, type: 'filter', hook: 1, priority: 0 },
      ]));
      const bytes = await binding().nftEncode(batch);
      for (let at = 0; at < bytes.length;) {
        const len = bytes.readUInt32LE(at);
        checkAttributes(bytes.subarray(at + 20, at + len), `message at ${at}`, nonZero);
        at += (len + 3) & ~3;
      }
    }
    expect(nonZero).toEqual([]);
  });

  test('an element list split over several messages leaves no stale bytes where the next message is built', async () => {
    // More elements than one message's 64 KiB list holds: the element that overflows is taken back and the next
    // message is built over its bytes. Every byte of its userdata is 0xff, so padding that the next message's
    // attributes leave unwritten would show it.
    const elements = Array.from({ length: 4000 }, (_, i) => ({
      key: Uint8Array.of(198, 18, i >> 8, i & 0xff),
      userdata: new Uint8Array(33 + (i % 7)).fill(0xff),
    }));
    const batch = writeRecords([{ verb: 1, family: 1, kind: 'elements', table: 'keep', set: 'plain', elements }]);
    const bytes = await binding().nftEncode(batch);
    const nonZero: string[] = [];
    let lists = 0;
    for (let at = 0; at < bytes.length;) {
      const len = bytes.readUInt32LE(at);
      if ((bytes.readUInt16LE(at + 4) & 0xff) === 12) lists++; // NFT_MSG_NEWSETELEM
      checkAttributes(bytes.subarray(at + 20, at + len), `message at ${at}`, nonZero);
      at += (len + 3) & ~3;
    }
    expect(lists).toBeGreaterThan(1);
    expect(nonZero).toEqual([]);
  });

  test('an ipset member buffer whose count exceeds its length is refused, not allocated', () => {
    const buf = Buffer.alloc(4);
    buf.writeUInt32LE(0x7fffffff, 0);
    expect(() => binding().ipsetAdd(ns.name, 'pw-none', buf)).toThrow(/malformed/);
  });
});

/** Walks netlink attributes (nested ones too: NLA_F_NESTED) and records each non-zero padding byte. */
function checkAttributes(buf: Buffer, where: string, nonZero: string[]): void {
  for (let at = 0; at + 4 <= buf.length;) {
    const len = buf.readUInt16LE(at);
    const type = buf.readUInt16LE(at + 2);
    if (len < 4) return;
    if (type & 0x8000) checkAttributes(buf.subarray(at + 4, at + len), `${where} / nest ${type & 0x3fff}`, nonZero);
    for (let p = at + len; p < Math.min(at + ((len + 3) & ~3), buf.length); p++) {
      if (buf[p] !== 0) nonZero.push(`${where}, attribute ${type & 0x3fff}: padding byte ${p - at} is ${buf[p]}`);
    }
    at += (len + 3) & ~3;
  }
}
