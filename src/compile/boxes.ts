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
    // Only the placed boxes that meet this one can cut it, so only those are looked at, in placement order.
    const placed: boolean[] = [];
    const near = new Overlaps(sorted.map((x) => x.b.dims));
    sorted.forEach(({ b }, i) => {
      let pieces: Iv[][] = [b.dims];
      for (const j of near.before(i)) {
        if (!placed[j]) continue;
        pieces = pieces.flatMap((piece) => subtract(piece, sorted[j]!.b.dims));
        if (pieces.length === 0) break;
      }
      placed[i] = pieces.length > 0;
      for (const piece of pieces) out.push({ dims: piece, label: b.label });
    });
  }
  return out;
}

/**
 * Which boxes of a list may meet a given one: their intervals in one field (the field with the most distinct
 * starts) sorted by start, under a tree of the largest end per range. A box meets only boxes whose interval
 * in that field meets its own, so a rule set of 100 000 rules that barely overlap costs n log n lookups, not
 * n² intersection tests (which held a 100 000-rule group for hours).
 */
class Overlaps {
  readonly #field: number;
  /** Box indices by the start of their interval in the field. */
  readonly #order: number[];
  readonly #starts: bigint[];
  /** Largest end under each node of an implicit binary tree over #order (node 1 covers everything). */
  readonly #maxEnd: bigint[];
  readonly #size: number;

  constructor(readonly boxes: readonly Iv[][]) {
    const width = boxes[0]?.length ?? 0;
    let best = 0;
    let field = 0;
    for (let f = 0; f < width; f++) {
      const distinct = new Set(boxes.map((b) => b[f]!.lo.toString(36))).size;
      if (distinct > best) [best, field] = [distinct, f];
    }
    this.#field = field;
    this.#order = boxes.map((_, i) => i).sort((a, b) => (boxes[a]![field]!.lo < boxes[b]![field]!.lo ? -1 : boxes[a]![field]!.lo > boxes[b]![field]!.lo ? 1 : a - b));
    this.#starts = this.#order.map((i) => boxes[i]![field]!.lo);
    let size = 1;
    while (size < boxes.length) size *= 2;
    this.#size = size;
    this.#maxEnd = new Array<bigint>(2 * size).fill(-1n);
    this.#order.forEach((i, k) => (this.#maxEnd[size + k] = boxes[i]![field]!.hi));
    for (let n = size - 1; n >= 1; n--) this.#maxEnd[n] = max(this.#maxEnd[2 * n]!, this.#maxEnd[2 * n + 1]!);
  }

  /** The indices below `i` of the boxes whose interval in the field meets box i's, ascending. */
  before(i: number): number[] {
    const { lo, hi } = this.boxes[i]![this.#field]!;
    // Boxes starting after hi cannot meet it: only positions before the first such one are searched.
    let a = 0;
    let b = this.#starts.length;
    while (a < b) {
      const m = (a + b) >> 1;
      if (this.#starts[m]! <= hi) a = m + 1;
      else b = m;
    }
    const out: number[] = [];
    const visit = (node: number, from: number, to: number): void => {
      if (from >= a || this.#maxEnd[node]! < lo) return;
      if (to - from === 1) {
        const j = this.#order[from]!;
        if (j < i) out.push(j);
        return;
      }
      const mid = (from + to) >> 1;
      visit(2 * node, from, mid);
      visit(2 * node + 1, mid, to);
    };
    visit(1, 0, this.#size);
    return out.sort((x, y) => x - y);
  }
}

const max = (a: bigint, b: bigint): bigint => (a > b ? a : b);

function compareDims(a: Iv[], b: Iv[]): number {
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.lo !== y.lo) return x.lo < y.lo ? -1 : 1;
    if (x.hi !== y.hi) return x.hi < y.hi ? -1 : 1;
  }
  return 0;
}
