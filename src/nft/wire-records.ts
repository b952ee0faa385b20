/**
 * The record layer of the wire (docs/wire.md): kernel-shaped records, one field per wire field, written and
 * read with their presence masks. No meaning is added here — `./wire.ts` maps typed objects to records and
 * back, and the fake binding keeps its in-memory ruleset as records, as the kernel keeps netlink attributes.
 */
import { PortwallError } from '../errors.js';
import { WireReader, WireWriter } from './cursor.js';
import { readExpr, writeExpr } from './wire-exprs.js';
import type { Expr } from './types.js';

/** "PWB1" little-endian. */
export const WIRE_MAGIC = 0x31425750;

/** Verb numbers (0 = a dump record). */
export const VERB_CODES = {
  dump: 0,
  add: 1,
  create: 2,
  insert: 3,
  replace: 4,
  delete: 5,
  flush: 6,
  destroy: 7,
} as const;

/** Kind numbers. */
export const KIND_CODES = { table: 1, chain: 2, rule: 3, set: 4, elements: 5 } as const;

/** A table record (fields as in docs/wire.md). */
export interface RawTable {
  kind: 'table';
  name?: string;
  handle?: bigint;
  flags?: number;
  use?: number;
  userdata?: Uint8Array;
}

/** A chain record. */
export interface RawChain {
  kind: 'chain';
  table?: string;
  name?: string;
  handle?: bigint;
  hook?: number;
  priority?: number;
  policy?: number;
  type?: string;
  device?: string;
  use?: number;
  userdata?: Uint8Array;
  flags?: number;
}

/** A rule record; expressions are already kernel-shaped (`./types.ts` Expr). */
export interface RawRule {
  kind: 'rule';
  table?: string;
  chain?: string;
  handle?: bigint;
  position?: bigint;
  userdata?: Uint8Array;
  exprs?: Expr[];
}

/** A set record. */
export interface RawSet {
  kind: 'set';
  table?: string;
  name?: string;
  handle?: bigint;
  flags?: number;
  keyType?: number;
  keyLen?: number;
  dataType?: number;
  dataLen?: number;
  id?: number;
  fieldLens?: number[];
  policy?: number;
  size?: number;
  userdata?: Uint8Array;
  counter?: boolean;
  /** Milliseconds. */
  timeout?: bigint;
  gcInterval?: number;
}

/** One kernel set element. */
export interface RawElement {
  key?: Uint8Array;
  keyEnd?: Uint8Array;
  data?: Uint8Array;
  verdict?: { code: number; chain: string };
  flags?: number;
  userdata?: Uint8Array;
  counter?: { packets: bigint; bytes: bigint };
  timeout?: bigint;
  expiration?: bigint;
}

/** An elements record: one set's elements. */
export interface RawElements {
  kind: 'elements';
  table?: string;
  set?: string;
  setId?: number;
  elements: RawElement[];
}

/**
 * An elements record to write whose elements are produced while it is written (each can go as soon as its
 * bytes are out; the count is filled in afterwards).
 */
export interface StreamedElements extends Omit<RawElements, 'elements'> {
  /** The elements, or a writer of them that returns how many it wrote (see {@link writeElement}). */
  elements: Iterable<RawElement> | ((w: WireWriter) => number);
}

/** Any record body. */
export type RawBody = RawTable | RawChain | RawRule | RawSet | RawElements;

/** One record: verb, kind (in the body), NFPROTO family, body. */
export type RawRecord = RawBody & { verb: number; family: number };

/** Resolves the batch id of a set created in the same batch (0 when none); used by lookups. */
export type SetIdOf = (family: number, table: string, name: string) => number;

// Field codecs, in bit order, per kind. Masked bodies are generic; only the element list is special.
type Codec = 'str' | 'u32' | 'i32' | 'u64' | 'bytes' | 'bool' | 'lens' | 'exprs';
const FIELDS: Record<RawBody['kind'], ReadonlyArray<readonly [string, Codec]>> = {
  table: [['name', 'str'], ['handle', 'u64'], ['flags', 'u32'], ['use', 'u32'], ['userdata', 'bytes']],
  chain: [
    ['table', 'str'], ['name', 'str'], ['handle', 'u64'], ['hook', 'u32'], ['priority', 'i32'], ['policy', 'u32'],
    ['type', 'str'], ['device', 'str'], ['use', 'u32'], ['userdata', 'bytes'], ['flags', 'u32'],
  ],
  rule: [
    ['table', 'str'], ['chain', 'str'], ['handle', 'u64'], ['position', 'u64'], ['userdata', 'bytes'],
    ['exprs', 'exprs'],
  ],
  set: [
    ['table', 'str'], ['name', 'str'], ['handle', 'u64'], ['flags', 'u32'], ['keyType', 'u32'], ['keyLen', 'u32'],
    ['dataType', 'u32'], ['dataLen', 'u32'], ['id', 'u32'], ['fieldLens', 'lens'], ['policy', 'u32'],
    ['size', 'u32'], ['userdata', 'bytes'], ['counter', 'bool'], ['timeout', 'u64'], ['gcInterval', 'u32'],
  ],
  elements: [['table', 'str'], ['set', 'str'], ['setId', 'u32']],
};

const KIND_NAMES = new Map<number, RawBody['kind']>(
  Object.entries(KIND_CODES).map(([n, c]) => [c, n as RawBody['kind']]),
);

/** Writes a complete stream (magic, count, records). */
export function writeRecords(records: RawRecord[], setIdOf: SetIdOf = () => 0): Buffer {
  const out = new RecordWriter(records.length);
  for (const rec of records) out.write(rec, setIdOf);
  return out.finish();
}

/**
 * Writes a stream record by record, so a caller can build each record, write it and let it go: a full sync's
 * 100k elements then never exist as records all at once (docs/wire.md).
 */
export class RecordWriter {
  readonly #w: WireWriter;
  readonly #count: number;
  #written = 0;

  /**
   * A stream of exactly `count` records, in a buffer of `sizeHint` bytes to begin with (a good guess spares the
   * doublings, each of which leaves the previous buffer to the collector).
   */
  constructor(count: number, sizeHint = 64 + count * 96) {
    this.#count = count;
    this.#w = new WireWriter(sizeHint);
    this.#w.u32(WIRE_MAGIC);
    this.#w.u32(count);
  }

  /** Appends one record; rule lookups name their set's batch id through `setIdOf`. */
  write(rec: RawRecord | (StreamedElements & { verb: number; family: number }), setIdOf: SetIdOf = () => 0): void {
    if (this.#written === this.#count) throw new PortwallError('ERR_WIRE', `more than the ${this.#count} records announced`);
    this.#written++;
    const w = this.#w;
    w.u8(rec.verb);
    w.u8(KIND_CODES[rec.kind]);
    w.u8(rec.family);
    writeMasked(w, FIELDS[rec.kind], rec as unknown as Record<string, unknown>, (name) => setIdOf(rec.family, (rec as RawRule).table ?? '', name));
    if (rec.kind === 'elements') {
      const count = w.placeholderU32();
      let n = 0;
      if (typeof rec.elements === 'function') n = rec.elements(w);
      else {
        for (const el of rec.elements) {
          writeElement(w, el);
          n++;
        }
      }
      w.patchU32(count, n);
    }
  }

  /** The stream; every announced record must have been written. */
  finish(): Buffer {
    if (this.#written !== this.#count) throw new PortwallError('ERR_WIRE', `${this.#written} of the ${this.#count} records announced`);
    return this.#w.finish();
  }
}

function writeMasked(
  w: WireWriter,
  fields: ReadonlyArray<readonly [string, Codec]>,
  body: Record<string, unknown>,
  setId: (name: string) => number,
): void {
  let mask = 0;
  fields.forEach(([name], i) => {
    if (body[name] !== undefined) mask |= 1 << i;
  });
  w.u32(mask);
  for (const [name, codec] of fields) {
    const v = body[name];
    if (v === undefined) continue;
    switch (codec) {
      case 'str': w.str(v as string); break;
      case 'u32': w.u32(v as number); break;
      case 'i32': w.i32(v as number); break;
      case 'u64': w.u64(v as bigint); break;
      case 'bytes': w.bytes(v as Uint8Array); break;
      case 'bool': w.u8(v ? 1 : 0); break;
      case 'lens': {
        const lens = v as number[];
        w.u8(lens.length);
        for (const l of lens) w.u8(l);
        break;
      }
      case 'exprs': {
        const exprs = v as Expr[];
        w.u16(exprs.length);
        for (const e of exprs) writeExpr(w, e, setId);
        break;
      }
    }
  }
}

const has = (v: unknown, bit: number): number => (v === undefined ? 0 : bit);

/** Element mask bits, in the order of the fields below (writers of their own elements build masks from them). */
export const ELEMENT_FIELD = { key: 1, keyEnd: 2, data: 4, verdict: 8, flags: 16, userdata: 32, counter: 64, timeout: 128, expiration: 256 } as const;

/** One element: its presence mask, then each present field in mask order. */
export function writeElement(w: WireWriter, el: RawElement): void {
  // No array per element for the mask: a full sync writes 100k of them.
  const f = ELEMENT_FIELD;
  w.u32(
    has(el.key, f.key) | has(el.keyEnd, f.keyEnd) | has(el.data, f.data) | has(el.verdict, f.verdict) | has(el.flags, f.flags) |
      has(el.userdata, f.userdata) | has(el.counter, f.counter) | has(el.timeout, f.timeout) | has(el.expiration, f.expiration),
  );
  if (el.key) w.bytes(el.key);
  if (el.keyEnd) w.bytes(el.keyEnd);
  if (el.data) w.bytes(el.data);
  if (el.verdict) {
    w.i32(el.verdict.code);
    w.str(el.verdict.chain);
  }
  if (el.flags !== undefined) w.u32(el.flags);
  if (el.userdata) w.bytes(el.userdata);
  if (el.counter) {
    w.u64(el.counter.packets);
    w.u64(el.counter.bytes);
  }
  if (el.timeout !== undefined) w.u64(el.timeout);
  if (el.expiration !== undefined) w.u64(el.expiration);
}

/** Reads a complete stream; throws ERR_WIRE on a bad magic, an unknown kind or trailing bytes. */
export function readRecords(buf: Buffer): RawRecord[] {
  const r = new WireReader(buf);
  const magic = r.u32();
  if (magic !== WIRE_MAGIC) throw new PortwallError('ERR_WIRE', `bad wire magic 0x${magic.toString(16)}`);
  const count = r.u32();
  const out: RawRecord[] = [];
  for (let i = 0; i < count; i++) {
    const verb = r.u8();
    const kindCode = r.u8();
    const family = r.u8();
    const kind = KIND_NAMES.get(kindCode);
    if (kind === undefined) throw new PortwallError('ERR_WIRE', `record ${i}: unknown kind ${kindCode}`);
    const rec = { verb, kind, family, ...readMasked(r, FIELDS[kind]) } as RawRecord;
    if (rec.kind === 'elements') {
      const n = r.u32();
      rec.elements = [];
      for (let j = 0; j < n; j++) rec.elements.push(readElement(r));
    }
    out.push(rec);
  }
  if (!r.done) throw new PortwallError('ERR_WIRE', `${buf.length - r.position} trailing bytes after ${count} records`);
  return out;
}

function readMasked(r: WireReader, fields: ReadonlyArray<readonly [string, Codec]>): Record<string, unknown> {
  const mask = r.u32();
  const o: Record<string, unknown> = {};
  fields.forEach(([name, codec], i) => {
    if (!(mask & (1 << i))) return;
    switch (codec) {
      case 'str': o[name] = r.str(); break;
      case 'u32': o[name] = r.u32(); break;
      case 'i32': o[name] = r.i32(); break;
      case 'u64': o[name] = r.u64(); break;
      case 'bytes': o[name] = r.bytes(); break;
      case 'bool': o[name] = r.u8() !== 0; break;
      case 'lens': {
        const n = r.u8();
        const lens: number[] = [];
        for (let j = 0; j < n; j++) lens.push(r.u8());
        o[name] = lens;
        break;
      }
      case 'exprs': {
        const n = r.u16();
        const exprs: Expr[] = [];
        for (let j = 0; j < n; j++) exprs.push(readExpr(r));
        o[name] = exprs;
        break;
      }
    }
  });
  return o;
}

function readElement(r: WireReader): RawElement {
  const mask = r.u32();
  const el: RawElement = {};
  if (mask & 1) el.key = r.bytes();
  if (mask & 2) el.keyEnd = r.bytes();
  if (mask & 4) el.data = r.bytes();
  if (mask & 8) el.verdict = { code: r.i32(), chain: r.str() };
  if (mask & 16) el.flags = r.u32();
  if (mask & 32) el.userdata = r.bytes();
  if (mask & 64) el.counter = { packets: r.u64(), bytes: r.u64() };
  if (mask & 128) el.timeout = r.u64();
  if (mask & 256) el.expiration = r.u64();
  return el;
}
