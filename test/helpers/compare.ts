/**
 * Comparing what was committed with what a dump returns, and with `nft -j list ruleset` (an independent
 * oracle). Kernel-assigned fields (handles, counter values) are dropped; order is made canonical.
 */
import type { NftObject } from '../../src/nft/types.js';

const RANK = { table: 0, chain: 1, set: 2, elements: 3, rule: 4 } as const;

export const json = (v: unknown): string =>
  JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? `${x}n` : x instanceof Uint8Array ? Buffer.from(x).toString('hex') : x));

const objectKey = (o: NftObject): string =>
  `${RANK[o.kind]}|${o.family}|${'table' in o ? o.table : ''}|${'name' in o ? o.name : ''}|${o.kind === 'elements' ? o.set : ''}|${o.kind === 'rule' ? o.chain : ''}`;

/** Objects without handles and counter values, base chains with the kernel's default policy, sorted. */
export function comparable(objects: readonly NftObject[]): unknown[] {
  const withIndex = objects.map((o, i) => ({ o, i }));
  // Stable: rules keep their order within a chain.
  withIndex.sort((a, b) => (objectKey(a.o) < objectKey(b.o) ? -1 : objectKey(a.o) > objectKey(b.o) ? 1 : a.i - b.i));
  return withIndex.map(({ o }) => {
    const { handle: _h, ...rest } = o as NftObject & { handle?: bigint };
    if (rest.kind === 'elements') {
      const elements = rest.elements.map(({ counter: _c, ...e }) => e).sort((a, b) => (json(a) < json(b) ? -1 : 1));
      return { ...rest, elements };
    }
    if (rest.kind === 'chain' && rest.hook !== undefined) return { policy: 'accept', ...rest };
    if (rest.kind === 'rule') {
      const { position: _p, ...r } = rest;
      return { ...r, exprs: r.exprs.map((e) => (e.type === 'counter' ? { type: 'counter' } : e)) };
    }
    return rest;
  });
}

type NftJson = { nftables: Record<string, Record<string, unknown>>[] };

/** What `nft -j` says exists, reduced to facts the listing must agree with. */
export function nftFacts(doc: NftJson): string[] {
  const facts: string[] = [];
  for (const entry of doc.nftables) {
    const [kind, v] = Object.entries(entry)[0]!;
    if (kind === 'table') facts.push(`table ${v.family} ${v.name}`);
    if (kind === 'chain') facts.push(`chain ${v.family} ${v.table} ${v.name} hook=${v.hook ?? '-'} prio=${v.prio ?? '-'} policy=${v.policy ?? '-'} type=${v.type ?? '-'}`);
    if (kind === 'set' || kind === 'map') {
      const type = Array.isArray(v.type) ? (v.type as string[]).join(' . ') : v.type;
      const elems = Array.isArray(v.elem) ? v.elem.length : 0;
      facts.push(`set ${v.family} ${v.table} ${v.name} type=${type} map=${v.map ?? '-'} elements=${elems}`);
    }
    if (kind === 'rule') facts.push(`rule ${v.family} ${v.table} ${v.chain} handle=${v.handle} comment=${v.comment ?? '-'}`);
  }
  return facts.sort();
}

/** The same facts computed from portwall's own listing. */
export function listingFacts(objects: readonly NftObject[]): string[] {
  const facts: string[] = [];
  const elementCount = new Map<string, number>();
  for (const o of objects) if (o.kind === 'elements') elementCount.set(`${o.family} ${o.table} ${o.set}`, o.elements.length);
  for (const o of objects) {
    if (o.kind === 'table') facts.push(`table ${o.family} ${o.name}`);
    if (o.kind === 'chain') {
      const base = o.hook !== undefined;
      facts.push(`chain ${o.family} ${o.table} ${o.name} hook=${o.hook ?? '-'} prio=${base ? o.priority : '-'} policy=${base ? o.policy ?? 'accept' : '-'} type=${o.type ?? '-'}`);
    }
    if (o.kind === 'set') {
      const map = o.data === undefined ? '-' : o.data === 'verdict' ? 'verdict' : o.data;
      facts.push(`set ${o.family} ${o.table} ${o.name} type=${o.key.join(' . ')} map=${map} elements=${elementCount.get(`${o.family} ${o.table} ${o.name}`) ?? 0}`);
    }
    if (o.kind === 'rule') facts.push(`rule ${o.family} ${o.table} ${o.chain} handle=${o.handle} comment=${o.comment ?? '-'}`);
  }
  return facts.sort();
}
