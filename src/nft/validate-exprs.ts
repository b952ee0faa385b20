/**
 * Validation of rule expressions: every field the kernel would check, checked before the batch is built, so
 * a bad rule is reported with its field (`exprs[3].sreg`) instead of an EINVAL for the whole batch.
 */
import {
  BYTEORDER_OPS,
  CMP_OPS,
  CT_DIRECTIONS,
  CT_KEYS,
  LIMIT_TYPES,
  META_KEYS,
  NAT_FAMILIES,
  NAT_TYPES,
  NFT_DATA_MAXLEN,
  NFT_REG32_00,
  NFT_REG32_15,
  NFT_REG_1,
  NFT_REG_4,
  NFT_REG_SPACE,
  PAYLOAD_BASES,
  RANGE_OPS,
  VERDICTS,
} from './constants.js';
import type { Expr, Verdict } from './types.js';

/** Reports a bad field: `field` is relative to the expression (`sreg`), the caller prefixes `exprs[i]`. */
export type Fail = (field: string, message: string) => never;

/** Longest log prefix in bytes (NF_LOG_PREFIXLEN minus the NUL). */
const LOG_PREFIX_MAXLEN = 127;
/** NF_LOG_MASK: the log flags a rule may set (tcpseq, tcpopt, ipopt, uid, macdecode). */
const NF_LOG_MASK = 0x2f;
/** Most expressions in one rule (NFT_RULE_MAXEXPRS). */
export const RULE_MAX_EXPRS = 128;

const isU = (v: unknown, bits: number): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 2 ** bits;
const isBytes = (v: unknown): v is Uint8Array => v instanceof Uint8Array;
const isPositiveU64 = (v: unknown): v is bigint => typeof v === 'bigint' && v > 0n && v < 2n ** 64n;

// Byte offset of a data register in the 64-byte register file: NFT_REG_1..4 are 16 bytes, NFT_REG32_* 4.
function regOffset(reg: number): number | undefined {
  if (!Number.isInteger(reg)) return undefined;
  if (reg >= NFT_REG_1 && reg <= NFT_REG_4) return (reg - NFT_REG_1) * 16;
  if (reg >= NFT_REG32_00 && reg <= NFT_REG32_15) return (reg - NFT_REG32_00) * 4;
  return undefined;
}

/** Checks a data register that reads or writes `len` bytes (len undefined: unknown, only the number). */
function checkRegister(fail: Fail, field: string, reg: unknown, len?: number): void {
  const off = typeof reg === 'number' ? regOffset(reg) : undefined;
  if (off === undefined) fail(field, `register ${String(reg)} out of range`);
  if (len !== undefined && off + len > NFT_REG_SPACE) fail(field, `register ${reg} cannot hold ${len} bytes`);
}

function optRegister(fail: Fail, field: string, reg: unknown, len?: number): void {
  if (reg !== undefined && reg !== 0) checkRegister(fail, field, reg, len);
}

function checkData(fail: Fail, field: string, v: unknown, len?: number): Uint8Array {
  if (!isBytes(v)) fail(field, 'must be a Uint8Array');
  if (v.length === 0 || v.length > NFT_DATA_MAXLEN) fail(field, `length ${v.length} not in 1..${NFT_DATA_MAXLEN}`);
  if (len !== undefined && v.length !== len) fail(field, `length ${v.length} differs from ${len}`);
  return v;
}

function checkUint(fail: Fail, field: string, v: unknown, bits: number, optional = true): void {
  if (optional && v === undefined) return;
  if (!isU(v, bits)) fail(field, `must be an integer in 0..${2 ** bits - 1}`);
}

/** Checks a verdict; `chainName` validates jump/goto targets. */
export function checkVerdict(fail: Fail, field: string, v: unknown, chainName: (f: string, n: unknown) => void): void {
  const verdict = v as Verdict | undefined;
  if (typeof verdict !== 'object' || verdict === null || !VERDICTS.has(verdict.code)) {
    fail(`${field}.code`, `unknown verdict ${JSON.stringify((verdict as { code?: unknown } | undefined)?.code)}`);
  }
  if (verdict.code === 'jump' || verdict.code === 'goto') chainName(`${field}.chain`, verdict.chain);
}

// Exactly one of dreg (load) and sreg (store) for payload/meta/ct.
function loadOrStore(fail: Fail, e: { dreg?: number; sreg?: number }, len?: number): void {
  const load = e.dreg !== undefined && e.dreg !== 0;
  const store = e.sreg !== undefined && e.sreg !== 0;
  if (load === store) fail(load ? 'sreg' : 'dreg', 'exactly one of dreg (load) and sreg (set) is required');
  optRegister(fail, 'dreg', e.dreg, len);
  optRegister(fail, 'sreg', e.sreg, len);
}

/** Validates one expression; `name` validates set and chain names it refers to. */
export function validateExpr(fail: Fail, e: Expr, name: (field: string, v: unknown) => void): void {
  if (typeof e !== 'object' || e === null) fail('', 'must be an expression object');
  switch (e.type) {
    case 'payload':
      if (!PAYLOAD_BASES.has(e.base)) fail('base', `unknown payload base ${JSON.stringify(e.base)}`);
      checkUint(fail, 'offset', e.offset, 32, false);
      if (!isU(e.len, 8) || e.len === 0 || e.len > NFT_REG_SPACE) fail('len', `length ${e.len} not in 1..64`);
      loadOrStore(fail, e, e.len);
      for (const k of ['csumType', 'csumOffset', 'csumFlags'] as const) checkUint(fail, k, e[k], 32);
      if (e.sreg === undefined && (e.csumType || e.csumOffset || e.csumFlags)) fail('csumType', 'only with sreg');
      return;
    case 'meta':
      if (!META_KEYS.has(e.key)) fail('key', `unknown meta key ${JSON.stringify(e.key)}`);
      return loadOrStore(fail, e);
    case 'ct':
      if (!CT_KEYS.has(e.key)) fail('key', `unknown ct key ${JSON.stringify(e.key)}`);
      if (e.dir !== undefined && !CT_DIRECTIONS.has(e.dir)) fail('dir', `must be 'original' or 'reply'`);
      return loadOrStore(fail, e);
    case 'cmp': {
      if (!CMP_OPS.has(e.op)) fail('op', `unknown cmp op ${JSON.stringify(e.op)}`);
      const data = checkData(fail, 'data', e.data);
      return checkRegister(fail, 'sreg', e.sreg, data.length);
    }
    case 'bitwise':
      if (!isU(e.len, 8) || e.len === 0 || e.len > NFT_DATA_MAXLEN) fail('len', `length ${e.len} not in 1..16`);
      checkData(fail, 'mask', e.mask, e.len);
      checkData(fail, 'xor', e.xor, e.len);
      checkRegister(fail, 'sreg', e.sreg, e.len);
      return checkRegister(fail, 'dreg', e.dreg, e.len);
    case 'range': {
      if (!RANGE_OPS.has(e.op)) fail('op', `must be 'eq' or 'neq'`);
      const from = checkData(fail, 'from', e.from);
      checkData(fail, 'to', e.to, from.length);
      return checkRegister(fail, 'sreg', e.sreg, from.length);
    }
    case 'lookup':
      name('set', e.set);
      checkRegister(fail, 'sreg', e.sreg);
      optRegister(fail, 'dreg', e.dreg); // 0: a verdict map
      if (e.invert !== undefined && typeof e.invert !== 'boolean') fail('invert', 'must be a boolean');
      if (e.invert && e.dreg !== undefined) fail('invert', 'a map lookup (dreg) cannot be inverted');
      return;
    case 'byteorder':
      if (!BYTEORDER_OPS.has(e.op)) fail('op', `must be 'hton' or 'ntoh'`);
      if (e.size !== 2 && e.size !== 4 && e.size !== 8) fail('size', 'must be 2, 4 or 8');
      // nft itself converts a 1-byte host-order field with size 2 (`hton(reg, 2, 1)`), so len need not be a multiple.
      if (!isU(e.len, 8) || e.len === 0) fail('len', 'must be 1–255');
      checkRegister(fail, 'sreg', e.sreg, e.len);
      return checkRegister(fail, 'dreg', e.dreg, e.len);
    case 'other':
      return fail('type', `expression '${e.name}' comes from a dump and cannot be sent`);
    case 'immediate':
      if ('verdict' in e) {
        if (e.dreg !== 0) fail('dreg', 'a verdict goes to register 0');
        return checkVerdict(fail, 'verdict', e.verdict, name);
      }
      return checkRegister(fail, 'dreg', e.dreg, checkData(fail, 'data', e.data).length);
    case 'counter':
      for (const k of ['packets', 'bytes'] as const) {
        const v = e[k];
        if (v !== undefined && (typeof v !== 'bigint' || v < 0n || v >= 2n ** 64n)) fail(k, 'must be a u64 bigint');
      }
      return;
    case 'log':
      if (e.prefix !== undefined) {
        if (typeof e.prefix !== 'string' || e.prefix.includes('\0')) fail('prefix', 'must be a string without NUL');
        if (Buffer.byteLength(e.prefix) > LOG_PREFIX_MAXLEN) fail('prefix', `longer than ${LOG_PREFIX_MAXLEN} bytes`);
      }
      checkUint(fail, 'group', e.group, 16);
      checkUint(fail, 'snaplen', e.snaplen, 32);
      checkUint(fail, 'qthreshold', e.qthreshold, 16);
      checkUint(fail, 'flags', e.flags, 32);
      if (e.level !== undefined && (!isU(e.level, 8) || e.level > 8)) fail('level', 'must be 0..8 (emerg..audit)');
      // As nft_log_init(): syslog takes level and flags, nflog (group) takes snaplen and qthreshold.
      if (e.group !== undefined) {
        if (e.level !== undefined) fail('level', 'level (syslog) and group (nflog) exclude each other');
        if (e.flags !== undefined) fail('flags', 'flags (syslog) and group (nflog) exclude each other');
      } else {
        if (e.snaplen !== undefined) fail('snaplen', 'only nflog (group) logging has a snaplen');
        if (e.qthreshold !== undefined) fail('qthreshold', 'only nflog (group) logging has a qthreshold');
      }
      if (e.flags !== undefined && (e.flags & ~NF_LOG_MASK) !== 0) {
        fail('flags', `unknown log flags (known: 0x${NF_LOG_MASK.toString(16)})`);
      }
      return;
    case 'nat':
      if (!NAT_TYPES.has(e.nat)) fail('nat', `must be 'snat' or 'dnat'`);
      if (!NAT_FAMILIES.has(e.family)) fail('family', `must be 'ip' or 'ip6'`);
      natRegisters(fail, e);
      return checkUint(fail, 'flags', e.flags, 32);
    case 'limit':
      if (!isPositiveU64(e.rate)) fail('rate', 'must be a positive u64 bigint');
      if (!isPositiveU64(e.unit)) fail('unit', 'must be a positive u64 bigint');
      checkUint(fail, 'burst', e.burst, 32, false);
      if (!LIMIT_TYPES.has(e.kind)) fail('kind', `must be 'pkts' or 'bytes'`);
      if (e.invert !== undefined && typeof e.invert !== 'boolean') fail('invert', 'must be a boolean');
      return;
    case 'notrack':
      return;
    case 'reject':
      if (!isU(e.rejectType, 32) || e.rejectType > 2) fail('rejectType', 'must be 0 (icmp), 1 (tcp rst) or 2 (icmpx)');
      return checkUint(fail, 'code', e.code, 8, false);
    case 'masq':
    case 'redir':
      checkUint(fail, 'flags', e.flags, 32);
      return natRegisters(fail, e);
    default:
      fail('type', `unknown expression type ${JSON.stringify((e as { type?: unknown }).type)}`);
  }
}

// A range's max register needs its min register (the kernel reads min..max).
function natRegisters(
  fail: Fail,
  e: { regAddrMin?: number; regAddrMax?: number; regProtoMin?: number; regProtoMax?: number },
): void {
  for (const k of ['regAddrMin', 'regAddrMax', 'regProtoMin', 'regProtoMax'] as const) optRegister(fail, k, e[k]);
  if (e.regAddrMax && !e.regAddrMin) fail('regAddrMax', 'needs regAddrMin');
  if (e.regProtoMax && !e.regProtoMin) fail('regProtoMax', 'needs regProtoMin');
}
