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

/** Prints a 48-bit integer as a lowercase colon-separated MAC. */
export function formatMac(n: bigint): string {
  return n.toString(16).padStart(12, '0').match(/../g)!.join(':');
}
