/**
 * Set contents as the union of claims, so a change recomputes only the objects it touches.
 *
 * Every element of portwall's changing sets comes from one *unit* — a port, a rule profile, or the handful of
 * address-pair prefixes (docs/dataplane.md, "Incremental updates") — and a unit states its elements as claims.
 * Replacing a unit's claims yields exactly the element adds and deletes that change makes; nothing else is
 * looked at. A claim sits on a *slot*: usually its element's own identity, but a slot may also stand for a
 * question several units answer differently — "which port owns address X" — and then the claim with the lowest
 * rank wins and only the winner's elements are in the sets (the same tie-break the full layout uses).
 */
import type { Element } from '../nft/types.js';

/** One element of one set (`setId` is `family:set`, e.g. `inet:ports_dev`). */
export interface ClaimItem {
  setId: string;
  element: Element;
  /** {@link elementKey} of the element, when the claim's maker computed it already. */
  key?: string;
}

/** A unit's statement about one slot. */
export interface Claim {
  slot: string;
  /** Lower wins; ties go to the lower unit id. */
  rank: string;
  items: ClaimItem[];
}

/** The identity of an element in its set (values are canonical after validation and decoding). */
export function elementKey(e: Element): string {
  return JSON.stringify(e.key);
}

/** Whether two elements of one key are the same element (data, verdict and comment included). */
export function sameElement(a: Element, b: Element): boolean {
  return a.comment === b.comment && a.data === b.data && JSON.stringify(a.verdict) === JSON.stringify(b.verdict);
}

/** A plain claim: the element is its own slot. */
export function own(setId: string, element: Element): Claim {
  const key = elementKey(element);
  return { slot: `${setId}\0${key}`, rank: '', items: [{ setId, element, key }] };
}

/** What changed in one set since the last {@link ClaimStore.takeDelta}. */
export interface SetDelta {
  added: Element[];
  removed: Element[];
}

interface Entry {
  unit: string;
  claim: Claim;
}

/** The claims of every unit and the set contents they add up to. */
export class ClaimStore {
  readonly #units = new Map<string, Claim[]>();
  readonly #slots = new Map<string, Entry[]>();
  readonly #winners = new Map<string, Entry>();
  readonly #sets = new Map<string, Map<string, Element>>();
  /** Per set and key: the element before the pending changes (null: absent). */
  #before = new Map<string, Map<string, Element | null>>();
  /** Whether changes are recorded for {@link takeDelta} (off while a store is first filled). */
  #tracking = true;

  /**
   * Stops recording changes until {@link takeDelta}: for filling a store whose first delta nobody reads (a
   * fresh engine's first batch comes from a full diff), which saves a copy of every element.
   */
  untracked(): void {
    this.#tracking = false;
    this.#before = new Map();
  }

  /** Replaces the claims of `unit` (an empty list removes the unit). */
  set(unit: string, given: readonly Claim[]): void {
    // One claim per slot and unit (a port may state one element twice, e.g. a MAC shared by two pairs).
    const seen = new Set<string>();
    const claims = given.filter((c) => !seen.has(c.slot) && seen.add(c.slot));
    const old = this.#units.get(unit) ?? [];
    if (old.length === 0 && claims.length === 0) return;
    const touched = new Set<string>();
    for (const c of old) {
      touched.add(c.slot);
      const list = this.#slots.get(c.slot)!;
      const i = list.findIndex((e) => e.unit === unit);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this.#slots.delete(c.slot);
    }
    for (const c of claims) {
      touched.add(c.slot);
      const list = this.#slots.get(c.slot);
      if (!list) this.#slots.set(c.slot, [{ unit, claim: c }]);
      else if (!list.some((e) => e.unit === unit)) list.push({ unit, claim: c });
    }
    if (claims.length) this.#units.set(unit, claims);
    else this.#units.delete(unit);
    for (const slot of touched) this.#settle(slot);
  }

  /** The claims a unit holds now. */
  claims(unit: string): readonly Claim[] {
    return this.#units.get(unit) ?? [];
  }

  /** The elements a set holds now (keyed by {@link elementKey}). */
  elements(setId: string): ReadonlyMap<string, Element> {
    return this.#sets.get(setId) ?? new Map();
  }

  /** Sets that hold elements. */
  setIds(): string[] {
    return [...this.#sets.keys()].filter((s) => this.#sets.get(s)!.size > 0);
  }

  /** The element changes since the last call, per set (an element changed in place is removed and added). */
  takeDelta(): Map<string, SetDelta> {
    const out = new Map<string, SetDelta>();
    for (const [setId, keys] of this.#before) {
      const now = this.#sets.get(setId);
      const d: SetDelta = { added: [], removed: [] };
      for (const [key, was] of keys) {
        const is = now?.get(key) ?? null;
        if (was && is && sameElement(was, is)) continue;
        if (was) d.removed.push(was);
        if (is) d.added.push(is);
      }
      if (d.added.length || d.removed.length) out.set(setId, d);
    }
    this.#before = new Map();
    this.#tracking = true;
    return out;
  }

  /** The content of a set before the pending (not yet taken) changes. */
  elementsBefore(setId: string): Element[] {
    const now = this.#sets.get(setId) ?? new Map<string, Element>();
    const before = this.#before.get(setId);
    if (!before) return [...now.values()];
    const out = new Map(now);
    for (const [key, was] of before) {
      if (was) out.set(key, was);
      else out.delete(key);
    }
    return [...out.values()];
  }

  #settle(slot: string): void {
    const list = this.#slots.get(slot);
    let best: Entry | undefined;
    for (const e of list ?? []) {
      if (!best || e.claim.rank < best.claim.rank || (e.claim.rank === best.claim.rank && e.unit < best.unit)) best = e;
    }
    const was = this.#winners.get(slot);
    if (was === best || (was && best && sameItems(was.claim.items, best.claim.items))) {
      if (best) this.#winners.set(slot, best);
      return;
    }
    if (was) for (const it of was.claim.items) this.#put(it.setId, it.key ?? elementKey(it.element), null);
    if (best) {
      this.#winners.set(slot, best);
      for (const it of best.claim.items) this.#put(it.setId, it.key ?? elementKey(it.element), it.element);
    } else this.#winners.delete(slot);
  }

  #put(setId: string, key: string, element: Element | null): void {
    let set = this.#sets.get(setId);
    if (!set) this.#sets.set(setId, (set = new Map()));
    if (this.#tracking) {
      let before = this.#before.get(setId);
      if (!before) this.#before.set(setId, (before = new Map()));
      if (!before.has(key)) before.set(key, set.get(key) ?? null);
    }
    if (element) set.set(key, element);
    else set.delete(key);
  }
}

function sameItems(a: readonly ClaimItem[], b: readonly ClaimItem[]): boolean {
  return a.length === b.length && a.every((x, i) => x.setId === b[i]!.setId && (x.key ?? elementKey(x.element)) === (b[i]!.key ?? elementKey(b[i]!.element)) && sameElement(x.element, b[i]!.element));
}
