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

/**
 * A unit's statement about a slot that stands for a question several units may answer differently ("which
 * port owns address X"): the claim with the lowest rank wins, and only the winner's items are in the sets.
 */
export interface SlotClaim {
  slot: string;
  /** Lower wins; ties go to the lower unit id. */
  rank: string;
  items: ClaimItem[];
  /** The unit holding it, written by {@link ClaimStore} (a claim is its own holder). */
  unit?: string;
}

/** A plain claim ({@link own}): the element is its own slot, identified by its set and key. */
export interface OwnClaim extends ClaimItem {
  key: string;
  /** The unit holding it, written by {@link ClaimStore} (a claim is its own holder). */
  unit?: string;
}

/** A unit's statement about one slot. */
export type Claim = SlotClaim | OwnClaim;

/**
 * The identity of an element in its set (values are canonical after validation and decoding, and every key
 * of one set has the same fields and types, so one field is its own identity).
 */
export function elementKey(e: Element): string {
  return e.key.length === 1 ? String(e.key[0]) : e.key.join('\0');
}

/** Whether two elements of one key are the same element (data, verdict and comment included). */
export function sameElement(a: Element, b: Element): boolean {
  return a.comment === b.comment && a.data === b.data && (a.verdict === b.verdict || JSON.stringify(a.verdict) === JSON.stringify(b.verdict));
}

/** A plain claim: the element is its own slot. */
export function own(setId: string, element: Element): OwnClaim {
  return { setId, element, key: elementKey(element), unit: undefined };
}

const isOwn = (c: Claim): c is OwnClaim => (c as SlotClaim).slot === undefined;
const itemsOf = (c: Claim): readonly ClaimItem[] => (isOwn(c) ? [c] : c.items);

/** What changed in one set since the last {@link ClaimStore.takeDelta}. */
export interface SetDelta {
  /** Absent when none (a set a change touches mostly gains or loses one or two elements, not both). */
  added?: Element[];
  removed?: Element[];
}

/**
 * One unit's hold on a slot: the claim itself, with its `unit` written (a store holds ~100k claims, so no
 * separate holder object).
 */
type Holder = Claim & { unit: string };

/** A slot's holders: nearly always one, so an array only when several units claim it. */
type Holders = Holder | Holder[];

/**
 * `c` as held by `unit`: the claim itself with its unit written, or a copy when another unit holds (or held)
 * that very object.
 */
function heldBy(c: Claim, unit: string): Holder {
  if (c.unit !== undefined && c.unit !== unit) return { ...c, unit };
  c.unit = unit;
  return c as Holder;
}

/**
 * Adds a unit's claim to a slot's holders and returns them; undefined (nothing added) when the unit holds the
 * slot already — one claim per slot and unit (a port may state one element twice, e.g. a MAC shared by two pairs).
 */
function hold(slots: Map<string, Holders>, id: string, mine: Holder): Holders | undefined {
  const h = slots.get(id);
  if (h === undefined) {
    slots.set(id, mine);
    return mine;
  }
  if (Array.isArray(h) ? h.some((e) => e.unit === mine.unit) : h.unit === mine.unit) return undefined;
  if (Array.isArray(h)) h.push(mine);
  else slots.set(id, [h, mine]);
  return slots.get(id);
}

/** The outer key of slot claims in {@link ClaimStore}'s slot index (no set id is empty). */
const SLOT_CLAIMS = '';

function winner(h: Holders | undefined): Holder | undefined {
  if (h === undefined || !Array.isArray(h)) return h;
  let best: Holder | undefined;
  for (const e of h) {
    if (!best) best = e;
    else {
      const r = rankOf(e);
      const b = rankOf(best);
      if (r < b || (r === b && e.unit < best.unit)) best = e;
    }
  }
  return best;
}

const rankOf = (c: Claim): string => (isOwn(c) ? '' : c.rank);

/** The element of a plain claims' slot: its winner's (null: nobody holds it). A lone holder needs no winner. */
const ownElement = (h: Holders | undefined): Element | null =>
  ((Array.isArray(h) ? winner(h) : h) as OwnClaim | undefined)?.element ?? null;

/**
 * The claims of every unit and the set contents they add up to. Kept compact (a host's ports make 100k+
 * claims): a plain claim is its element with set and key, its slot is found by set and key rather than by a
 * composed string, a slot most units do not share holds its one holder without a list, a claim is its own
 * holder, and a set's plain claims are its elements (only slot claims' items have a map of their own).
 */
export class ClaimStore {
  readonly #units = new Map<string, Claim[]>();
  /**
   * Set id (plain claims) or {@link SLOT_CLAIMS} → key or slot → holders. A set's plain claims are its
   * elements: the winner of each key's holders (no second map of them).
   */
  readonly #slots = new Map<string, Map<string, Holders>>();
  /** Per set, the elements slot claims put there (their winners' items). */
  readonly #items = new Map<string, Map<string, Element>>();
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
    const all = this.#units.get(unit) ?? [];
    if (all.length === 0 && given.length === 0) return;
    if (all.length === 0) return this.#fill(unit, given);
    // The claims a change leaves as they were — the common head of the two lists, compared in order (a port
    // states its member-set claims last: a member leaving changes only those) — stay held as they are. Only
    // the head: the first of a unit's claims on one slot is the one that counts, as without this shortcut.
    const max = Math.min(all.length, given.length);
    let head = 0;
    while (head < max && sameClaim(all[head]!, given[head]!)) head++;
    if (head === all.length && head === given.length) return;
    const old = all.slice(head);
    const fresh = given.slice(head);
    // Each touched slot with its winner before the change.
    const touched = new Map<string, { slots: Map<string, Holders>; id: string; was: Holder | undefined }>();
    const touch = (c: Claim): { slots: Map<string, Holders>; id: string } => {
      const at = isOwn(c) ? `${c.setId}\0${c.key}` : `${SLOT_CLAIMS}\0${c.slot}`;
      let t = touched.get(at);
      if (!t) {
        const { slots, id } = this.#slotOf(c);
        touched.set(at, (t = { slots, id, was: winner(slots.get(id)) }));
      }
      return t;
    };
    for (const c of old) {
      const { slots, id } = touch(c);
      const h = slots.get(id);
      if (!Array.isArray(h)) slots.delete(id);
      else {
        const rest = h.filter((e) => e.unit !== unit);
        slots.set(id, rest.length === 1 ? rest[0]! : rest);
      }
    }
    const claims: Claim[] = all.slice(0, head);
    for (const c of fresh) {
      const { slots, id } = touch(c);
      const mine = heldBy(c, unit);
      if (hold(slots, id, mine)) claims.push(mine);
    }
    if (claims.length) this.#units.set(unit, claims.slice());
    else this.#units.delete(unit);
    for (const t of touched.values()) this.#settle(t.was, winner(t.slots.get(t.id)));
  }

  /**
   * {@link set} of a unit that holds nothing yet (a fresh fill, a new port): claims only arrive, so each slot's
   * winner can be settled as its claim is placed — the unit places one claim per slot, so no later claim of
   * this call changes that slot again — without the bookkeeping of a replacement.
   */
  #fill(unit: string, given: readonly Claim[]): void {
    const claims: Claim[] = [];
    for (const c of given) {
      const { slots, id } = this.#slotOf(c);
      const was = winner(slots.get(id));
      const mine = heldBy(c, unit);
      const now = hold(slots, id, mine);
      if (!now) continue;
      claims.push(mine);
      this.#settle(was, winner(now));
    }
    // Kept as an exact copy: push() leaves room for ~16 more, and a host has ~10k units.
    if (claims.length) this.#units.set(unit, claims.slice());
  }

  /** Where a claim sits: its element's own key in its set's map, or its slot among the slot claims. */
  #slotOf(c: Claim): { slots: Map<string, Holders>; id: string } {
    const outer = isOwn(c) ? c.setId : SLOT_CLAIMS;
    let slots = this.#slots.get(outer);
    if (!slots) this.#slots.set(outer, (slots = new Map()));
    return { slots, id: isOwn(c) ? c.key : c.slot };
  }

  /** The claims a unit holds now. */
  claims(unit: string): readonly Claim[] {
    return this.#units.get(unit) ?? [];
  }

  /** The elements a set holds now (keyed by {@link elementKey}). */
  elements(setId: string): ReadonlyMap<string, Element> {
    const own = this.#ownSlots(setId);
    const items = this.#items.get(setId);
    if (!own?.size) return items ?? new Map();
    const out = new Map<string, Element>();
    for (const [key, h] of own) out.set(key, ownElement(h)!);
    if (items) for (const [key, e] of items) out.set(key, e);
    return out;
  }

  /** The elements a set holds now, as a list ({@link elements} without a map of them). */
  elementList(setId: string): Element[] {
    const own = this.#ownSlots(setId);
    const items = this.#items.get(setId);
    if (!own?.size) return items ? [...items.values()] : [];
    if (items?.size) return [...this.elements(setId).values()];
    const out = new Array<Element>(own.size);
    let i = 0;
    for (const h of own.values()) out[i++] = ownElement(h)!;
    return out;
  }

  /** How many elements a set holds now ({@link elements}' size, without a map or list of them). */
  count(setId: string): number {
    const own = this.#ownSlots(setId);
    const items = this.#items.get(setId);
    if (!own?.size) return items?.size ?? 0;
    if (!items?.size) return own.size;
    let n = own.size;
    for (const key of items.keys()) if (!own.has(key)) n++;
    return n;
  }

  /** Sets that hold elements. */
  setIds(): string[] {
    const out = new Set<string>();
    for (const [setId, m] of this.#slots) if (setId !== SLOT_CLAIMS && m.size > 0) out.add(setId);
    for (const [setId, m] of this.#items) if (m.size > 0) out.add(setId);
    return [...out];
  }

  /** The element a set holds now under `key`, or null. */
  #current(setId: string, key: string): Element | null {
    return this.#items.get(setId)?.get(key) ?? ownElement(this.#ownSlots(setId)?.get(key));
  }

  /** A set's plain claims' slots (key → holders). */
  #ownSlots(setId: string): Map<string, Holders> | undefined {
    return setId === SLOT_CLAIMS ? undefined : this.#slots.get(setId);
  }

  /** The element changes since the last call, per set (an element changed in place is removed and added). */
  takeDelta(): Map<string, SetDelta> {
    const out = new Map<string, SetDelta>();
    for (const [setId, keys] of this.#before) {
      // Lists made on their first element, to size.
      let added: Element[] | undefined;
      let removed: Element[] | undefined;
      for (const [key, was] of keys) {
        const is = this.#current(setId, key);
        if (was && is && sameElement(was, is)) continue;
        if (was) removed === undefined ? (removed = [was]) : removed.push(was);
        if (is) added === undefined ? (added = [is]) : added.push(is);
      }
      if (added || removed) out.set(setId, { added, removed });
    }
    this.#before = new Map();
    this.#tracking = true;
    return out;
  }

  /** The content of a set before the pending (not yet taken) changes. */
  elementsBefore(setId: string): Element[] {
    const now = this.elements(setId);
    const before = this.#before.get(setId);
    if (!before) return [...now.values()];
    const out = new Map(now);
    for (const [key, was] of before) {
      if (was) out.set(key, was);
      else out.delete(key);
    }
    return [...out.values()];
  }

  // Puts the new winner's items in place of the old winner's.
  #settle(was: Holder | undefined, now: Holder | undefined): void {
    if (was === now) return;
    const before = was && itemsOf(was);
    const after = now && itemsOf(now);
    if (before && after && sameItems(before, after)) return;
    const c = (was ?? now)!;
    // A plain claim's slot is its element: the holders already say what the set holds now.
    if (isOwn(c)) return this.#note(c.setId, c.key, ownElement(was));
    for (const it of before ?? []) this.#put(it.setId, it.key ?? elementKey(it.element), null);
    for (const it of after ?? []) this.#put(it.setId, it.key ?? elementKey(it.element), it.element);
  }

  /** Records what a set held under `key` before the pending changes (the first time it changes). */
  #note(setId: string, key: string, was: Element | null): void {
    if (!this.#tracking) return;
    let before = this.#before.get(setId);
    if (!before) this.#before.set(setId, (before = new Map()));
    if (!before.has(key)) before.set(key, was);
  }

  #put(setId: string, key: string, element: Element | null): void {
    let set = this.#items.get(setId);
    if (!set) this.#items.set(setId, (set = new Map()));
    this.#note(setId, key, set.get(key) ?? null);
    if (element) set.set(key, element);
    else set.delete(key);
  }
}

function sameClaim(a: Claim, b: Claim): boolean {
  if (a === b) return true;
  if (isOwn(a)) return isOwn(b) && a.setId === b.setId && a.key === b.key && sameElement(a.element, b.element);
  return !isOwn(b) && a.slot === b.slot && a.rank === b.rank && sameItems(a.items, b.items);
}

function sameItems(a: readonly ClaimItem[], b: readonly ClaimItem[]): boolean {
  return a.length === b.length && a.every((x, i) => x.setId === b[i]!.setId && (x.key ?? elementKey(x.element)) === (b[i]!.key ?? elementKey(b[i]!.element)) && sameElement(x.element, b[i]!.element));
}
