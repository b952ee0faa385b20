/**
 * Disjoint boxes for concatenated interval sets. The kernel's pipapo sets refuse (some) overlapping elements,
 * yet security-group rules overlap all the time (`tcp 80 from anywhere` and `tcp 1-65535 from 198.51.100.0/24`
 * on one port). Every rule ends in the same verdict, so only the union matters: boxes are placed largest
 * first and each later box keeps only the parts no earlier box covers. Each piece keeps the label (the SG
 * rule id) of the box it came from, so `nft list` still says which rule admitted a packet.
 */

/** An inclusive integer interval of one key field. */
export interface Iv {
  lo: bigint;
  hi: bigint;
}

/** A key: one interval per field (single values have lo === hi), with a label. */
export interface Box<T> {
  dims: Iv[];
  label: T;
  /** The first field's value as text, when the caller has it (grouping by it is cheaper than by the number). */
  group?: string;
}

const volume = (b: Box<unknown>): bigint => b.dims.reduce((v, d) => v * (d.hi - d.lo + 1n), 1n);

function intersects(a: Iv[], b: Iv[]): boolean {
  return a.every((d, i) => d.lo <= b[i]!.hi && b[i]!.lo <= d.hi);
}

/** a minus b, as at most 2·dims disjoint boxes. */
function subtract(a: Iv[], b: Iv[]): Iv[][] {
  if (!intersects(a, b)) return [a];
  const out: Iv[][] = [];
  const cur = a.map((d) => ({ ...d }));
  for (let i = 0; i < cur.length; i++) {
    const d = cur[i]!;
    const e = b[i]!;
    if (d.lo < e.lo) {
      out.push(cur.map((x, j) => (j === i ? { lo: x.lo, hi: e.lo - 1n } : { ...x })));
      d.lo = e.lo;
    }
    if (d.hi > e.hi) {
      out.push(cur.map((x, j) => (j === i ? { lo: e.hi + 1n, hi: x.hi } : { ...x })));
      d.hi = e.hi;
    }
  }
  return out; // what is left in `cur` is the intersection, covered by b
}

/**
 * The union of `boxes` as disjoint boxes. Boxes whose first field differs never meet (it is the port key), so
 * they are handled in groups. `order` breaks ties between equal volumes (deterministic output).
 */
export function disjoint<T>(boxes: Box<T>[], order: (a: T, b: T) => number): Box<T>[] {
  // String keys: V8 hashes wide BigInt keys so poorly that a Map of 2000 interface names takes half a second.
  const groups = new Map<string, Box<T>[]>();
  for (const b of boxes) {
    const k = b.group ?? b.dims[0]!.lo.toString(36);
    const g = groups.get(k);
    if (g) g.push(b);
    else groups.set(k, [b]);
  }
  const out: Box<T>[] = [];
  for (const group of groups.values()) {
    if (group.length === 1) {
      out.push(group[0]!);
      continue;
    }
    const sorted = group
      .map((b) => ({ b, v: volume(b) }))
      .sort((x, y) => (x.v > y.v ? -1 : x.v < y.v ? 1 : order(x.b.label, y.b.label) || compareDims(x.b.dims, y.b.dims)));
    // The pieces placed so far cover exactly the boxes placed so far: subtracting those is enough (and fewer).
    const placed: Iv[][] = [];
    for (const { b } of sorted) {
      let pieces: Iv[][] = [b.dims];
      for (const p of placed) {
        pieces = pieces.flatMap((piece) => subtract(piece, p));
        if (pieces.length === 0) break;
      }
      if (pieces.length > 0) placed.push(b.dims);
      for (const piece of pieces) out.push({ dims: piece, label: b.label });
    }
  }
  return out;
}

function compareDims(a: Iv[], b: Iv[]): number {
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.lo !== y.lo) return x.lo < y.lo ? -1 : 1;
    if (x.hi !== y.hi) return x.hi < y.hi ? -1 : 1;
  }
  return 0;
}
