/**
 * nftables events (NFNLGRP_NFTABLES): every committed transaction in a network namespace, whoever made it,
 * delivered within milliseconds and without blocking the event loop (docs/netlink.md, "nftables events").
 *
 * The kernel announces a commit as one notification per object it changed (table, chain, rule, set,
 * stateful object, flowtable — and one per set element) followed by one NEWGEN carrying the new generation
 * id and the committing thread. The addon reads them on a thread of its own and groups them into
 * {@link NftTransactionEvent}s, one per commit; a run of messages about the same object (the elements of
 * one set) arrives as one {@link NftEvent} with a `count`. Use it to notice drift — `nft flush ruleset`, a
 * table deleted, an element added by hand — and tell it from your own commits ({@link NftTransactionEvent.self}).
 *
 * @example
 * const sub = await subscribeNftEvents('host1', (txs, lost) => {
 *   if (lost > 0) return scheduleFullCheck();   // notifications were dropped: trust nothing, re-list
 *   for (const tx of txs) {
 *     if (tx.self) continue;                       // our own commit
 *     if (tx.events.some((e) => e.family === 'inet' && e.table === 'portwall')) scheduleFullCheck();
 *   }
 * }, { onError: (e) => log.warn(e) });
 * sub.unref();
 * // … later
 * await sub.close();
 */
import { PortwallError } from '../errors.js';
import { binding as loadBinding } from '../native.js';
import type { NativeNftEvent, NativeNftEventSubscription, NativeNftTransaction, NftEventsBinding } from '../native.js';
import { fromNativeItems } from '../native-errors.js';
import { type EventSubscription, type SubscriptionState, Subscription, deliver, errorReporter } from '../subscription.js';
import { FAMILIES } from './constants.js';
import type { Family } from './types.js';

/**
 * What a notification announces, by its NFT_MSG_* message: an object added (`new…`) or deleted (`del…`).
 * A rule replaced in place is a `delrule` and a `newrule`; `nft flush ruleset` is a delete of every rule,
 * set, object, chain and table (no per-element deletes: a deleted set takes its elements along).
 * NEWGEN is not an event: it ends a transaction and fills in {@link NftTransactionEvent}. Anything else
 * (messages of newer kernels) is `'other'`, with its number in {@link NftEvent.msg}.
 */
export type NftEventType =
  | 'newtable'
  | 'deltable'
  | 'newchain'
  | 'delchain'
  | 'newrule'
  | 'delrule'
  | 'newset'
  | 'delset'
  | 'newsetelem'
  | 'delsetelem'
  | 'newobj'
  | 'delobj'
  | 'newflowtable'
  | 'delflowtable'
  | 'other';

/** NFT_MSG_* numbers (include/uapi/linux/netfilter/nf_tables.h) of the notifications portwall names. */
export const NFT_EVENT_MESSAGES: Readonly<Record<Exclude<NftEventType, 'other'>, number>> = {
  newtable: 0,
  deltable: 2,
  newchain: 3,
  delchain: 5,
  newrule: 6,
  delrule: 8,
  newset: 9,
  delset: 11,
  newsetelem: 12,
  delsetelem: 14,
  newobj: 18,
  delobj: 20,
  newflowtable: 22,
  delflowtable: 24,
};

const TYPE_OF = new Map<number, NftEventType>(
  Object.entries(NFT_EVENT_MESSAGES).map(([name, msg]) => [msg, name as NftEventType]),
);
const FAMILY_OF = new Map<number, Family>(FAMILIES.names.map((f) => [FAMILIES.code(f), f]));

/** One notification of a transaction, or a run of consecutive ones about the same object. */
export interface NftEvent {
  type: NftEventType;
  /** The table's family; null when the message carries none portwall knows (some `'other'` messages). */
  family: Family | null;
  /** The table's name; '' when the message names none (some `'other'` messages). */
  table: string;
  /**
   * The chain (chains; rules: the rule's chain), set (sets, set elements), object or flowtable name; absent
   * for tables and `'other'`.
   */
  name?: string;
  /**
   * How many consecutive kernel messages this event stands for: the kernel sends one message per set element,
   * so 5000 elements added to one set are one `newsetelem` event with count 5000. 1 for everything else
   * (unless the same object is announced twice in a row).
   */
  count: number;
  /** The NFT_MSG_* number of the message (what `'other'` was). */
  msg: number;
}

/** One committed nftables transaction (one generation), or notifications the kernel sent outside a commit. */
export interface NftTransactionEvent {
  /**
   * The ruleset generation this commit produced (NFTA_GEN_ID: what `Nft.genid()` and `nft list ruleset`
   * report afterwards; `CommitResult.genid` of the committer's own commit). 0 when no NEWGEN framed these
   * events — notifications sent outside a commit, or a commit's first part before an overrun (then `lost` > 0
   * in this or the next delivery) — so that nothing here may be attributed to anyone: check everything.
   */
  genid: number;
  /**
   * The committing *thread's* id (NFTA_GEN_PROC_PID, as the kernel's initial pid namespace numbers it): the
   * process id for a single-threaded writer such as `nft`, but for portwall's own commits a libuv pool thread
   * of this process, not `process.pid` (see {@link NftTransactionEvent.self}). 0 when `genid` is 0.
   */
  pid: number;
  /** The committing thread's name (NFTA_GEN_PROC_NAME, its comm: 'nft', 'iptables-nft', …). */
  procName: string;
  /**
   * The netlink port id of the socket that committed (the notifications' nlmsg_pid), unique within the
   * namespace while that socket is open.
   */
  portid: number;
  /**
   * Whether this process committed it: the committing thread was one of this process's threads when the
   * notification was read. Reliable when this process runs in the initial pid namespace (the kernel reports
   * thread ids as that namespace numbers them); inside a container's pid namespace it is false for our own
   * commits too, which errs on the side of a needless check.
   */
  self: boolean;
  /**
   * The changes in the kernel's order (for a commit: the order of its batch). Empty only when the commit's
   * notifications were not seen: sent before this subscription joined, or delivered unframed after an overrun.
   */
  events: NftEvent[];
}

/**
 * Receives each wakeup's transactions, in commit order. `lost` > 0 means the kernel dropped notifications
 * since the previous call (the socket's receive buffer overflowed) or the JS thread fell too far behind: some
 * changes were never reported, so re-list whatever matters. A listener that throws does not stop the
 * subscription; its error goes to {@link NftEventOptions.onError}.
 */
export type NftEventListener = (transactions: NftTransactionEvent[], lost: number) => void;

/** Options of {@link subscribeNftEvents}. */
export interface NftEventOptions {
  /**
   * Called with what went wrong outside the listener's control: `ERR_LISTENER` when the listener threw (the
   * subscription goes on), `ERR_WIRE` when a delivery could not be decoded (a portwall bug; that delivery is
   * dropped: treat it as an overrun), `ERR_SYSTEM` when the reader stopped on a failed system call (nothing
   * more comes: close and subscribe again). Without it such errors are emitted as process warnings. Errors
   * it throws itself are dropped.
   */
  onError?(error: PortwallError): void;
  /**
   * The socket's receive buffer in bytes: what the kernel can queue while the reader is behind (each set
   * element is one message of ~100 bytes). Default 16 MiB; the system default (net.core.rmem_default) is
   * the least it gets. Too small a buffer shows as `lost` > 0 on big commits.
   */
  receiveBufferBytes?: number;
  /** The binding to use (tests inject a double); defaults to the native addon. */
  binding?: NftEventsBinding;
}

/** An open subscription; see {@link subscribeNftEvents}. */
export type NftEventSubscription = EventSubscription;

/**
 * Subscribes to the nftables notifications of `netns` (a name under /run/netns, a path, or null for the
 * caller's namespace). Resolves once the socket has joined the group: every commit completed after that is
 * delivered. Rejects with `ERR_NETNS` when the namespace cannot be entered, `ERR_SYSTEM` when the socket
 * cannot be opened.
 *
 * The subscription lives as long as something references it: one the collector takes without close() is
 * stopped (its thread ended, its socket closed) and delivers nothing more.
 */
export async function subscribeNftEvents(
  netns: string | null,
  listener: NftEventListener,
  options: NftEventOptions = {},
): Promise<NftEventSubscription> {
  const rcvbuf = options.receiveBufferBytes;
  if (rcvbuf !== undefined && !(Number.isInteger(rcvbuf) && rcvbuf >= 1 && rcvbuf <= 2 ** 30)) {
    throw new PortwallError('ERR_INVALID_VALUE', `receiveBufferBytes must be an integer from 1 to 2^30, not ${String(rcvbuf)}`, {
      field: 'receiveBufferBytes',
    });
  }
  const native = options.binding ?? loadBinding();
  // Shared with the callback, which must not reference the handle: the callback stays reachable from the
  // addon for as long as the subscription runs, and the handle must stay collectable.
  const state: SubscriptionState = { closed: false };
  const report = errorReporter(state, options.onError?.bind(options));
  const callback = (error: Error | null, raw: NativeNftTransaction[], lost: number): void => {
    deliver(state, report, 'nftables events', raw, lost, (r) => r.map(decodeTransaction), listener);
    if (error) report(fromNativeItems(error, netns));
  };
  let handle: NativeNftEventSubscription;
  try {
    handle = await native.nftSubscribe(netns, callback, rcvbuf);
  } catch (cause) {
    throw fromNativeItems(cause, netns);
  }
  return new Subscription(netns, handle, state);
}

/** The addon's event record as an {@link NftEvent}. */
export function decodeEvent(e: NativeNftEvent): NftEvent {
  const type = TYPE_OF.get(e.msg) ?? 'other';
  const event: NftEvent = { type, family: FAMILY_OF.get(e.family) ?? null, table: e.table, count: e.count, msg: e.msg };
  if (e.name !== '' && type !== 'other' && type !== 'newtable' && type !== 'deltable') event.name = e.name;
  return event;
}

/** The addon's transaction record as an {@link NftTransactionEvent}. */
export function decodeTransaction(t: NativeNftTransaction): NftTransactionEvent {
  if (!Array.isArray(t.events)) throw new TypeError('transaction without an events array');
  return {
    genid: t.genid,
    pid: t.pid,
    procName: t.procName,
    portid: t.portid,
    self: t.self,
    events: t.events.map(decodeEvent),
  };
}
