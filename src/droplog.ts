/**
 * The drop log (docs/dataplane.md, "Drop log"): packets the port chains dropped on networks with `log_drops`,
 * and new connections they allowed on networks with `log_accepts`, as NFLOG delivers them (prefix `pw ZONE
 * STEP` or `pw ZONE accept-DIRECTION`, the packet from its network header), turned into one record each —
 * port, network, zone, verdict, policy step or direction, and 5-tuple — for a JSON log line.
 */
import type { Model, Port } from './model/types.js';
import { prefixContains } from './compile/addr.js';
import type { Packet } from './compile/evaluate.js';
import { DEFAULT_CONFIG } from './model/types.js';
import { binding as loadBinding, type NativeLoggedPacket, type NflogBinding } from './native.js';
import { fromNativeItems } from './native-errors.js';
import { type EventSubscription, type SubscriptionState, Subscription, deliver, errorReporter } from './subscription.js';
import type { PortwallError } from './errors.js';

/** One logged packet as the native reader hands it over. */
export interface LoggedPacket {
  /** The log statement's prefix. */
  prefix: string;
  /** The packet from its network header (as much as NFLOG copied). */
  payload: Uint8Array;
  /** EtherType of the packet (0x0800 IPv4, 0x86dd IPv6). */
  hwProtocol: number;
}

/** What the drop log writes for one dropped packet: its 5-tuple (as {@link Packet}) and where the policy dropped it. */
export interface DropRecord extends Omit<Packet, 'srcMac'> {
  event: 'drop';
  verdict: 'drop';
  step: string;
  zone: number;
  network?: string;
  /** The port whose policy dropped it (by address within the zone's network), when one is found. */
  port?: string;
  direction?: 'ingress' | 'egress';
}

/**
 * What the drop log writes for the first packet of a new connection a port's policy allowed (networks with
 * `log_accepts`): its 5-tuple, the direction through the port, and the port.
 */
export interface AcceptRecord extends Omit<Packet, 'srcMac'> {
  event: 'accept';
  verdict: 'accept';
  zone: number;
  direction: 'ingress' | 'egress';
  network?: string;
  /** The port whose policy allowed it: of the zone's network, owning the source (egress) or destination (ingress). */
  port?: string;
}

/** A record of the drop log: a drop, or (with `log_accepts`) an allowed new connection. */
export type LogRecord = DropRecord | AcceptRecord;

/** The prefix portwall's drop rules log with. */
export function dropPrefix(zone: number, step: string): string {
  return `pw ${zone} ${step}`;
}

/** The prefix portwall's accept-log rules log with (docs/dataplane.md, "Drop log"). */
export function acceptPrefix(zone: number, direction: 'ingress' | 'egress'): string {
  return `pw ${zone} accept-${direction}`;
}

const PORTED = new Set([6, 17, 33, 132, 136]);

function ipv6Text(b: Uint8Array, at: number): string {
  const words: string[] = [];
  for (let i = 0; i < 8; i++) words.push(((b[at + 2 * i]! << 8) | b[at + 2 * i + 1]!).toString(16));
  // The longest run of zero words becomes "::" (RFC 5952).
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && words[j] === '0') j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  if (best < 0) return words.join(':');
  return `${words.slice(0, best).join(':')}::${words.slice(best + bestLen).join(':')}`;
}

/** The 5-tuple of an IPv4 or IPv6 packet (undefined when it is neither or too short). */
export function packetTuple(payload: Uint8Array): Omit<Packet, 'srcMac'> | undefined {
  const version = payload[0]! >> 4;
  let protocol: number, l4: number, src: string, dst: string, family: 4 | 6;
  if (version === 4 && payload.length >= 20) {
    family = 4;
    protocol = payload[9]!;
    l4 = (payload[0]! & 0x0f) * 4;
    src = Array.from(payload.subarray(12, 16)).join('.');
    dst = Array.from(payload.subarray(16, 20)).join('.');
  } else if (version === 6 && payload.length >= 40) {
    family = 6;
    protocol = payload[6]!;
    l4 = 40;
    src = ipv6Text(payload, 8);
    dst = ipv6Text(payload, 24);
  } else return undefined;
  const out: ReturnType<typeof packetTuple> = { family, protocol, src, dst };
  if (PORTED.has(protocol) && payload.length >= l4 + 4) {
    out!.sport = (payload[l4]! << 8) | payload[l4 + 1]!;
    out!.dport = (payload[l4 + 2]! << 8) | payload[l4 + 3]!;
  } else if ((protocol === 1 || protocol === 58) && payload.length >= l4 + 2) {
    out!.icmp = { type: payload[l4]!, code: payload[l4 + 1]! };
  }
  return out;
}

const owns = (p: Port, addr: string): boolean =>
  p.fixedIps.some((ip) => prefixContains(ip, addr)) || p.addressPairs.some((a) => prefixContains(a.prefix, addr));

/**
 * The record of one logged packet, or undefined when it is not portwall's (another prefix). A drop's port is
 * the one of the zone's network that owns the source (egress) or the destination (ingress) address; an
 * accept's direction comes with its prefix, and its port owns the source (egress) or destination (ingress).
 */
export function dropRecord(pkt: LoggedPacket, model: Model | undefined): LogRecord | undefined {
  const m = /^pw (\d+) (.*)$/.exec(pkt.prefix);
  if (!m) return undefined;
  const tuple = packetTuple(pkt.payload);
  if (!tuple) return undefined;
  const zone = Number(m[1]);
  const accepted = /^accept-(ingress|egress)$/.exec(m[2]!);
  const rec: LogRecord = accepted
    ? { event: 'accept', verdict: 'accept', zone, direction: accepted[1] as 'ingress' | 'egress', ...tuple }
    : { event: 'drop', verdict: 'drop', step: m[2]!, zone, ...tuple };
  const net = model && [...model.networks.values()].find((n) => n.zone === rec.zone);
  if (net) {
    rec.network = net.id;
    for (const p of model!.ports.values()) {
      if (p.networkId !== net.id) continue;
      if (rec.event === 'accept') {
        if (owns(p, rec.direction === 'egress' ? rec.src : rec.dst)) {
          rec.port = p.id;
          break;
        }
        continue;
      }
      if (owns(p, rec.src)) {
        Object.assign(rec, { port: p.id, direction: 'egress' });
        break;
      }
      if (owns(p, rec.dst)) {
        Object.assign(rec, { port: p.id, direction: 'ingress' });
        break;
      }
    }
  }
  return rec;
}

/** Options of {@link subscribeDropLog}. */
export interface DropLogOptions {
  /** The network namespace (null or absent: the caller's). */
  netns?: string | null;
  /** The NFLOG group (default: the config's `logGroup`, 28791). */
  group?: number;
  /** The state the records are named from (networks, ports), read at each packet: a handle's current model. */
  model?: () => Model | undefined;
  /** Errors of the reader (it stopped) and of the listener; default: process warnings. */
  onError?: (error: PortwallError) => void;
  /** The addon (tests inject a double). */
  binding?: NflogBinding;
}

// Enough for an IPv6 header with extension headers and the transport ports.
const COPY_RANGE = 128;

/**
 * Reads portwall's drop log in a namespace: binds the NFLOG group over netlink and calls `listener` with one
 * {@link DropRecord} per dropped packet that portwall's rules logged, and one {@link AcceptRecord} per allowed
 * new connection on networks with `log_accepts` (other prefixes are skipped). Resolves
 * once bound; rejects with ERR_KERNEL (EBUSY) when another process of the namespace reads the group.
 */
export async function subscribeDropLog(listener: (records: LogRecord[], lost: number) => void, options: DropLogOptions = {}): Promise<EventSubscription> {
  const netns = options.netns ?? null;
  const native = options.binding ?? loadBinding();
  const state: SubscriptionState = { closed: false };
  const report = errorReporter(state, options.onError);
  const decode = (packets: NativeLoggedPacket[]): LogRecord[] => {
    const model = options.model?.();
    return packets.flatMap((p) => dropRecord(p, model) ?? []);
  };
  const callback = (error: Error | null, raw: NativeLoggedPacket[], lost: number): void => {
    deliver(state, report, 'drop log', raw, lost, decode, listener);
    if (error) report(fromNativeItems(error, netns));
  };
  try {
    const handle = await native.nflogSubscribe(netns, options.group ?? DEFAULT_CONFIG.logGroup, COPY_RANGE, callback);
    return new Subscription(netns, handle, state);
  } catch (cause) {
    throw fromNativeItems(cause, netns);
  }
}
