/**
 * Expressions on the wire (docs/wire.md, "Expressions"), and their canonical object form.
 *
 * `canonicalExpr` and `readExpr` build objects through the same constructors, so an expression added to a
 * transaction and its dumped twin compare equal: optional registers, flags and counters that are zero are
 * omitted, operands are plain Uint8Arrays.
 */
import { PortwallError } from '../errors.js';
import {
  BYTEORDER_OPS,
  CMP_OPS,
  CT_DIRECTION_UNSET,
  CT_DIRECTIONS,
  CT_KEYS,
  LIMIT_TYPES,
  META_KEYS,
  NAT_FAMILIES,
  NAT_TYPES,
  NFT_LIMIT_F_INV,
  NFT_LOOKUP_F_INV,
  PAYLOAD_BASES,
  RANGE_OPS,
  VERDICTS,
} from './constants.js';
import type { WireReader, WireWriter } from './cursor.js';
import type { Expr, Verdict } from './types.js';

/** Expression type numbers of the wire. */
export const EXPR_TYPES = {
  payload: 1,
  meta: 2,
  ct: 3,
  cmp: 4,
  bitwise: 5,
  range: 6,
  lookup: 7,
  immediate: 8,
  counter: 9,
  log: 10,
  nat: 11,
  limit: 12,
  notrack: 13,
  reject: 14,
  masq: 15,
  redir: 16,
  // Not yet in docs/wire.md: agreed with the addon as u8 sreg, u8 dreg, u32 op, u32 len, u32 size.
  byteorder: 17,
  // Dump only (the addon's kOther): str kernel name, bytes raw attributes.
  other: 255,
} as const satisfies Record<Expr['type'], number>;

/** NFT_LOGLEVEL_WARNING: the kernel's default level of a syslog `log`. */
const LOG_LEVEL_WARNING = 4;

/** The lookup dreg slot value for "no dreg": 0 is the verdict register, which verdict-map lookups load. */
const NO_LOOKUP_DREG = 255;

const EXPR_NAMES = new Map<number, Expr['type']>(Object.entries(EXPR_TYPES).map(([n, c]) => [c, n as Expr['type']]));

type Of<T extends Expr['type']> = Extract<Expr, { type: T }>;

// Adds `key: value` only when value is non-zero / defined, which is what keeps canonical objects minimal.
function opt<T extends object, K extends string, V>(o: T, key: K, value: V | undefined, zero?: V): T {
  if (value !== undefined && value !== zero) (o as Record<string, unknown>)[key] = value;
  return o;
}

const copy = (b: Uint8Array): Uint8Array => new Uint8Array(b);

/** A verdict in canonical form (the chain only for jump/goto). */
export function canonicalVerdict(v: Verdict): Verdict {
  return v.code === 'jump' || v.code === 'goto' ? { code: v.code, chain: v.chain } : { code: v.code };
}

/** The verdict of a wire code and chain name. */
export function verdictOf(code: number, chain: string): Verdict {
  const name = VERDICTS.name(code);
  return name === 'jump' || name === 'goto' ? { code: name, chain } : { code: name };
}

// The kernel keeps registers as 4-byte offsets and dumps the offsets of NFT_REG_1..4 under those numbers:
// NFT_REG32_00, _04, _08 and _12 (8, 12, 16, 20) come back as 1, 2, 3, 4. The canonical form uses them.
function reg(r: number | undefined): number | undefined {
  return r !== undefined && r >= 8 && (r - 8) % 4 === 0 ? 1 + (r - 8) / 4 : r;
}

// NF_NAT_RANGE_MAP_IPS and NF_NAT_RANGE_PROTO_SPECIFIED, which nft_nat_init() adds for given registers.
const NAT_MAP_IPS = 0x1;
const NAT_PROTO_SPECIFIED = 0x2;

/**
 * The canonical form of an expression (the caller has validated it): what the kernel dumps for it. Besides
 * dropping zero optionals, it applies the kernel's own defaults — register numbering, a syslog log's level,
 * nat/masq/redir range max registers and flags (checked on a 6.18 kernel) — so a committed rule and its dump
 * compare equal.
 */
export function canonicalExpr(e: Expr): Expr {
  switch (e.type) {
    case 'payload': {
      const o: Of<'payload'> = { type: 'payload', base: e.base, offset: e.offset, len: e.len };
      opt(o, 'dreg', reg(e.dreg), 0);
      opt(o, 'sreg', reg(e.sreg), 0);
      opt(o, 'csumType', e.csumType, 0);
      opt(o, 'csumOffset', e.csumOffset, 0);
      return opt(o, 'csumFlags', e.csumFlags, 0);
    }
    case 'meta':
    case 'ct': {
      const o = { type: e.type, key: e.key } as Of<'meta' | 'ct'>;
      opt(o, 'dreg', reg(e.dreg), 0);
      opt(o, 'sreg', reg(e.sreg), 0);
      return e.type === 'ct' ? opt(o, 'dir', e.dir) : o;
    }
    case 'cmp':
      return { type: 'cmp', sreg: reg(e.sreg)!, op: e.op, data: copy(e.data) };
    case 'bitwise':
      return {
        type: 'bitwise',
        sreg: reg(e.sreg)!,
        dreg: reg(e.dreg)!,
        len: e.len,
        mask: copy(e.mask),
        xor: copy(e.xor),
      };
    case 'range':
      return { type: 'range', sreg: reg(e.sreg)!, op: e.op, from: copy(e.from), to: copy(e.to) };
    case 'lookup': {
      const o: Of<'lookup'> = { type: 'lookup', sreg: reg(e.sreg)!, set: e.set };
      opt(o, 'dreg', reg(e.dreg)); // dreg 0 is a verdict-map lookup, not "absent"
      return opt(o, 'invert', e.invert, false);
    }
    case 'byteorder':
      return { type: 'byteorder', sreg: reg(e.sreg)!, dreg: reg(e.dreg)!, op: e.op, len: e.len, size: e.size };
    case 'immediate':
      return 'verdict' in e
        ? { type: 'immediate', dreg: 0, verdict: canonicalVerdict(e.verdict) }
        : { type: 'immediate', dreg: reg(e.dreg)!, data: copy(e.data) };
    case 'counter':
      return opt(opt({ type: 'counter' } as Of<'counter'>, 'packets', e.packets, 0n), 'bytes', e.bytes, 0n);
    case 'log': {
      const o: Of<'log'> = { type: 'log' };
      for (const k of ['prefix', 'group', 'snaplen', 'qthreshold', 'level', 'flags'] as const) opt(o, k, e[k]);
      if (e.group === undefined && e.level === undefined) o.level = LOG_LEVEL_WARNING;
      return o;
    }
    case 'nat': {
      const o: Of<'nat'> = { type: 'nat', nat: e.nat, family: e.family };
      const [addrMin, protoMin] = [reg(e.regAddrMin) || undefined, reg(e.regProtoMin) || undefined];
      opt(o, 'regAddrMin', addrMin);
      opt(o, 'regAddrMax', addrMin && (reg(e.regAddrMax) || addrMin));
      opt(o, 'regProtoMin', protoMin);
      opt(o, 'regProtoMax', protoMin && (reg(e.regProtoMax) || protoMin));
      const flags = (e.flags ?? 0) | (addrMin ? NAT_MAP_IPS : 0) | (protoMin ? NAT_PROTO_SPECIFIED : 0);
      return opt(o, 'flags', flags, 0);
    }
    case 'masq':
    case 'redir': {
      const o = { type: e.type } as Of<'masq' | 'redir'>;
      const protoMin = reg(e.regProtoMin) || undefined;
      // nft_redir_init() marks a given port as PROTO_SPECIFIED; nft_masq_init() does not.
      opt(o, 'flags', (e.flags ?? 0) | (e.type === 'redir' && protoMin ? NAT_PROTO_SPECIFIED : 0), 0);
      opt(o, 'regProtoMin', protoMin);
      return opt(o, 'regProtoMax', protoMin && (reg(e.regProtoMax) || protoMin));
    }
    case 'limit': {
      const o: Of<'limit'> = { type: 'limit', rate: e.rate, unit: e.unit, burst: e.burst, kind: e.kind };
      return opt(o, 'invert', e.invert, false);
    }
    case 'notrack':
      return { type: 'notrack' };
    case 'reject':
      return { type: 'reject', rejectType: e.rejectType, code: e.code };
    case 'other':
      return { type: 'other', name: e.name, data: copy(e.data) };
  }
}

/**
 * Writes one expression. `setId` gives the batch id of a set created in the same batch (0 otherwise) so the
 * kernel can bind a lookup to a set that is not committed yet.
 */
export function writeExpr(w: WireWriter, e: Expr, setId: (name: string) => number): void {
  w.u8(EXPR_TYPES[e.type]);
  switch (e.type) {
    case 'payload':
      w.u8(PAYLOAD_BASES.code(e.base));
      w.u32(e.offset);
      w.u32(e.len);
      w.u8(e.dreg ?? 0);
      w.u8(e.sreg ?? 0);
      w.u32(e.csumType ?? 0);
      w.u32(e.csumOffset ?? 0);
      w.u32(e.csumFlags ?? 0);
      return;
    case 'meta':
    case 'ct':
      w.u32(e.type === 'meta' ? META_KEYS.code(e.key) : CT_KEYS.code(e.key));
      w.u8(e.dreg ?? 0);
      w.u8(e.sreg ?? 0);
      if (e.type === 'ct') w.u8(e.dir === undefined ? CT_DIRECTION_UNSET : CT_DIRECTIONS.code(e.dir));
      return;
    case 'cmp':
      w.u8(e.sreg);
      w.u32(CMP_OPS.code(e.op));
      w.bytes(e.data);
      return;
    case 'bitwise':
      w.u8(e.sreg);
      w.u8(e.dreg);
      w.u32(e.len);
      w.bytes(e.mask);
      w.bytes(e.xor);
      return;
    case 'range':
      w.u8(e.sreg);
      w.u32(RANGE_OPS.code(e.op));
      w.bytes(e.from);
      w.bytes(e.to);
      return;
    case 'lookup':
      w.u8(e.sreg);
      w.u8(e.dreg ?? NO_LOOKUP_DREG);
      w.str(e.set);
      w.u32(setId(e.set));
      w.u32(e.invert ? NFT_LOOKUP_F_INV : 0);
      return;
    case 'immediate':
      w.u8(e.dreg);
      if ('verdict' in e) {
        w.u8(1);
        w.i32(VERDICTS.code(e.verdict.code));
        w.str('chain' in e.verdict ? e.verdict.chain : '');
      } else {
        w.u8(0);
        w.bytes(e.data);
      }
      return;
    case 'counter':
      w.u64(e.packets ?? 0n);
      w.u64(e.bytes ?? 0n);
      return;
    case 'log':
      writeLog(w, e);
      return;
    case 'nat':
      w.u32(NAT_TYPES.code(e.nat));
      w.u32(NAT_FAMILIES.code(e.family));
      w.u8(e.regAddrMin ?? 0);
      w.u8(e.regAddrMax ?? 0);
      w.u8(e.regProtoMin ?? 0);
      w.u8(e.regProtoMax ?? 0);
      w.u32(e.flags ?? 0);
      return;
    case 'limit':
      w.u64(e.rate);
      w.u64(e.unit);
      w.u32(e.burst);
      w.u32(LIMIT_TYPES.code(e.kind));
      w.u32(e.invert ? NFT_LIMIT_F_INV : 0);
      return;
    case 'notrack':
      return;
    case 'reject':
      w.u32(e.rejectType);
      w.u8(e.code);
      return;
    case 'masq':
    case 'redir':
      w.u32(e.flags ?? 0);
      w.u8(e.regProtoMin ?? 0);
      w.u8(e.regProtoMax ?? 0);
      return;
    case 'byteorder':
      w.u8(e.sreg);
      w.u8(e.dreg);
      w.u32(BYTEORDER_OPS.code(e.op));
      w.u32(e.len);
      w.u32(e.size);
      return;
    case 'other': // dumps only; validation keeps it out of batches and the addon refuses it there
      w.str(e.name);
      w.bytes(e.data);
      return;
  }
}

function writeLog(w: WireWriter, e: Of<'log'>): void {
  const present = [e.prefix, e.group, e.snaplen, e.qthreshold, e.level, e.flags];
  w.u32(present.reduce<number>((m, v, i) => (v === undefined ? m : m | (1 << i)), 0));
  if (e.prefix !== undefined) w.str(e.prefix);
  if (e.group !== undefined) w.u16(e.group);
  if (e.snaplen !== undefined) w.u32(e.snaplen);
  if (e.qthreshold !== undefined) w.u16(e.qthreshold);
  if (e.level !== undefined) w.u32(e.level);
  if (e.flags !== undefined) w.u32(e.flags);
}

/** Reads one expression into its canonical form. */
export function readExpr(r: WireReader): Expr {
  return canonicalExpr(readRaw(r));
}

function readRaw(r: WireReader): Expr {
  const code = r.u8();
  const type = EXPR_NAMES.get(code);
  if (type === undefined) throw new PortwallError('ERR_WIRE', `unknown expression type ${code} in a wire stream`);
  switch (type) {
    case 'payload': {
      const base = PAYLOAD_BASES.name(r.u8());
      const offset = r.u32();
      const len = r.u32();
      const [dreg, sreg] = [r.u8(), r.u8()];
      const [csumType, csumOffset, csumFlags] = [r.u32(), r.u32(), r.u32()];
      return { type, base, offset, len, dreg, sreg, csumType, csumOffset, csumFlags };
    }
    case 'meta': {
      const key = META_KEYS.name(r.u32());
      return { type, key, dreg: r.u8(), sreg: r.u8() };
    }
    case 'ct': {
      const key = CT_KEYS.name(r.u32());
      const [dreg, sreg, d] = [r.u8(), r.u8(), r.u8()];
      const dir = d === CT_DIRECTION_UNSET ? undefined : CT_DIRECTIONS.name(d);
      return dir === undefined ? { type, key, dreg, sreg } : { type, key, dreg, sreg, dir };
    }
    case 'cmp':
      return { type, sreg: r.u8(), op: CMP_OPS.name(r.u32()), data: r.bytes() };
    case 'bitwise':
      return { type, sreg: r.u8(), dreg: r.u8(), len: r.u32(), mask: r.bytes(), xor: r.bytes() };
    case 'range':
      return { type, sreg: r.u8(), op: RANGE_OPS.name(r.u32()), from: r.bytes(), to: r.bytes() };
    case 'lookup': {
      const [sreg, d, set] = [r.u8(), r.u8(), r.str()];
      r.u32(); // the batch set id means nothing in a dump
      const dreg = d === NO_LOOKUP_DREG ? undefined : d;
      return { type, sreg, dreg, set, invert: (r.u32() & NFT_LOOKUP_F_INV) !== 0 };
    }
    case 'immediate': {
      const dreg = r.u8();
      if (r.u8() !== 0) return { type, dreg: 0, verdict: verdictOf(r.i32(), r.str()) };
      return { type, dreg, data: r.bytes() };
    }
    case 'counter':
      return { type, packets: r.u64(), bytes: r.u64() };
    case 'log':
      return readLog(r);
    case 'nat': {
      const [nat, family] = [NAT_TYPES.name(r.u32()), NAT_FAMILIES.name(r.u32())];
      const [regAddrMin, regAddrMax, regProtoMin, regProtoMax] = [r.u8(), r.u8(), r.u8(), r.u8()];
      return { type, nat, family, regAddrMin, regAddrMax, regProtoMin, regProtoMax, flags: r.u32() };
    }
    case 'limit': {
      const [rate, unit, burst, kind] = [r.u64(), r.u64(), r.u32(), LIMIT_TYPES.name(r.u32())];
      return { type, rate, unit, burst, kind, invert: (r.u32() & NFT_LIMIT_F_INV) !== 0 };
    }
    case 'notrack':
      return { type };
    case 'reject':
      return { type, rejectType: r.u32(), code: r.u8() };
    case 'masq':
    case 'redir':
      return { type, flags: r.u32(), regProtoMin: r.u8(), regProtoMax: r.u8() };
    case 'byteorder':
      return { type, sreg: r.u8(), dreg: r.u8(), op: BYTEORDER_OPS.name(r.u32()), len: r.u32(), size: r.u32() };
    case 'other':
      return { type, name: r.str(), data: r.bytes() };
  }
}

function readLog(r: WireReader): Expr {
  const mask = r.u32();
  const o: Of<'log'> = { type: 'log' };
  if (mask & 1) o.prefix = r.str();
  if (mask & 2) o.group = r.u16();
  if (mask & 4) o.snaplen = r.u32();
  if (mask & 8) o.qthreshold = r.u16();
  if (mask & 16) o.level = r.u32();
  if (mask & 32) o.flags = r.u32();
  return o;
}
