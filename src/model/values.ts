/**
 * The state file's scalar values, parsed into their one canonical spelling or explained: prefixes, host
 * addresses, MACs, device names and IP protocols. Each parser returns `{ value }` or `{ problem }` (a message
 * without the path), so the checks can collect every problem instead of stopping at the first.
 */
import { formatPrefix, parsePrefix, type Prefix as ParsedPrefix } from '../address.js';
import { isIfname } from '../nft/datatypes.js';
import { formatMac, parseMac } from '../nft/addresses.js';
import { show } from './problems.js';
import type { IpFamily, Prefix } from './types.js';

/** A parsed value or why it does not parse. */
export type Parsed<T> = { value: T; problem?: undefined } | { value?: undefined; problem: string };

const ok = <T>(value: T): Parsed<T> => ({ value });
const bad = <T>(problem: string): Parsed<T> => ({ problem });

/** A canonical prefix and its family. */
export interface FamilyPrefix {
  prefix: Prefix;
  family: IpFamily;
  /** Prefix length (0 = the whole family, 32/128 = one host). */
  length: number;
}

function parseAddressText(text: string): ParsedPrefix | undefined {
  // A zone id (`fe80::1%eth0`) names an interface of one host; it has no meaning in a shared state file.
  if (text.includes('%')) return undefined;
  try {
    return parsePrefix(text, 'value');
  } catch {
    return undefined;
  }
}

/** `addr` or `addr/len`, host bits cleared: `192.0.2.14/24` → `192.0.2.0/24`, `2001:DB8::1` → `2001:db8::1/128`. */
export function parseIpPrefix(text: string): Parsed<FamilyPrefix> {
  const p = parseAddressText(text);
  if (p === undefined) return bad(`not an IP prefix: ${show(text)}`);
  return ok({ prefix: formatPrefix(p), family: p.family === 'ipv4' ? 4 : 6, length: p.length });
}

/**
 * A unicast host address without a length (fixed IPs, DHCP servers, routers), as a /32 or /128 prefix.
 * The unspecified address, multicast and IPv4's 240/4 (reserved, broadcast) never name one host; loopback
 * (127.0.0.0/8, ::1) names the host itself, never a port or a server on a network — and a port address
 * picks conntrack zones and untracking in the raw table, where a loopback one would catch the host's own
 * loopback traffic.
 */
export function parseHostAddress(text: string): Parsed<FamilyPrefix> {
  const p = text.includes('/') ? undefined : parseAddressText(text);
  if (p === undefined) return bad(`not an IP address: ${show(text)}`);
  const b = p.bytes;
  const v4 = p.family === 'ipv4';
  // Bytes before the last that are not zero (IPv4 uses the first 4 of the 16).
  let high = 0;
  for (let i = 0; i < (v4 ? 3 : 15); i++) high |= b[i]!;
  const last = b[v4 ? 3 : 15]!;
  if (high === 0 && last === 0) return bad(`${show(text)} is the unspecified address, not a host`);
  if (v4 ? b[0]! >= 224 && b[0]! < 240 : b[0] === 0xff) return bad(`${show(text)} is a multicast address, not a host`);
  if (v4 && b[0]! >= 240) return bad(`${show(text)} is a reserved or broadcast address, not a host`);
  if (v4 ? b[0] === 127 : high === 0 && last === 1) {
    return bad(`${show(text)} is a loopback address: it names the host itself, not a port or a server on a network`);
  }
  return ok({ prefix: formatPrefix(p), family: v4 ? 4 : 6, length: p.length });
}

// Neutron (netaddr) accepts several MAC spellings; these three cover what its API and `ip link` print.
const MAC_COLON_OR_DASH = /^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(?:\1[0-9a-fA-F]{2}){4}$/;
const MAC_CISCO = /^[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}$/;

// Whether `text` is already a unicast, non-zero MAC in lowercase colon form (what Neutron sends), checked
// character by character: every port's MAC is checked at each change of the port.
function canonicalUnicastMac(text: string): boolean {
  if (text.length !== 17) return false;
  let nonZero = false;
  for (let i = 0; i < 17; i++) {
    const c = text.charCodeAt(i);
    if (i % 3 === 2) {
      if (c !== 58) return false;
    } else if ((c >= 48 && c <= 57) || (c >= 97 && c <= 102)) nonZero ||= c !== 48;
    else return false;
  }
  // The I/G bit is the lowest bit of the first octet's second digit.
  const d = text.charCodeAt(1);
  return nonZero && ((d <= 57 ? d - 48 : d - 87) & 1) === 0;
}

/** A unicast, non-zero Ethernet MAC in lowercase colon form (`FA-16-3E-F3-1E-C0` → `fa:16:3e:f3:1e:c0`). */
export function parseUnicastMac(text: string): Parsed<string> {
  if (canonicalUnicastMac(text)) return ok(text);
  let colon: string | undefined;
  if (MAC_COLON_OR_DASH.test(text)) colon = text.replaceAll('-', ':');
  else if (MAC_CISCO.test(text)) colon = text.replaceAll('.', '').match(/../g)!.join(':');
  const n = colon === undefined ? undefined : parseMac(colon);
  if (n === undefined) return bad(`not a MAC address: ${show(text)}`);
  if (n === 0n) return bad('the all-zero MAC is not a port address');
  // The I/G bit (lowest bit of the first octet) marks group addresses, which never source a frame.
  if ((n >> 40n) & 1n) return bad(`${formatMac(n)} is a multicast/broadcast MAC, not a port address`);
  return ok(formatMac(n));
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * Why an id or a name cannot name a kernel object, or undefined: it becomes an element comment or a device
 * name, which travel as UTF-8 and C strings. A NUL cuts it short (the batch is refused), and a lone surrogate
 * has no UTF-8 (it comes back from the kernel as U+FFFD, so the object never matches again and every apply
 * rewrites it).
 */
export function textProblem(text: string): string | undefined {
  if (text.includes('\0')) return `${show(text)} contains a NUL character`;
  if (LONE_SURROGATE.test(text)) return `${show(text)} is not well-formed Unicode (a lone surrogate)`;
  return undefined;
}

/**
 * A network device name as the kernel's dev_valid_name() accepts it (1–15 bytes, not `.` or `..`, no `/`,
 * `:` or whitespace) and as portwall can program it in nftables and iptables (no quotes, backslash, `*`, NUL or a
 * final `+`). Never `lo`: a port or bridge on the loopback device would filter, zone and untrack the host's
 * own loopback traffic.
 */
export function deviceNameProblem(name: string): string | undefined {
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes === 0) return 'must not be empty';
  const text = textProblem(name);
  if (text !== undefined) return text;
  if (bytes > 15) return `${show(name)} is ${bytes} bytes; device names have at most 15 (IFNAMSIZ - 1)`;
  if (name === '.' || name === '..') return `${show(name)} is not a legal device name`;
  if (name === 'lo') return '"lo" is the host\'s loopback device, never a port or a bridge';
  // The engine's own ifname datatype is the authority on what it can program; `*` would be its wildcard,
  // and a trailing `+` is iptables' wildcard, which the iptables renderer must never emit for a port.
  if (name.endsWith('+') || !isIfname(name)) {
    return `${show(name)} is not a legal device name (no "/", ":", whitespace, quotes, "\\", "*" or a final "+")`;
  }
  return undefined;
}

/** A rule's protocol, resolved: undefined = any protocol. */
export interface Protocol {
  number?: number;
}

// Neutron's protocol names (neutron-lib IP_PROTOCOL_MAP plus its `icmpv6` alias); Neutron matches them
// case-insensitively. A separate table from nft's: this is Neutron's API vocabulary, not /etc/protocols.
const NEUTRON_PROTOCOLS: Readonly<Record<string, number>> = {
  hopopt: 0, icmp: 1, igmp: 2, ipip: 4, tcp: 6, egp: 8, udp: 17, dccp: 33, 'ipv6-encap': 41,
  'ipv6-route': 43, 'ipv6-frag': 44, rsvp: 46, gre: 47, esp: 50, ah: 51, 'ipv6-icmp': 58, icmpv6: 58,
  'ipv6-nonxt': 59, 'ipv6-opts': 60, ospf: 89, vrrp: 112, pgm: 113, sctp: 132, udplite: 136,
};

/** Protocols whose rules carry a destination port range (Neutron's SG_PORT_PROTO_NAMES). */
export const PORT_PROTOCOLS: ReadonlySet<number> = new Set([6, 17, 33, 132, 136]);
/** ICMP and ICMPv6: port_range_min/max are the type and code. */
export const ICMP_PROTOCOLS: ReadonlySet<number> = new Set([1, 58]);
/** Protocols that exist only in IPv6 (extension headers and ICMPv6); Neutron refuses them with IPv4. */
export const IPV6_ONLY_PROTOCOLS: ReadonlySet<number> = new Set([43, 44, 58, 59, 60]);

/**
 * Neutron's `protocol`: null, `any`, a name (any case), a number 0–255 or a numeric string (`"6"`).
 * Number 0 (HOPOPT) means "any" as in Neutron: it is an IPv6 extension header, never a layer-4 protocol.
 */
export function parseProtocol(value: string | number | null | undefined): Parsed<Protocol> {
  if (value === null || value === undefined) return ok({});
  let n: number | undefined;
  if (typeof value === 'number') n = value;
  else if (/^(?:0|[1-9][0-9]{0,2})$/.test(value)) n = Number(value);
  else if (value.toLowerCase() === 'any') return ok({});
  else n = NEUTRON_PROTOCOLS[value.toLowerCase()];
  if (n === undefined) return bad(`unknown protocol ${show(value)} (a name such as tcp, udp, icmp, or 0-255)`);
  if (!Number.isInteger(n) || n < 0 || n > 255) return bad(`protocol number ${show(value)} is outside 0-255`);
  return ok(n === 0 ? {} : { number: n });
}
