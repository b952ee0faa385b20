/**
 * Kernel expressions of action statements (counter, log, limit, verdicts, set, nat), as nft 1.0.6 emits them:
 * only the attributes a statement sets are sent (the kernel fills in defaults such as the log level).
 */
import { PortwallError } from '../errors.js';
import { NFT_REG_1 } from './constants.js';
import { DATATYPES, parseInterval, toBytes } from './datatypes.js';
import type { Field } from './fields.js';
import type { LogLevel, NatFlag, Statement, TimeUnit } from './match.js';
import type { Expr, Register } from './types.js';

/** Syslog levels of `log level` (nft's names; 8 = audit). */
export const LOG_LEVELS: readonly LogLevel[] = ['emerg', 'alert', 'crit', 'err', 'warn', 'notice', 'info', 'debug', 'audit'];
/** Seconds per unit of `limit rate N/unit`. */
export const TIME_UNITS: Readonly<Record<TimeUnit, number>> = { second: 1, minute: 60, hour: 3600, day: 86400, week: 604800 };
/** NF_NAT_RANGE_* bits of nat flags. */
export const NAT_FLAGS: Readonly<Record<NatFlag, number>> = { random: 0x4, persistent: 0x8, 'fully-random': 0x10 };
/** NF_NAT_RANGE_PROTO_SPECIFIED: nft sets it when a nat statement maps ports. */
export const NAT_PROTO_SPECIFIED = 0x2;

function fail(message: string): PortwallError {
  return new PortwallError('ERR_INVALID_OBJECT', message, { field: 'exprs' });
}

const u16 = (n: number | undefined, what: string): number | undefined => {
  if (n !== undefined && (!Number.isInteger(n) || n < 0 || n > 0xffff)) throw fail(`${what} must be 0–65535`);
  return n;
};

function natExprs(s: Extract<Statement, { kind: 'nat' }>): Expr[] {
  if (typeof s.addr === 'object') throw fail(`${s.nat} to a map: only inside a rule (the lookup needs its keys loaded)`);
  const addr = parseInterval(s.family === 'ip' ? 'ipv4_addr' : 'ipv6_addr', s.addr, { field: `${s.nat} to` });
  const len = s.family === 'ip' ? 4 : 16;
  const out: Expr[] = [];
  const nat: Expr = { type: 'nat', nat: s.nat, family: s.family };
  let reg: Register = NFT_REG_1;
  const imm = (n: bigint, l: number): Register => {
    out.push({ type: 'immediate', dreg: reg, data: toBytes(n, l, 'big') });
    return reg++;
  };
  nat.regAddrMin = imm(addr.lo, len);
  if (addr.hi !== addr.lo) nat.regAddrMax = imm(addr.hi, len);
  let flags = (s.flags ?? []).reduce((f, x) => f | NAT_FLAGS[x], 0);
  if (s.port !== undefined) {
    const port = parseInterval('inet_service', s.port, { field: `${s.nat} to port` });
    nat.regProtoMin = imm(port.lo, 2);
    if (port.hi !== port.lo) nat.regProtoMax = imm(port.hi, 2);
    flags |= NAT_PROTO_SPECIFIED;
  }
  if (flags) nat.flags = flags;
  return [...out, nat];
}

/** The store of NFT_REG_1 into a meta or ct key (the second half of every set statement). */
export function storeExpr(f: Field): Expr {
  if (f.load.kind === 'payload') throw fail(`${f.name} set: only meta and ct keys can be set`);
  if (f.load.kind === 'meta') return { type: 'meta', key: f.load.key, sreg: NFT_REG_1 };
  return f.load.dir ? { type: 'ct', key: f.load.key, sreg: NFT_REG_1, dir: f.load.dir } : { type: 'ct', key: f.load.key, sreg: NFT_REG_1 };
}

/** The expressions of one action statement. */
export function lowerStatement(s: Statement): Expr[] {
  switch (s.kind) {
    case 'counter':
      return [{ type: 'counter' }];
    case 'notrack':
      return [{ type: 'notrack' }];
    case 'verdict':
      return [{ type: 'immediate', dreg: 0, verdict: s.verdict }];
    case 'log': {
      if (s.level !== undefined && s.group !== undefined) throw fail('log: level and group are mutually exclusive');
      if (s.prefix !== undefined && (s.prefix.length > 127 || /["\n\0]/.test(s.prefix))) {
        throw fail('log prefix: at most 127 characters, no quotes or newlines');
      }
      const e: Expr = { type: 'log' };
      if (s.prefix !== undefined) e.prefix = s.prefix;
      if (s.group !== undefined) e.group = u16(s.group, 'log group');
      if (s.snaplen !== undefined) e.snaplen = s.snaplen;
      if (s.qthreshold !== undefined) e.qthreshold = u16(s.qthreshold, 'log queue-threshold');
      if (s.level !== undefined) e.level = LOG_LEVELS.indexOf(s.level);
      return [e];
    }
    case 'limit': {
      // nft's default burst: 5 packets, 0 bytes; a packet limit needs a burst.
      const burst = s.burst ?? (s.bytes ? 0 : 5);
      if (!Number.isSafeInteger(s.rate) || s.rate <= 0 || !Number.isInteger(burst) || burst < (s.bytes ? 0 : 1)) {
        throw fail('limit: rate must be a positive integer and a packet burst at least 1');
      }
      const unit = BigInt(TIME_UNITS[s.per]);
      const e: Expr = { type: 'limit', rate: BigInt(s.rate), unit, burst, kind: s.bytes ? 'bytes' : 'pkts' };
      if (s.over) e.invert = true;
      return [e];
    }
    case 'set': {
      const f = s.field;
      // A field or map source needs the protocol context: linearize lowers it (see setFromExprs there).
      if (typeof s.value === 'object') throw fail(`${f.name} set: a field or map value is lowered by linearize`);
      const iv = parseInterval(f.type, s.value, { bits: f.len * 8, field: `${f.name} set` });
      if (iv.lo !== iv.hi || DATATYPES[f.type].kind === 'ifname') throw fail(`${f.name} set: needs one number`);
      return [{ type: 'immediate', dreg: NFT_REG_1, data: toBytes(iv.lo, f.len, f.order) }, storeExpr(f)];
    }
    case 'nat':
      return natExprs(s);
    case 'masquerade': {
      const flags = (s.flags ?? []).reduce((f, x) => f | NAT_FLAGS[x], 0);
      return [flags ? { type: 'masq', flags } : { type: 'masq' }];
    }
  }
}
