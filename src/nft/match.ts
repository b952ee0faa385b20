/**
 * Rule builders: readable statements in, the exact kernel expressions `nft` would generate out.
 *
 * ```ts
 * rule('inet', eq(F.ip.saddr, '192.0.2.0/24'), eq(F.tcp.dport, 22), counter(), accept());
 * rule('inet', inSet([F.meta.oifname, F.meta.l4proto, F.th.dport, F.ip.saddr], allow4), accept());
 * ```
 * `rule()` adds the protocol dependencies nft adds (`meta nfproto ipv4` before an IPv4 field of an inet table,
 * `meta l4proto tcp` before `tcp dport`, …), merges adjacent payload matches and allocates registers the way
 * nft 1.0.6 does, so a rule built here and the same statement fed to `nft -f` are byte-identical (the kernel
 * tests prove it statement by statement). `./render.ts` prints these parts back as nft syntax.
 */
import { F, fieldOf, isMasked, type Field, type Masked, type Operand } from './fields.js';
import { linearize } from './linearize.js';
import type { Expr, Family, SetFlag, Value, Verdict } from './types.js';

export { F, fieldOf, isMasked, type Field, type Masked, type Operand };

/** Comparison of a match. `eq` on a flag type (ct state) means "any of these flags", as in nft. */
export type MatchOp = 'eq' | 'ne' | 'lt' | 'le' | 'gt' | 'ge';

/** `field [op] value`; the value may be a prefix, a range or an interface wildcard (`"tap*"`) for eq/ne. */
export interface Match {
  kind: 'match';
  left: Operand;
  op: MatchOp;
  value: Value;
}

/** `a . b [!=] @set`, or `a . b vmap @map`. */
export interface Lookup {
  kind: 'lookup';
  keys: Operand[];
  set: string;
  /** The set has the interval flag: host-order keys are then converted to big endian, as nft does. */
  interval: boolean;
  negate: boolean;
  vmap: boolean;
}

export type LogLevel = 'emerg' | 'alert' | 'crit' | 'err' | 'warn' | 'notice' | 'info' | 'debug' | 'audit';
export type TimeUnit = 'second' | 'minute' | 'hour' | 'day' | 'week';
export type NatFlag = 'random' | 'fully-random' | 'persistent';

/**
 * `KEYS map @map`: the data of the map's element for the key, as the value of a set statement
 * (`meta mark set iifname map @port_tag`). When no element matches, the rule stops there, as in nft.
 */
export interface MapValue {
  kind: 'map';
  keys: Operand[];
  map: string;
  /** The map has the interval flag (host-order keys are converted to big endian). */
  interval: boolean;
}

/** What a set statement writes: a constant, a (masked) field (`meta mark and 0xffff0000`), or a map lookup. */
export type SetSource = Value | Operand | MapValue;

/** Statements that act rather than match. */
export type Statement =
  | { kind: 'counter' }
  | { kind: 'log'; prefix?: string; level?: LogLevel; group?: number; snaplen?: number; qthreshold?: number }
  | { kind: 'limit'; rate: number; per: TimeUnit; burst?: number; bytes?: boolean; over?: boolean }
  | { kind: 'notrack' }
  | { kind: 'verdict'; verdict: Verdict }
  | { kind: 'set'; field: Field; value: SetSource }
  | NatStatement
  | { kind: 'masquerade'; flags?: NatFlag[] };

/**
 * `snat|dnat FAMILY to ADDR[:PORT]`, or to the data of a map lookup (`dnat ip to ip daddr map @m`, no ports
 * then; a key missing from the map ends the rule, as in nft).
 */
export interface NatStatement {
  kind: 'nat';
  nat: 'snat' | 'dnat';
  family: 'ip' | 'ip6';
  addr: Value | MapValue;
  port?: Value;
  flags?: NatFlag[];
}

/** One piece of a rule, in nft's left-to-right order. */
export type Part = Match | Lookup | Statement;

/** A set a lookup refers to: its name, and its flags when known (an `NftSet` fits). */
export interface SetRef {
  name: string;
  flags?: SetFlag[];
}

/** `field and mask` as a match operand or set key field. */
export function and(field: Field, mask: Value): Masked {
  return { field, mask };
}

/** `field or bits` as the value of {@link set}: `set(F.meta.mark, or(F.meta.mark, 0x8000))` (numeric fields). */
export function or(field: Field, bits: number): Masked {
  const all = (1n << BigInt(field.len * 8)) - 1n;
  return { field, mask: Number(all ^ BigInt(bits)), or: bits };
}

const match = (op: MatchOp) => (left: Operand, value: Value): Match => ({ kind: 'match', left, op, value });
/** `field value` (for flag types: any of the flags). */
export const eq = match('eq');
/** `field != value`. */
export const ne = match('ne');
/** `field < value`. */
export const lt = match('lt');
/** `field <= value`. */
export const le = match('le');
/** `field > value`. */
export const gt = match('gt');
/** `field >= value`. */
export const ge = match('ge');

function lookup(keys: Operand | Operand[], set: string | SetRef, negate: boolean, vmap: boolean): Lookup {
  const ref = typeof set === 'string' ? { name: set } : set;
  return {
    kind: 'lookup',
    keys: Array.isArray(keys) ? keys : [keys],
    set: ref.name,
    interval: ref.flags?.includes('interval') ?? false,
    negate,
    vmap,
  };
}

/** `a . b @set`: the concatenated key is in the set. Pass the set (or its flags) so interval keys are right. */
export function inSet(keys: Operand | Operand[], set: string | SetRef): Lookup {
  return lookup(keys, set, false, false);
}

/** `a . b != @set`. */
export function notInSet(keys: Operand | Operand[], set: string | SetRef): Lookup {
  return lookup(keys, set, true, false);
}

/** `a . b vmap @map`: the verdict of the map's element for the key. */
export function vmap(keys: Operand | Operand[], map: string | SetRef): Lookup {
  return lookup(keys, map, false, true);
}

/** `counter`. */
export const counter = (): Statement => ({ kind: 'counter' });
/** `log [prefix "…"] [level …] [group N] …`. */
export const log = (opts: Omit<Extract<Statement, { kind: 'log' }>, 'kind'> = {}): Statement => ({ kind: 'log', ...opts });
/** `limit rate [over] N/unit [burst N packets]`, or with `bytes: true` a rate in bytes per unit. */
export const limit = (opts: Omit<Extract<Statement, { kind: 'limit' }>, 'kind'>): Statement => ({ kind: 'limit', ...opts });
/** `notrack`. */
export const notrack = (): Statement => ({ kind: 'notrack' });
/** Any verdict. */
export const verdict = (v: Verdict): Statement => ({ kind: 'verdict', verdict: v });
/** `accept`. */
export const accept = (): Statement => verdict({ code: 'accept' });
/** `drop`. */
export const drop = (): Statement => verdict({ code: 'drop' });
/** `return`. */
export const ret = (): Statement => verdict({ code: 'return' });
/** `jump chain`. */
export const jump = (chain: string): Statement => verdict({ code: 'jump', chain });
/** `goto chain`. */
export const goto = (chain: string): Statement => verdict({ code: 'goto', chain });
/**
 * `meta mark set V`, `ct mark set V`, `ct zone set V`; V may also be a field (`meta mark and 0xffff0000`) or a
 * map lookup ({@link mapOf}).
 */
export const set = (field: Field, value: SetSource): Statement => ({ kind: 'set', field, value });

/** `a . b map @map` as the value of {@link set}: `set(F.meta.mark, mapOf(F.meta.iifname, portTag))`. */
export function mapOf(keys: Operand | Operand[], map: string | SetRef): MapValue {
  const ref = typeof map === 'string' ? { name: map } : map;
  return { kind: 'map', keys: Array.isArray(keys) ? keys : [keys], map: ref.name, interval: ref.flags?.includes('interval') ?? false };
}

/** `snat|dnat FAMILY to KEYS map @m`: `natFrom('dnat', 'ip', mapOf(F.ip.daddr, fips))`. */
export function natFrom(kind: 'snat' | 'dnat', family: 'ip' | 'ip6', map: MapValue): Statement {
  return { kind: 'nat', nat: kind, family, addr: map };
}

function nat(kind: 'snat' | 'dnat', to: string, opts: { port?: Value; flags?: NatFlag[] }): Statement {
  const family = to.includes(':') ? 'ip6' : 'ip';
  return { kind: 'nat', nat: kind, family, addr: to, ...opts };
}

/** `snat ip to ADDR[-ADDR][:PORT[-PORT]]` (ip6 when the address is IPv6). Ports need a transport match first. */
export const snat = (to: string, opts: { port?: Value; flags?: NatFlag[] } = {}): Statement => nat('snat', to, opts);
/** `dnat ip to ADDR[-ADDR][:PORT[-PORT]]`. */
export const dnat = (to: string, opts: { port?: Value; flags?: NatFlag[] } = {}): Statement => nat('dnat', to, opts);
/** `masquerade [flags]`. */
export const masquerade = (flags?: NatFlag[]): Statement => ({ kind: 'masquerade', ...(flags ? { flags } : {}) });

/**
 * The kernel expressions of a rule in a table of `family`, exactly as `nft` generates them for the same
 * statements. Throws ERR_INVALID_VALUE for a bad value and ERR_INVALID_OBJECT for statements that cannot go
 * together (conflicting protocols, a port mapping without a transport match, …).
 */
export function rule(family: Family, ...parts: (Part | readonly Part[])[]): Expr[] {
  return linearize(family, parts.flat());
}
