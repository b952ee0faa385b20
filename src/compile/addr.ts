/**
 * Addresses as integer ranges, for the compiler, the layout and the evaluator: a canonical prefix
 * (`192.0.2.0/24`) becomes `[lo, hi]` of its family, and ranges print back through the engine's datatypes, so
 * what the layout emits is spelt exactly as a kernel dump decodes it.
 */
import { fastIPv4, fastIPv6, formatIPv6Bytes, macBytes } from '../nft/addresses.js';
import { formatInterval, fromBytes, parseInterval } from '../nft/datatypes.js';
import type { IpFamily, Prefix } from '../model/types.js';

/** An inclusive range of addresses of one family. */
export interface AddrRange {
  family: IpFamily;
  lo: bigint;
  hi: bigint;
}

/** The family of a canonical prefix or address. */
export function familyOf(text: string): IpFamily {
  return text.includes(':') ? 6 : 4;
}

/** The range a prefix (or a bare address) covers. */
export function prefixRange(prefix: Prefix): AddrRange {
  const family = familyOf(prefix);
  // The common spellings straight from bytes: a host's every port address passes here when the handle
  // indexes it, and at 5000 ports those ~15 000 distinct values overflowed the general parser's cache, each
  // parse then costing 4-8 µs (docs/dataplane.md, "The JavaScript of a full sync").
  if (family === 4 ? fastIPv4(RANGE, 0, prefix, 16) : fastIPv6(RANGE, 0, prefix, 16)) {
    const n = family === 4 ? 4 : 16;
    return { family, lo: fromBytes(RANGE.subarray(0, n), 'big'), hi: fromBytes(RANGE.subarray(16, 16 + n), 'big') };
  }
  const iv = parseInterval(family === 4 ? 'ipv4_addr' : 'ipv6_addr', prefix);
  return { family, lo: iv.lo, hi: iv.hi };
}

// A prefix's first address in bytes 0-15, its last in 16-31 (network order).
const RANGE = new Uint8Array(32);

/** Whether `prefix` is the whole address space of its family (`0.0.0.0/0`, `::/0`). */
export function isDefaultRoute(prefix: Prefix): boolean {
  return prefix.endsWith('/0');
}

/** The address of a host prefix, without its length (`192.0.2.1/32` → `192.0.2.1`). */
export function hostAddress(prefix: Prefix): string {
  const slash = prefix.indexOf('/');
  return slash < 0 ? prefix : prefix.slice(0, slash);
}

/**
 * {@link prefixRange}, remembered: judging flows and packets (conntrack cleanup, explain, the drop log) asks
 * about the same port addresses, rule prefixes and peers again and again — after an adoption, every tracked flow
 * of a namespace (20 000 at 5000 ports), where parsing the same texts anew cost most of the pass. Bounded:
 * forgotten when full. Not for the compile, whose texts are mostly seen once.
 */
export function cachedRange(text: string): AddrRange {
  let r = RANGES.get(text);
  if (r === undefined) {
    if (RANGES.size >= RANGES_MAX) RANGES.clear();
    RANGES.set(text, (r = prefixRange(text)));
  }
  return r;
}

const RANGES = new Map<string, AddrRange>();
const RANGES_MAX = 1 << 16;

/** Whether an address (text) lies in a prefix (both parsed once: {@link cachedRange}). */
export function prefixContains(prefix: Prefix, address: string): boolean {
  const r = cachedRange(prefix);
  if (familyOf(address) !== r.family) return false;
  const a = cachedRange(address).lo;
  return a >= r.lo && a <= r.hi;
}

/**
 * The IPv6 link-local address a MAC autoconfigures (fe80::/64 with the modified EUI-64 interface id, RFC 4291
 * appendix A), as a /128 prefix.
 */
export function linkLocalOf(mac: string): Prefix {
  const m = macBytes(mac);
  if (m === undefined) throw new Error(`not a MAC: ${mac}`);
  // fe80::, then the MAC with its universal/local bit flipped and ff:fe in the middle (in bytes, not a big
  // integer: every port's compile asks for one).
  const b = LINK_LOCAL;
  b[8] = m[0]! ^ 0x02;
  b[9] = m[1]!;
  b[10] = m[2]!;
  b[13] = m[3]!;
  b[14] = m[4]!;
  b[15] = m[5]!;
  return `${formatIPv6Bytes(b)}/128`;
}

const LINK_LOCAL = new Uint8Array([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe, 0, 0, 0]);

/** The canonical nft value of an address range: an address, a prefix or `a-b`. */
export function rangeValue(family: IpFamily, lo: bigint, hi: bigint): string {
  return formatInterval(family === 4 ? 'ipv4_addr' : 'ipv6_addr', { lo, hi }) as string;
}

/**
 * Merges overlapping ranges (the kernel's one-field interval sets refuse overlaps); adjacent ranges stay
 * apart, so a member that leaves removes exactly its own element. Returns the ranges sorted, each with the
 * labels of the inputs it absorbed.
 */
export function mergeRanges<T>(ranges: { lo: bigint; hi: bigint; label: T }[]): { lo: bigint; hi: bigint; labels: T[] }[] {
  const sorted = [...ranges].sort((a, b) => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : a.hi < b.hi ? -1 : a.hi > b.hi ? 1 : 0));
  const out: { lo: bigint; hi: bigint; labels: T[] }[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.lo <= last.hi) {
      if (r.hi > last.hi) last.hi = r.hi;
      last.labels.push(r.label);
    } else out.push({ lo: r.lo, hi: r.hi, labels: [r.label] });
  }
  return out;
}
