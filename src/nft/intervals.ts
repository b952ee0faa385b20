/**
 * Intervals of non-concatenated interval sets (the kernel's rbtree backend).
 *
 * The rbtree stores an interval [a, b] as two elements: key a, and key b+1 flagged NFT_SET_ELEM_INTERVAL_END.
 * When b is the largest key there is no b+1; like `nft`, portwall then sends no end element and marks the start
 * "open" in its userdata. Dumps list these elements in descending key order, possibly with an orphan end
 * element at 0 that `nft` adds; merging sorts and pairs them back. (Concatenated interval sets — pipapo —
 * carry key and inclusive keyEnd in one element and need none of this.)
 */
import { NFT_SET_ELEM_INTERVAL_END } from './constants.js';
import type { RawElement } from './wire-records.js';

/** key + 1 as a big-endian number, or undefined when key is all ones (the maximum). */
export function increment(key: Uint8Array): Uint8Array | undefined {
  const out = new Uint8Array(key);
  for (let i = out.length - 1; i >= 0; i--) {
    if (out[i] !== 0xff) {
      out[i] = out[i]! + 1;
      return out;
    }
    out[i] = 0;
  }
  return undefined;
}

/** key − 1 as a big-endian number (key is never zero here: an end element never sits at 0 after a start). */
function decrement(key: Uint8Array): Uint8Array {
  const out = new Uint8Array(key);
  for (let i = out.length - 1; i >= 0; i--) {
    if (out[i] !== 0) {
      out[i] = out[i]! - 1;
      return out;
    }
    out[i] = 0xff;
  }
  return out;
}

/** The largest key of a given length. */
function maxKey(len: number): Uint8Array {
  return new Uint8Array(len).fill(0xff);
}

function compareKeys(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

const isEnd = (e: RawElement): boolean => ((e.flags ?? 0) & NFT_SET_ELEM_INTERVAL_END) !== 0;

/** One interval rebuilt from rbtree elements: the start element and the inclusive last key. */
export interface MergedInterval {
  start: RawElement;
  last: Uint8Array;
}

/**
 * Pairs rbtree elements (any order) into intervals: each start with the end element that follows it in key
 * order; a start without one runs to the maximum key. End elements that close nothing are dropped.
 */
export function mergeIntervals(elements: RawElement[]): MergedInterval[] {
  // At equal keys an end sorts before a start: [1,5] and [6,9] give 1, 6(end), 6, 10(end).
  const sorted = elements
    .filter((e) => e.key !== undefined)
    .sort((a, b) => compareKeys(a.key!, b.key!) || (isEnd(a) ? 0 : 1) - (isEnd(b) ? 0 : 1));
  const out: MergedInterval[] = [];
  for (let i = 0; i < sorted.length; i++) {
    const e = sorted[i]!;
    if (isEnd(e)) continue;
    const next = sorted[i + 1];
    if (next && isEnd(next)) {
      out.push({ start: e, last: decrement(next.key!) });
      i++;
    } else {
      out.push({ start: e, last: maxKey(e.key!.length) });
    }
  }
  return out;
}
