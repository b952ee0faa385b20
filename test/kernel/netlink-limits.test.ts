/**
 * Netlink limits (docs/netlink.md, "Sizes"): a batch far larger than a socket's default send buffer still goes
 * to the kernel as one datagram and one transaction (the generation moves by exactly one), and a dump far
 * larger than one receive comes back whole. Element counts are checked against `nft` as the oracle. Addresses
 * come from 198.18.0.0/15 (131 072 of them).
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { Portwall } from '../../src/apply/portwall.js';
import { binding } from '../../src/native.js';
import { openNft, type Nft } from '../../src/nft/client.js';
import type { NftObject } from '../../src/nft/types.js';
import { Netns, isRoot } from '../helpers/netns.js';
import { network, port } from '../helpers/states.js';

const ELEMENTS = 120_000;
/** The nth address of 198.18.0.0/15. */
const bench = (n: number): string => `198.${18 + (n >> 16)}.${(n >> 8) & 0xff}.${n & 0xff}`;

/** How many elements `nft -j list set` reports for one set (the oracle). */
function nftCount(ns: Netns, family: string, table: string, set: string): number {
  const json = JSON.parse(ns.exec('nft', ['-j', 'list', 'set', family, table, set], { timeoutMs: 120_000 })) as {
    nftables: { set?: { elem?: unknown[] } }[];
  };
  return json.nftables.reduce((n, o) => n + (o.set?.elem?.length ?? 0), 0);
}

const elementsIn = (objects: NftObject[], set: string): number =>
  objects.reduce((n, o) => n + (o.kind === 'elements' && o.set === set ? o.elements.length : 0), 0);

describe.skipIf(!isRoot)('netlink limits', () => {
  let ns: Netns;
  let nft: Nft;
  beforeAll(() => {
    ns = new Netns('limits');
    nft = openNft({ netns: ns.name, persistent: true });
  });
  afterAll(async () => {
    await nft?.close();
    ns?.destroy();
  });

  test(`a ${ELEMENTS}-element batch, far over the send buffer, is one transaction; its dump, far over one receive, comes back whole`, async () => {
    await nft.transaction()
      .add({ kind: 'table', family: 'inet', name: 'big' })
      .add({ kind: 'set', family: 'inet', table: 'big', name: 'addrs', key: ['ipv4_addr'] })
      .commit();
    const tx = nft.transaction().add({
      kind: 'elements', family: 'inet', table: 'big', set: 'addrs',
      elements: Array.from({ length: ELEMENTS }, (_, i) => ({ key: [bench(i)] })),
    });
    // The encoded batch against the namespace's default buffers (what a socket gets unless it grows them).
    const bytes = await binding().nftEncode(tx.encode());
    const wmem = Number(ns.exec('sysctl', ['-n', 'net.core.wmem_default']));
    const rmem = Number(ns.exec('sysctl', ['-n', 'net.core.rmem_default']));
    expect(bytes.length).toBeGreaterThan(8 * wmem);
    // One acknowledgement for the whole batch: only the last message before END asks for one (NLM_F_ACK).
    const acked: number[] = [];
    let messages = 0;
    for (let at = 0; at < bytes.length; messages++) {
      if (bytes.readUInt16LE(at + 6) & 0x4) acked.push(messages);
      at += (bytes.readUInt32LE(at) + 3) & ~3;
    }
    expect(messages).toBeGreaterThan(10);
    expect(acked).toEqual([messages - 2]);
    const before = await nft.genid();
    const r = await tx.commit({ genid: before });
    expect(r.genid, 'one logical change, one transaction: the generation moved by exactly one').toBe(before + 1);
    expect(nftCount(ns, 'inet', 'big', 'addrs')).toBe(ELEMENTS);

    const listing = await nft.list({ table: 'big' });
    expect(elementsIn(listing.objects, 'addrs')).toBe(ELEMENTS);
    expect(listing.genid).toBe(before + 1);
    console.log(`batch ${bytes.length} bytes (wmem_default ${wmem}), ${r.messages} messages, one generation; ` +
      `dump of ${ELEMENTS} elements (rmem_default ${rmem}) listed whole`);

    // Deleting them all is one batch too, and leaves nothing.
    const del = nft.transaction().delete({
      kind: 'elements', family: 'inet', table: 'big', set: 'addrs',
      elements: Array.from({ length: ELEMENTS }, (_, i) => ({ key: [bench(i)] })),
    });
    expect((await del.commit({ genid: before + 1 })).genid).toBe(before + 2);
    expect(nftCount(ns, 'inet', 'big', 'addrs')).toBe(0);
  });

  test('hash sets listed while the kernel resizes them come back with every element once', async () => {
    // 20 sets of 10 000 addresses, grown again right after being shrunk to 2: the kernel resizes each set's
    // table in a worker after the commit, under the listing that follows at once (docs/netlink.md, "Dumps of a
    // hash set that is being resized"). Without the check for repeated elements, each round after the first
    // listed some elements twice and left as many out. The oracle is what was added (nft has no such check).
    const SETS = 20, N = 10_000, ROUNDS = 4;
    const table = 'resize';
    const elements = (set: number, from: number) => ({
      kind: 'elements' as const, family: 'inet' as const, table, set: `s${set}`,
      elements: Array.from({ length: N - from }, (_, i) => ({ key: [bench(from + i)] })),
    });
    const create = nft.transaction().add({ kind: 'table', family: 'inet', name: table });
    for (let k = 0; k < SETS; k++) create.add({ kind: 'set', family: 'inet', table, name: `s${k}`, key: ['ipv4_addr'] });
    await create.commit();
    const expected = new Set(Array.from({ length: N }, (_, i) => bench(i)));
    const wrong: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const grow = nft.transaction();
      for (let k = 0; k < SETS; k++) grow.add(elements(k, 0));
      await grow.commit();
      const listing = await nft.list({ table });
      for (let k = 0; k < SETS; k++) {
        const keys = listing.objects.flatMap((o) => (o.kind === 'elements' && o.set === `s${k}` ? o.elements.map((e) => String(e.key[0])) : []));
        const distinct = new Set(keys);
        const stray = [...distinct].filter((key) => !expected.has(key)).length;
        if (keys.length !== N || distinct.size !== N || stray) wrong.push(`round ${round} s${k}: ${keys.length} listed, ${distinct.size} distinct, ${stray} not added`);
      }
      const shrink = nft.transaction();
      for (let k = 0; k < SETS; k++) shrink.delete(elements(k, 2));
      await shrink.commit();
    }
    expect(wrong).toEqual([]);
    await nft.transaction().delete({ kind: 'table', family: 'inet', name: table }).commit();
  });

  test('a handle syncs a state with thousands of rule elements in one batch and adopts it back', async () => {
    // One group with 8 000 rules, each from its own /32 of 198.18.0.0/15: a rule profile of 8 000 elements (each
    // insert into a concatenated interval set costs the kernel ~1 ms at this size; 40 000 rules took 35 s).
    const RULES = 8_000;
    const rules = Array.from({ length: RULES }, (_, i) => ({
      id: `r${i}`, direction: 'ingress' as const, ethertype: 'IPv4' as const, protocol: 'tcp', port_range_min: 443, port_range_max: 443,
      remote_ip_prefix: `${bench(i)}/32`,
    }));
    const state = { networks: [network('routed')], security_groups: [{ id: 'sg-big', stateful: true, security_group_rules: rules }], ports: [port(1, ['sg-big']), port(2, ['sg-big'])] };
    const pw = Portwall.open({ netns: ns.name, conntrack: null, profileGc: false });
    try {
      const genid = await nft.genid();
      const r = await pw.apply(state);
      expect(r.changed).toBe(true);
      expect(r.elements.added).toBeGreaterThanOrEqual(RULES);
      expect(r.genid, 'the whole sync is one transaction').toBe(genid + 1);
      const status = await pw.status();
      const text = ns.exec('nft', ['list', 'ruleset'], { timeoutMs: 120_000 });
      // Every /32 is in the kernel: 198.18.x.y appears once per rule (the oracle is nft's own listing).
      const seen = new Set(text.match(/198\.1[89]\.\d+\.\d+/g));
      expect(seen.size).toBe(RULES);
      expect(status.counts.elements).toBeGreaterThanOrEqual(RULES);
      // A new handle adopting it lists it whole and finds nothing to change.
      const fresh = Portwall.open({ netns: ns.name, conntrack: null, profileGc: false });
      try {
        expect((await fresh.plan(state)).operations).toEqual([]);
      } finally {
        await fresh.close();
      }
      console.log(`handle: ${RULES} rules → ${r.elements.added} elements added in one batch (${r.operations} operations, ` +
        `compile ${r.timings.compile.toFixed(0)} ms, commit ${r.timings.commit.toFixed(0)} ms); listed back ${status.counts.elements} elements`);
    } finally {
      await pw.close();
    }
  }, 300_000);

  test('a handle syncs 10 000 ports (~130 000 elements) as one transaction, and a new handle lists it back whole', async () => {
    const PORTS = 10_000;
    const web = { id: 'sg-web', stateful: true, security_group_rules: [
      { id: 'http', direction: 'ingress' as const, ethertype: 'IPv4' as const, protocol: 'tcp', port_range_min: 80, port_range_max: 80 },
      { id: 'out', direction: 'egress' as const, ethertype: 'IPv4' as const },
    ] };
    const state = { networks: [network('routed', 'net-p', 201)], security_groups: [web], ports: Array.from({ length: PORTS }, (_, i) => port(i, ['sg-web'], { id: `big-${i}` }, 'net-p')) };
    const pw = Portwall.open({ netns: ns.name, conntrack: null, profileGc: false });
    try {
      const genid = await nft.genid();
      const r = await pw.apply(state);
      expect(r.genid, 'the whole sync is one transaction').toBe(genid + 1);
      const status = await pw.status();
      // nft merges an interval's two elements into one range: compare the sets without intervals, set by set.
      type JsonSet = { family: string; table: string; name: string; flags?: string[]; elem?: unknown[] };
      const oracle = JSON.parse(ns.exec('nft', ['-j', 'list', 'ruleset'], { timeoutMs: 120_000 })) as { nftables: { set?: JsonSet }[] };
      // The adopt record an earlier handle left as it closed is bookkeeping that listings leave out.
      const plain = oracle.nftables.flatMap((o) => (o.set && !o.set.flags?.includes('interval') && o.set.table.startsWith('portwall') && o.set.name !== 'adopt_record' ? [o.set] : []));
      const kernelElements = plain.reduce((n, set) => n + (set.elem?.length ?? 0), 0);
      const listed = plain.reduce((n, set) => n + status.objects.reduce((m, o) =>
        m + (o.kind === 'elements' && o.family === set.family && o.table === set.table && o.set === set.name ? o.elements.length : 0), 0), 0);
      expect(listed).toBe(kernelElements);
      expect(kernelElements).toBeGreaterThan(8 * PORTS);
      const fresh = Portwall.open({ netns: ns.name, conntrack: null, profileGc: false });
      try {
        expect((await fresh.plan(state)).operations).toEqual([]);
      } finally {
        await fresh.close();
      }
      console.log(`handle: ${PORTS} ports → ${r.elements.added} elements added in one batch (${r.operations} operations, ` +
        `compile ${r.timings.compile.toFixed(0)} ms, commit ${r.timings.commit.toFixed(0)} ms); ${kernelElements} elements in hash sets by nft and by the handle's listing, ${status.counts.elements} in all`);
    } finally {
      await pw.close();
    }
  }, 300_000);
});
