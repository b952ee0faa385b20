/**
 * The meaning of bytes: nftables datatypes used as set keys, map data and typed values in rules.
 *
 * Every value is handled as an interval [lo, hi] of big-endian integers over the type's width (a single value
 * is lo = hi; a prefix or an interface wildcard is the interval it covers). That one representation serves
 * validation, canonical spelling, set keys (`key` = lo, `keyEnd` = hi) and rule operands.
 *
 * Byte order follows nft: addresses, ports and EtherTypes are big endian; marks, conntrack state and other
 * integer meta values are in host order (little endian on every host portwall supports) — except inside
 * interval sets, whose keys nft always stores big endian so that ranges compare correctly.
 *
 * Prefixes with host bits set are normalised, never rejected: `192.0.2.5/24` becomes `192.0.2.0/24`, a
 * full-length prefix becomes the plain address, and a range that is exactly a prefix is written as one.
 */
import { PortwallError } from '../errors.js';
import { fastIPv4, fastIPv6, fastMac, formatIPv4, formatIPv6, formatIPv6Bytes, formatMac, parseIPv4, parseIPv6, parseMac } from './addresses.js';
import { NFT_DATA_VERDICT } from './constants.js';
import type { DataTypeName, Value } from './types.js';
import { SYMBOLS, symbolName, symbolValue } from './symbols.js';

/** Byte order of a type's values in registers and non-interval set keys. */
export type ByteOrder = 'big' | 'host';

type Kind = 'ipv4' | 'ipv6' | 'mac' | 'ifname' | 'integer' | 'bitmask' | 'verdict';

/** One nftables datatype: nft's enum number, its width in bytes and its byte order. */
export interface DataType {
  readonly name: DataTypeName;
  /** nft's `enum datatypes` number (what set key/data types carry in the kernel). */
  readonly id: number;
  readonly size: number;
  readonly order: ByteOrder;
  readonly kind: Kind;
}

const dt = (name: DataTypeName, id: number, size: number, order: ByteOrder, kind: Kind): DataType =>
  ({ name, id, size, order, kind });

/** Every datatype portwall speaks, checked against nftables' include/datatype.h. */
export const DATATYPES: Readonly<Record<DataTypeName, DataType>> = {
  verdict: dt('verdict', 1, 0, 'host', 'verdict'),
  nf_proto: dt('nf_proto', 2, 1, 'host', 'integer'),
  integer: dt('integer', 4, 4, 'host', 'integer'),
  ipv4_addr: dt('ipv4_addr', 7, 4, 'big', 'ipv4'),
  ipv6_addr: dt('ipv6_addr', 8, 16, 'big', 'ipv6'),
  ether_addr: dt('ether_addr', 9, 6, 'big', 'mac'),
  ether_type: dt('ether_type', 10, 2, 'big', 'integer'),
  arp_op: dt('arp_op', 11, 2, 'big', 'integer'),
  inet_proto: dt('inet_proto', 12, 1, 'big', 'integer'),
  inet_service: dt('inet_service', 13, 2, 'big', 'integer'),
  icmp_type: dt('icmp_type', 14, 1, 'big', 'integer'),
  mark: dt('mark', 19, 4, 'host', 'integer'),
  ct_state: dt('ct_state', 26, 4, 'host', 'bitmask'),
  icmpv6_type: dt('icmpv6_type', 29, 1, 'big', 'integer'),
  icmp_code: dt('icmp_code', 32, 1, 'big', 'integer'),
  icmpv6_code: dt('icmpv6_code', 33, 1, 'big', 'integer'),
  ifname: dt('ifname', 41, 16, 'big', 'ifname'),
  // Not a datatype of nft's: a conntrack zone is a 16-bit integer (type 4, length 2 in the kernel), declared
  // and printed through `typeof … : ct zone` (NftSet.typeof).
  ct_zone: dt('ct_zone', 4, 2, 'host', 'integer'),
};

/** Bits per field in a concatenated key type (nft's TYPE_BITS): the type is the field ids shifted in. */
export const TYPE_BITS = 6;
/** Most fields a key type can name: 5 × 6 bits fill the kernel's 32-bit key type. */
const MAX_KEY_FIELDS = 5;

const BY_ID = new Map(Object.values(DATATYPES).filter((t) => t.name !== 'ct_zone').map((t) => [t.id, t.name]));

/** An inclusive interval of big-endian integers; a single value has lo === hi. */
export interface Interval {
  lo: bigint;
  hi: bigint;
}

/** The datatype of nft's type number (NFT_DATA_VERDICT for verdict maps). Unknown numbers are ERR_WIRE. */
export function dataTypeOf(id: number): DataTypeName {
  const name = id === NFT_DATA_VERDICT ? 'verdict' : BY_ID.get(id);
  if (name === undefined) throw new PortwallError('ERR_WIRE', `nft datatype ${id} is not one portwall knows`);
  return name;
}

const padded = (n: number): number => (n + 3) & ~3;

/**
 * The kernel's key type and length of a set key: one type → its id and size; a concatenation → the ids
 * shifted in TYPE_BITS at a time and each field padded to 4 bytes. `fieldLens` are the unpadded field sizes
 * that concatenated interval sets declare.
 */
export function setKeyType(types: DataTypeName[]): { keyType: number; keyLen: number; fieldLens: number[] } {
  if (types.length === 0 || types.length > MAX_KEY_FIELDS || types.includes('verdict')) {
    throw new PortwallError('ERR_INVALID_OBJECT', `a set key needs 1–${MAX_KEY_FIELDS} non-verdict types`, {
      field: 'key',
    });
  }
  const fieldLens = types.map((t) => DATATYPES[t].size);
  // The shift stays below 2^32 for five fields; `>>> 0` keeps the result unsigned.
  const keyType = types.reduce((acc, t) => ((acc << TYPE_BITS) | DATATYPES[t].id) >>> 0, 0);
  return { keyType, keyLen: keyLenOf(types), fieldLens };
}

/** The key length {@link setKeyType} gives valid `types`, without building the rest (once per element list). */
export function keyLenOf(types: readonly DataTypeName[]): number {
  if (types.length === 1) return DATATYPES[types[0]!].size;
  let n = 0;
  for (const t of types) n += padded(DATATYPES[t].size);
  return n;
}

/** The inverse of {@link setKeyType} for dumps: the field types of a key type, checked against its length. */
export function keyTypeNames(keyType: number, keyLen: number): DataTypeName[] {
  const names: DataTypeName[] = [];
  for (let t = keyType >>> 0; t !== 0; t = Math.floor(t / (1 << TYPE_BITS))) {
    names.unshift(dataTypeOf(t & ((1 << TYPE_BITS) - 1)));
  }
  const single = names.length === 1 && (names[0] === 'integer' || DATATYPES[names[0]!].size === keyLen);
  if (names.length === 0 || (!single && setKeyType(names).keyLen !== keyLen)) {
    throw new PortwallError('ERR_WIRE', `set key type ${keyType} does not fit key length ${keyLen}`);
  }
  return names;
}

/** Data type and length of a map's data as the kernel declares them (verdict maps: NFT_DATA_VERDICT, 0). */
export function mapDataType(type: DataTypeName): { dataType: number; dataLen: number } {
  if (type === 'verdict') return { dataType: NFT_DATA_VERDICT, dataLen: 0 };
  return { dataType: DATATYPES[type].id, dataLen: DATATYPES[type].size };
}

const WHAT: Record<Kind, string> = {
  ipv4: 'an IPv4 address, prefix or range',
  ipv6: 'an IPv6 address, prefix or range',
  mac: 'a MAC address (aa:bb:cc:dd:ee:ff) or range',
  ifname: 'an interface name (1–15 bytes without "/", ":", quotes, spaces; "name*" for a wildcard)',
  integer: 'a number, a name or a range of them',
  bitmask: 'a list of names or a number',
  verdict: 'a verdict (accept, drop, return, continue, jump CHAIN, goto CHAIN)',
};

function invalid(type: DataTypeName, value: unknown, field: string | undefined, what?: string): PortwallError {
  const shown = typeof value === 'string' ? `"${value}"` : String(value);
  return new PortwallError('ERR_INVALID_VALUE', `${type}: ${shown} is not ${what ?? WHAT[DATATYPES[type].kind]}`, {
    ...(field === undefined ? {} : { field }),
  });
}

const mask = (bits: number): bigint => (1n << BigInt(bits)) - 1n;

/** The prefix length of an interval when it is exactly one CIDR block of a `bits`-wide space. */
export function prefixLength(iv: Interval, bits: number): number | undefined {
  const hostMask = iv.lo ^ iv.hi;
  if ((hostMask & (hostMask + 1n)) !== 0n || (iv.lo & hostMask) !== 0n) return undefined;
  return bits - hostMask.toString(2).replace(/^0$/, '').length;
}

// Interface names as the kernel's dev_valid_name() accepts them, minus what nft cannot quote.
const IFNAME_BAD = /[/:\s"\\*\0]/;

function parseIfname(s: string): Interval | undefined {
  const wildcard = s.endsWith('*');
  const name = wildcard ? s.slice(0, -1) : s;
  const bytes = Buffer.from(name, 'utf8');
  if (bytes.length === 0 || bytes.length > 15 || name === '.' || name === '..' || IFNAME_BAD.test(name)) return undefined;
  const lo = BigInt(`0x${bytes.toString('hex')}`) << BigInt(8 * (16 - bytes.length));
  return { lo, hi: wildcard ? lo | mask(8 * (16 - bytes.length)) : lo };
}

function formatIfname(iv: Interval): string | undefined {
  const hex = iv.lo.toString(16).padStart(32, '0');
  const bytes = Buffer.from(hex, 'hex');
  const end = bytes.indexOf(0);
  const len = end < 0 ? 16 : end;
  if (len === 16 || len === 0 || bytes.subarray(len).some((b) => b !== 0)) return undefined;
  const name = bytes.subarray(0, len).toString('utf8');
  if (iv.hi === iv.lo) return name;
  return iv.hi === (iv.lo | mask(8 * (16 - len))) ? `${name}*` : undefined;
}

const NUMBER = /^(?:0|[1-9][0-9]*|0x[0-9a-fA-F]+)$/;

function parseNumber(type: DataTypeName, s: string | number, bits: number): bigint | undefined {
  let n: bigint | undefined;
  if (typeof s === 'number') n = Number.isSafeInteger(s) && s >= 0 ? BigInt(s) : undefined;
  else if (NUMBER.test(s)) n = BigInt(s);
  else n = symbolValue(type, s);
  return n !== undefined && n <= mask(bits) ? n : undefined;
}

function parseIntegerish(type: DataTypeName, v: Value, bits: number): Interval | undefined {
  if (DATATYPES[type].kind === 'bitmask') {
    if (typeof v === 'number') {
      return Number.isInteger(v) && v >= 0 && v <= 0xffffffff ? { lo: BigInt(v), hi: BigInt(v) } : undefined;
    }
    let n = 0n;
    for (const part of v.split(',')) {
      const p = parseNumber(type, part, bits);
      if (p === undefined) return undefined;
      n |= p;
    }
    return { lo: n, hi: n };
  }
  const single = parseNumber(type, v, bits);
  if (single !== undefined) return { lo: single, hi: single };
  if (typeof v !== 'string') return undefined;
  // Symbol names contain dashes too (echo-request): try every dash as the range separator.
  for (let i = v.indexOf('-'); i > 0; i = v.indexOf('-', i + 1)) {
    const lo = parseNumber(type, v.slice(0, i), bits);
    const hi = parseNumber(type, v.slice(i + 1), bits);
    if (lo !== undefined && hi !== undefined) return { lo, hi };
  }
  return undefined;
}

function parseAddress(kind: 'ipv4' | 'ipv6' | 'mac', v: string, bits: number): Interval | undefined {
  const one = kind === 'ipv4' ? parseIPv4 : kind === 'ipv6' ? parseIPv6 : parseMac;
  const slash = v.indexOf('/');
  if (slash >= 0 && kind !== 'mac') {
    const addr = one(v.slice(0, slash));
    const len = v.slice(slash + 1);
    if (addr === undefined || !/^(?:0|[1-9][0-9]*)$/.test(len) || Number(len) > bits) return undefined;
    const host = mask(bits - Number(len));
    return { lo: addr & ~host, hi: (addr & ~host) | host };
  }
  const dash = v.indexOf('-');
  if (dash < 0) {
    const a = one(v);
    return a === undefined ? undefined : { lo: a, hi: a };
  }
  const lo = one(v.slice(0, dash));
  const hi = one(v.slice(dash + 1));
  return lo === undefined || hi === undefined ? undefined : { lo, hi };
}

/**
 * Parses one value of `type` into the interval it covers. `bits` overrides the width for integers loaded
 * narrower than their datatype (e.g. the 16-bit conntrack zone); `field` names the value in errors.
 */
export function parseInterval(type: DataTypeName, value: Value, opts: { bits?: number; field?: string } = NO_OPTIONS): Interval {
  const t = DATATYPES[type];
  const bits = opts.bits ?? t.size * 8;
  // A host repeats the same few values (devices, protocols, prefixes) across thousands of elements, and a
  // value is parsed once when validated and again when encoded: remember recent parses.
  const cache = parseCache(type, bits);
  const hit = cache.get(value);
  if (hit) return hit;
  let iv: Interval | undefined;
  if (t.kind === 'integer' || t.kind === 'bitmask') iv = parseIntegerish(type, value, bits);
  else if (typeof value === 'string') {
    if (t.kind === 'ifname') iv = parseIfname(value);
    else if (t.kind !== 'verdict') iv = parseAddress(t.kind, value, bits);
  }
  if (iv === undefined || t.kind === 'verdict') throw invalid(type, value, opts.field);
  if (iv.lo > iv.hi) throw invalid(type, value, opts.field, 'a range with its start at or below its end');
  if (parsedCount >= PARSE_CACHE_MAX) {
    parsedCount = 0;
    parsed.clear();
  }
  parsedCount++;
  cache.set(value, Object.freeze(iv));
  return iv;
}

const NO_OPTIONS = {};
const PARSE_CACHE_MAX = 8_192;
// Recent parses per type and width, keyed by the value itself (a Map keeps 80 and '80' apart).
const parsed = new Map<string, Map<Value, Interval>>();
let parsedCount = 0;

function parseCache(type: DataTypeName, bits: number): Map<Value, Interval> {
  const key = bits === DATATYPES[type].size * 8 ? type : `${type}|${bits}`;
  let cache = parsed.get(key);
  if (!cache) parsed.set(key, (cache = new Map()));
  return cache;
}

/** The canonical value of an interval (see the module comment for the normal forms). */
export function formatInterval(type: DataTypeName, iv: Interval, bits = DATATYPES[type].size * 8): Value {
  const t = DATATYPES[type];
  switch (t.kind) {
    case 'ipv4':
    case 'ipv6':
    case 'mac': {
      const f = t.kind === 'ipv4' ? formatIPv4 : t.kind === 'ipv6' ? formatIPv6 : formatMac;
      if (iv.lo === iv.hi) return f(iv.lo);
      const len = t.kind === 'mac' ? undefined : prefixLength(iv, bits);
      return len === undefined ? `${f(iv.lo)}-${f(iv.hi)}` : `${f(iv.lo)}/${len}`;
    }
    case 'ifname': {
      const name = formatIfname(iv);
      if (name === undefined) throw new PortwallError('ERR_WIRE', 'ifname: bytes that are no interface name or wildcard');
      return name;
    }
    default:
      return iv.lo === iv.hi ? Number(iv.lo) : `${iv.lo}-${iv.hi}`;
  }
}

const VERDICT_TEXT = /^(?:accept|drop|return|continue|(?:jump|goto) [A-Za-z0-9_.-]{1,255})$/;

/**
 * Validates one value of `type` and returns its canonical form: numbers for integer types (protocols, ports,
 * ICMP types, marks, conntrack state bits), strings for addresses, prefixes, ranges (`'1000-2000'`) and names.
 * Throws ERR_INVALID_VALUE naming the type and value (and `field` when given).
 */
export function canonicalValue(type: DataTypeName, value: Value, field?: string): Value {
  if (type === 'verdict') {
    if (typeof value === 'string' && VERDICT_TEXT.test(value)) return value;
    throw invalid(type, value, field);
  }
  return formatInterval(type, parseInterval(type, value, { field }));
}

/** A big-endian integer as `len` bytes in the given byte order. */
export function toBytes(n: bigint, len: number, order: ByteOrder): Uint8Array {
  const out = new Uint8Array(len);
  writeBytes(out, 0, n, len, order);
  return out;
}

// Writes `n` as `len` bytes at `off`; values that fit a double are split without BigInt arithmetic.
function writeBytes(out: Uint8Array, off: number, n: bigint, len: number, order: ByteOrder): void {
  if (len <= 6) {
    let v = Number(n);
    for (let i = len - 1; i >= 0; i--, v = Math.floor(v / 256)) out[off + (order === 'host' ? len - 1 - i : i)] = v % 256;
    return;
  }
  // Longer values (IPv6 addresses): 64 bits at a time, most significant first, then whatever is left.
  let i = 0;
  for (; i + 8 <= len; i += 8) {
    SCRATCH.setBigUint64(0, BigInt.asUintN(64, n >> BigInt((len - i - 8) * 8)));
    for (let j = 0; j < 8; j++) out[off + (order === 'host' ? len - 1 - i - j : i + j)] = SCRATCH_BYTES[j]!;
  }
  for (let k = len - 1, rest = n; k >= i; k--, rest >>= 8n) out[off + (order === 'host' ? len - 1 - k : k)] = Number(rest & 0xffn);
}

const SCRATCH_BYTES = new Uint8Array(8);
const SCRATCH = new DataView(SCRATCH_BYTES.buffer);

/** Bytes in the given byte order as an integer. */
export function fromBytes(bytes: Uint8Array, order: ByteOrder): bigint {
  const be = order === 'host' ? Uint8Array.from(bytes).reverse() : bytes;
  // Addresses (4 and 16 bytes) in whole words: a big integer per byte costs microseconds per address.
  if (be.length === 4 || be.length === 16) {
    const v = new DataView(be.buffer, be.byteOffset, be.length);
    return be.length === 4 ? BigInt(v.getUint32(0)) : (v.getBigUint64(0) << 64n) | v.getBigUint64(8);
  }
  return be.reduce((acc, b) => (acc << 8n) | BigInt(b), 0n);
}

const SINGLE_ONLY = 'a single value (ranges and prefixes need an interval)';

function single(type: DataTypeName, value: Value, field?: string): bigint {
  const iv = parseInterval(type, value, { field });
  if (iv.lo !== iv.hi) throw invalid(type, value, field, SINGLE_ONLY);
  return iv.lo;
}

// Parses key field i; the field is named only when the value is invalid (no string per field of 100k keys).
function parseKeyField(type: DataTypeName, value: Value, i: number): Interval {
  try {
    return parseInterval(type, value);
  } catch {
    return parseInterval(type, value, { field: `key[${i}]` }); // throws again, naming the field
  }
}

/** The register/kernel bytes of one single value (host-order types little endian). */
export function encodeValue(type: DataTypeName, value: Value): Uint8Array {
  const t = DATATYPES[type];
  if (t.kind === 'verdict') throw invalid(type, value, undefined, 'encodable: verdicts travel as Element.verdict');
  return toBytes(single(type, value), t.size, t.order);
}

/** The canonical value of kernel bytes of `type` (integers may be narrower than the type, e.g. a zone). */
export function decodeValue(type: DataTypeName, bytes: Uint8Array): Value {
  const t = DATATYPES[type];
  const ok = t.kind === 'integer' ? bytes.length >= 1 && bytes.length <= 4 : bytes.length === t.size;
  if (!ok || t.kind === 'verdict') throw new PortwallError('ERR_WIRE', `${type}: ${bytes.length} bytes are no value`);
  const n = fromBytes(bytes, t.order);
  return formatInterval(type, { lo: n, hi: n }, bytes.length * 8);
}

/**
 * The key bytes of a set element: one field as is, concatenations with each field padded to 4 bytes. In an
 * interval set the key is the start and `keyEnd` the inclusive end of every field (equal to the key for single
 * values; nft sends both for concatenated interval sets, and the rbtree encoding of one-field interval sets is
 * derived from them), in big endian whatever the type. Ranges and prefixes need `interval`.
 */
export function encodeKey(
  types: DataTypeName[],
  values: Value[],
  interval: boolean,
): { key: Uint8Array; keyEnd?: Uint8Array } {
  let keyLen = 0;
  for (const type of types) keyLen += types.length > 1 ? padded(DATATYPES[type].size) : DATATYPES[type].size;
  // Start and end share one buffer (a full sync encodes 100k keys: one allocation each, not two).
  const bytes = new Uint8Array(interval ? 2 * keyLen : keyLen);
  encodeKeyInto(types, values, interval, bytes, 0, keyLen);
  return interval ? { key: bytes.subarray(0, keyLen), keyEnd: bytes.subarray(keyLen) } : { key: bytes };
}

/**
 * {@link encodeKey} into `out`, which must be zero where the key goes: the key at `at` and, for an interval,
 * its end at `endAt` (the wire writer puts them straight into a batch).
 */
export function encodeKeyInto(types: DataTypeName[], values: Value[], interval: boolean, out: Uint8Array, at: number, endAt: number): void {
  if (types.length !== values.length) {
    const message = `key: ${values.length} values for a key of ${types.length} fields`;
    throw new PortwallError('ERR_INVALID_VALUE', message, { field: 'key' });
  }
  const concat = types.length > 1;
  const endOff = interval ? endAt - at : 0;
  let off = at;
  for (let i = 0; i < types.length; i++) {
    const type = types[i]!;
    const t = DATATYPES[type];
    if (t.kind === 'verdict') throw invalid(type, values[i]!, `key[${i}]`, 'a key type');
    const order = interval ? 'big' : t.order;
    if (!fastField(out, off, t, values[i]!, endOff, order)) {
      const iv = parseKeyField(type, values[i]!, i);
      if (!interval && iv.lo !== iv.hi) throw invalid(type, values[i]!, `key[${i}]`, SINGLE_ONLY);
      writeBytes(out, off, iv.lo, t.size, order);
      if (interval) writeBytes(out, off + endOff, iv.hi, t.size, order);
    }
    off += concat ? padded(t.size) : t.size;
  }
}

// The common spellings of a key field — a number, a plain or prefixed IPv4/IPv6 address, a MAC, a plain
// interface name — written straight into the key (and, for intervals, its end `endOff` bytes further on)
// without the big-integer interval a parse builds: a full sync encodes 100k keys. Returns false to take the
// general path, which also names whatever is invalid; both write the same bytes (test/unit/datatypes.test.ts).
function fastField(out: Uint8Array, off: number, t: DataType, v: Value, endOff: number, order: ByteOrder): boolean {
  switch (t.kind) {
    case 'integer':
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= 2 ** (8 * t.size)) return false;
      writeNumber(out, off, v, t.size, order);
      if (endOff) writeNumber(out, off + endOff, v, t.size, order);
      return true;
    case 'ipv4':
      return typeof v === 'string' && fastIPv4(out, off, v, endOff);
    case 'ipv6':
      return typeof v === 'string' && fastIPv6(out, off, v, endOff);
    case 'ifname':
      return typeof v === 'string' && fastIfname(out, off, v, endOff);
    case 'mac':
      return typeof v === 'string' && fastMac(out, off, v, endOff);
    default:
      return false;
  }
}

// Writes a non-negative integer below 2^48 as `len` bytes in the given order.
function writeNumber(out: Uint8Array, off: number, v: number, len: number, order: ByteOrder): void {
  for (let i = len - 1; i >= 0; i--, v = Math.floor(v / 256)) out[off + (order === 'host' ? len - 1 - i : i)] = v % 256;
}

// An ASCII interface name without a wildcard: its bytes, zero-padded (the key buffer starts zeroed).
function fastIfname(out: Uint8Array, off: number, s: string, endOff: number): boolean {
  if (!plainAsciiIfname(s)) return false;
  for (let i = 0; i < s.length; i++) {
    out[off + i] = s.charCodeAt(i);
    if (endOff) out[off + endOff + i] = s.charCodeAt(i);
  }
  return true;
}

// Whether `s` is an interface name of printable ASCII other than space, " * / : and backslash (what
// parseIfname refuses or reads otherwise): the common spelling, checked without parsing.
function plainAsciiIfname(s: string): boolean {
  if (s.length === 0 || s.length > 15 || s === '.' || s === '..') return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c <= 32 || c >= 127 || c === 34 || c === 42 || c === 47 || c === 58 || c === 92) return false;
  }
  return true;
}

/** Whether the `ifname` type takes `name` as one interface (not a wildcard): what canonicalValue accepts. */
export function isIfname(name: string): boolean {
  if (name.endsWith('*')) return false;
  if (plainAsciiIfname(name)) return true;
  try {
    canonicalValue('ifname', name);
    return true;
  } catch {
    return false;
  }
}

/**
 * The canonical values of an element key (the inverse of {@link encodeKey}). `interval` defaults to whether a
 * `keyEnd` is given; start = end gives the single value, an address range that is one prefix gives `a/len`.
 */
export function decodeKey(
  types: DataTypeName[],
  key: Uint8Array,
  keyEnd?: Uint8Array,
  interval = keyEnd !== undefined,
): Value[] {
  const concat = types.length > 1;
  const expected = concat ? setKeyType(types).keyLen : DATATYPES[types[0]!].size;
  if (key.length !== expected || (keyEnd !== undefined && keyEnd.length !== expected)) {
    throw new PortwallError('ERR_WIRE', `set key of ${key.length} bytes for type ${types.join(' . ')}`);
  }
  let off = 0;
  return types.map((type) => {
    const t = DATATYPES[type];
    const order = interval ? 'big' : t.order;
    // A single address or interface name straight from its bytes (a listing decodes 100k of them): the same
    // text formatInterval gives, without the integers.
    const single = keyEnd === undefined || bytesEqual(key, keyEnd, off, t.size);
    const fast = single ? fastSingle(t.kind, key, off, t.size) : undefined;
    if (fast !== undefined) {
      off += concat ? padded(t.size) : t.size;
      return fast;
    }
    const lo = fromBytes(key.subarray(off, off + t.size), order);
    const hi = keyEnd ? fromBytes(keyEnd.subarray(off, off + t.size), order) : lo;
    off += concat ? padded(t.size) : t.size;
    return formatInterval(type, { lo, hi });
  });
}

function bytesEqual(a: Uint8Array, b: Uint8Array, off: number, len: number): boolean {
  for (let i = off; i < off + len; i++) if (a[i] !== b[i]) return false;
  return true;
}

// The text of one big-endian address or interface name at `off`, or undefined to take the general path.
function fastSingle(kind: Kind, b: Uint8Array, off: number, size: number): string | undefined {
  switch (kind) {
    case 'ipv4':
      return size === 4 ? `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}` : undefined;
    case 'ipv6':
      return size === 16 ? formatIPv6Bytes(b, off) : undefined;
    case 'ifname': {
      let len = 0;
      while (len < size && b[off + len] !== 0) len++;
      if (len === 0 || len === size) return undefined;
      for (let i = off + len; i < off + size; i++) if (b[i] !== 0) return undefined;
      return Buffer.from(b.buffer, b.byteOffset + off, len).toString('utf8');
    }
    default:
      return undefined;
  }
}

/**
 * A value as `nft` syntax: names where nft has them (`tcp`, `echo-request`, `established,related`), quoted
 * interface names, hex marks. In set elements a multi-flag conntrack state is printed as a number, because
 * the comma would split the element list.
 */
export function nftValueText(type: DataTypeName, value: Value, inElement = false): string {
  const t = DATATYPES[type];
  if (t.kind === 'verdict') return String(value);
  const iv = parseInterval(type, value);
  if (t.kind === 'ifname') return `"${formatIfname(iv)!}"`;
  if (t.kind !== 'integer' && t.kind !== 'bitmask') return String(formatInterval(type, iv));
  const num = (n: bigint): string => (type === 'mark' || type === 'ether_type' ? `0x${n.toString(16)}` : String(n));
  if (iv.lo !== iv.hi) return `${num(iv.lo)}-${num(iv.hi)}`;
  if (t.kind === 'bitmask') {
    const names = SYMBOLS.ct_state!.filter(([, v]) => (iv.lo & v) !== 0n);
    const covered = names.reduce((a, [, v]) => a | v, 0n);
    if (covered !== iv.lo || names.length === 0 || (inElement && names.length > 1)) return `0x${iv.lo.toString(16)}`;
    return names.map(([n]) => n).join(',');
  }
  return symbolName(type, iv.lo) ?? num(iv.lo);
}
