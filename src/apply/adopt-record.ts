/**
 * The adopt record (docs/dataplane.md, "Adopting from the record"): what lets a new handle take over the kernel
 * without listing every element. A handle that committed writes, when it closes, one element into the inet
 * table's set `adopt_record` whose comment says the generation its last commit left and a digest of everything
 * it programmed. A new handle given a state peeks at the record, then looks only at the set names and a
 * few small sets: if the kernel's generation is still the recorded one (nobody committed since) and its own
 * compile of the state has the recorded digest, the kernel holds exactly that compile, and the full listing
 * (about a second at 5000 ports) is skipped. Anything else — another writer, a different state, an older portwall, no record — and
 * the handle lists and diffs as before. The record also names the namespace instance it was written in (a
 * generation alone starts again in a new namespace). It is portwall's bookkeeping, not part of the layout:
 * listings leave it out, so plans, diffs and counts never see it.
 */
import { readFileSync, statSync } from 'node:fs';

import type { PortwallConfig } from '../model/types.js';
import type { Element, NftObject, NftSet, Operation } from '../nft/types.js';

/** The record's set, in the inet table. */
export const ADOPT_RECORD = 'adopt_record';

const RECORD_KEY = [1];

/** What a record says. */
export interface AdoptRecord {
  /** The generation the writer's last commit left. */
  genid: number;
  /** {@link namespaceInstance} of the namespace it was written in. */
  instance: string;
  ports: number;
  groups: number;
  /** {@link digestOf} the writer's objects. */
  digest: string;
  /**
   * The writer owed no conntrack cleanup: every change it committed was followed by a cleanup that succeeded,
   * and whatever it adopted had its full pass. A handle adopting from such a record owes none either.
   */
  clean: boolean;
}

const FORMAT = /^gen (\d+) ns ([0-9a-f]{16}) ports (\d+) groups (\d+) digest ([0-9a-f]+-[0-9a-f]{16})( clean)?$/;

/** The record element's comment (at most 128 bytes, as nft allows). */
export function recordComment(r: AdoptRecord): string {
  return `gen ${r.genid} ns ${r.instance} ports ${r.ports} groups ${r.groups} digest ${r.digest}${r.clean ? ' clean' : ''}`;
}

/**
 * Which namespace, in which boot: a hash of the kernel's boot id and the namespace's nsfs device and inode
 * (`netns`: a name under /run/netns, a path, or null for the caller's). Generations start again in a new
 * namespace, so a record restored into another one (`nft -f` of a saved ruleset, after a reboot or into a
 * namespace made anew) could otherwise meet a generation that happens to match. Undefined when unknown: no
 * record is then written or trusted.
 */
export function namespaceInstance(netns: string | null): string | undefined {
  try {
    const path = netns === null ? '/proc/self/ns/net' : netns.includes('/') ? netns : `/run/netns/${netns}`;
    const st = statSync(path);
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    return new Hasher().start().feed(`${boot} ${st.dev} ${st.ino}`).finish().map(hex8).join('');
  } catch {
    return undefined;
  }
}

/** The record a listing holds, if any (and well-formed). */
export function readRecord(objects: readonly NftObject[], config: PortwallConfig): AdoptRecord | undefined {
  for (const o of objects) {
    if (o.kind !== 'elements' || !isRecord(o, config)) continue;
    const m = FORMAT.exec(o.elements[0]?.comment ?? '');
    if (!m || o.elements.length !== 1) return undefined;
    return { genid: Number(m[1]), instance: m[2]!, ports: Number(m[3]), groups: Number(m[4]), digest: m[5]!, clean: m[6] !== undefined };
  }
  return undefined;
}

/** A listing without the record's set and element. */
export function withoutRecord(objects: NftObject[], config: PortwallConfig): NftObject[] {
  return objects.some((o) => isRecord(o, config)) ? objects.filter((o) => !isRecord(o, config)) : objects;
}

function isRecord(o: NftObject, config: PortwallConfig): boolean {
  if (o.family !== 'inet' || o.kind === 'table' || o.table !== config.tables.inet) return false;
  return (o.kind === 'set' && o.name === ADOPT_RECORD) || (o.kind === 'elements' && o.set === ADOPT_RECORD);
}

/** The operations that write a record: the set (if missing), the old element out, the new one in. */
export function recordOperations(r: AdoptRecord, config: PortwallConfig): Operation[] {
  const table = config.tables.inet;
  const set: NftSet = { kind: 'set', family: 'inet', table, name: ADOPT_RECORD, key: ['mark'], comment: 'portwall: generation and digest of the last commit' };
  const at = (elements: Element[]) => ({ kind: 'elements' as const, family: 'inet' as const, table, set: ADOPT_RECORD, elements });
  return [
    { verb: 'add', object: set },
    { verb: 'destroy', object: at([{ key: RECORD_KEY }]) },
    { verb: 'add', object: at([{ key: RECORD_KEY, comment: recordComment(r) }]) },
  ];
}

/**
 * A digest of a set of objects, independent of their order: the count, and two 32-bit sums of a hash of each
 * object (each element on its own). Equal objects give equal digests whichever way they were computed (a
 * fresh compile, or a handle's state after any number of changes); a difference anywhere changes it but by
 * chance (about 2^-64). Handles are left out. Tables, chains, rules and sets are hashed as they are walked,
 * never spelt out as text first (at 5000 ports, building the text of their ~11 000 took ~50 ms of an agent's
 * start; the walk takes ~15). A record written by a portwall that hashed differently simply does not match:
 * that handle lists the kernel once.
 */
export function digestOf(objects: readonly NftObject[]): string {
  return new DigestSum().objects(objects).text();
}

/**
 * {@link digestOf} as a sum that objects and elements are added to and taken away from, so an engine keeps
 * the digest of its state up to date with each change (the elements it adds and removes, the chains and
 * sets of the units it lays out again) instead of hashing ~100 000 elements for every record it writes.
 */
export class DigestSum {
  count = 0;
  /** The two lanes' sums, modulo 2^32. */
  a = 0;
  b = 0;
  readonly #h = new Hasher();

  /** Adds (`sign` 1) or takes away (-1) each object, and each element on its own. */
  objects(objects: readonly NftObject[], sign: 1 | -1 = 1): this {
    // Indexed loops: an agent's start runs this once, before it is optimised, and there every for-of step
    // allocates an iterator result (~17 MB of them at 5000 ports).
    for (let i = 0; i < objects.length; i++) {
      const o = objects[i]!;
      if (o.kind === 'elements') this.elements(o.family, o.table, o.set, o.elements, sign);
      else {
        this.#h.start().feed(o.kind);
        feedValue(this.#h, o);
        this.#put(sign);
      }
    }
    return this;
  }

  /** Adds or takes away elements of one set. */
  elements(family: string, table: string, set: string, elements: readonly Element[], sign: 1 | -1): this {
    const h = this.#h;
    // The set's part is fed once; each element continues from it.
    h.start().feed(family).feed(table).feed(set);
    const a0 = h.a;
    const b0 = h.b;
    for (let j = 0; j < elements.length; j++) {
      const e = elements[j]!;
      h.a = a0;
      h.b = b0;
      for (let k = 0; k < e.key.length; k++) {
        const v = e.key[k]!;
        h.feed(typeof v === 'string' ? v : String(v));
      }
      h.feed(e.data === undefined ? '' : String(e.data));
      feedValue(h, e.verdict);
      h.feed(e.comment ?? '');
      h.feed(e.timeout === undefined ? '' : String(e.timeout));
      this.#put(sign);
    }
    return this;
  }

  /** Adds another sum (or takes it away). */
  add(other: DigestSum, sign: 1 | -1 = 1): this {
    this.count += sign * other.count;
    this.a = (this.a + sign * other.a) >>> 0;
    this.b = (this.b + sign * other.b) >>> 0;
    return this;
  }

  /** The digest's text, as a record carries it. */
  text(): string {
    return `${this.count.toString(16)}-${hex8(this.a)}${hex8(this.b)}`;
  }

  // The current item's two lanes, finished, added into the sums (or taken away: both wrap at 2^32).
  #put(sign: 1 | -1): void {
    this.a = (this.a + sign * finishA(this.#h.a)) >>> 0;
    this.b = (this.b + sign * finishB(this.#h.b)) >>> 0;
    this.count += sign;
  }
}

const hex8 = (x: number): string => x.toString(16).padStart(8, '0');

/**
 * Two independent 32-bit multiply-xorshift lanes over the UTF-16 code units of the strings fed (each string
 * ends with a separator, so the parts' boundaries count), finished with an avalanche step.
 */
class Hasher {
  a = 0;
  b = 0;

  start(): this {
    this.a = 0x811c9dc5;
    this.b = 0x2545f491;
    return this;
  }

  feed(s: string): this {
    let a = this.a;
    let b = this.b;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      a = Math.imul(a ^ c, 0x01000193);
      b = Math.imul(b ^ c, 0x5bd1e995);
      b ^= b >>> 15;
    }
    this.a = a;
    this.b = b;
    return this.tag(SEPARATOR);
  }

  /** One value outside the code units' range (a marker, below), or a 32-bit integer after {@link INT}. */
  tag(x: number): this {
    this.a = Math.imul(this.a ^ x, 0x01000193);
    this.b = Math.imul(this.b ^ x, 0x5bd1e995);
    return this;
  }

  /** The current item's two lanes, finished. */
  finish(): [number, number] {
    return [finishA(this.a), finishB(this.b)];
  }
}

function finishA(a: number): number {
  a ^= a >>> 16;
  a = Math.imul(a, 0x85ebca6b);
  a ^= a >>> 13;
  a = Math.imul(a, 0xc2b2ae35);
  a ^= a >>> 16;
  return a >>> 0;
}

function finishB(b: number): number {
  b ^= b >>> 13;
  b = Math.imul(b, 0x27d4eb2f);
  b ^= b >>> 16;
  return b >>> 0;
}

// The end of every string fed, and markers of a value's structure: values no code unit has.
const SEPARATOR = 0x10000;
const STR = 0x10001;
const INT = 0x10002;
const NUM = 0x10003;
const BIG = 0x10004;
const BYTES = 0x10005;
const BOOL = 0x10006;
const NULL = 0x10007;
const OPEN = 0x10008;
const CLOSE = 0x10009;
const LIST = 0x1000a;

// A table, chain, rule or set, fed field by field (one builder makes each kind of object, in a fresh compile as
// after changes, so the fields come in one order): undefined fields and handles left out.
function feedValue(h: Hasher, v: unknown): void {
  switch (typeof v) {
    case 'string':
      h.tag(STR).feed(v);
      return;
    case 'number':
      if ((v | 0) === v) h.tag(INT).tag(v);
      else h.tag(NUM).feed(String(v));
      return;
    case 'bigint':
      h.tag(BIG).feed(v.toString(16));
      return;
    case 'boolean':
      h.tag(BOOL).tag(v ? 1 : 0);
      return;
    case 'object':
      break;
    default:
      h.tag(NULL).feed(String(v));
      return;
  }
  if (v === null) {
    h.tag(NULL);
    return;
  }
  if (v instanceof Uint8Array) {
    h.tag(BYTES).tag(v.length);
    for (let i = 0; i < v.length; i++) h.tag(v[i]!);
    return;
  }
  if (Array.isArray(v)) {
    h.tag(LIST);
    for (let i = 0; i < v.length; i++) feedValue(h, v[i]);
    h.tag(CLOSE);
    return;
  }
  h.tag(OPEN);
  const o = v as Record<string, unknown>;
  for (const k in o) {
    const x = o[k];
    if (x === undefined || k === 'handle') continue;
    h.feed(k);
    feedValue(h, x);
  }
  h.tag(CLOSE);
}
