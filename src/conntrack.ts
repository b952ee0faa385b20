/**
 * Conntrack over ctnetlink (SPEC §2.6, §2.7): list, delete and create entries, flush a zone, and subscribe to
 * new/destroy events, in a target network namespace, every call off the JS thread.
 *
 * Filters are matched by the kernel where it can (family, zone, mark, protocol) and by the addon for the rest
 * (prefixes, port ranges) — never entry by entry in JS. A delete is one dump plus pipelined deletes on one
 * socket, so removing the flows that lose permission costs milliseconds, not one process per entry.
 *
 * @example
 * const ct = new ConntrackClient({ netns: 'router' });
 * // a remote-group member 198.51.100.7 left the group allowing tcp/22 on zone 101:
 * const n = await ct.delete({ zone: 101, protocol: 'tcp', src: '198.51.100.7', dport: 22 });
 */
import { IpFamily, Prefix, familyNumber, formatAddress, parsePrefix } from './address.js';
import { PortwallError } from './errors.js';
import { NativeSubscription, binding } from './native.js';
import { fromNativeItems } from './native-errors.js';

export type ProtocolName = 'tcp' | 'udp' | 'icmp' | 'icmpv6' | 'sctp' | 'udplite' | 'dccp';
/** A protocol by name or IANA number. */
export type Protocol = ProtocolName | number;

export const PROTOCOLS: Readonly<Record<ProtocolName, number>> = {
  icmp: 1, tcp: 6, udp: 17, dccp: 33, icmpv6: 58, sctp: 132, udplite: 136,
};
const PORT_PROTOCOLS = new Set([6, 17, 33, 132, 136]);
const ICMP_PROTOCOLS = new Set([1, 58]);

export const TCP_STATES = [
  'none', 'syn_sent', 'syn_recv', 'established', 'fin_wait', 'close_wait', 'last_ack', 'time_wait', 'close', 'syn_sent2',
] as const;
export type TcpState = (typeof TCP_STATES)[number];

/** IPS_* status bits worth naming. */
export const STATUS = { SEEN_REPLY: 1 << 1, ASSURED: 1 << 2, CONFIRMED: 1 << 3 } as const;

/** A port or an inclusive range `[min, max]`. */
export type PortMatch = number | readonly [number, number];

/** Entries match when every given field matches; fields refer to the original direction. */
export interface ConntrackFilter {
  /** 0–65535. */
  zone?: number;
  family?: IpFamily;
  protocol?: Protocol;
  /** Source address or prefix of the original direction. */
  src?: string;
  dst?: string;
  sport?: PortMatch;
  dport?: PortMatch;
  mark?: number;
  /** Default 0xffffffff. */
  markMask?: number;
}

export interface ConntrackTuple {
  src: string;
  dst: string;
  /** Ports for tcp/udp/sctp/udplite/dccp. */
  sport?: number;
  dport?: number;
}

export interface ConntrackEntry {
  family: IpFamily;
  /** IANA protocol number. */
  protocol: number;
  zone: number;
  mark: number;
  /** IPS_* bits; see {@link STATUS}. */
  status: number;
  /** Seconds left. */
  timeout: number;
  id: number;
  tcpState?: TcpState;
  orig: ConntrackTuple;
  reply: ConntrackTuple;
  icmp?: { type: number; code: number; id: number };
}

export interface ConntrackEvent extends ConntrackEntry {
  type: 'new' | 'update' | 'destroy';
}

/** An entry to create (tests, benchmarks, state restore). The reply tuple defaults to the reversed original. */
export interface ConntrackEntrySpec {
  zone?: number;
  protocol: Protocol;
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
  /** ICMP/ICMPv6: default echo request (type 8 / 128), code 0, id 0. */
  icmp?: { type?: number; code?: number; id?: number };
  /** Seconds; default 120. */
  timeout?: number;
  mark?: number;
  /** TCP only; default `established`. */
  tcpState?: TcpState;
  /** Default true: the entry is marked SEEN_REPLY and ASSURED, as a live flow is. */
  assured?: boolean;
  reply?: { src: string; dst: string; sport?: number; dport?: number };
}

export interface ConntrackSubscription {
  /** Stops delivery; idempotent. */
  close(): Promise<void>;
}

export interface SubscribeOptions {
  /** Default both. */
  events?: readonly ('new' | 'destroy')[];
  /** Called if the reader fails; delivery has stopped then. */
  onError?: (error: PortwallError) => void;
}

export class ConntrackClient {
  readonly netns: string | null;

  /** @param options.netns a name under /run/netns or a path; omitted = the caller's namespace. */
  constructor(options: { netns?: string } = {}) {
    this.netns = options.netns ?? null;
  }

  /** Entries matching any of the filters (all entries when none is given). */
  async list(filters?: ConntrackFilter | readonly ConntrackFilter[]): Promise<ConntrackEntry[]> {
    const buf = filters === undefined ? null : encodeFilters(filters);
    return decodeEntries(await call(() => binding().conntrackDump(this.netns, buf)));
  }

  /** How many entries match, without decoding them. */
  async count(filters?: ConntrackFilter | readonly ConntrackFilter[]): Promise<number> {
    const buf = filters === undefined ? null : encodeFilters(filters);
    return (await call(() => binding().conntrackDump(this.netns, buf))).length / ENTRY_BYTES;
  }

  /** Deletes the entries matching any of the filters; resolves to how many the kernel deleted. */
  async delete(filters: ConntrackFilter | readonly ConntrackFilter[]): Promise<number> {
    const buf = encodeFilters(filters);
    if (buf.length === 0) return 0;
    return call(() => binding().conntrackDelete(this.netns, buf));
  }

  /** Creates entries; all or nothing (the kernel's first refusal undoes the others and names the entry). */
  async create(entries: readonly ConntrackEntrySpec[]): Promise<number> {
    const buf = encodeEntries(entries);
    return call(() => binding().conntrackCreate(this.netns, buf), 'entries');
  }

  /** Removes every entry of a zone (optionally of one family). */
  async flushZone(zone: number, family?: IpFamily): Promise<void> {
    checkZone(zone, 'zone');
    if (family !== undefined) checkFamily(family, 'family');
    await call(() => binding().conntrackFlushZone(this.netns, zone, family ? familyNumber(family) : 0));
  }

  /**
   * Delivers batches of new/destroy events until closed. The socket reads on its own thread; a batch is
   * whatever queued up since the last one. `lost` counts socket overruns (events dropped by the kernel).
   */
  async subscribe(
    listener: (events: ConntrackEvent[], lost: number) => void,
    options: SubscribeOptions = {},
  ): Promise<ConntrackSubscription> {
    const kinds = options.events ?? ['new', 'destroy'];
    let groups = 0;
    for (const [i, k] of kinds.entries()) {
      if (k === 'new') groups |= 1;
      else if (k === 'destroy') groups |= 4;
      else invalid(`events[${i}]`, k, "must be 'new' or 'destroy'");
    }
    if (groups === 0) invalid('events', kinds, 'must name at least one event');
    const native: NativeSubscription = await call(() =>
      binding().conntrackSubscribe(this.netns, groups, (error, entries, lost) => {
        if (error) {
          options.onError?.(fromNativeItems(error, null));
          return;
        }
        listener(decodeEntries(entries) as ConntrackEvent[], lost);
      }),
    );
    return { close: async () => native.close() };
  }
}

// ---- the wire records (docs/wire.md, "Conntrack records") ----

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

function checkZone(zone: number, field: string): void {
  if (!Number.isInteger(zone) || zone < 0 || zone > 65535) invalid(field, zone, 'must be an integer 0–65535');
}

function checkFamily(family: IpFamily, field: string): void {
  if (family !== 'ipv4' && family !== 'ipv6') invalid(field, family, "must be 'ipv4' or 'ipv6'");
}

function checkPort(port: number | undefined, field: string): void {
  if (!Number.isInteger(port) || port! < 0 || port! > 65535) invalid(field, port, 'must be a port 0–65535');
}

function checkU32(v: number, field: string): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) invalid(field, v, 'must be a 32-bit unsigned integer');
}

function invalid(field: string, value: unknown, why: string): never {
  throw new PortwallError('ERR_INVALID_VALUE', `conntrack ${field} ${JSON.stringify(value)} ${why}`, { field, object: value });
}

async function call<T>(op: () => Promise<T>, itemField?: string): Promise<T> {
  try {
    return await op();
  } catch (cause) {
    throw fromNativeItems(cause, null, { itemField });
  }
}
