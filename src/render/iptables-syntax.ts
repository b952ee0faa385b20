/**
 * The spelling side of the iptables renderer: chain and ipset names derived from ids, and arguments quoted
 * the way `iptables-restore` tokenises them. Names are length-safe by construction — a readable part plus,
 * where the readable part could be ambiguous, a hash of the whole id — so two objects can never be truncated
 * into one name (Neutron's `i<dev[3:13]>` chains and IFNAMSIZ crash, seed 001, are what this avoids).
 */
import { createHash } from 'node:crypto';

import { PortwallError } from '../errors.js';
import { IPSET_MAX_NAME } from '../ipset.js';
import type { IpFamily } from '../model/types.js';

/** Every chain portwall adds starts with this, so `iptables-save | grep portwall-` shows all of it. */
export const CHAIN_PREFIX = 'portwall-';

/** The kernel's limit on chain names: XT_EXTENSION_MAXNAMELEN (29) including the NUL. */
export const MAX_CHAIN_NAME = 28;

/** xt_comment keeps at most 255 bytes (XT_MAX_COMMENT_LEN including the NUL). */
const MAX_COMMENT = 255;

/** Longest interface name the kernel accepts (IFNAMSIZ minus the NUL). */
const MAX_IFNAME = 15;

/** Readable part of a set name: `pw4-` + readable + `-` + 8 hex digits fills {@link IPSET_MAX_NAME} at most. */
const SET_READABLE = IPSET_MAX_NAME - 'pw4--'.length - 8;

/** Characters that need no quoting in a restore line and are one byte each in UTF-8. */
const PLAIN = /^[A-Za-z0-9_.-]+$/;

/** What a per-port chain holds: `i` traffic to the port, `o` traffic from it, `s` its anti-spoof pairs. */
export type PortChainKind = 'i' | 'o' | 's';

/** First 8 hex digits of SHA-256: 32 bits, enough that a collision needs a shared readable prefix too. */
function shortHash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 8);
}

/** `text` with every character outside {@link PLAIN} replaced, cut to `max`. */
function readable(text: string, max: number): string {
  return text.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, max);
}

/**
 * The chain of kind `kind` for the port on `device`, e.g. `portwall-i-tap6e3f2eda-32`.
 *
 * A validated device is at most 15 bytes, so a plain device name is embedded whole (device names are unique
 * on a host, hence so are the chains). The `-` after the kind keeps `portwall-s-g-chain` (device `g-chain`)
 * apart from `portwall-sg-chain`. A device with characters a restore line would have to quote gets
 * `<readable 8>~<hash>` instead; `~` never occurs in the plain form, so the two forms cannot meet.
 */
export function portChain(kind: PortChainKind, device: string): string {
  const key = PLAIN.test(device) && device.length <= MAX_IFNAME ? device : `${readable(device, 8)}~${shortHash(device)}`;
  return `${CHAIN_PREFIX}${kind}-${key}`;
}

/**
 * The ipset holding the members of remote group `groupId` for `family`, e.g. `pw4-sg-web-1a2b3c4d` (at most
 * the 31 bytes ipset allows). The hash always covers the whole id, so the readable part may be cut.
 * The `pw` prefix keeps these apart from Neutron's own `NIPv4…` sets on a host being migrated.
 */
export function memberSetName(groupId: string, family: IpFamily): string {
  return `pw${family}-${readable(groupId, SET_READABLE)}-${shortHash(groupId)}`;
}

/**
 * Records which object each derived name belongs to, and refuses a second owner: a name collision (a hash
 * collision, or two ports on one device) becomes an error naming both, never two objects sharing a chain.
 */
export class NameClaims {
  private readonly owners = new Map<string, string>();

  /** Returns `name` after recording `owner` as its owner; ERR_RENDER if another owner holds it. */
  claim(name: string, owner: string): string {
    const held = this.owners.get(name);
    if (held !== undefined && held !== owner) {
      throw new PortwallError('ERR_RENDER', `iptables name ${name} would serve both ${held} and ${owner}`, { object: owner });
    }
    this.owners.set(name, owner);
    return name;
  }
}

/**
 * `text` as one restore argument: bare when plain, else in double quotes with `\`, `"` and `'` escaped, which
 * `iptables-restore` reads back. Control characters become spaces: a newline would end the rule.
 */
function quote(text: string, plain: RegExp = PLAIN): string {
  if (plain.test(text)) return text;
  return `"${text.replace(/[\u0000-\u001f\u007f]/g, ' ').replace(/[\\"']/g, (c) => `\\${c}`)}"`;
}

/** What iptables-save leaves unquoted in a comment; anything else it quotes. */
const SAVE_PLAIN = /^[A-Za-z0-9_-]+$/;

/**
 * `-m comment --comment <text>`, cut to the 255 bytes xt_comment keeps (on a character boundary) and quoted
 * exactly as iptables-save prints it, so a rendered rule and its saved form are the same line.
 */
export function commentMatch(text: string): string {
  return `-m comment --comment ${quote(Buffer.byteLength(text) > MAX_COMMENT ? cutBytes(text, MAX_COMMENT) : text, SAVE_PLAIN)}`;
}

function cutBytes(text: string, max: number): string {
  let cut = '';
  let bytes = 0;
  for (const ch of text) {
    bytes += Buffer.byteLength(ch);
    if (bytes > max) break;
    cut += ch;
  }
  return cut;
}

/**
 * `device` as an interface argument of `-i`, `-o`, `--physdev-in/out`. Refuses names iptables would misread
 * rather than emitting input that fails at some line N of a restore (seed 001's 36-character "device"):
 * longer than IFNAMSIZ, empty, a trailing `+` (iptables' prefix wildcard) or a lone `!` (negation).
 * `field` names the input in the error, e.g. `ports[port-a].device`.
 */
export function deviceArg(device: string, field: string): string {
  const bytes = Buffer.byteLength(device);
  if (bytes === 0 || bytes > MAX_IFNAME || device.endsWith('+') || device === '!') {
    throw new PortwallError('ERR_RENDER', `${field} ${JSON.stringify(device)} cannot be matched exactly by iptables`, {
      field,
      object: device,
    });
  }
  return quote(device);
}
