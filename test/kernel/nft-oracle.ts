/**
 * `nft` as an independent oracle for the kernel tests: run it inside a test namespace, read back the exact
 * netlink messages it sends (`--debug=mnl` hexdumps) and decode rule expressions, set definitions and set
 * elements into portwall's typed objects, so a builder's output can be compared with nft's byte for byte.
 * (Namespaces and commands: test/helpers/netns.ts.)
 */
import type { CmpOp, CtKey, Expr, MetaKey, PayloadBase, Verdict } from '../../src/nft/types.js';

/** One netlink message of a `--debug=mnl` dump: its type and the bytes after the nfgenmsg header. */
export interface MnlMessage {
  type: number;
  body: Uint8Array;
}

/** Rebuilds the messages nft sent from its `--debug=mnl` hexdump (attribute headers and 4-byte data rows). */
export function parseMnlDump(text: string): MnlMessage[] {
  const out: MnlMessage[] = [];
  let cur: { type: number; bytes: number[] } | undefined;
  let inBody = false;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\x1b\[[0-9;]*m/g, '');
    const type = /^\|\s*(\d{5})\s*\|\s*[A-Z-]{4}\s*\|\s*\|\s*type \| flags/.exec(line);
    if (type) {
      cur = { type: Number(type[1]), bytes: [] };
      out.push({ type: cur.type, body: new Uint8Array() });
      inBody = false;
      continue;
    }
    if (!cur) continue;
    if (line.includes('extra header')) {
      inBody = true;
      continue;
    }
    if (!inBody) continue;
    const attr = /^\|(\d{5})\|([N-])([B-])\|(\d{5})\|/.exec(line);
    if (attr) {
      const len = Number(attr[1]);
      const t = Number(attr[4]) | (attr[2] === 'N' ? 0x8000 : 0) | (attr[3] === 'B' ? 0x4000 : 0);
      cur.bytes.push(len & 0xff, len >> 8, t & 0xff, t >> 8);
    } else {
      const data = /^\| ([0-9a-f]{2}) ([0-9a-f]{2}) ([0-9a-f]{2}) ([0-9a-f]{2})\s+\|\s+\|\s+data/.exec(line);
      if (data) cur.bytes.push(...data.slice(1, 5).map((h) => parseInt(h, 16)));
      else if (line.startsWith('----')) {
        out[out.length - 1] = { type: cur.type, body: Uint8Array.from(cur.bytes) };
        inBody = false;
      }
    }
  }
  return out;
}

type Attrs = Map<number, Uint8Array[]>;

function attrs(buf: Uint8Array): Attrs {
  const m: Attrs = new Map();
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (let off = 0; off + 4 <= buf.length; ) {
    const len = dv.getUint16(off, true);
    const type = dv.getUint16(off + 2, true) & 0x3fff;
    if (len < 4) break;
    const list = m.get(type) ?? [];
    list.push(buf.subarray(off + 4, off + len));
    m.set(type, list);
    off += (len + 3) & ~3;
  }
  return m;
}

const one = (a: Attrs, t: number): Uint8Array | undefined => a.get(t)?.[0];
// Nested lists number their items 1, 2, 3… (libnftnl) or all 1 (nft's rule expressions): take them all in order.
const items = (buf: Uint8Array | undefined): Uint8Array[] => (buf ? [...attrs(buf).values()].flat() : []);
const u32 = (b: Uint8Array | undefined): number | undefined =>
  b === undefined ? undefined : new DataView(b.buffer, b.byteOffset).getUint32(0, false);
const u64 = (b: Uint8Array): bigint => new DataView(b.buffer, b.byteOffset).getBigUint64(0, false);
const str = (b: Uint8Array): string => Buffer.from(b).toString('utf8').replace(/\0.*$/s, '');
const value = (b: Uint8Array | undefined): Uint8Array => Uint8Array.from(one(attrs(b!), 1)!);

const META: MetaKey[] = ['len', 'protocol', 'priority', 'mark', 'iif', 'oif', 'iifname', 'oifname', 'iiftype',
  'oiftype', 'skuid', 'skgid', 'nftrace', 'rtclassid', 'secmark', 'nfproto', 'l4proto', 'bri_iifname',
  'bri_oifname', 'pkttype', 'cpu', 'iifgroup', 'oifgroup', 'cgroup', 'prandom'];
const CT: CtKey[] = ['state', 'direction', 'status', 'mark', 'secmark', 'expiration', 'helper', 'l3protocol',
  'src', 'dst', 'protocol', 'proto_src', 'proto_dst', 'labels', 'pkts', 'bytes', 'avgpkt', 'zone'];
const BASES: PayloadBase[] = ['ll', 'network', 'transport', 'inner'];
const CMP: CmpOp[] = ['eq', 'neq', 'lt', 'lte', 'gt', 'gte'];
const VERDICT: Record<number, Verdict['code']> = { 0: 'drop', 1: 'accept', [-1]: 'continue', [-2]: 'break',
  [-3]: 'jump', [-4]: 'goto', [-5]: 'return' };

// Optional registers and flags are left out when absent or zero, like portwall's canonical expressions.
function put<T extends object>(o: T, key: string, v: number | undefined): T {
  if (v !== undefined && v !== 0) (o as Record<string, unknown>)[key] = v;
  return o;
}

/** Decodes one NFTA_LIST_ELEM of NFTA_RULE_EXPRESSIONS into portwall's Expr. */
function decodeExpr(elem: Uint8Array): Expr {
  const e = attrs(elem);
  const name = str(one(e, 1)!);
  const d = attrs(one(e, 2) ?? new Uint8Array());
  const n = (t: number): number | undefined => u32(one(d, t));
  switch (name) {
    case 'payload':
      return put({ type: 'payload', base: BASES[n(2)!]!, offset: n(3)!, len: n(4)! } as Expr, 'dreg', n(1));
    case 'meta':
      return put(put({ type: 'meta', key: META[n(2)!]! } as Expr, 'dreg', n(1)), 'sreg', n(3));
    case 'ct': {
      const o = put(put({ type: 'ct', key: CT[n(2)!]! } as Expr, 'dreg', n(1)), 'sreg', n(4));
      const dir = one(d, 3);
      if (dir) (o as { dir?: string }).dir = dir[0] === 0 ? 'original' : 'reply';
      return o;
    }
    case 'cmp':
      return { type: 'cmp', sreg: n(1)!, op: CMP[n(2)!]!, data: value(one(d, 3)) };
    case 'bitwise':
      return { type: 'bitwise', sreg: n(1)!, dreg: n(2)!, len: n(3)!, mask: value(one(d, 4)), xor: value(one(d, 5)) };
    case 'range':
      return { type: 'range', sreg: n(1)!, op: n(2) === 0 ? 'eq' : 'neq', from: value(one(d, 3)), to: value(one(d, 4)) };
    case 'byteorder':
      return { type: 'byteorder', sreg: n(1)!, dreg: n(2)!, op: n(3) === 1 ? 'hton' : 'ntoh', len: n(4)!, size: n(5)! };
    case 'lookup': {
      const o: Expr = { type: 'lookup', sreg: n(2)!, set: str(one(d, 1)!) };
      if (one(d, 3)) o.dreg = n(3)!;
      if (n(5)) o.invert = true;
      return o;
    }
    case 'immediate': {
      const data = attrs(one(d, 2)!);
      const verdict = one(data, 2);
      if (!verdict) return { type: 'immediate', dreg: n(1)!, data: Uint8Array.from(one(data, 1)!) };
      const v = attrs(verdict);
      const code = VERDICT[u32(one(v, 1))! | 0]!;
      const chain = one(v, 2);
      return {
        type: 'immediate',
        dreg: 0,
        verdict: code === 'jump' || code === 'goto' ? { code, chain: str(chain!) } : ({ code } as Verdict),
      };
    }
    case 'counter':
      return { type: 'counter' };
    case 'log': {
      const o: Expr = { type: 'log' };
      if (one(d, 2)) o.prefix = str(one(d, 2)!);
      const g = one(d, 1);
      if (g) o.group = new DataView(g.buffer, g.byteOffset).getUint16(0, false);
      if (one(d, 3)) o.snaplen = n(3)!;
      if (one(d, 5)) o.level = n(5)!;
      if (one(d, 6)) o.flags = n(6)!;
      return o;
    }
    case 'limit': {
      const o: Expr = {
        type: 'limit',
        rate: u64(one(d, 1)!),
        unit: u64(one(d, 2)!),
        burst: n(3) ?? 0,
        kind: n(4) === 1 ? 'bytes' : 'pkts',
      };
      if ((n(5) ?? 0) & 1) o.invert = true;
      return o;
    }
    case 'notrack':
      return { type: 'notrack' };
    case 'nat': {
      const o: Expr = { type: 'nat', nat: n(1) === 0 ? 'snat' : 'dnat', family: n(2) === 2 ? 'ip' : 'ip6' };
      for (const [k, t] of [['regAddrMin', 3], ['regAddrMax', 4], ['regProtoMin', 5], ['regProtoMax', 6],
        ['flags', 7]] as const) put(o, k, n(t));
      return o;
    }
    case 'reject':
      return { type: 'reject', rejectType: n(1)!, code: one(d, 2)?.[0] ?? 0 };
    case 'masq':
    case 'redir': {
      const o = { type: name } as Expr;
      const regs = name === 'masq' ? [['flags', 1], ['regProtoMin', 2], ['regProtoMax', 3]] as const : [['regProtoMin', 1], ['regProtoMax', 2], ['flags', 3]] as const;
      for (const [k, t] of regs) put(o, k, n(t));
      return o;
    }
    default:
      throw new Error(`oracle: no decoder for expression '${name}'`);
  }
}

/** The expressions of every NEWRULE message nft sent, in order. */
export function sentRules(messages: MnlMessage[]): Expr[][] {
  const NEWRULE = (10 << 8) | 6;
  return messages
    .filter((m) => m.type === NEWRULE)
    .map((m) => items(one(attrs(m.body), 4)).map(decodeExpr));
}

/** Key type, key length and (pipapo) field lengths of every NEWSET message, by set name. */
export function sentSets(messages: MnlMessage[]): Map<string, { keyType: number; keyLen: number; fieldLens: number[] }> {
  const NEWSET = (10 << 8) | 9;
  const out = new Map<string, { keyType: number; keyLen: number; fieldLens: number[] }>();
  for (const m of messages.filter((x) => x.type === NEWSET)) {
    const a = attrs(m.body);
    const fields = one(a, 9) ? items(one(attrs(one(a, 9)!), 2)) : [];
    out.set(str(one(a, 2)!), {
      keyType: u32(one(a, 4))!,
      keyLen: u32(one(a, 5))!,
      fieldLens: fields.map((f) => u32(one(attrs(f), 1))!),
    });
  }
  return out;
}

/** Element keys (and key ends, flags) of every NEWSETELEM message, by set name. */
export function sentElements(messages: MnlMessage[]): Map<string, { key: Uint8Array; keyEnd?: Uint8Array; flags: number }[]> {
  const NEWSETELEM = (10 << 8) | 12;
  const out = new Map<string, { key: Uint8Array; keyEnd?: Uint8Array; flags: number }[]>();
  // The last message per set wins: nft 1.0.6 sends a set's elements twice when it creates the set in the batch.
  for (const m of messages.filter((x) => x.type === NEWSETELEM)) {
    const a = attrs(m.body);
    const list: { key: Uint8Array; keyEnd?: Uint8Array; flags: number }[] = [];
    for (const el of items(one(a, 3))) {
      const e = attrs(el);
      const keyEnd = one(e, 10);
      list.push({ key: value(one(e, 1)), ...(keyEnd ? { keyEnd: value(keyEnd) } : {}), flags: u32(one(e, 3)) ?? 0 });
    }
    out.set(str(one(a, 2)!), list);
  }
  return out;
}

const BASE_NAMES: Record<PayloadBase, string> = { ll: 'link', network: 'network', transport: 'transport', inner: 'inner' };
const UNITS: Record<string, string> = { 1: 'second', 60: 'minute', 3600: 'hour', 86400: 'day', 604800: 'week' };

// libnftnl prints data as 32-bit host-order words of the zero-padded bytes.
function words(b: Uint8Array): string {
  const padded = new Uint8Array(Math.ceil(b.length / 4) * 4);
  padded.set(b);
  const dv = new DataView(padded.buffer);
  return Array.from({ length: padded.length / 4 }, (_, i) => `0x${dv.getUint32(i * 4, true).toString(16).padStart(8, '0')}`).join(' ');
}

/** An expression as `nft --debug=netlink` (libnftnl) prints it. */
export function netlinkText(e: Expr): string {
  const body = ((): string => {
    switch (e.type) {
      case 'payload':
        return `payload load ${e.len}b @ ${BASE_NAMES[e.base]} header + ${e.offset} => reg ${e.dreg}`;
      case 'meta':
      case 'ct':
        return e.sreg !== undefined ? `${e.type} set ${e.key} with reg ${e.sreg}${e.type === 'ct' && e.dir ? ` , dir ${e.dir}` : ''}` : `${e.type} load ${e.key} => reg ${e.dreg}`;
      case 'cmp':
        return `cmp ${e.op} reg ${e.sreg} ${words(e.data)}`;
      case 'bitwise':
        return `bitwise reg ${e.dreg} = ( reg ${e.sreg} & ${words(e.mask)} ) ^ ${words(e.xor)}`;
      case 'byteorder':
        return `byteorder reg ${e.dreg} = ${e.op}(reg ${e.sreg}, ${e.size}, ${e.len})`;
      case 'range':
        return `range ${e.op} reg ${e.sreg} ${words(e.from)} ${words(e.to)}`;
      case 'lookup':
        return `lookup reg ${e.sreg} set ${e.set}${e.dreg === undefined ? '' : ` dreg ${e.dreg}`} 0x${e.invert ? 1 : 0}`;
      case 'immediate':
        if ('verdict' in e) return `immediate reg 0 ${e.verdict.code}${'chain' in e.verdict ? ` -> ${e.verdict.chain}` : ''}`;
        return `immediate reg ${e.dreg} ${words(e.data)}`;
      case 'counter':
        return `counter pkts ${e.packets ?? 0} bytes ${e.bytes ?? 0}`;
      case 'log': {
        let s = 'log ';
        if (e.prefix !== undefined) s += `prefix ${e.prefix} `;
        if (e.group !== undefined) s += `group ${e.group} snaplen ${e.snaplen ?? 0} qthreshold ${e.qthreshold ?? 0} `;
        else if (e.level !== undefined) s += `level ${e.level} `;
        return s.trimEnd();
      }
      case 'limit':
        return `limit rate ${e.rate}/${UNITS[String(e.unit)]} burst ${e.burst} type ${e.kind === 'bytes' ? 'bytes' : 'packets'} flags 0x${e.invert ? 1 : 0}`;
      case 'notrack':
        return 'notrack';
      case 'nat': {
        let s = `nat ${e.nat} ${e.family}`;
        if (e.regAddrMin) s += ` addr_min reg ${e.regAddrMin}`;
        if (e.regAddrMax) s += ` addr_max reg ${e.regAddrMax}`;
        if (e.regProtoMin) s += ` proto_min reg ${e.regProtoMin}`;
        if (e.regProtoMax) s += ` proto_max reg ${e.regProtoMax}`;
        return e.flags ? `${s} flags 0x${e.flags.toString(16)}` : s;
      }
      case 'masq':
        return e.flags ? `masq flags 0x${e.flags.toString(16)}` : 'masq';
      default:
        return e.type;
    }
  })();
  return `[ ${body} ]`;
}

/**
 * What the kernel dumps for expressions nft sent: nat gets its max registers (= min) and NF_NAT_RANGE_MAP_IPS /
 * PROTO_SPECIFIED flags, a log without group gets the default level 4.
 */
export function kernelEcho(exprs: Expr[]): Expr[] {
  return exprs.map((e) => {
    if (e.type === 'nat') {
      const n = { ...e };
      if (n.regAddrMin) n.regAddrMax ??= n.regAddrMin;
      if (n.regProtoMin) n.regProtoMax ??= n.regProtoMin;
      n.flags = (n.flags ?? 0) | (n.regAddrMin ? 1 : 0) | (n.regProtoMin ? 2 : 0);
      return n;
    }
    if (e.type === 'log' && e.group === undefined && e.level === undefined) return { ...e, level: 4 };
    return e;
  });
}

/** Rules of an `nft --debug=netlink list …` listing: per chain, each rule's expression lines, in order. */
export function listedRules(text: string): Map<string, string[][]> {
  const out = new Map<string, string[][]>();
  let cur: string[] | undefined;
  for (const line of text.split('\n')) {
    const head = /^\S+ \S+ (\S+) \d+( \d+)?$/.exec(line);
    if (head && !head[1]!.startsWith('@')) {
      cur = [];
      out.set(head[1]!, [...(out.get(head[1]!) ?? []), cur]);
    } else if (/^\s+\[ .* \]$/.test(line) && cur) cur.push(line.trim());
    else if (line.trim() === '') cur = undefined;
  }
  return out;
}
