/**
 * Conntrack over ctnetlink (docs/requirements.md, "Zones and conntrack cleanup"): list, count, delete and create entries, flush a zone, and subscribe
 * to new/destroy events, in a target network namespace, every call off the JS thread.
 *
 * Filters are matched by the kernel where it can (family, zone, mark, protocol) and by the addon for the rest
 * (prefixes, port ranges) — never entry by entry in JS. A delete is one dump plus pipelined deletes on one
 * socket, so removing the flows that lose permission costs milliseconds, not one process per entry; entries
 * already listed and judged are deleted by their exact identity (`deleteEntries`).
 *
 * By default every call opens and closes its own netlink socket. A `persistent` client holds one socket for
 * all its calls instead (docs/netlink.md): closing a netfilter socket right after an nf_tables commit that
 * deleted anything waits for the kernel's release work (7–15 ms), far more than an empty dump costs.
 *
 * @example
 * const ct = new ConntrackClient({ netns: 'router' });
 * // a remote-group member 198.51.100.7 left the group allowing tcp/22 on zone 101:
 * const n = await ct.delete({ zone: 101, protocol: 'tcp', src: '198.51.100.7', dport: 22 });
 */
import { type IpFamily, familyNumber } from './address.js';
import {
  TCP_STATES, checkFamily, checkZone, decodeEntries, encodeEntries, encodeEntryIdentities, encodeFilters, ENTRY_BYTES, invalid,
} from './conntrack-wire.js';
import type { PortwallError } from './errors.js';
import { HeldSocketQueue } from './held-socket.js';
import { binding as loadBinding } from './native.js';
import type { ConntrackBinding, ConntrackTarget, NativeConntrackSocket, NativeSubscription } from './native.js';
import { fromNativeItems } from './native-errors.js';
import { type EventSubscription, type SubscriptionState, Subscription, deliver, errorReporter } from './subscription.js';

export type ProtocolName = 'tcp' | 'udp' | 'icmp' | 'icmpv6' | 'sctp' | 'udplite' | 'dccp';
/** A protocol by name or IANA number. */
export type Protocol = ProtocolName | number;

export { PROTOCOLS, TCP_STATES, STATUS, ENTRY_BYTES, FILTER_BYTES, encodeFilters, encodeEntries, encodeEntryIdentities, decodeEntries } from './conntrack-wire.js';
export type TcpState = (typeof TCP_STATES)[number];

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
  /**
   * The zone of the original direction: the entry's zone, or the one set for that direction alone (`ct
   * original zone set`, as default SNAT's flows have; the kernel then reports it inside the original tuple).
   */
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

/**
 * An open subscription: close() is final at once (no listener or onError call after it), idempotent (the same
 * promise) and never rejects; unref() lets the process exit while subscribed.
 */
export type ConntrackSubscription = EventSubscription;

export interface SubscribeOptions {
  /** Default both. */
  events?: readonly ('new' | 'destroy')[];
  /**
   * Called with what went wrong outside the listener's control: `ERR_LISTENER` when the listener threw (the
   * subscription goes on), `ERR_WIRE` when a delivery could not be decoded (counted as lost), `ERR_SYSTEM`
   * when the reader failed (delivery has stopped then). Without it such errors are emitted as process warnings.
   */
  onError?: (error: PortwallError) => void;
}

/** Options of {@link ConntrackClient}. */
export interface ConntrackOptions {
  /** Network namespace: a name under /run/netns, a path, or null/undefined for the caller's namespace. */
  netns?: string | null;
  /**
   * Hold one netlink socket for all calls of this client (opened on first use, in `netns`) instead of one
   * socket per call; release it with {@link ConntrackClient.close}. Calls on it run one after another, in the
   * order made. After a system error the addon reopens it on the next call. Default false. A binding without
   * `conntrackSocketOpen` (a hand-written test double) is used with a socket per call. Subscriptions always
   * have a socket of their own.
   */
  persistent?: boolean;
  /** The binding to use (tests inject a double); defaults to the native addon. */
  binding?: ConntrackBinding;
}

export class ConntrackClient {
  /** The namespace this client talks to (null: the caller's). */
  readonly netns: string | null;
  /** Whether the client holds one socket across calls (see {@link ConntrackOptions.persistent}). */
  readonly persistent: boolean;
  readonly #binding: ConntrackBinding | undefined;
  // A persistent client's socket and the calls queued on it.
  readonly #held: HeldSocketQueue<ConntrackBinding, NativeConntrackSocket>;

  /** @param options see {@link ConntrackOptions}; all optional (the caller's namespace, a socket per call). */
  constructor(options: ConntrackOptions = {}) {
    this.netns = options.netns ?? null;
    this.persistent = options.persistent ?? false;
    this.#binding = options.binding;
    this.#held = new HeldSocketQueue(this.netns, (b) => b.conntrackSocketOpen?.bind(b));
  }

  // Resolved per call, so constructing a client never loads the addon and setBinding() applies at once.
  get #native(): ConntrackBinding {
    return this.#binding ?? loadBinding();
  }

  // Runs one binding call on this client's target (the namespace, or the held socket opened on first use) and
  // maps its rejection; `itemField` names the list a rejection's opIndex points into.
  #call<T>(fn: (native: ConntrackBinding, target: ConntrackTarget) => Promise<T>, itemField?: string): Promise<T> {
    return call(() => (this.persistent ? this.#held.run(() => this.#native, fn) : fn(this.#native, this.netns)), itemField);
  }

  /**
   * Releases a persistent client's socket: waits until every call already made has settled, then closes it
   * (which may take the kernel a few milliseconds after nf_tables deletions). The client stays usable — a
   * later call opens a new socket — so call it again when done with those. Resolves at once for a per-call
   * client or when no socket is open; never rejects. Subscriptions are closed on their own.
   */
  close(): Promise<void> {
    return this.#held.close();
  }

  /** Entries matching any of the filters (all entries when none is given). */
  async list(filters?: ConntrackFilter | readonly ConntrackFilter[]): Promise<ConntrackEntry[]> {
    const buf = filters === undefined ? null : encodeFilters(filters);
    return decodeEntries(await this.#call((native, target) => native.conntrackDump(target, buf)));
  }

  /**
   * The namespace's number of tracked entries: all zones and families, entries whose first packet is still in
   * flight included, so never fewer than {@link list} would return. Cheap — no table walk: the kernel answers
   * from the namespace's counter (IPCTNL_MSG_CT_GET_STATS; the number `conntrack -C` shows), whereas a
   * {@link list} walks the whole conntrack hash, shared by all namespaces, even when this one holds nothing
   * (~10 ms with 262144 buckets). A persistent client whose socket is free asks on the JS thread
   * (`conntrackCountSync`: shorter than a pool thread's round trip). A binding without `conntrackCount` (a
   * hand-written test double) is asked for a dump instead.
   */
  count(): Promise<number>;
  /** How many entries match any of the filters: a dump, counted without decoding the entries. */
  count(filters: ConntrackFilter | readonly ConntrackFilter[]): Promise<number>;
  async count(filters?: ConntrackFilter | readonly ConntrackFilter[]): Promise<number> {
    if (filters === undefined) {
      // At once on the JS thread when the held socket is free (a counter read is shorter than a pool round
      // trip); else queued before this call returns, so calls keep the order they were made in.
      let now: number | undefined;
      try {
        now = this.persistent ? this.#held.runNow((native, socket) => native.conntrackCountSync?.(socket)) : undefined;
      } catch (cause) {
        throw fromNativeItems(cause, null, {});
      }
      if (now !== undefined) return now;
      return this.#call((native, target) =>
        native.conntrackCount ? native.conntrackCount(target) : native.conntrackDump(target, null).then((b) => b.length / ENTRY_BYTES));
    }
    const buf = encodeFilters(filters);
    return (await this.#call((native, target) => native.conntrackDump(target, buf))).length / ENTRY_BYTES;
  }

  /** Deletes the entries matching any of the filters; resolves to how many the kernel deleted. */
  async delete(filters: ConntrackFilter | readonly ConntrackFilter[]): Promise<number> {
    const buf = encodeFilters(filters);
    if (buf.length === 0) return 0;
    return this.#call((native, target) => native.conntrackDelete(target, buf));
  }

  /**
   * Deletes exactly these entries (as {@link list} returned them): each by its original tuple (ports, or ICMP
   * type, code and id), zone and kernel id, so neither another flow between the same addresses nor a newer
   * entry that took the same tuple meanwhile is touched. Resolves to how many the kernel deleted (entries that
   * vanished meanwhile are not counted).
   */
  async deleteEntries(entries: readonly Pick<ConntrackEntry, 'family' | 'protocol' | 'zone' | 'id' | 'orig' | 'icmp'>[]): Promise<number> {
    const buf = encodeEntryIdentities(entries);
    if (buf.length === 0) return 0;
    return this.#call((native, target) => native.conntrackDeleteEntries(target, buf), 'entries');
  }

  /** Creates entries; all or nothing (the kernel's first refusal undoes the others and names the entry). */
  async create(entries: readonly ConntrackEntrySpec[]): Promise<number> {
    const buf = encodeEntries(entries);
    return this.#call((native, target) => native.conntrackCreate(target, buf), 'entries');
  }

  /** Removes every entry of a zone (optionally of one family). */
  async flushZone(zone: number, family?: IpFamily): Promise<void> {
    checkZone(zone, 'zone');
    if (family !== undefined) checkFamily(family, 'family');
    await this.#call((native, target) => native.conntrackFlushZone(target, zone, family ? familyNumber(family) : 0));
  }

  /**
   * Delivers batches of new/destroy events until closed. The socket reads on its own thread; a batch is
   * whatever queued up since the last one. `lost` counts overruns (events the kernel dropped, or batches the
   * JS thread did not take in time). The listener is never called after close().
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
    // Shared with the callback, which must not reference the handle (see src/subscription.ts).
    const state: SubscriptionState = { closed: false };
    const report = errorReporter(state, options.onError);
    const native: NativeSubscription = await call(() =>
      this.#native.conntrackSubscribe(this.netns, groups, (error, entries, lost) => {
        deliver(state, report, 'conntrack events', entries, lost, (b) => decodeEntries(b) as ConntrackEvent[], listener);
        if (error) report(fromNativeItems(error, null));
      }),
    );
    return new Subscription(this.netns, native, state);
  }
}

async function call<T>(op: () => Promise<T>, itemField?: string): Promise<T> {
  try {
    return await op();
  } catch (cause) {
    throw fromNativeItems(cause, null, { itemField });
  }
}
