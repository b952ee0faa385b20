/**
 * The in-memory ruleset behind the fake binding: wire records applied with the kernel's rules and errnos.
 *
 * It models what nf_tables checks for the objects portwall sends — existence (ENOENT), exclusive creation
 * (EEXIST), references that block deletion (EBUSY: a set used by a lookup, a chain used by a jump or a
 * verdict-map element), mismatched redefinitions (EEXIST / EOPNOTSUPP), malformed elements (EINVAL) — and
 * not what needs the kernel's data path: loops, register initialisation, hook validation, interval overlaps.
 * Each errno here was checked against a 6.18 kernel (commits through the addon and `nft` in a namespace).
 */
import { NFT_DATA_VERDICT, NFT_SET_ELEM_INTERVAL_END, SET_FLAGS, VERDICTS } from './constants.js';
import type { Verdict } from './types.js';
import { VERB_CODES } from './wire-records.js';
import type { RawChain, RawElement, RawElements, RawRecord, RawRule, RawSet, RawTable } from './wire-records.js';

const ENOENT = 2;
const EBUSY = 16;
const EEXIST = 17;
const EINVAL = 22;
const EOPNOTSUPP = 95;

/** A refusal of one record, with the errno the kernel would give. */
export class KernelRefusal extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
  }
}

/** A chain and its rules, in order. */
export interface FakeChain {
  chain: RawChain;
  rules: RawRule[];
}

/** A set and its kernel elements. */
export interface FakeSet {
  set: RawSet;
  elements: RawElement[];
}

/** A table with the handle counter the kernel keeps per table. */
export interface FakeTable {
  family: number;
  table: RawTable;
  nextHandle: bigint;
  chains: Map<string, FakeChain>;
  sets: Map<string, FakeSet>;
}

/** One namespace's ruleset. Plain data, so a transaction applies to a structuredClone and is swapped in. */
export interface Ruleset {
  genid: number;
  nextTableHandle: bigint;
  tables: Map<string, FakeTable>;
}

/** A namespace's ruleset before anything was committed. */
export function emptyRuleset(): Ruleset {
  return { genid: 1, nextTableHandle: 1n, tables: new Map() };
}

const refuse = (errno: number, message: string): never => {
  throw new KernelRefusal(errno, message);
};

const hex = (b: Uint8Array | undefined): string => (b ? Buffer.from(b).toString('hex') : '');
const isMap = (s: RawSet): boolean => ((s.flags ?? 0) & SET_FLAGS.code('map')) !== 0;
const isEnd = (e: RawElement): boolean => ((e.flags ?? 0) & NFT_SET_ELEM_INTERVAL_END) !== 0;
// What makes two elements the same kernel element: key, key end (pipapo) and whether it closes an interval.
const identity = (e: RawElement): string => `${hex(e.key)}-${hex(e.keyEnd)}-${isEnd(e) ? 'end' : ''}`;
const sameData = (a: RawElement, b: RawElement): boolean =>
  hex(a.data) === hex(b.data) && a.verdict?.code === b.verdict?.code && a.verdict?.chain === b.verdict?.chain;

/**
 * The sets one batch has created so far, by `family/table/batch id` → name: the kernel finds a set by its batch
 * id when an element list names no set (or a set it cannot find by name).
 */
export type BatchSets = Map<string, string>;

/** Applies one record of a batch to `rs` (a clone the caller discards on error). */
export function applyRecord(rs: Ruleset, rec: RawRecord, batch: BatchSets = new Map()): void {
  switch (rec.kind) {
    case 'table':
      return applyTable(rs, rec);
    case 'chain':
      return applyChain(findTable(rs, rec.family, rec.table), rec);
    case 'rule':
      return applyRule(findTable(rs, rec.family, rec.table), rec);
    case 'set':
      return applySet(findTable(rs, rec.family, rec.table), rec, batch);
    case 'elements':
      return applyElements(findTable(rs, rec.family, rec.table), rec, batch);
  }
}

function findTable(rs: Ruleset, family: number, name: string | undefined): FakeTable {
  return rs.tables.get(`${family}/${name}`) ?? refuse(ENOENT, `table ${name} does not exist`);
}

const tolerant = (verb: number): boolean => verb === VERB_CODES.destroy;

function applyTable(rs: Ruleset, rec: RawRecord & RawTable): void {
  const key = `${rec.family}/${rec.name}`;
  const t = rs.tables.get(key);
  switch (rec.verb) {
    case VERB_CODES.add:
    case VERB_CODES.create:
      if (t && rec.verb === VERB_CODES.create) refuse(EEXIST, `table ${rec.name} exists`);
      if (t) {
        if (rec.flags !== undefined) t.table.flags = rec.flags;
        return;
      }
      rs.tables.set(key, {
        family: rec.family,
        table: { ...stored(rec), handle: rs.nextTableHandle++, flags: rec.flags ?? 0 },
        nextHandle: 1n,
        chains: new Map(),
        sets: new Map(),
      });
      return;
    case VERB_CODES.flush:
      for (const c of (t ?? refuse(ENOENT, `table ${rec.name} does not exist`)).chains.values()) c.rules = [];
      return;
    default: // delete, destroy: recursive, as the kernel's DELTABLE without NLM_F_NONREC
      if (!t) return tolerant(rec.verb) ? undefined : refuse(ENOENT, `table ${rec.name} does not exist`);
      rs.tables.delete(key);
  }
}

const JUMPS = new Set([VERDICTS.code('jump'), VERDICTS.code('goto')]);

// Jumps and gotos into `chain` from rules (other than `except`'s) and verdict-map elements.
function chainUsers(t: FakeTable, chain: string, except?: FakeChain): number {
  let n = 0;
  for (const c of t.chains.values()) {
    if (c === except) continue;
    for (const r of c.rules) {
      for (const e of r.exprs ?? []) {
        if (e.type === 'immediate' && 'verdict' in e && jumpTarget(e.verdict) === chain) n++;
      }
    }
  }
  for (const s of t.sets.values()) {
    for (const e of s.elements) if (e.verdict && JUMPS.has(e.verdict.code) && e.verdict.chain === chain) n++;
  }
  return n;
}

const jumpTarget = (v: Verdict): string | undefined => ('chain' in v ? v.chain : undefined);

// A record's body as stored: without the verb and family that only the batch needs.
function stored<T extends RawRecord>(rec: T): Omit<T, 'verb' | 'family'> {
  const { verb: _verb, family: _family, ...body } = rec;
  return body;
}

function applyChain(t: FakeTable, rec: RawRecord & RawChain): void {
  const existing = t.chains.get(rec.name ?? '');
  switch (rec.verb) {
    case VERB_CODES.add:
    case VERB_CODES.create: {
      if (rec.policy !== undefined && rec.hook === undefined && existing?.chain.hook === undefined) {
        refuse(EOPNOTSUPP, 'only base chains have a policy');
      }
      if (!existing) {
        const chain: RawChain = { ...stored(rec), handle: t.nextHandle++ };
        if (rec.hook !== undefined) chain.policy = rec.policy ?? 1; // the kernel reports NF_ACCEPT by default
        t.chains.set(rec.name ?? '', { chain, rules: [] });
        return;
      }
      if (rec.verb === VERB_CODES.create) refuse(EEXIST, `chain ${rec.name} exists`);
      const c = existing.chain;
      // As nf_tables_updchain(): a regular chain cannot become a base chain, nor a base chain change type
      // (EEXIST), hook or priority (EOPNOTSUPP).
      if (rec.hook !== undefined && (c.hook === undefined || rec.type !== c.type)) {
        refuse(EEXIST, `chain ${rec.name} exists as another kind of chain`);
      }
      if (rec.hook !== undefined && (rec.hook !== c.hook || rec.priority !== c.priority)) {
        refuse(EOPNOTSUPP, `chain ${rec.name} cannot change hook or priority`);
      }
      if (rec.policy !== undefined) c.policy = rec.policy;
      return;
    }
    case VERB_CODES.flush:
      (existing ?? refuse(ENOENT, `chain ${rec.name} does not exist`)).rules = [];
      return;
    default: {
      if (!existing) return tolerant(rec.verb) ? undefined : refuse(ENOENT, `chain ${rec.name} does not exist`);
      if (chainUsers(t, rec.name ?? '', existing) > 0) refuse(EBUSY, `chain ${rec.name} is in use`);
      t.chains.delete(rec.name ?? '');
    }
  }
}

// A rule's references must exist: jump/goto targets (regular chains) and looked-up sets.
function checkRuleReferences(t: FakeTable, rule: RawRule): void {
  for (const e of rule.exprs ?? []) {
    if (e.type === 'immediate' && 'verdict' in e && (e.verdict.code === 'jump' || e.verdict.code === 'goto')) {
      const target = t.chains.get(e.verdict.chain) ?? refuse(ENOENT, `chain ${e.verdict.chain} does not exist`);
      if (target.chain.hook !== undefined) refuse(EOPNOTSUPP, `cannot jump to base chain ${e.verdict.chain}`);
    }
    if (e.type === 'lookup') {
      const s = t.sets.get(e.set) ?? refuse(ENOENT, `set ${e.set} does not exist`);
      if (e.dreg !== undefined && !isMap(s.set)) refuse(EINVAL, `set ${e.set} is not a map`);
    }
    if (e.type === 'other') refuse(EINVAL, `cannot add expression ${e.name}`);
  }
}

function applyRule(t: FakeTable, rec: RawRecord & RawRule): void {
  const c = t.chains.get(rec.chain ?? '') ?? refuse(ENOENT, `chain ${rec.chain} does not exist`);
  const at = (handle: bigint | undefined) => {
    const i = c.rules.findIndex((r) => r.handle === handle);
    return i >= 0 ? i : refuse(ENOENT, `rule ${handle} does not exist`);
  };
  const rule = (): RawRule => {
    const r: RawRule = { ...stored(rec), handle: t.nextHandle++, position: undefined };
    checkRuleReferences(t, r);
    return r;
  };
  switch (rec.verb) {
    case VERB_CODES.add:
      c.rules.splice(rec.position ? at(rec.position) + 1 : c.rules.length, 0, rule());
      return;
    case VERB_CODES.insert:
      c.rules.splice(rec.position ? at(rec.position) : 0, 0, rule());
      return;
    case VERB_CODES.replace: // the kernel gives the replacement a new handle
      c.rules.splice(at(rec.handle), 1, rule());
      return;
    case VERB_CODES.delete:
    case VERB_CODES.destroy:
      if (rec.handle === undefined) {
        c.rules = [];
      } else if (tolerant(rec.verb) && !c.rules.some((r) => r.handle === rec.handle)) {
        return;
      } else {
        c.rules.splice(at(rec.handle), 1);
      }
      return;
    default:
      refuse(EINVAL, 'unsupported rule verb');
  }
}

const setShape = (s: RawSet): string =>
  [s.flags ?? 0, s.keyType, s.keyLen, s.dataType ?? '', s.dataType === undefined ? '' : s.dataLen].join('/');

function applySet(t: FakeTable, rec: RawRecord & RawSet, batch: BatchSets): void {
  const existing = t.sets.get(rec.name ?? '');
  switch (rec.verb) {
    case VERB_CODES.add:
    case VERB_CODES.create: {
      if (existing && rec.verb === VERB_CODES.create) refuse(EEXIST, `set ${rec.name} exists`);
      const flags = rec.flags ?? 0;
      if (!rec.keyLen) refuse(EINVAL, 'a set needs a key length');
      if (isMap(rec) !== (rec.dataType !== undefined)) refuse(EINVAL, 'map flag and data type go together');
      if (rec.timeout !== undefined && !(flags & SET_FLAGS.code('timeout'))) refuse(EINVAL, 'timeout needs its flag');
      if (existing) {
        if (setShape(existing.set) !== setShape(rec)) refuse(EEXIST, `set ${rec.name} exists with another definition`);
        return;
      }
      const set: RawSet = { ...stored(rec), handle: t.nextHandle++ };
      delete set.id;
      if (rec.dataType === NFT_DATA_VERDICT) set.dataLen = 16; // sizeof(struct nft_verdict), as the kernel reports
      t.sets.set(rec.name ?? '', { set, elements: [] });
      if (rec.id !== undefined) batch.set(`${rec.family}/${rec.table}/${rec.id}`, rec.name ?? '');
      return;
    }
    case VERB_CODES.flush:
      (existing ?? refuse(ENOENT, `set ${rec.name} does not exist`)).elements = [];
      return;
    default: {
      if (!existing) return tolerant(rec.verb) ? undefined : refuse(ENOENT, `set ${rec.name} does not exist`);
      const used = [...t.chains.values()].some((c) =>
        c.rules.some((r) => (r.exprs ?? []).some((e) => e.type === 'lookup' && e.set === rec.name)),
      );
      if (used) refuse(EBUSY, `set ${rec.name} is in use`);
      t.sets.delete(rec.name ?? '');
    }
  }
}

function checkElement(t: FakeTable, s: RawSet, e: RawElement): void {
  if (e.key?.length !== s.keyLen) refuse(EINVAL, `element key of ${e.key?.length ?? 0} bytes, set has ${s.keyLen}`);
  if (e.keyEnd !== undefined && e.keyEnd.length !== s.keyLen) refuse(EINVAL, 'element key end has the wrong length');
  const hasData = e.data !== undefined || e.verdict !== undefined;
  if (isMap(s) && !isEnd(e) && !hasData) refuse(EINVAL, 'a map element needs data');
  if (!isMap(s) && hasData) refuse(EINVAL, 'the set is not a map');
  if (e.data !== undefined && (s.dataType === NFT_DATA_VERDICT || e.data.length !== s.dataLen)) {
    refuse(EINVAL, 'element data has the wrong type or length');
  }
  if (e.verdict !== undefined) {
    if (s.dataType !== NFT_DATA_VERDICT) refuse(EINVAL, 'the map does not hold verdicts');
    if (JUMPS.has(e.verdict.code) && !t.chains.has(e.verdict.chain)) {
      refuse(ENOENT, `chain ${e.verdict.chain} does not exist`);
    }
  }
  if (e.timeout !== undefined && !((s.flags ?? 0) & SET_FLAGS.code('timeout'))) {
    refuse(EINVAL, 'element timeout needs the timeout flag');
  }
}

function applyElements(t: FakeTable, rec: RawRecord & RawElements, batch: BatchSets): void {
  // By name; else (no such name, or none given) by the batch id of a set this batch created, as the kernel.
  const byId = rec.setId === undefined ? undefined : batch.get(`${rec.family}/${rec.table}/${rec.setId}`);
  const s = t.sets.get(rec.set ?? '') ?? (byId === undefined ? undefined : t.sets.get(byId)) ??
    refuse(ENOENT, `set ${rec.set ?? `with batch id ${rec.setId}`} does not exist`);
  // By identity, in the set's order (a Map keeps insertion order): one lookup per element, not a scan of the
  // set, so a batch of n elements into a set of n costs n, not n².
  const held = new Map(s.elements.map((x) => [identity(x), x]));
  for (const e of rec.elements) {
    const id = identity(e);
    const have = held.get(id);
    switch (rec.verb) {
      case VERB_CODES.add:
      case VERB_CODES.create: {
        checkElement(t, s.set, e);
        if (have === undefined) {
          const kept: RawElement = s.set.counter ? { ...e, counter: { packets: 0n, bytes: 0n } } : { ...e };
          if (kept.timeout === s.set.timeout) delete kept.timeout; // dumped only when not the default
          held.set(id, kept);
        } else if (rec.verb === VERB_CODES.create) {
          refuse(EEXIST, 'element exists');
        } else if (!sameData(have, e)) {
          refuse(EEXIST, 'element exists with other data'); // as nft_add_set_elem(): a clash, not EBUSY
        }
        break;
      }
      case VERB_CODES.delete:
      case VERB_CODES.destroy:
        if (have !== undefined) held.delete(id);
        else if (!tolerant(rec.verb)) refuse(ENOENT, 'element does not exist');
        break;
      default:
        refuse(EINVAL, 'unsupported element verb');
    }
  }
  s.elements = [...held.values()];
}
