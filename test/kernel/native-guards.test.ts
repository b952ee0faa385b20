// Guards in the native layer for input the TypeScript side never produces but a bug could: each is refused
// before any netlink message is sent.
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

  test('an ipset member buffer whose count exceeds its length is refused, not allocated', () => {
    const buf = Buffer.alloc(4);
    buf.writeUInt32LE(0x7fffffff, 0);
    expect(() => binding().ipsetAdd(ns.name, 'pw-none', buf)).toThrow(/malformed/);
  });
});
