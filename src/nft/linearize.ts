/**
 * From rule parts to kernel expressions, the way nft 1.0.6 does it (src/evaluate.c, src/payload.c, src/rule.c
 * and src/netlink_linearize.c were the reference; nothing is copied):
 *
 * 1. Dependencies. A payload field needs its header proven first. A protocol context per layer (link,
 *    network, transport) starts from the table family and is updated by every equality on a protocol key
 *    (`meta l4proto tcp`, `ether type ip`, …); when a field's header is not yet known, the protocol-key match
 *    of the header below is inserted (`meta nfproto ipv4` in inet, `meta protocol ip` in bridge/netdev,
 *    `meta l4proto tcp`, `meta iiftype ether` for Ethernet fields outside bridge tables).
 * 2. Merging. Equality matches on adjacent payload bytes of one header are joined into one load (nft's
 *    stmt_reduce), within runs of match statements.
 * 3. Registers. Every statement starts at NFT_REG_1; concatenations take consecutive 32-bit slots.
 *
 * Versions: the reference is nft 1.0.6 (the oracle of the kernel tests). nft ≥ 1.1.2 writes an equality on a
 * range as one `range eq` instead of `cmp gte` + `cmp lte`; both run the same in the kernel. nft 1.0.6 may
 * merge two payload matches across an action statement between them (fixed in 1.0.9), and merges adjacent
 * `!=` matches into one, which changes their meaning (fixed in 1.1.0); portwall does neither.
 */
import { PortwallError } from '../errors.js';
import { FAMILIES, NFT_REG32_00, NFT_REG_1 } from './constants.js';
import { DATATYPES, parseInterval, prefixLength, toBytes, type Interval } from './datatypes.js';
import { F, PROTOS, fieldOf, isMasked, layerOf, type Field, type Operand, type Proto } from './fields.js';
import type { Lookup, MapValue, Match, Part, Statement } from './match.js';
import type { CmpOp, Expr, Family, PayloadBase, Register, Value } from './types.js';
import { NAT_FLAGS, lowerStatement, storeExpr } from './statements.js';

type Layer = Exclude<PayloadBase, 'inner'>;

interface Mergeable {
  base: PayloadBase;
  offset: number;
  len: number;
  data: Uint8Array;
  protocolKey: boolean;
}

/** One evaluated statement: its expressions, whether it is a match (merge runs span only those). */
interface Stmt {
  exprs: Expr[];
  isMatch: boolean;
  merge?: Mergeable;
}

const HOOK: Record<Family, { base: Layer; desc: Proto }> = {
  inet: { base: 'll', desc: 'inet' },
  netdev: { base: 'll', desc: 'netdev' },
  bridge: { base: 'll', desc: 'ether' },
  ip: { base: 'network', desc: 'ip' },
  ip6: { base: 'network', desc: 'ip6' },
  arp: { base: 'network', desc: 'arp' },
};
const BELOW: Record<Layer, Layer | undefined> = { ll: undefined, network: 'll', transport: 'network' };
const RANK: Record<PayloadBase, number> = { ll: 0, network: 1, transport: 2, inner: 3 };

function fail(message: string): PortwallError {
  return new PortwallError('ERR_INVALID_OBJECT', message, { field: 'exprs' });
}

/** Register of a 32-bit slot counted from 1 (slots 1, 5, 9, 13 are the 16-byte registers). */
export function slotRegister(slot: number): Register {
  return (slot - 1) % 4 === 0 ? NFT_REG_1 + (slot - 1) / 4 : NFT_REG32_00 + slot - 1;
}

/** The load of a field into `dreg` (a payload may be shortened to `len`, for byte-aligned prefixes). */
export function loadExpr(field: Field, dreg: Register, len = field.len): Expr {
  const l = field.load;
  if (l.kind === 'payload') return { type: 'payload', base: l.base, offset: l.offset, len, dreg };
  if (l.kind === 'meta') return { type: 'meta', key: l.key, dreg };
  return l.dir ? { type: 'ct', key: l.key, dreg, dir: l.dir } : { type: 'ct', key: l.key, dreg };
}

const cmp = (op: CmpOp, data: Uint8Array): Expr => ({ type: 'cmp', sreg: NFT_REG_1, op, data });
const bitwise = (reg: Register, len: number, mask: Uint8Array, xor: Uint8Array = new Uint8Array(len)): Expr =>
  ({ type: 'bitwise', sreg: reg, dreg: reg, len, mask, xor });

/** nft's byte-order conversion of a host-order register to big endian. */
function hton(field: Field, reg: Register): Expr {
  const size = field.len % 8 === 0 ? 8 : field.len % 4 === 0 ? 4 : 2;
  return { type: 'byteorder', sreg: reg, dreg: reg, op: 'hton', len: field.len, size };
}

/** Parses a value of a field (integers at the field's width, e.g. the 16-bit zone). */
export function fieldInterval(field: Field, value: Value): Interval {
  return parseInterval(field.type, value, { bits: field.len * 8, field: field.name });
}

const isFlags = (f: Field): boolean => DATATYPES[f.type].kind === 'bitmask';
const isString = (f: Field): boolean => DATATYPES[f.type].kind === 'ifname';
const hasPrefixForm = (f: Field): boolean => ['ipv4', 'ipv6', 'ifname'].includes(DATATYPES[f.type].kind);

function lowerMatch(m: Match): Stmt {
  const field = fieldOf(m.left);
  const iv = fieldInterval(field, m.value);
  const bytes = (n: bigint, order = field.order): Uint8Array => toBytes(n, field.len, order);
  const load = loadExpr(field, NFT_REG_1);
  const eqne = m.op === 'eq' ? 'eq' : m.op === 'ne' ? 'neq' : undefined;
  const ordered = { lt: 'lt', le: 'lte', gt: 'gt', ge: 'gte' } as const;
  const swap = field.order === 'host' && field.len >= 2 ? [hton(field, NFT_REG_1)] : [];

  if (isMasked(m.left)) {
    if (m.left.or !== undefined) throw fail(`${field.name} or …: only in set statements`);
    const mask = fieldInterval(field, m.left.mask);
    if (!eqne || iv.lo !== iv.hi || mask.lo !== mask.hi) {
      throw fail(`${field.name} and …: only == and != of single values`);
    }
    return { isMatch: true, exprs: [load, bitwise(NFT_REG_1, field.len, bytes(mask.lo)), cmp(eqne, bytes(iv.lo))] };
  }
  if (isFlags(field) && m.op === 'eq') {
    // nft's flag test: any of the bits set.
    const zero = new Uint8Array(field.len);
    return { isMatch: true, exprs: [load, bitwise(NFT_REG_1, field.len, bytes(iv.lo)), cmp('neq', zero)] };
  }
  if (iv.lo === iv.hi) {
    if (!eqne) {
      const op = ordered[m.op as keyof typeof ordered];
      return { isMatch: true, exprs: [load, ...swap, cmp(op, bytes(iv.lo, 'big'))] };
    }
    const stmt: Stmt = { isMatch: true, exprs: [load, cmp(eqne, bytes(iv.lo))] };
    if (eqne === 'eq' && field.load.kind === 'payload') {
      const { base, offset } = field.load;
      stmt.merge = { base, offset, len: field.len, data: bytes(iv.lo), protocolKey: !!field.protocolKey };
    }
    return stmt;
  }
  if (!eqne) throw fail(`${field.name}: ${m.op} needs a single value`);
  const plen = hasPrefixForm(field) ? prefixLength(iv, field.len * 8) : undefined;
  if (plen !== undefined) {
    if (isString(field) || (field.order === 'big' && plen > 0 && plen % 8 === 0)) {
      // nft loads (or compares) only the prefix bytes when the prefix ends on a byte boundary.
      const n = Math.ceil(plen / 8);
      const short = loadExpr(field, NFT_REG_1, field.load.kind === 'payload' ? n : field.len);
      return { isMatch: true, exprs: [short, cmp(eqne, bytes(iv.lo).subarray(0, n))] };
    }
    const mask = bytes(((1n << BigInt(plen)) - 1n) << BigInt(field.len * 8 - plen), 'big');
    return { isMatch: true, exprs: [load, bitwise(NFT_REG_1, field.len, mask), cmp(eqne, bytes(iv.lo))] };
  }
  const lo = bytes(iv.lo, 'big');
  const hi = bytes(iv.hi, 'big');
  const tail: Expr[] = eqne === 'eq'
    ? [cmp('gte', lo), cmp('lte', hi)]
    : [{ type: 'range', sreg: NFT_REG_1, op: 'neq', from: lo, to: hi }];
  return { isMatch: true, exprs: [load, ...swap, ...tail] };
}

/** Loads of a (concatenated) key into consecutive slots, as nft does for lookups and (verdict) maps. */
function lowerLookup(l: Lookup, dreg?: Register): Stmt {
  const exprs: Expr[] = [];
  let slot = 1;
  for (const key of l.keys) {
    const field = fieldOf(key);
    const reg = slotRegister(slot);
    exprs.push(loadExpr(field, reg));
    if (isMasked(key)) {
      if (key.or !== undefined) throw fail(`${field.name} or …: only in set statements`);
      exprs.push(bitwise(reg, field.len, toBytes(fieldInterval(field, key.mask).lo, field.len, field.order)));
    }
    // Interval sets hold big-endian keys: nft swaps host-order fields (all of them in a concatenation,
    // only those of two bytes or more for a single key).
    const swap = l.keys.length > 1 ? !isString(field) : field.len >= 2;
    if (l.interval && field.order === 'host' && swap) exprs.push(hton(field, reg));
    slot += Math.ceil(field.len / 4);
  }
  if (slot > 17) throw fail(`key of @${l.set} is longer than the 64 bytes of register space`);
  const lookup: Expr = { type: 'lookup', sreg: NFT_REG_1, set: l.set };
  if (l.vmap) lookup.dreg = 0;
  else if (dreg !== undefined) lookup.dreg = dreg;
  if (l.negate) lookup.invert = true;
  // A verdict map is a verdict statement in nft: it ends a run of mergeable matches.
  return { isMatch: !l.vmap, exprs: [...exprs, lookup] };
}

/** Evaluates parts in order, inserting dependencies and tracking the protocol context. */
class Evaluator {
  readonly stmts: Stmt[] = [];
  readonly #ctx: Partial<Record<Layer, Proto>>;
  readonly #hook: { base: Layer; desc: Proto };

  constructor(readonly family: Family) {
    this.#hook = HOOK[family];
    this.#ctx = { [this.#hook.base]: this.#hook.desc };
  }

  add(p: Part): void {
    if (p.kind === 'match') return this.#match(p);
    if (p.kind === 'lookup') {
      for (const k of p.keys) this.#need(fieldOf(k));
      this.stmts.push(lowerLookup(p));
      return;
    }
    if (p.kind === 'set' && typeof p.value === 'object') return this.#setFrom(p.field, p.value);
    if (p.kind === 'nat' && typeof p.addr === 'object') return this.#natFrom(p, p.addr);
    if ((p.kind === 'nat' && p.port !== undefined) && !this.#ctx.transport) {
      throw fail(`${p.nat} to a port needs a transport protocol match first (e.g. meta l4proto tcp)`);
    }
    this.stmts.push({ isMatch: false, exprs: lowerStatement(p as Statement) });
  }

  /** `dnat ip to KEYS map @m`: the lookup's data in NFT_REG_1 is the address (no ports: nft has none here). */
  #natFrom(p: Extract<Part, { kind: 'nat' }>, src: MapValue): void {
    if (p.port !== undefined) throw fail(`${p.nat} to a map with a port is not supported`);
    for (const k of src.keys) this.#need(fieldOf(k));
    const l: Lookup = { kind: 'lookup', keys: src.keys, set: src.map, interval: src.interval, negate: false, vmap: false };
    const nat: Expr = { type: 'nat', nat: p.nat, family: p.family, regAddrMin: NFT_REG_1 };
    const flags = (p.flags ?? []).reduce((f, x) => f | NAT_FLAGS[x], 0);
    if (flags) nat.flags = flags;
    this.stmts.push({ isMatch: false, exprs: [...lowerLookup(l, NFT_REG_1).exprs, nat] });
  }

  /** `field set KEYS map @m` (lookup into NFT_REG_1) or `field set other [and mask]` (load, mask), then the store. */
  #setFrom(target: Field, src: Operand | MapValue): void {
    let exprs: Expr[];
    if ('kind' in src) {
      for (const k of src.keys) this.#need(fieldOf(k));
      const l: Lookup = { kind: 'lookup', keys: src.keys, set: src.map, interval: src.interval, negate: false, vmap: false };
      exprs = lowerLookup(l, NFT_REG_1).exprs;
    } else {
      const field = fieldOf(src);
      this.#need(field);
      exprs = [loadExpr(field, NFT_REG_1)];
      if (isMasked(src)) {
        const bits = (v: Value) => toBytes(fieldInterval(field, v).lo, field.len, field.order);
        exprs.push(bitwise(NFT_REG_1, field.len, bits(src.mask), src.or === undefined ? undefined : bits(src.or)));
      }
    }
    this.stmts.push({ isMatch: false, exprs: [...exprs, storeExpr(target)] });
  }

  #match(m: Match): void {
    const field = fieldOf(m.left);
    if (field === F.meta.nfproto && this.family !== 'inet') throw fail('meta nfproto is only useful in inet tables');
    this.#need(field);
    const iv = fieldInterval(field, m.value);
    const single = iv.lo === iv.hi && m.op === 'eq' && !isMasked(m.left);
    // nft drops `meta protocol ip` in an ip table (and ip6 in ip6): it is always true there.
    const own = { ip: 0x0800n, ip6: 0x86ddn } as Partial<Record<Family, bigint>>;
    if (single && field === F.meta.protocol && own[this.family] === iv.lo) return;
    this.stmts.push(lowerMatch(m));
    if (single && field.protocolKey) this.#update(field, iv.lo);
  }

  /** Inserts what proves the header of `field`, like nft's payload dependency generation. */
  #need(field: Field): void {
    const p = field.proto;
    if (p === undefined || p === 'th') return;
    const layer = layerOf(p) as Layer;
    if (RANK[layer] < RANK[this.#hook.base]) {
      if (p !== 'ether') throw fail(`${field.name} cannot be matched in a ${this.family} table`);
      if (this.#ctx.ll !== 'ether') this.#dep(F.meta.iiftype, 1n);
      return;
    }
    const cur = this.#ctx[layer];
    if (cur === p) return;
    if (cur === undefined) {
      let lower = BELOW[layer] && this.#ctx[BELOW[layer]!];
      if (lower === undefined) {
        if (layer !== 'transport') throw fail(`${field.name}: no ${BELOW[layer] ?? 'lower'} protocol to depend on`);
        if (p === 'icmp' || p === 'icmpv6') {
          // ICMP exists over one network protocol only: prove that one first.
          const net = p === 'icmp' ? 'ip' : 'ip6';
          this.#link(this.#ctx.ll ?? this.#hook.desc, net, field);
          lower = net;
        } else lower = 'inet_service';
      }
      // Bridge tables test skb->protocol rather than the Ethernet type for IP (so VLAN-offloaded frames match).
      if (this.family === 'bridge' && lower === 'ether' && (p === 'ip' || p === 'ip6')) lower = 'netdev';
      this.#link(lower, p, field);
      return;
    }
    if (layer === 'll' && p === 'ether' && (cur === 'inet' || cur === 'netdev')) {
      this.#dep(F.meta.iiftype, 1n);
      return;
    }
    throw fail(`${field.name}: conflicting protocols ${cur} and ${p} in one rule`);
  }

  #link(lower: Proto, upper: Proto, field: Field): void {
    const desc = PROTOS[lower];
    const value = desc?.uppers[upper];
    if (!desc?.key || value === undefined) throw fail(`${field.name}: conflicting protocols ${lower} and ${upper}`);
    this.#dep(desc.key, BigInt(value));
  }

  #dep(key: Field, value: bigint): void {
    this.stmts.push(lowerMatch({ kind: 'match', left: key, op: 'eq', value: Number(value) }));
    this.#update(key, value);
  }

  /** Protocol context update by an equality on a protocol key (nft's pctx_update). */
  #update(field: Field, n: bigint): void {
    const upper = (desc: Proto | undefined): Proto | undefined =>
      desc && (Object.entries(PROTOS[desc]?.uppers ?? {}).find(([, v]) => BigInt(v) === n)?.[0] as Proto | undefined);
    const hook = this.#hook;
    if (field === F.meta.iiftype) {
      // Bridge tables ignore it: their link layer is Ethernet from the start.
      if (this.family !== 'bridge') this.#ctx.ll = n === 1n ? 'ether' : 'unknown';
    } else if (field === F.meta.nfproto) {
      const own = hook.base === 'network' && BigInt(FAMILIES.code(this.family)) === n ? hook.desc : 'unknown';
      this.#ctx.network = upper(hook.desc) ?? own;
    } else if (field === F.meta.l4proto) {
      this.#ctx.transport = upper('inet_service') ?? 'unknown';
    } else if (field === F.meta.protocol) {
      if (this.family === 'netdev' || this.family === 'bridge') this.#ctx.network = upper(hook.desc) ?? 'unknown';
    } else if (field.load.kind === 'payload') {
      const up = upper(this.#ctx[field.load.base as Layer]);
      if (up) this.#ctx[layerOf(up) as Layer] = up;
    }
  }
}

function canMerge(a: Mergeable, b: Mergeable): boolean {
  if (a.base !== b.base || a.offset + a.len !== b.offset) return false;
  const total = a.len + b.len;
  // Loads of up to 4 bytes from the network header on are the kernel's fast path: keep them unless merging
  // keeps it (≤ 4 bytes), the header is the link layer, or one side is already a slow load.
  return total <= 16 && (total <= 4 || a.base === 'll' || a.len > 4 || b.len > 4);
}

/** nft's stmt_reduce: merges equality matches on adjacent payload bytes within each run of matches. */
function reduce(stmts: Stmt[]): Stmt[] {
  const out = [...stmts];
  const mergeRun = (run: Stmt[]): void => {
    const sa = [...run].sort((x, y) => RANK[x.merge!.base] - RANK[y.merge!.base] || x.merge!.offset - y.merge!.offset);
    let last = sa[0]!;
    for (const cur of sa.slice(1)) {
      const a = last.merge!;
      const b = cur.merge!;
      if (!canMerge(a, b)) {
        last = cur;
        continue;
      }
      const data = Uint8Array.from([...a.data, ...b.data]);
      // The merged match takes the place of a protocol-key match, so the header is proven before it is used.
      const keep = b.protocolKey ? cur : last;
      const gone = b.protocolKey ? last : cur;
      keep.merge = { base: a.base, offset: a.offset, len: a.len + b.len, data, protocolKey: b.protocolKey };
      keep.exprs = [
        { type: 'payload', base: a.base, offset: a.offset, len: a.len + b.len, dreg: NFT_REG_1 },
        cmp('eq', data),
      ];
      out.splice(out.indexOf(gone), 1);
      last = keep;
    }
  };
  let run: Stmt[] = [];
  for (const s of stmts) {
    if (!s.isMatch) {
      if (run.length > 1) mergeRun(run);
      run = [];
    } else if (s.merge) run.push(s);
  }
  if (run.length > 1) mergeRun(run);
  return out;
}

/** The expressions of a rule's parts in a table of `family` (see the module comment). */
export function linearize(family: Family, parts: Part[]): Expr[] {
  const ev = new Evaluator(family);
  for (const p of parts) ev.add(p);
  // An exact-size copy: flatMap leaves room to grow, and a handle keeps its ~7k rules' lists for its life.
  return reduce(ev.stmts).flatMap((s) => s.exprs).slice();
}
