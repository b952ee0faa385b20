/**
 * Typed objects ⇄ wire records (docs/wire.md): the batch that the addon turns into netlink messages, and the
 * dump it turns netlink messages back into.
 *
 * Encoding adds what the kernel needs but the typed objects leave implicit: set key/data types and lengths,
 * NFT_SET_MAP / NFT_SET_CONCAT flags, batch set ids, nft-compatible userdata, and the two-element form of
 * rbtree intervals. Decoding removes it again, so an object and its dumped twin compare equal.
 */
import { PortwallError } from '../errors.js';
import {
  CHAIN_POLICIES,
  FAMILIES,
  HOOKS,
  NFT_SET_ANONYMOUS,
  NFT_SET_ELEM_INTERVAL_END,
  SET_FLAGS,
  UDATA,
  VERDICTS,
} from './constants.js';
import {
  DATATYPES,
  dataTypeOf,
  decodeKey,
  decodeValue,
  encodeKey,
  encodeKeyInto,
  encodeValue,
  keyLenOf,
  keyTypeNames,
  mapDataType,
  setKeyType,
} from './datatypes.js';
import { increment, mergeIntervals } from './intervals.js';
import { buildUserdata, commentTlv, commentUserdata, setUserdata, u32Tlv, userdataComment, zoneMapTypeof } from './userdata.js';
import { verdictOf } from './wire-exprs.js';
import { ELEMENT_FIELD, RecordWriter, VERB_CODES, readRecords, writeElement } from './wire-records.js';
import { SetRegistry } from './set-registry.js';
import type { WireWriter } from './cursor.js';
import type { RawElement, RawRecord, RawSet, StreamedElements } from './wire-records.js';
import type { DataTypeName, Element, Family, NftObject, NftSet, Operation, SetFlag, Value, Verb } from './types.js';

/** Finds the definition of a set that the batch itself does not define (from a listing or earlier commits). */
export type SetResolver = (family: Family, table: string, name: string) => NftSet | undefined;

/** Whether elements of this set are stored as two rbtree elements per interval. */
function isRbtreeInterval(set: NftSet): boolean {
  return (set.flags?.includes('interval') ?? false) && set.key.length === 1;
}

/** Verbs that need only an object's identity (names, handle; element keys) — nothing else is sent. */
export const IDENTITY_ONLY: ReadonlySet<Verb> = new Set<Verb>(['delete', 'flush', 'destroy']);

/**
 * Encodes a transaction's operations into one wire batch, one record per operation (so a kernel error's
 * record index is the operation index). Elements of sets not created in the batch are resolved through
 * `resolveSet`; an unresolvable set is ERR_UNKNOWN_SET.
 */
export function encodeOperations(ops: readonly Operation[], resolveSet: SetResolver = () => undefined): Buffer {
  // Rule lookups name sets by batch id, whichever operation creates them; element operations see only the
  // sets created before them (then those shadow listed sets of the same name).
  const ids = new SetRegistry<number>();
  let created = 0;
  for (const { verb, object: o } of ops) if (o.kind === 'set' && (verb === 'add' || verb === 'create')) ids.set(o.family, o.table, o.name, ++created);
  const batchSets = new SetRegistry<{ set: NftSet; id: number; created: boolean }>();
  let seen = 0;
  const find: FindSet = (family, table, name) => {
    const inBatch = batchSets.get(family, table, name);
    const set = inBatch?.set ?? resolveSet(family, table, name);
    return set && { set, id: inBatch?.id ?? 0, created: inBatch?.created ?? false };
  };
  const batchId = (family: number, table: string, name: string): number => ids.get(FAMILIES.name(family), table, name) ?? 0;
  // Each record is written as soon as it is built, so the records of a large batch never all live at once.
  const out = new RecordWriter(ops.length, sizeGuess(ops));
  const memo: ElementMemo = { userdata: new Map(), data: new Map() };
  ops.forEach((op, opIndex) => {
    const o = op.object;
    if (o.kind === 'set' && (op.verb === 'add' || op.verb === 'create')) {
      batchSets.set(o.family, o.table, o.name, { set: o, id: ++seen, created: op.verb === 'create' });
    }
    out.write(toRecord(op, opIndex, find, memo), batchId);
  });
  return out.finish();
}

// Bytes a batch's wire form needs, rather over than under: 64 per record, element and rule expression. A
// 5000-port full sync (15 752 records, 103 997 elements, 41 968 expressions) takes 8.3 MB; this guesses 10.4.
function sizeGuess(ops: readonly Operation[]): number {
  let n = 64;
  for (const { object: o } of ops) {
    n += 64;
    if (o.kind === 'elements') n += o.elements.length * 64;
    else if (o.kind === 'rule') n += o.exprs.length * 64;
  }
  return n;
}

/** A set's definition, its batch id (0: not added in this batch) and whether this batch `create`s it. */
type FindSet = (family: Family, table: string, name: string) => { set: NftSet; id: number; created: boolean } | undefined;

// Records of one kind are built with the same literal shape (absent fields undefined), which keeps a
// 50k-rule encode monomorphic. Identity-only verbs send names and handles alone.
function toRecord(op: Operation, opIndex: number, find: FindSet, memo: ElementMemo): RawRecord | OutElements {
  const o = op.object;
  const verb = VERB_CODES[op.verb];
  const family = FAMILIES.code(o.family);
  const full = !IDENTITY_ONLY.has(op.verb);
  switch (o.kind) {
    case 'table':
      return { verb, family, kind: 'table', name: o.name, handle: o.handle, flags: full ? o.flags : undefined };
    case 'chain':
      return {
        verb,
        family,
        kind: 'chain',
        table: o.table,
        name: o.name,
        handle: o.handle,
        hook: full && o.hook !== undefined ? HOOKS[o.family].code(o.hook) : undefined,
        priority: full ? o.priority : undefined,
        policy: full && o.policy !== undefined ? CHAIN_POLICIES.code(o.policy) : undefined,
        type: full ? o.type : undefined,
        device: full ? o.device : undefined,
        userdata: full ? commentUserdata(UDATA.CHAIN_COMMENT, o.comment) : undefined,
      };
    case 'rule':
      return {
        verb,
        family,
        kind: 'rule',
        table: o.table,
        chain: o.chain,
        handle: o.handle,
        position: full ? o.position : undefined,
        userdata: full ? commentUserdata(UDATA.RULE_COMMENT, o.comment) : undefined,
        exprs: full ? o.exprs : undefined,
      };
    case 'set':
      return full ? setRecord(verb, family, o, find(o.family, o.table, o.name)?.id) : { verb, family, kind: 'set', table: o.table, name: o.name, handle: o.handle };
    case 'elements': {
      const found = find(o.family, o.table, o.set);
      if (!found) {
        throw new PortwallError('ERR_UNKNOWN_SET', `elements ${o.family}/${o.table}/${o.set}: unknown set`, {
          object: o,
          field: 'set',
          opIndex,
        });
      }
      const elements = elementWriter(found.set, o.elements, !full, memo);
      // The elements of a set this batch created are named by its batch id alone: the kernel looks a set up
      // by name first, walking every set of the table, and by id only when the name is missing. A created set
      // is new (or the batch fails), so its id always finds it; an added one may have existed before.
      const set = found.created ? undefined : o.set;
      return { verb, family, kind: 'elements', table: o.table, set, setId: found.id || undefined, elements };
    }
  }
}

// One literal, not identity and attributes spread together: V8 copies a second spread property by property
// through its runtime (~20 µs a set; docs/dataplane.md, "The JavaScript of a full sync").
function setRecord(verb: number, family: number, s: NftSet, id: number | undefined): RawSet & { verb: number; family: number } {
  const key = setKeyType(s.key);
  let flags = 0;
  for (const f of s.flags ?? []) flags |= SET_FLAGS.code(f);
  if (s.key.length > 1) flags |= SET_FLAGS.code('concat');
  if (s.data !== undefined) flags |= SET_FLAGS.code('map');
  // nft sends data length 0 for verdict maps (the kernel sizes verdicts itself), and so do we.
  const data = s.data === undefined ? undefined : mapDataType(s.data);
  return {
    verb,
    family,
    kind: 'set',
    table: s.table,
    name: s.name,
    handle: s.handle,
    flags,
    keyType: key.keyType,
    keyLen: key.keyLen,
    dataType: data?.dataType,
    dataLen: data?.dataLen,
    fieldLens: s.key.length > 1 ? key.fieldLens : undefined,
    size: s.size,
    userdata: setUserdata(s),
    counter: s.counter ? true : undefined,
    timeout: s.timeout === undefined ? undefined : BigInt(s.timeout),
    id,
  };
}

/**
 * Bytes many elements of one batch share — the userdata of one comment (a port names itself in each of its
 * elements), the data of one value (a zone, a tag) — built once per batch. The writer only reads them.
 */
interface ElementMemo {
  userdata: Map<string, Uint8Array>;
  /** Per data type, keyed by the value itself (a Map keeps 80 and '80' apart). */
  data: Map<DataTypeName, Map<Value, Uint8Array>>;
}

type OutElements = StreamedElements & { verb: number; family: number };

// Writes a list's kernel elements straight into the batch: the key bytes go into place, and a full sync's
// 100k elements never exist as records or key arrays. An rbtree interval set's element is two kernel
// elements (start, end = last + 1) built as records; every other set's element is one, written directly.
function elementWriter(set: NftSet, elements: readonly Element[], identityOnly: boolean, memo: ElementMemo): (w: WireWriter) => number {
  return (w) => {
    const interval = set.flags?.includes('interval') ?? false;
    if (isRbtreeInterval(set)) {
      let n = 0;
      for (const el of elements) n += rbtreeRecords(set, el, identityOnly, memo, (r) => writeElement(w, r));
      return n;
    }
    const keyLen = keyLenOf(set.key);
    const F = ELEMENT_FIELD;
    for (const el of elements) {
      const data = identityOnly || el.verdict ? undefined : dataBytes(set, el, memo);
      const verdict = identityOnly ? undefined : el.verdict;
      const userdata = identityOnly || el.comment === undefined ? undefined : commentBytes(el.comment, memo);
      const timeout = identityOnly ? undefined : el.timeout;
      w.u32(F.key | (interval ? F.keyEnd : 0) | (data ? F.data : 0) | (verdict ? F.verdict : 0) | (userdata ? F.userdata : 0) | (timeout !== undefined ? F.timeout : 0));
      // key and (interval) keyEnd as the writer lays out bytes fields: a u32 length, then the bytes.
      const at = w.zeroed(interval ? 8 + 2 * keyLen : 4 + keyLen);
      const buf = w.buffer;
      buf.writeUInt32LE(keyLen, at);
      if (interval) buf.writeUInt32LE(keyLen, at + 4 + keyLen);
      encodeKeyInto(set.key, el.key, interval, buf, at + 4, at + 8 + keyLen);
      if (data) w.bytes(data);
      if (verdict) {
        w.i32(VERDICTS.code(verdict.code));
        w.str('chain' in verdict ? verdict.chain : '');
      }
      if (userdata) w.bytes(userdata);
      if (timeout !== undefined) w.u64(BigInt(timeout));
    }
    return elements.length;
  };
}

// A map element's data bytes (shared by every element with that value), if it has data.
function dataBytes(set: NftSet, el: Element, memo: ElementMemo): Uint8Array | undefined {
  if (el.data === undefined || set.data === undefined) return undefined;
  let values = memo.data.get(set.data);
  if (!values) memo.data.set(set.data, (values = new Map()));
  let data = values.get(el.data);
  if (!data) values.set(el.data, (data = encodeValue(set.data, el.data)));
  return data;
}

// The userdata of an element comment (a port names itself in each of its elements: built once).
function commentBytes(comment: string, memo: ElementMemo): Uint8Array {
  let userdata = memo.userdata.get(comment);
  if (!userdata) memo.userdata.set(comment, (userdata = buildUserdata([commentTlv(UDATA.SET_ELEM_COMMENT, comment)])));
  return userdata;
}

// One element of an rbtree interval set → its start record and, unless it runs to the end of the key space,
// an end record (last + 1); returns how many it emitted.
function rbtreeRecords(set: NftSet, el: Element, identityOnly: boolean, memo: ElementMemo, emit: (r: RawElement) => void): number {
  const { key, keyEnd } = encodeKey(set.key, el.key, true);
  const start: RawElement = { key };
  const end = increment(keyEnd ?? key);
  if (!identityOnly) {
    if (el.verdict) {
      start.verdict = { code: VERDICTS.code(el.verdict.code), chain: 'chain' in el.verdict ? el.verdict.chain : '' };
    } else {
      const data = dataBytes(set, el, memo);
      if (data) start.data = data;
    }
    if (el.comment !== undefined && end) start.userdata = commentBytes(el.comment, memo);
    else if (el.comment !== undefined || !end) {
      const tlvs = [];
      if (el.comment !== undefined) tlvs.push(commentTlv(UDATA.SET_ELEM_COMMENT, el.comment));
      if (!end) tlvs.push(u32Tlv(UDATA.SET_ELEM_FLAGS, UDATA.SET_ELEM_F_INTERVAL_OPEN));
      start.userdata = buildUserdata(tlvs);
    }
    if (el.timeout !== undefined) start.timeout = BigInt(el.timeout);
  }
  emit(start);
  if (!end) return 1;
  emit({ key: end, flags: NFT_SET_ELEM_INTERVAL_END });
  return 2;
}

/**
 * Decodes a dump stream (verb 0 records) into objects. Elements are decoded with the set definitions seen
 * earlier in the same stream (the addon emits each table's sets before their elements). Anonymous sets
 * (nft's `{ … }` literals) and their elements are skipped: portwall never creates them.
 */
export function decodeRecords(buf: Buffer, definitions?: ReadonlySet<string>): NftObject[] {
  return decodeOperations(buf, undefined, definitions).map((op) => op.object);
}

/**
 * Decodes any stream (a batch or a dump) into operations; dump records get the verb 'add'. Elements of sets
 * the stream does not define are resolved through `resolveSet`; element lists that name their set by batch id
 * alone get the name of the set the stream added with that id. With `definitions`, only the sets of those
 * names are decoded in full: any other set comes as its identity alone (family, table, name; no key, as a
 * delete carries), and its elements are skipped (a look that wants set names only, not ~3000 definitions).
 */
export function decodeOperations(buf: Buffer, resolveSet: SetResolver = () => undefined, definitions?: ReadonlySet<string>): Operation[] {
  const sets = new SetRegistry();
  const anonymous = new SetRegistry<true>();
  // Batch id → name of the sets the stream adds, for element lists that name their set by id alone.
  const ids = new Map<string, string>();
  const out: Operation[] = [];
  for (let rec of readRecords(buf)) {
    const verb = verbName(rec.verb);
    const family = FAMILIES.name(rec.family);
    if (rec.kind === 'set' && rec.id !== undefined) ids.set(`${family}/${rec.table}/${rec.id}`, rec.name ?? '');
    if (rec.kind === 'elements' && rec.set === undefined && rec.setId !== undefined) {
      rec = { ...rec, set: ids.get(`${family}/${rec.table}/${rec.setId}`) };
    }
    if (rec.kind === 'set' && (rec.flags ?? 0) & NFT_SET_ANONYMOUS) {
      anonymous.set(family, rec.table ?? '', rec.name ?? '', true);
      continue;
    }
    if (definitions && rec.kind === 'set' && !definitions.has(rec.name ?? '')) {
      out.push({ verb, object: { kind: 'set', family, table: rec.table ?? '', name: rec.name ?? '', key: [] } });
      continue;
    }
    if (definitions && rec.kind === 'elements' && !definitions.has(rec.set ?? '')) continue;
    if (rec.kind === 'elements' && anonymous.get(family, rec.table ?? '', rec.set ?? '')) continue;
    if (rec.kind === 'elements' && rec.verb === VERB_CODES.dump && rec.elements.length === 0) continue; // an empty set
    const findSet = (table: string, name: string) => sets.get(family, table, name) ?? resolveSet(family, table, name);
    const object = toObject(rec, family, findSet);
    // Identity-only set records (delete, flush) define nothing to decode elements with.
    if (object.kind === 'set' && object.key.length > 0) sets.set(family, object.table, object.name, object);
    out.push({ verb, object });
  }
  return out;
}

const VERB_NAMES = new Map<number, string>(Object.entries(VERB_CODES).map(([n, c]) => [c, n]));

function verbName(code: number): Verb {
  const name = VERB_NAMES.get(code);
  if (name === undefined) throw new PortwallError('ERR_WIRE', `unknown verb ${code} in a wire stream`);
  return name === 'dump' ? 'add' : (name as Verb);
}

type FindSetByName = (table: string, name: string) => NftSet | undefined;

function toObject(rec: RawRecord, family: Family, findSet: FindSetByName): NftObject {
  switch (rec.kind) {
    case 'table': {
      const table = { kind: 'table' as const, family, name: rec.name ?? '' };
      return withOptional(table, { handle: rec.handle, flags: rec.flags || undefined });
    }
    case 'chain':
      return withOptional(
        { kind: 'chain', family, table: rec.table ?? '', name: rec.name ?? '' },
        {
          handle: rec.handle,
          hook: rec.hook === undefined ? undefined : HOOKS[family].name(rec.hook),
          priority: rec.priority,
          type: rec.type as 'filter' | 'nat' | 'route' | undefined,
          policy: rec.policy === undefined ? undefined : CHAIN_POLICIES.name(rec.policy),
          device: rec.device,
          comment: userdataComment(rec.userdata, UDATA.CHAIN_COMMENT),
        },
      );
    case 'rule':
      return withOptional(
        { kind: 'rule', family, table: rec.table ?? '', chain: rec.chain ?? '', exprs: rec.exprs ?? [] },
        {
          handle: rec.handle,
          // In a dump the kernel reports the previous rule's handle as position: the listing order says that.
          position: rec.verb === VERB_CODES.dump ? undefined : rec.position || undefined,
          comment: userdataComment(rec.userdata, UDATA.RULE_COMMENT),
        },
      );
    case 'set':
      return setObject(rec, family);
    case 'elements': {
      const table = rec.table ?? '';
      const name = rec.set ?? '';
      const set = findSet(table, name);
      if (!set) {
        throw new PortwallError('ERR_UNKNOWN_SET', `elements ${family}/${table}/${name}: no set defined before them`);
      }
      return { kind: 'elements', family, table, set: name, elements: elementObjects(set, rec.elements) };
    }
  }
}

// Identity-only records (delete/flush of a set) carry no key type: they decode to a set with an empty key.
function setObject(rec: RawSet, family: Family): NftSet {
  // A zone map: integer data of 2 bytes that its userdata declares `typeof … : ct zone`.
  const zone = rec.dataType === DATATYPES.ct_zone.id && rec.dataLen === DATATYPES.ct_zone.size ? zoneMapTypeof(rec.userdata) : undefined;
  const flags = SET_FLAGS.names.filter(
    (f) => f !== 'map' && f !== 'concat' && ((rec.flags ?? 0) & SET_FLAGS.code(f)) !== 0,
  );
  return withOptional(
    {
      kind: 'set',
      family,
      table: rec.table ?? '',
      name: rec.name ?? '',
      key: rec.keyType === undefined ? [] : keyTypeNames(rec.keyType, rec.keyLen ?? 0),
    },
    {
      handle: rec.handle,
      data: zone ? 'ct_zone' : rec.dataType === undefined ? undefined : dataTypeOf(rec.dataType),
      typeof: zone,
      flags: flags.length > 0 ? (flags as SetFlag[]) : undefined,
      counter: rec.counter || undefined,
      comment: userdataComment(rec.userdata, UDATA.SET_COMMENT),
      size: rec.size || undefined,
      timeout: rec.timeout === undefined || rec.timeout === 0n ? undefined : Number(rec.timeout),
    },
  );
}

function elementObjects(set: NftSet, raw: RawElement[]): Element[] {
  if (!isRbtreeInterval(set)) {
    const interval = set.flags?.includes('interval') ?? false;
    return raw.map((r) => elementObject(set, r, interval ? r.keyEnd ?? r.key : undefined));
  }
  return mergeIntervals(raw).map(({ start, last }) => elementObject(set, start, last));
}

function elementObject(set: NftSet, r: RawElement, keyEnd: Uint8Array | undefined): Element {
  if (!r.key) throw new PortwallError('ERR_WIRE', `element of ${set.name} without a key`);
  const el: Element = { key: decodeKey(set.key, r.key, keyEnd) };
  if (r.verdict) el.verdict = verdictOf(r.verdict.code, r.verdict.chain);
  else if (r.data && set.data !== undefined && set.data !== 'verdict') el.data = decodeValue(set.data, r.data);
  const comment = userdataComment(r.userdata, UDATA.SET_ELEM_COMMENT);
  if (comment !== undefined) el.comment = comment;
  if (r.counter) el.counter = { packets: r.counter.packets, bytes: r.counter.bytes };
  if (r.timeout !== undefined && r.timeout !== 0n) el.timeout = Number(r.timeout);
  return el;
}

// Copies the defined optional fields onto `base`, so decoded objects carry no `undefined`-valued keys.
function withOptional<T extends object>(base: T, optional: Partial<Record<string, unknown>>): T {
  const o = base as Record<string, unknown>;
  for (const k in optional) if (optional[k] !== undefined) o[k] = optional[k];
  return base;
}
