/**
 * The diff stage: desired objects of portwall's tables vs what the kernel holds in them → the operations of
 * one batch. The kernel's listing is the only "previous state" (nothing is remembered elsewhere), and objects
 * are compared by meaning, not by text (LP 1976323; docs/requirements.md): rules by expressions and comment with handles
 * and counter values ignored, elements by canonical key with data and comment.
 *
 * What changes how: tables and chains are added when missing, sets created (each followed by its elements); a
 * chain whose rules differ is flushed and refilled; a set whose definition changed is rebuilt (the chains that
 * use it are flushed first, in the same batch); elements are deleted, added, or deleted and re-added when their
 * data or comment changed; objects of our tables that are not desired are deleted. Other tables are never
 * looked at.
 */
import type { Chain, Element, Expr, NftObject, NftSet, Operation, Rule } from '../nft/types.js';
import { natAsSent } from '../nft/raise.js';
import { elementKey, sameElement } from '../compile/claims.js';

/** Elements one diff removes from a set (for conntrack cleanup): the set as the kernel had it, and them. */
export interface RemovedElements {
  set: NftSet;
  elements: Element[];
}

/** The result of {@link diff}. */
export interface Diff {
  /** Operations in commit order; empty when the kernel already matches. */
  operations: Operation[];
  /** Elements the batch removes (deleted, replaced, or gone with their set), per set. */
  removed: RemovedElements[];
  /** Elements the batch adds, counted. */
  elementsAdded: number;
}

type Key = string;
const k3 = (family: string, table: string, name: string): Key => `${family}\0${table}\0${name}`;

interface Indexed {
  tables: Map<Key, NftObject & { kind: 'table' }>;
  chains: Map<Key, Chain>;
  sets: Map<Key, NftSet>;
  /** Per set, its element lists as given (keyed only where a diff needs it: {@link keyed}). */
  elements: Map<Key, Element[][]>;
  rules: Map<Key, Rule[]>;
}

function index(objects: readonly NftObject[]): Indexed {
  const ix: Indexed = { tables: new Map(), chains: new Map(), sets: new Map(), elements: new Map(), rules: new Map() };
  for (const o of objects) {
    switch (o.kind) {
      case 'table':
        ix.tables.set(k3(o.family, o.name, ''), o);
        break;
      case 'chain':
        ix.chains.set(k3(o.family, o.table, o.name), o);
        break;
      case 'set':
        ix.sets.set(k3(o.family, o.table, o.name), o);
        break;
      case 'elements': {
        const key = k3(o.family, o.table, o.set);
        const lists = ix.elements.get(key);
        if (lists) lists.push(o.elements);
        else ix.elements.set(key, [o.elements]);
        break;
      }
      case 'rule': {
        const key = k3(o.family, o.table, o.chain);
        let list = ix.rules.get(key);
        if (!list) ix.rules.set(key, (list = []));
        list.push(o);
        break;
      }
    }
  }
  return ix;
}

/** A set's elements by {@link elementKey} (one element per key: the last listed). */
function keyed(lists: readonly Element[][] | undefined): Map<string, Element> {
  const m = new Map<string, Element>();
  for (const list of lists ?? []) for (const e of list) m.set(elementKey(e), e);
  return m;
}

// All of a set's elements. One list (what the engine, the compiler and a listing give: one element per key)
// is taken as it is, so a full sync keys none of its 100k elements; several lists are merged by key.
function allElements(lists: readonly Element[][] | undefined): Element[] {
  if (!lists || lists.length === 0) return [];
  if (lists.length === 1) return lists[0]!;
  return [...keyed(lists).values()];
}

function sameChain(a: Chain, b: Chain): boolean {
  if (a.hook === undefined || b.hook === undefined) return a.hook === b.hook;
  return a.hook === b.hook && a.priority === b.priority && (a.type ?? 'filter') === (b.type ?? 'filter') &&
    (a.policy ?? 'accept') === (b.policy ?? 'accept') && a.device === b.device;
}

function sameSet(a: NftSet, b: NftSet): boolean {
  const flags = (s: NftSet) => [...(s.flags ?? [])].sort().join(',');
  return a.key.join('.') === b.key.join('.') && a.data === b.data && flags(a) === flags(b) && !!a.counter === !!b.counter &&
    a.comment === b.comment && a.size === b.size && a.timeout === b.timeout;
}

function sameRules(a: readonly Rule[], b: readonly Rule[]): boolean {
  return a.length === b.length && a.every((r, i) => r === b[i] || (r.comment === b[i]!.comment && sameExprs(r.exprs, b[i]!.exprs)));
}

/** Expressions as the kernel compares them: counter values and nat dump additions ignored. */
function sameExprs(a: readonly Expr[], b: readonly Expr[]): boolean {
  const kernelForm = (e: Expr): unknown => (e.type === 'counter' ? COUNTER : e.type === 'nat' ? natAsSent(e) : e);
  return a.length === b.length && a.every((e, i) => e === b[i] || sameValue(kernelForm(e), kernelForm(b[i]!)));
}
const COUNTER = { type: 'counter' };

/**
 * Deep equality of decoded and compiled expression values: members that are false or undefined count as
 * absent, bytes compare by content, bigints by value. (Compared member by member rather than as sorted JSON
 * text: the text of every rule on both sides was most of a 5000-port adoption's diff.)
 */
function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (a instanceof Uint8Array || b instanceof Uint8Array) {
    return a instanceof Uint8Array && b instanceof Uint8Array && Buffer.compare(a, b) === 0;
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => sameValue(x, b[i]));
  }
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  const present = (o: Record<string, unknown>) => Object.keys(o).filter((k) => o[k] !== false && o[k] !== undefined);
  const kx = present(x);
  return kx.length === present(y).length && kx.every((k) => sameValue(x[k], y[k]));
}

/** Sets a rule list looks up, and chains it jumps to. */
function references(rules: readonly Rule[]): { sets: Set<string>; chains: Set<string> } {
  const sets = new Set<string>();
  const chains = new Set<string>();
  for (const r of rules) {
    for (const e of r.exprs) {
      if (e.type === 'lookup') sets.add(e.set);
      if (e.type === 'immediate' && 'verdict' in e && (e.verdict.code === 'jump' || e.verdict.code === 'goto')) chains.add(e.verdict.chain);
    }
  }
  return { sets, chains };
}

/**
 * The operations that turn `current` (a listing of portwall's tables) into `desired`. `current` may hold
 * anything the kernel had in those tables, including objects portwall never made; they are removed.
 */
export function diff(desired: readonly NftObject[], current: readonly NftObject[]): Diff {
  const want = index(desired);
  const have = index(current);
  const ops: Operation[] = [];
  const removed: RemovedElements[] = [];
  let elementsAdded = 0;
  const tableOf = (key: Key): Key => { const [f, t] = key.split('\0'); return k3(f!, t!, ''); };

  // Whole tables portwall no longer wants go in one operation (and take everything in them).
  const droppedTables = [...have.tables.keys()].filter((t) => !want.tables.has(t));
  for (const t of droppedTables) ops.push({ verb: 'delete', object: have.tables.get(t)! });
  const dropped = (key: Key): boolean => droppedTables.includes(tableOf(key));
  for (const [key, set] of have.sets) if (dropped(key)) removed.push({ set, elements: allElements(have.elements.get(key)) });
  for (const [t, table] of want.tables) if (!have.tables.has(t)) ops.push({ verb: 'add', object: table });

  const live = <T>(m: Map<Key, T>): [Key, T][] => [...m].filter(([key]) => !dropped(key));
  const setsGone = new Set<Key>(); // deleted or rebuilt
  for (const [key, s] of live(have.sets)) {
    const w = want.sets.get(key);
    if (!w || !sameSet(w, s)) setsGone.add(key);
  }
  const chainsGone = new Set<Key>(); // deleted or recreated
  for (const [key, c] of live(have.chains)) {
    const w = want.chains.get(key);
    if (!w || !sameChain(w, c)) chainsGone.add(key);
  }
  // Chains whose rule lists change, or that reference what goes away, are flushed (and refilled if wanted).
  const flush = new Set<Key>();
  for (const [key] of live(have.chains)) {
    const rules = have.rules.get(key) ?? [];
    const refs = references(rules);
    const [f, t] = key.split('\0') as [string, string];
    const usesGone = [...refs.sets].some((s) => setsGone.has(k3(f, t, s))) || [...refs.chains].some((c) => chainsGone.has(k3(f, t, c)));
    if (rules.length > 0 && (chainsGone.has(key) || usesGone || !sameRules(want.rules.get(key) ?? [], rules))) flush.add(key);
  }
  for (const key of flush) ops.push({ verb: 'flush', object: have.chains.get(key)! });

  // Element deletions in sets that stay.
  const adds: Operation[] = [];
  for (const [key, s] of live(have.sets)) {
    if (setsGone.has(key)) {
      const old = allElements(have.elements.get(key));
      if (old.length) removed.push({ set: s, elements: old });
      continue;
    }
    const old = keyed(have.elements.get(key));
    const next = keyed(want.elements.get(key));
    const gone: Element[] = [];
    for (const [ek, e] of old) {
      const w = next.get(ek);
      if (!w || !sameElement(w, e)) gone.push(e);
    }
    const fresh: Element[] = [];
    for (const [ek, e] of next) {
      const o = old.get(ek);
      if (!o || !sameElement(o, e)) fresh.push(e);
    }
    if (gone.length) {
      ops.push({ verb: 'delete', object: { kind: 'elements', family: s.family, table: s.table, set: s.name, elements: gone } });
      removed.push({ set: s, elements: gone });
    }
    if (fresh.length) {
      adds.push({ verb: 'add', object: { kind: 'elements', family: s.family, table: s.table, set: s.name, elements: fresh } });
      elementsAdded += fresh.length;
    }
  }
  for (const key of setsGone) ops.push({ verb: 'delete', object: have.sets.get(key)! });
  for (const key of chainsGone) ops.push({ verb: 'delete', object: have.chains.get(key)! });

  const chainsNew = new Set([...want.chains.keys()].filter((key) => !have.chains.has(key) || chainsGone.has(key) || dropped(key)));
  for (const key of chainsNew) ops.push({ verb: 'add', object: want.chains.get(key)! });
  // A set the kernel lacks is created (it cannot exist: the batch is computed against what the kernel holds
  // and committed only at that generation) and filled right after: the kernel then finds it by its batch id
  // at the tail of the batch's new sets instead of by name through every set of the table (docs/netlink.md,
  // "Elements of a set the batch creates").
  for (const [key, s] of want.sets) {
    if (have.sets.has(key) && !setsGone.has(key) && !dropped(key)) continue;
    ops.push({ verb: 'create', object: s });
    const elements = allElements(want.elements.get(key));
    if (elements.length) {
      ops.push({ verb: 'add', object: { kind: 'elements', family: s.family, table: s.table, set: s.name, elements } });
      elementsAdded += elements.length;
    }
  }
  ops.push(...adds);
  // Rules last: every set and chain they reference exists by now.
  for (const [key] of want.chains) {
    const refill = flush.has(key) || chainsNew.has(key) || ((have.rules.get(key)?.length ?? 0) === 0 && !dropped(key));
    if (!refill) continue;
    for (const r of want.rules.get(key) ?? []) ops.push({ verb: 'add', object: r });
  }
  return { operations: ops, removed, elementsAdded };
}
