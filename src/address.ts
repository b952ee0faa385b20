/**
 * IP addresses and prefixes as the kernel wants them: 16 bytes in network order (IPv4 in the first 4), a
 * family and a prefix length. Parsing rides on node:net's validators; host bits are cleared, so that two
 * spellings of one prefix (`192.0.2.1/24`, `192.0.2.0/24`) are one prefix.
 */
import { isIPv4, isIPv6 } from 'node:net';

import { PortwallError } from './errors.js';
import { fastIPv4, fastIPv6, formatIPv6Bytes } from './nft/addresses.js';

/** Address family as portwall names it. */
export type IpFamily = 'ipv4' | 'ipv6';

export interface Prefix {
  family: IpFamily;
  /** 16 bytes, network order; IPv4 uses the first 4. */
  bytes: Uint8Array;
  /** Prefix length (32/128 for a host). */
  length: number;
}

/** The wire number of a family (4 or 6). */
export function familyNumber(family: IpFamily): 4 | 6 {
  return family === 'ipv4' ? 4 : 6;
}

/** Parses `addr` or `addr/len`; `field` names the input in the error. */
export function parsePrefix(text: string, field: string): Prefix {
  if (typeof text !== 'string') throw invalid(field, text, 'must be an IP address or prefix string');
  return fastPrefix(text) ?? parseGeneral(text, field);
}

// The prefix's first and last address; only the first is kept.
const SCRATCH = new Uint8Array(32);

// The common spellings (a dotted quad, plain IPv6 hex groups, each with an optional decimal length) read
// without node:net's regular expressions: an agent checks every address of each port it is sent.
function fastPrefix(text: string): Prefix | undefined {
  const v6 = text.includes(':');
  SCRATCH.fill(0);
  if (!(v6 ? fastIPv6(SCRATCH, 0, text, 16) : fastIPv4(SCRATCH, 0, text, 16))) return undefined;
  const slash = text.indexOf('/');
  return { family: v6 ? 'ipv6' : 'ipv4', bytes: SCRATCH.slice(0, 16), length: slash < 0 ? (v6 ? 128 : 32) : Number(text.slice(slash + 1)) };
}

/** {@link parsePrefix} without its fast path (exported for the test that compares the two). */
export function parseGeneral(text: string, field: string): Prefix {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  const family: IpFamily | undefined = isIPv4(addr) ? 'ipv4' : isIPv6(addr) ? 'ipv6' : undefined;
  if (!family) throw invalid(field, text, 'is not an IP address or prefix');
  const max = family === 'ipv4' ? 32 : 128;
  let length = max;
  if (slash >= 0) {
    const lenText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > max) throw invalid(field, text, `has a bad prefix length`);
    length = Number(lenText);
  }
  const bytes = family === 'ipv4' ? ipv4Bytes(addr) : ipv6Bytes(addr);
  return { family, bytes: maskBytes(bytes, length), length };
}

/** Formats 16 address bytes of `family` as text (IPv6 compressed as `ip` prints it: RFC 5952). */
export function formatAddress(family: IpFamily, bytes: Uint8Array): string {
  if (family === 'ipv4') return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  return formatIPv6Bytes(bytes);
}

/** Prints a prefix as `address/length` (`192.0.2.0/24`, `2001:db8::1/128`): one spelling per prefix. */
export function formatPrefix(p: Prefix): string {
  return `${formatAddress(p.family, p.bytes)}/${p.length}`;
}

function ipv4Bytes(addr: string): Uint8Array {
  const out = new Uint8Array(16);
  addr.split('.').forEach((part, i) => { out[i] = Number(part); });
  return out;
}

function ipv6Bytes(addr: string): Uint8Array {
  let text = addr.split('%')[0]!;
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.', lastColon)) {  // embedded IPv4 (::ffff:192.0.2.1): rewrite as two hex groups
    const v4 = ipv4Bytes(text.slice(lastColon + 1));
    const hi = ((v4[0]! << 8) | v4[1]!).toString(16), lo = ((v4[2]! << 8) | v4[3]!).toString(16);
    text = `${text.slice(0, lastColon + 1)}${hi}:${lo}`;
  }
  const parse = (s: string) => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const [head, rest] = text.split('::') as [string, string | undefined];
  const left = parse(head);
  const right = rest === undefined ? [] : parse(rest);
  const groups = [...left, ...Array<number>(8 - left.length - right.length).fill(0), ...right];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

function maskBytes(bytes: Uint8Array, length: number): Uint8Array {
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, length - 8 * i));
    bytes[i] = bytes[i]! & (0xff << (8 - keep)) & 0xff;
  }
  return bytes;
}

function invalid(field: string, value: unknown, why: string): PortwallError {
  return new PortwallError('ERR_INVALID_VALUE', `${field} ${JSON.stringify(value)} ${why}`, { field, object: value });
}
