/**
 * The conntrack wire records (docs/wire.md, "Conntrack records"): filters, entries to create and entry
 * identities encoded as fixed-size little-endian records, dumped entries decoded. Every field is validated
 * before anything crosses to the addon.
 */
import { IpFamily, Prefix, familyNumber, formatAddress, parsePrefix } from './address.js';
import type { ConntrackEntry, ConntrackEntrySpec, ConntrackEvent, ConntrackFilter, ConntrackTuple, Protocol, ProtocolName } from './conntrack.js';
import { PortwallError } from './errors.js';

export const PROTOCOLS: Readonly<Record<ProtocolName, number>> = {
  icmp: 1, tcp: 6, udp: 17, dccp: 33, icmpv6: 58, sctp: 132, udplite: 136,
};
const PORT_PROTOCOLS = new Set([6, 17, 33, 132, 136]);
const ICMP_PROTOCOLS = new Set([1, 58]);

export const TCP_STATES = [
  'none', 'syn_sent', 'syn_recv', 'established', 'fin_wait', 'close_wait', 'last_ack', 'time_wait', 'close', 'syn_sent2',
] as const;

/** IPS_* status bits worth naming. */
export const STATUS = { SEEN_REPLY: 1 << 1, ASSURED: 1 << 2, CONFIRMED: 1 << 3, SRC_NAT: 1 << 4, DST_NAT: 1 << 5 } as const;

export const ENTRY_BYTES = 96;
export const FILTER_BYTES = 64;
const F_ZONE = 1, F_FAMILY = 2, F_PROTO = 4, F_MARK = 8, F_SRC = 16, F_DST = 32, F_SPORT = 64, F_DPORT = 128;
const EVENT_TYPES = [undefined, 'new', 'destroy', 'update'] as const;

/** Encodes filters as fixed 64-byte records; validates every field first. */
export function encodeFilters(filters: ConntrackFilter | readonly ConntrackFilter[]): Buffer {
  const list: readonly ConntrackFilter[] = Array.isArray(filters) ? filters : [filters as ConntrackFilter];
  const single = !Array.isArray(filters);
  const buf = Buffer.alloc(list.length * FILTER_BYTES);
  list.forEach((f, i) => encodeFilter(f, single ? '' : `filters[${i}].`, buf, i * FILTER_BYTES));
  return buf;
}

function encodeFilter(f: ConntrackFilter, at: string, buf: Buffer, o: number): void {
  if (typeof f !== 'object' || f === null) invalid(at || 'filter', f, 'must be an object');
  let fields = 0;
  let family = f.family;
  if (family !== undefined) checkFamily(family, `${at}family`);
  const prefix = (key: 'src' | 'dst'): Prefix | undefined => {
    if (f[key] === undefined) return undefined;
    const p = parsePrefix(f[key]!, `${at}${key}`);
    if (family !== undefined && p.family !== family)
      throw new PortwallError('ERR_FAMILY_MISMATCH', `${at}${key} ${f[key]} is not ${family}`, { field: `${at}${key}`, object: f });
    family = p.family;
    return p;
  };
  const src = prefix('src');
  const dst = prefix('dst');
  if (f.zone !== undefined) {
    checkZone(f.zone, `${at}zone`);
    fields |= F_ZONE;
    buf.writeUInt16LE(f.zone, o + 4);
  }
  if (family !== undefined) {
    fields |= F_FAMILY;
    buf[o + 6] = familyNumber(family);
  }
  const proto = f.protocol === undefined ? undefined : protocolNumber(f.protocol, `${at}protocol`);
  if (proto !== undefined) {
    fields |= F_PROTO;
    buf[o + 7] = proto;
  }
  if (f.mark !== undefined || f.markMask !== undefined) {
    const mark = f.mark ?? 0, mask = f.markMask ?? 0xffffffff;
    checkU32(mark, `${at}mark`);
    checkU32(mask, `${at}markMask`);
    fields |= F_MARK;
    buf.writeUInt32LE(mark >>> 0, o + 8);
    buf.writeUInt32LE(mask >>> 0, o + 12);
  } else {
    buf.writeUInt32LE(0xffffffff, o + 12);
  }
  if (src) {
    fields |= F_SRC;
    buf[o + 16] = src.length;
    buf.set(src.bytes, o + 20);
  }
  if (dst) {
    fields |= F_DST;
    buf[o + 17] = dst.length;
    buf.set(dst.bytes, o + 36);
  }
  for (const [key, flag, off] of [['sport', F_SPORT, 52], ['dport', F_DPORT, 56]] as const) {
    const m = f[key];
    if (m === undefined) continue;
    if (proto !== undefined && !PORT_PROTOCOLS.has(proto)) invalid(`${at}${key}`, m, 'needs a protocol with ports');
    const [min, max] = typeof m === 'number' ? [m, m] : Array.isArray(m) ? m : [NaN, NaN];
    checkPort(min, `${at}${key}`);
    checkPort(max, `${at}${key}`);
    if (min > max) invalid(`${at}${key}`, m, 'has min > max');
    fields |= flag;
    buf.writeUInt16LE(min, o + off);
    buf.writeUInt16LE(max, o + off + 2);
  }
  buf.writeUInt32LE(fields, o);
}

/** Encodes entries to create as fixed 96-byte records; validates every field first. */
export function encodeEntries(entries: readonly ConntrackEntrySpec[]): Buffer {
  if (!Array.isArray(entries)) invalid('entries', entries, 'must be an array');
  const buf = Buffer.alloc(entries.length * ENTRY_BYTES);
  entries.forEach((e, i) => encodeEntry(e, `entries[${i}].`, buf, i * ENTRY_BYTES));
  return buf;
}

function encodeEntry(e: ConntrackEntrySpec, at: string, buf: Buffer, o: number): void {
  const proto = protocolNumber(e.protocol, `${at}protocol`);
  const src = hostAddress(e.src, `${at}src`);
  const dst = hostAddress(e.dst, `${at}dst`, src.family);
  const zone = e.zone ?? 0;
  checkZone(zone, `${at}zone`);
  const timeout = e.timeout ?? 120;
  if (!Number.isInteger(timeout) || timeout < 1 || timeout > 0x7fffffff) invalid(`${at}timeout`, timeout, 'must be a positive number of seconds');
  const mark = e.mark ?? 0;
  checkU32(mark, `${at}mark`);
  buf[o] = familyNumber(src.family);
  buf[o + 1] = proto;
  buf.writeUInt16LE(zone, o + 2);
  buf.writeUInt32LE(mark >>> 0, o + 4);
  buf.writeUInt32LE(e.assured === false ? 0 : STATUS.SEEN_REPLY | STATUS.ASSURED, o + 8);
  buf.writeUInt32LE(timeout, o + 12);
  buf[o + 20] = 255;
  if (proto === PROTOCOLS.tcp) {
    const state = TCP_STATES.indexOf(e.tcpState ?? 'established');
    if (state < 0) invalid(`${at}tcpState`, e.tcpState, `must be one of ${TCP_STATES.join(', ')}`);
    buf[o + 20] = state;
  } else if (e.tcpState !== undefined) {
    invalid(`${at}tcpState`, e.tcpState, 'is for tcp only');
  }
  buf.set(src.bytes, o + 24);
  buf.set(dst.bytes, o + 40);
  if (ICMP_PROTOCOLS.has(proto)) {
    if (e.sport !== undefined || e.dport !== undefined) invalid(`${at}sport`, e.sport ?? e.dport, 'icmp has no ports');
    const type = e.icmp?.type ?? (proto === 1 ? 8 : 128), code = e.icmp?.code ?? 0, id = e.icmp?.id ?? 0;
    for (const [k, v, max] of [['type', type, 255], ['code', code, 255], ['id', id, 65535]] as const)
      if (!Number.isInteger(v) || v < 0 || v > max) invalid(`${at}icmp.${k}`, v, `must be 0–${max}`);
    buf.writeUInt16LE(id, o + 56);
    buf.writeUInt16LE((type << 8) | code, o + 58);
  } else if (PORT_PROTOCOLS.has(proto)) {
    checkPort(e.sport, `${at}sport`);
    checkPort(e.dport, `${at}dport`);
    buf.writeUInt16LE(e.sport!, o + 56);
    buf.writeUInt16LE(e.dport!, o + 58);
  }
  if (e.reply) {
    const rsrc = hostAddress(e.reply.src, `${at}reply.src`, src.family);
    const rdst = hostAddress(e.reply.dst, `${at}reply.dst`, src.family);
    buf.set(rsrc.bytes, o + 60);
    buf.set(rdst.bytes, o + 76);
    if (PORT_PROTOCOLS.has(proto)) {
      const rs = e.reply.sport ?? e.dport!, rd = e.reply.dport ?? e.sport!;
      checkPort(rs, `${at}reply.sport`);
      checkPort(rd, `${at}reply.dport`);
      buf.writeUInt16LE(rs, o + 92);
      buf.writeUInt16LE(rd, o + 94);
    }
  }
}

/** Encodes what identifies listed entries (family, protocol, zone, id, original tuple) as 96-byte entry records. */
export function encodeEntryIdentities(entries: readonly Pick<ConntrackEntry, 'family' | 'protocol' | 'zone' | 'id' | 'orig' | 'icmp'>[]): Buffer {
  if (!Array.isArray(entries)) invalid('entries', entries, 'must be an array');
  const buf = Buffer.alloc(entries.length * ENTRY_BYTES);
  entries.forEach((e, i) => {
    const at = `entries[${i}].`, o = i * ENTRY_BYTES;
    checkFamily(e.family, `${at}family`);
    const proto = protocolNumber(e.protocol, `${at}protocol`);
    checkZone(e.zone, `${at}zone`);
    checkU32(e.id, `${at}id`);
    const src = hostAddress(e.orig.src, `${at}orig.src`, e.family);
    const dst = hostAddress(e.orig.dst, `${at}orig.dst`, e.family);
    buf[o] = familyNumber(e.family);
    buf[o + 1] = proto;
    buf.writeUInt16LE(e.zone, o + 2);
    buf.writeUInt32LE(e.id, o + 16);
    buf[o + 20] = 255;
    buf.set(src.bytes, o + 24);
    buf.set(dst.bytes, o + 40);
    if (ICMP_PROTOCOLS.has(proto)) {
      if (!e.icmp) invalid(`${at}icmp`, e.icmp, 'is needed to name an icmp entry');
      buf.writeUInt16LE(e.icmp.id, o + 56);
      buf.writeUInt16LE((e.icmp.type << 8) | e.icmp.code, o + 58);
    } else if (PORT_PROTOCOLS.has(proto)) {
      checkPort(e.orig.sport, `${at}orig.sport`);
      checkPort(e.orig.dport, `${at}orig.dport`);
      buf.writeUInt16LE(e.orig.sport!, o + 56);
      buf.writeUInt16LE(e.orig.dport!, o + 58);
    }
  });
  return buf;
}

/** Decodes 96-byte entry records (dumps and events). */
export function decodeEntries(buf: Buffer): ConntrackEntry[] {
  const out: ConntrackEntry[] = [];
  for (let o = 0; o + ENTRY_BYTES <= buf.length; o += ENTRY_BYTES) {
    const family: IpFamily = buf[o] === 4 ? 'ipv4' : 'ipv6';
    const protocol = buf[o + 1]!;
    const tuple = (a: number, b: number, ports: number): ConntrackTuple => {
      const t: ConntrackTuple = {
        src: formatAddress(family, buf.subarray(o + a, o + a + 16)),
        dst: formatAddress(family, buf.subarray(o + b, o + b + 16)),
      };
      if (PORT_PROTOCOLS.has(protocol)) {
        t.sport = buf.readUInt16LE(o + ports);
        t.dport = buf.readUInt16LE(o + ports + 2);
      }
      return t;
    };
    const e: ConntrackEntry = {
      family,
      protocol,
      zone: buf.readUInt16LE(o + 2),
      mark: buf.readUInt32LE(o + 4),
      status: buf.readUInt32LE(o + 8),
      timeout: buf.readUInt32LE(o + 12),
      id: buf.readUInt32LE(o + 16),
      orig: tuple(24, 40, 56),
      reply: tuple(60, 76, 92),
    };
    const state = buf[o + 20]!;
    if (state !== 255 && TCP_STATES[state]) e.tcpState = TCP_STATES[state];
    if (ICMP_PROTOCOLS.has(protocol)) {
      const tc = buf.readUInt16LE(o + 58);
      e.icmp = { type: tc >> 8, code: tc & 0xff, id: buf.readUInt16LE(o + 56) };
    }
    const event = EVENT_TYPES[buf[o + 21]!];
    if (event) (e as ConntrackEvent).type = event;
    out.push(e);
  }
  return out;
}

function hostAddress(text: string, field: string, family?: IpFamily): Prefix {
  const p = parsePrefix(text, field);
  if (p.length !== (p.family === 'ipv4' ? 32 : 128)) invalid(field, text, 'must be an address, not a prefix');
  if (family && p.family !== family)
    throw new PortwallError('ERR_FAMILY_MISMATCH', `${field} ${text} is not ${family}`, { field, object: text });
  return p;
}

function protocolNumber(p: Protocol, field: string): number {
  if (typeof p === 'number' && Number.isInteger(p) && p >= 0 && p <= 255) return p;
  if (typeof p === 'string' && Object.hasOwn(PROTOCOLS, p)) return PROTOCOLS[p as ProtocolName];
  return invalid(field, p, 'must be a protocol name or a number 0–255');
}

export function checkZone(zone: number, field: string): void {
  if (!Number.isInteger(zone) || zone < 0 || zone > 65535) invalid(field, zone, 'must be an integer 0–65535');
}

export function checkFamily(family: IpFamily, field: string): void {
  if (family !== 'ipv4' && family !== 'ipv6') invalid(field, family, "must be 'ipv4' or 'ipv6'");
}

function checkPort(port: number | undefined, field: string): void {
  if (!Number.isInteger(port) || port! < 0 || port! > 65535) invalid(field, port, 'must be a port 0–65535');
}

function checkU32(v: number, field: string): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) invalid(field, v, 'must be a 32-bit unsigned integer');
}

export function invalid(field: string, value: unknown, why: string): never {
  throw new PortwallError('ERR_INVALID_VALUE', `conntrack ${field} ${JSON.stringify(value)} ${why}`, { field, object: value });
}
