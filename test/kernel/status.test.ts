// Portwall.summary(): the counts of what portwall's tables hold, from the handle's memory while the kernel's
// generation shows nobody else committed (no listing), from a listing once someone did — equal to status()'s
// listing either way, in both modes, with a floating IP (the NAT table) too.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { Portwall } from '../../src/apply/portwall.js';
import { binding } from '../../src/native.js';
import { openNft } from '../../src/nft/client.js';
import { realBinding } from '../helpers/bindings.js';
import { Netns, isRoot } from '../helpers/netns.js';
import { port, state, webGroup, type Mode } from '../helpers/states.js';

describe.skipIf(!isRoot).each(['routed', 'bridged'] as Mode[])('summary, %s', (mode) => {
  let ns: Netns;
  beforeAll(() => {
    ns = new Netns(`status-${mode}`);
  });
  afterAll(() => ns?.destroy());

  test('counted from memory while the generation is ours, from a listing after another writer; equal to a listing', async () => {
    const real = binding();
    let lists = 0;
    const spy = realBinding({ nftList: (...args) => (lists++, real.nftList(...args)) });
    const pw = Portwall.open({ netns: ns.name, binding: spy, conntrack: null, profileGc: false });
    try {
      const doc = state(mode, [webGroup()], [port(1, ['sg-web']), port(2, ['sg-web'])]);
      doc.floatingips = [{ id: 'fip-1', floating_ip_address: '203.0.113.10', port_id: 'port-00001' }];
      await pw.apply(doc);
      await pw.upsertPort(port(3, ['sg-web']));

      const before = lists;
      const quick = await pw.summary();
      expect(lists).toBe(before); // no listing
      expect(quick.listed).toBe(false);
      const listed = await pw.status();
      const afterStatus = lists;
      expect(afterStatus).toBeGreaterThan(before); // a listing (one request per table)
      expect({ tables: quick.tables, counts: quick.counts, genid: quick.genid }).toEqual({ tables: listed.tables, counts: listed.counts, genid: listed.genid });
      expect(quick.tables.map((t) => `${t.family} ${t.name}`).sort()).toEqual(
        ['inet portwall', 'inet portwall_raw', 'ip portwall_nat', ...(mode === 'bridged' ? ['bridge portwall'] : [])].sort());

      // Another writer: an element added by hand. The generation moved, so the summary lists — and sees it.
      const other = openNft({ netns: ns.name });
      await other.list({ table: 'portwall' });
      await other.transaction().add({ kind: 'elements', family: 'inet', table: 'portwall', set: 'nd_in', elements: [{ key: ['echo-request'] }] }).commit();
      const after = await pw.summary();
      expect(after.listed).toBe(true);
      expect(lists).toBeGreaterThan(afterStatus);
      expect(after.counts.elements).toBe(quick.counts.elements + 1);
      expect(after.genid).toBe(await other.genid());
    } finally {
      await pw.close();
    }
  });
});
