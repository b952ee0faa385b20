/**
 * Textual addresses as big-endian integers: IPv4, IPv6 and Ethernet MAC addresses, parsed strictly and
 * printed in one canonical spelling (RFC 5952 for IPv6, lowercase colon-separated MACs), so two spellings of
 * one address compare equal once normalised.
 *
 * Parsers return undefined on bad input; `./datatypes.ts` turns that into a coded error naming the value.
 */

const IPV4_OCTET = /^(?:0|[1-9][0-9]{0,2})$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;
const MAC = /^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$/;

/** Parses dotted-quad IPv4 (no leading zeros, which some libcs read as octal) into a 32-bit integer. */
export function parseIPv4(text: string): bigint | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0; // a double holds 32 bits exactly: one BigInt at the end rather than one per octet
  for (const p of parts) {
    if (!IPV4_OCTET.test(p) || Number(p) > 255) return undefined;
    n = n * 256 + Number(p);
  }
  return BigInt(n);
}

/** Prints a 32-bit integer as dotted-quad IPv4. */
export function formatIPv4(n: bigint): string {
  const v = Number(n) >>> 0;
  return `${v >>> 24}.${(v >>> 16) & 0xff}.${(v >>> 8) & 0xff}.${v & 0xff}`;
}

/** Parses IPv6 (with `::` and an optional trailing dotted quad; no zone id) into a 128-bit integer. */
export function parseIPv6(text: string): bigint | undefined {
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const groups = (s: string): bigint[] | undefined => {
    if (s === '') return [];
    const out: bigint[] = [];
    const parts = s.split(':');
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (i === parts.length - 1 && p.includes('.')) {
        const v4 = parseIPv4(p);
        if (v4 === undefined) return undefined;
        out.push(v4 >> 16n, v4 & 0xffffn);
      } else if (HEX_GROUP.test(p)) out.push(BigInt(`0x${p}`));
      else return undefined;
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !tail) return undefined;
  const missing = 8 - head.length - tail.length;
  // "::" stands for at least one zero group; without it there must be exactly eight.
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const all = [...head, ...new Array<bigint>(missing).fill(0n), ...tail];
  return all.reduce((acc, g) => (acc << 16n) | g, 0n);
}

/** Prints a 128-bit integer as RFC 5952 IPv6: lowercase, no leading zeros, longest zero run (≥ 2) as `::`. */
export function formatIPv6(n: bigint): string {
  return formatIPv6Groups(Array.from({ length: 8 }, (_, i) => Number((n >> BigInt(112 - 16 * i)) & 0xffffn)));
}

/** RFC 5952 text of 16 address bytes in network order, starting at `off`. */
export function formatIPv6Bytes(b: Uint8Array, off = 0): string {
  const g: number[] = [];
  for (let i = off; i < off + 16; i += 2) g.push((b[i]! << 8) | b[i + 1]!);
  return formatIPv6Groups(g);
}

/** RFC 5952 text of eight 16-bit groups, most significant first. */
function formatIPv6Groups(g: readonly number[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (a: readonly number[]): string => a.map((x) => x.toString(16)).join(':');
  if (best < 0) return hex(g);
  return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

/** Parses a colon-separated MAC (`aa:bb:cc:dd:ee:ff`, any case) into a 48-bit integer. */
export function parseMac(text: string): bigint | undefined {
  return MAC.test(text) ? BigInt(`0x${text.replaceAll(':', '')}`) : undefined;
}

/** The six bytes of a colon-separated MAC (any case), or undefined when it is none. */
export function macBytes(text: string): number[] | undefined {
  if (!MAC.test(text)) return undefined;
  const out: number[] = [];
  for (let i = 0; i < 17; i += 3) out.push(parseInt(text.slice(i, i + 2), 16));
  return out;
}

/** Prints a 48-bit integer as a lowercase colon-separated MAC. */
export function formatMac(n: bigint): string {
  return n.toString(16).padStart(12, '0').match(/../g)!.join(':');
}

// The fast parsers below read the common spellings of an address or prefix straight into bytes, with no
// regular expression, split or big integer: what a full sync's 100k element keys and an agent's stream of
// port addresses are spelled in. Each accepts a subset of what the general parsers accept and gives the same
// bytes (test/unit/datatypes.test.ts, test/unit/address.test.ts); anything else takes the general path.

// A decimal of at most `max` without leading zeros, from `s[from]` to `s[to]` (exclusive); -1 if it is none.
function decimal(s: string, from: number, to: number, max: number): number {
  if (to <= from || to - from > 3 || (s.charCodeAt(from) === 48 && to - from > 1)) return -1;
  let n = 0;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    n = n * 10 + c;
  }
  return n <= max ? n : -1;
}

// The bits a prefix of length `len` keeps of the byte starting at bit `bit` (0xff inside it, 0 beyond it).
function prefixByteMask(len: number, bit: number): number {
  return len >= bit + 8 ? 0xff : len <= bit ? 0 : (0xff << (8 - (len - bit))) & 0xff;
}

// The prefix length after `/` at `slash` (`bits` without one), or -1 when malformed.
function prefixAfter(s: string, slash: number, bits: number): number {
  return slash < 0 ? bits : decimal(s, slash + 1, s.length, bits);
}

/**
 * A dotted quad, optionally `/len`, into 4 bytes at `off` with host bits cleared, and (when `endOff` is not 0)
 * the prefix's last address `endOff` bytes further on. False when `s` is not that spelling, or is a prefix
 * shorter than /32 and there is no end to write.
 */
export function fastIPv4(out: Uint8Array, off: number, s: string, endOff: number): boolean {
  const slash = s.indexOf('/');
  const end = slash < 0 ? s.length : slash;
  const len = prefixAfter(s, slash, 32);
  if (len < 0) return false;
  let start = 0;
  for (let k = 0; k < 4; k++) {
    const dot = k === 3 ? end : s.indexOf('.', start);
    if (dot < 0 || dot > end) return false;
    const octet = decimal(s, start, dot, 255);
    if (octet < 0) return false;
    // Host bits cleared in the start, set in the end (an interval key); a plain key takes the prefix's start.
    const keep = prefixByteMask(len, 8 * k);
    out[off + k] = octet & keep;
    if (endOff) out[off + endOff + k] = (octet & keep) | (~keep & 0xff);
    start = dot + 1;
  }
  return len === 32 || endOff !== 0;
}

// The value of a hexadecimal digit's character code, or -1.
function hexDigit(c: number): number {
  return c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
}

/**
 * A MAC spelled `aa:bb:cc:dd:ee:ff` (any case) into 6 bytes at `off` (and, for an interval key, the same at
 * `off + endOff`), as {@link fastIPv4} does; anything else (a range, another spelling) takes the general path.
 */
export function fastMac(out: Uint8Array, off: number, s: string, endOff: number): boolean {
  if (s.length !== 17) return false;
  for (let k = 0; k < 6; k++) {
    const at = 3 * k;
    if (k < 5 && s.charCodeAt(at + 2) !== 58) return false;
    const hi = hexDigit(s.charCodeAt(at));
    const lo = hexDigit(s.charCodeAt(at + 1));
    if (hi < 0 || lo < 0) return false;
    const byte = (hi << 4) | lo;
    out[off + k] = byte;
    if (endOff) out[off + endOff + k] = byte;
  }
  return true;
}

/**
 * Plain hexadecimal groups with at most one `::`, optionally `/len`, into 16 bytes as {@link fastIPv4} does
 * (an embedded dotted quad, a zone or anything else takes the general path).
 */
export function fastIPv6(out: Uint8Array, off: number, s: string, endOff: number): boolean {
  const slash = s.indexOf('/');
  const end = slash < 0 ? s.length : slash;
  const len = prefixAfter(s, slash, 128);
  if (len < 0) return false;
  const groups: number[] = [];
  let gap = -1;
  let i = 0;
  if (s.charCodeAt(0) === 58 && s.charCodeAt(1) === 58) {
    gap = 0;
    i = 2;
  }
  while (i < end) {
    let g = 0;
    let digits = 0;
    for (; i < end && digits <= 4; i++, digits++) {
      const h = hexDigit(s.charCodeAt(i));
      if (h < 0) break;
      g = g * 16 + h;
    }
    if (digits === 0 || digits > 4 || groups.length === 8) return false;
    groups.push(g);
    if (i === end) break;
    if (s.charCodeAt(i) !== 58) return false;
    i++;
    if (s.charCodeAt(i) === 58) {
      if (gap >= 0) return false;
      gap = groups.length;
      i++;
    } else if (i === end) return false;
  }
  if (gap < 0 ? groups.length !== 8 : groups.length > 7) return false;
  const zeros = 8 - groups.length;
  for (let k = 0; k < 8; k++) {
    const g = gap < 0 || k < gap ? groups[k]! : k < gap + zeros ? 0 : groups[k - zeros]!;
    for (let b = 0; b < 2; b++) {
      const bit = 16 * k + 8 * b;
      const keep = prefixByteMask(len, bit);
      const byte = (b === 0 ? g >> 8 : g & 0xff) & keep;
      out[off + 2 * k + b] = byte;
      if (endOff) out[off + endOff + 2 * k + b] = byte | (~keep & 0xff);
    }
  }
  return len === 128 || endOff !== 0;
}
