/**
 * Raising kernel expressions back to rule parts (the inverse of `./match.ts`), for printing.
 *
 * Registers are tracked from load to consumer: a bitwise mask after a load becomes a prefix, a flag test or
 * `field and mask`; `cmp gte` + `cmp lte` a range; a shortened payload load a byte-aligned prefix; a merged
 * payload load is split into the fields of the header the rule is known to be in; pending loads before a
 * lookup are its concatenated key. The result is proven, not trusted: `raiseRule` rebuilds the parts with
 * `rule()` and requires the same expressions (ERR_RENDER otherwise), then drops every dependency match that
 * nft would insert by itself, again checking that nothing changes.
 */
import { PortwallError } from '../errors.js';
import { NFT_REG_1 } from './constants.js';
import { DATATYPES, formatInterval, fromBytes, prefixLength, type Interval } from './datatypes.js';
import { ALL_FIELDS, F, PROTOS, layerOf, type Field, type Proto } from './fields.js';
import { slotRegister } from './linearize.js';
import {
  and, eq, rule, type LogLevel, type MapValue, type Match, type MatchOp, type NatFlag, type Operand, type Part,
  type TimeUnit,
} from './match.js';
import { LOG_LEVELS, NAT_FLAGS, NAT_PROTO_SPECIFIED, TIME_UNITS } from './statements.js';
import type { CmpOp, Expr, Family, PayloadBase, Register, SetFlag } from './types.js';

type Load = Extract<Expr, { type: 'payload' | 'meta' | 'ct' }>;

/** Whether a field is the ct key of `e` in the same direction (`ct zone` vs `ct original zone`). */
const sameDir = (f: Field, e: { type: string; dir?: 'original' | 'reply' }): boolean =>
  (f.load.kind === 'ct' ? f.load.dir : undefined) === (e.type === 'ct' ? e.dir : undefined);
interface Reg {
  load?: Load;
  mask?: Uint8Array;
  /** `or` bits after the mask (set statements only). */
  xor?: Uint8Array;
  hton?: boolean;
  imm?: Uint8Array;
  /** The register holds the data of a map lookup. */
  map?: MapValue;
}

function unprintable(why: string): PortwallError {
  return new PortwallError('ERR_RENDER', `cannot print rule as nft syntax: ${why}`, { field: 'exprs' });
}

const OPS: Record<CmpOp, MatchOp> = { eq: 'eq', neq: 'ne', lt: 'lt', lte: 'le', gt: 'gt', gte: 'ge' };
const zero = (b: Uint8Array): boolean => b.every((x) => x === 0);
const value = (f: Field, iv: Interval) => formatInterval(f.type, iv, f.len * 8);

/** Tracks which header each layer is known to be, to tell `tcp dport` from `udp dport` or `ip saddr`. */
class Context {
  readonly #layers: Partial<Record<PayloadBase, Proto>>;
  constructor(family: Family) {
    const start: Record<Family, Partial<Record<PayloadBase, Proto>>> = {
      ip: { network: 'ip' }, ip6: { network: 'ip6' }, arp: { network: 'arp' }, bridge: { ll: 'ether' }, inet: {}, netdev: {},
    };
    this.#layers = { ...start[family] };
  }

  /** Notes an equality on a protocol key. */
  saw(field: Field, n: bigint): void {
    const from: Proto | undefined = field === F.meta.nfproto ? 'inet'
      : field === F.meta.l4proto ? 'inet_service'
      : field === F.meta.protocol || field === F.ether.type ? 'ether'
      : field === F.ip.protocol || field === F.ip6.nexthdr ? 'ip' : undefined;
    if (field === F.meta.iiftype && n === 1n) this.#layers.ll = 'ether';
    const up = from && Object.entries(PROTOS[from]?.uppers ?? {}).find(([, v]) => BigInt(v) === n)?.[0];
    if (up) this.#layers[layerOf(up as Proto)] = up as Proto;
  }

  /** Payload fields at (base, offset) of at least `len` bytes: the known header's (or th's), else all. */
  fields(base: PayloadBase, offset: number, len: number): Field[] {
    const at = ALL_FIELDS.filter((f) => f.load.kind === 'payload' && f.load.base === base && f.load.offset === offset && f.len >= len);
    const known = this.#layers[base];
    if (known === undefined) return at.sort((a, b) => Number(b.proto === 'th') - Number(a.proto === 'th'));
    const own = at.filter((f) => f.proto === known);
    return own.length > 0 || base !== 'transport' ? own : at.filter((f) => f.proto === 'th');
  }
}

class Raiser {
  readonly parts: Part[] = [];
  readonly #regs = new Map<Register, Reg>();
  #pending: Register[] = [];
  readonly #ctx: Context;

  constructor(family: Family, readonly isInterval: (set: string) => boolean | undefined) {
    this.#ctx = new Context(family);
  }

  #take(reg: Register): Reg & { load: Load } {
    const r = this.#regs.get(reg);
    if (!r?.load) throw unprintable(`register ${reg} is read before anything is loaded into it`);
    this.#pending = this.#pending.filter((x) => x !== reg);
    return r as Reg & { load: Load };
  }

  #field(load: Load, len: number): Field {
    const f = load.type === 'payload'
      ? this.#ctx.fields(load.base, load.offset, len)[0]
      : ALL_FIELDS.find((x) => x.load.kind === load.type && x.load.key === load.key && sameDir(x, load));
    if (!f) throw unprintable(`no field for ${load.type} ${'key' in load ? load.key : `${load.base}+${load.offset}`}`);
    return f;
  }

  #push(m: Match): void {
    this.parts.push(m);
    const f = m.left as Field;
    if (m.op === 'eq' && 'load' in f && f.protocolKey && typeof m.value === 'number') this.#ctx.saw(f, BigInt(m.value));
  }

  /** Splits a merged equality over several adjacent fields of one header. */
  #split(load: Extract<Load, { type: 'payload' }>, data: Uint8Array): void {
    let off = 0;
    while (off < load.len) {
      const f = this.#ctx.fields(load.base, load.offset + off, 1).find((x) => off + x.len <= load.len);
      if (!f) throw unprintable(`payload ${load.base}+${load.offset}/${load.len} is no sequence of fields`);
      const n = fromBytes(data.subarray(off, off + f.len), f.order);
      this.#push(eq(f, value(f, { lo: n, hi: n })));
      off += f.len;
    }
  }

  #cmp(e: Extract<Expr, { type: 'cmp' }>, next: Expr | undefined): number {
    const r = this.#take(e.sreg);
    const op = OPS[e.op];
    if (r.load.type === 'payload' && !r.mask && this.#ctx.fields(r.load.base, r.load.offset, r.load.len).length === 0) {
      if (op !== 'eq') throw unprintable('a merged payload match that is not an equality');
      this.#split(r.load, e.data);
      return 1;
    }
    if (r.xor) throw unprintable('bitwise with xor');
    const f = this.#field(r.load, r.load.type === 'payload' ? r.load.len : 1);
    const bits = f.len * 8;
    if (r.mask) {
      const mask = fromBytes(r.mask, f.order);
      const plen = prefixLength({ lo: 0n, hi: ((1n << BigInt(bits)) - 1n) ^ mask }, bits);
      if (DATATYPES[f.type].kind === 'bitmask' && e.op === 'neq' && zero(e.data)) {
        this.#push(eq(f, value(f, { lo: mask, hi: mask })));
      } else if (plen !== undefined && ['ipv4', 'ipv6'].includes(DATATYPES[f.type].kind) && (op === 'eq' || op === 'ne')) {
        const lo = fromBytes(e.data, f.order);
        this.#push({ kind: 'match', left: f, op, value: value(f, { lo, hi: lo | ((1n << BigInt(bits - plen)) - 1n) }) });
      } else {
        const v = fromBytes(e.data, f.order);
        this.#push({ kind: 'match', left: and(f, value(f, { lo: mask, hi: mask })), op, value: value(f, { lo: v, hi: v }) });
      }
      return 1;
    }
    if (e.op === 'gte' && next?.type === 'cmp' && next.op === 'lte' && next.sreg === e.sreg) {
      this.#push(eq(f, value(f, { lo: fromBytes(e.data, 'big'), hi: fromBytes(next.data, 'big') })));
      return 2;
    }
    if (e.data.length < f.len && (op === 'eq' || op === 'ne')) {
      // A byte-aligned prefix (shortened payload load) or an interface-name wildcard.
      const rest = BigInt(8 * (f.len - e.data.length));
      const lo = fromBytes(e.data, 'big') << rest;
      this.#push({ kind: 'match', left: f, op, value: value(f, { lo, hi: lo | ((1n << rest) - 1n) }) });
      return 1;
    }
    const n = fromBytes(e.data, r.hton ? 'big' : f.order);
    this.#push({ kind: 'match', left: f, op, value: value(f, { lo: n, hi: n }) });
    return 1;
  }

  #lookup(e: Extract<Expr, { type: 'lookup' }>): void {
    const keys: Operand[] = [];
    let slot = 1;
    let swapped = false;
    for (const reg of this.#pending) {
      if (reg !== slotRegister(slot)) throw unprintable(`lookup key register ${reg} out of sequence`);
      const r = this.#regs.get(reg)!;
      if (r.xor) throw unprintable('bitwise with xor');
      const f = this.#field(r.load!, r.load!.type === 'payload' ? r.load!.len : 1);
      keys.push(r.mask ? and(f, value(f, { lo: fromBytes(r.mask, f.order), hi: fromBytes(r.mask, f.order) })) : f);
      swapped ||= !!r.hton;
      slot += Math.ceil(f.len / 4);
    }
    if (keys.length === 0 || e.sreg !== NFT_REG_1) throw unprintable(`lookup of @${e.set} without a key`);
    this.#pending = [];
    const flags: SetFlag[] = swapped || this.isInterval(e.set) ? ['interval'] : [];
    if (e.dreg !== undefined && e.dreg !== 0) {
      // A data map: its value is read by the statement that consumes the register (`… set KEYS map @m`).
      this.#regs.set(e.dreg, { map: { kind: 'map', keys, map: e.set, interval: flags.length > 0 } });
      return;
    }
    this.parts.push({ kind: 'lookup', keys, set: e.set, interval: flags.length > 0, negate: !!e.invert, vmap: e.dreg === 0 });
  }

  /** A meta/ct set statement: from an immediate, a map lookup or a (masked) load in its source register. */
  #store(e: Extract<Expr, { type: 'meta' | 'ct' }>, sreg: Register): void {
    const f = ALL_FIELDS.find((x) => x.load.kind !== 'payload' && x.load.kind === e.type && x.load.key === e.key && sameDir(x, e));
    if (!f) throw unprintable(`${e.type} ${e.key} set`);
    const r = this.#regs.get(sreg);
    if (r?.map) {
      this.parts.push({ kind: 'set', field: f, value: r.map });
    } else if (r?.load) {
      const src = this.#field(this.#take(sreg).load, 1);
      const val = (b: Uint8Array) => value(src, { lo: fromBytes(b, src.order), hi: fromBytes(b, src.order) });
      const mask = r.mask && val(r.mask);
      this.parts.push({ kind: 'set', field: f, value: mask === undefined ? src : r.xor ? { ...and(src, mask), or: val(r.xor) } : and(src, mask) });
    } else {
      const data = this.#imm(sreg)!;
      if (data.length !== f.len) throw unprintable(`${e.type} ${e.key} set`);
      const n = fromBytes(data, f.order);
      this.parts.push({ kind: 'set', field: f, value: value(f, { lo: n, hi: n }) });
    }
  }

  #imm(reg: Register | undefined): Uint8Array | undefined {
    if (reg === undefined) return undefined;
    const data = this.#regs.get(reg)?.imm;
    if (!data) throw unprintable(`register ${reg} holds no immediate value`);
    return data;
  }

  #nat(e: Extract<Expr, { type: 'nat' }>): void {
    const addrType = e.family === 'ip' ? 'ipv4_addr' : 'ipv6_addr';
    const map = e.regAddrMin === undefined ? undefined : this.#regs.get(e.regAddrMin)?.map;
    if (map) {
      // `dnat ip to ip daddr map @m`: the address is the map's data (a dump repeats it as the max register).
      if ((e.regAddrMax !== undefined && e.regAddrMax !== e.regAddrMin) || e.regProtoMin !== undefined) throw unprintable('nat from a map with a range or ports');
      if (((e.flags ?? 0) & ~0x1) !== 0) throw unprintable(`nat flags 0x${(e.flags ?? 0).toString(16)}`);
      this.parts.push({ kind: 'nat', nat: e.nat, family: e.family, addr: map });
      return;
    }
    const lo = this.#imm(e.regAddrMin);
    const hi = this.#imm(e.regAddrMax) ?? lo;
    const plo = this.#imm(e.regProtoMin);
    const phi = this.#imm(e.regProtoMax) ?? plo;
    if (!lo) throw unprintable('nat without an address');
    // Dumps carry NF_NAT_RANGE_MAP_IPS (the kernel adds it); nft never sends it.
    const rest = (e.flags ?? 0) & ~(NAT_PROTO_SPECIFIED | 0x1);
    const flags = (Object.keys(NAT_FLAGS) as NatFlag[]).filter((k) => rest & NAT_FLAGS[k]);
    if (flags.reduce((a, k) => a | NAT_FLAGS[k], 0) !== rest) throw unprintable(`nat flags 0x${rest.toString(16)}`);
    const addr = formatInterval(addrType, { lo: fromBytes(lo, 'big'), hi: fromBytes(hi!, 'big') });
    const port = plo ? formatInterval('inet_service', { lo: fromBytes(plo, 'big'), hi: fromBytes(phi!, 'big') }) : undefined;
    if (typeof addr === 'string' && addr.includes('/')) throw unprintable('nat to a prefix');
    const nat: Part = { kind: 'nat', nat: e.nat, family: e.family, addr };
    if (port !== undefined) nat.port = port;
    if (flags.length) nat.flags = flags;
    this.parts.push(nat);
  }

  raise(exprs: Expr[]): Part[] {
    for (let i = 0; i < exprs.length; i++) {
      const e = exprs[i]!;
      switch (e.type) {
        case 'payload':
        case 'meta':
        case 'ct':
          if (e.sreg !== undefined && e.type !== 'payload') {
            this.#store(e, e.sreg);
          } else if (e.dreg !== undefined && e.sreg === undefined) {
            this.#regs.set(e.dreg, { load: e });
            this.#pending.push(e.dreg);
          } else throw unprintable(`${e.type} statement form`);
          break;
        case 'bitwise':
        case 'byteorder': {
          const r = this.#regs.get(e.sreg);
          if (!r?.load || e.dreg !== e.sreg) throw unprintable(`${e.type} on register ${e.sreg}`);
          if (e.type === 'bitwise') {
            if (r.mask) throw unprintable('bitwise twice');
            // `x or C` is nft's (x & ~C) ^ C: read back only in that form, only for set statements (#store).
            if (!zero(e.xor)) {
              if (e.mask.some((b, j) => (b & e.xor[j]!) !== 0)) throw unprintable('bitwise with xor');
              r.xor = e.xor;
            }
            r.mask = e.mask;
          } else if (e.op === 'hton') r.hton = true;
          else throw unprintable('byteorder ntoh');
          break;
        }
        case 'cmp':
          i += this.#cmp(e, exprs[i + 1]) - 1;
          break;
        case 'range': {
          const r = this.#take(e.sreg);
          const f = this.#field(r.load, 1);
          const iv = { lo: fromBytes(e.from, 'big'), hi: fromBytes(e.to, 'big') };
          this.parts.push({ kind: 'match', left: f, op: e.op === 'eq' ? 'eq' : 'ne', value: value(f, iv) });
          break;
        }
        case 'lookup':
          this.#lookup(e);
          break;
        case 'immediate':
          if ('verdict' in e) this.parts.push({ kind: 'verdict', verdict: e.verdict });
          else this.#regs.set(e.dreg, { imm: e.data });
          break;
        case 'counter':
        case 'notrack':
          this.parts.push({ kind: e.type });
          break;
        case 'log': {
          if (e.flags) throw unprintable('log flags');
          const level = e.level === undefined ? undefined : (LOG_LEVELS[e.level] as LogLevel | undefined);
          if (e.level !== undefined && !level) throw unprintable(`log level ${e.level}`);
          const log: Part = { kind: 'log' };
          if (e.prefix !== undefined) log.prefix = e.prefix;
          if (level !== undefined) log.level = level;
          if (e.group !== undefined) log.group = e.group;
          if (e.snaplen !== undefined) log.snaplen = e.snaplen;
          if (e.qthreshold !== undefined) log.qthreshold = e.qthreshold;
          this.parts.push(log);
          break;
        }
        case 'limit': {
          const per = (Object.keys(TIME_UNITS) as TimeUnit[]).find((u) => BigInt(TIME_UNITS[u]) === e.unit);
          if (!per) throw unprintable(`limit unit ${e.unit}`);
          const limit: Part = { kind: 'limit', rate: Number(e.rate), per, burst: e.burst };
          if (e.kind === 'bytes') limit.bytes = true;
          if (e.invert) limit.over = true;
          this.parts.push(limit);
          break;
        }
        case 'nat':
          this.#nat(e);
          break;
        case 'masq': {
          if (e.regProtoMin !== undefined) throw unprintable('masquerade to ports');
          const flags = (Object.keys(NAT_FLAGS) as NatFlag[]).filter((k) => (e.flags ?? 0) & NAT_FLAGS[k]);
          this.parts.push(flags.length ? { kind: 'masquerade', flags } : { kind: 'masquerade' });
          break;
        }
        default:
          throw unprintable(`${e.type} expressions`);
      }
    }
    if (this.#pending.length > 0) throw unprintable('a load nothing reads');
    return this.parts;
  }
}

/**
 * A nat expression without what a dump adds to what nft sent: max registers equal to the min, the flag
 * NF_NAT_RANGE_MAP_IPS (and PROTO_SPECIFIED without ports), a zero flags word.
 */
export function natAsSent(e: Extract<Expr, { type: 'nat' }>): Extract<Expr, { type: 'nat' }> {
  const n: Extract<Expr, { type: 'nat' }> = { ...e };
  let flags = (e.flags ?? 0) & ~0x1;
  if (n.regAddrMax === n.regAddrMin) delete n.regAddrMax;
  if (n.regProtoMax === n.regProtoMin) delete n.regProtoMax;
  if (n.regProtoMin === undefined) flags &= ~NAT_PROTO_SPECIFIED;
  if (flags === 0) delete n.flags;
  else n.flags = flags;
  return n;
}

/** What a dump adds to what nft sent: counter values, and the nat additions of {@link natAsSent}. */
function comparable(exprs: Expr[]): string {
  const norm = exprs.map((e) => (e.type === 'counter' ? { type: 'counter' } : e.type === 'nat' ? natAsSent(e) : e));
  // Keys sorted and false flags dropped: a decoded dump need not spell fields the way the builder does.
  return JSON.stringify(norm, (_k, v: unknown) => {
    if (v === false) return undefined;
    if (v instanceof Uint8Array) return Buffer.from(v).toString('hex');
    if (typeof v === 'bigint') return v.toString();
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      return Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1)));
    }
    return v;
  });
}

const DEPENDENCY_FIELDS: readonly Field[] = [F.meta.nfproto, F.meta.l4proto, F.meta.protocol, F.meta.iiftype, F.ether.type];

function rebuilds(family: Family, parts: Part[], want: string): boolean {
  try {
    return comparable(rule(family, parts)) === want;
  } catch {
    return false;
  }
}

/**
 * The parts of a rule's expressions, with the dependency matches nft adds by itself left out. Throws
 * ERR_RENDER when the expressions have no nft spelling that portwall can print faithfully.
 */
export function raiseRule(
  family: Family,
  exprs: Expr[],
  isInterval: (set: string) => boolean | undefined = () => undefined,
): Part[] {
  let parts = new Raiser(family, isInterval).raise(exprs);
  const want = comparable(exprs);
  if (!rebuilds(family, parts, want)) throw unprintable('nft would build it differently from its statements');
  // Last first: a later dependency (meta l4proto) often rests on an earlier one (meta nfproto).
  for (let i = parts.length - 1; i >= 0; i--) {
    const p = parts[i]!;
    if (p.kind !== 'match' || p.op !== 'eq' || !DEPENDENCY_FIELDS.includes(p.left as Field)) continue;
    const without = [...parts.slice(0, i), ...parts.slice(i + 1)];
    if (rebuilds(family, without, want)) parts = without;
  }
  return parts;
}
