/**
 * The native binding: its shape, its loader, and a seam to inject a fake for tests.
 *
 * Every function returns a promise and runs its I/O on a libuv pool thread. Buffers follow docs/wire.md.
 * A `netns` argument is a name under /run/netns, a path, or null for the caller's namespace. The nftables
 * and conntrack calls take a target instead ({@link NftTarget}, {@link ConntrackTarget}): a namespace (a
 * socket per call) or a held socket (docs/netlink.md).
 * Rejections are Errors with `kind` ('system' | 'netlink' | 'wire'), `errno`, `errnoName`, `opIndex`.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

import { PortwallError } from './errors.js';

export interface CommitResult {
  /**
   * Ruleset generation id, read right after the commit (on the same socket). Another writer's commit may
   * already be counted in it: the commit was the only one in between exactly when `genid === sentGenid + 1`,
   * where `sentGenid` is the generation the batch was made conditional on (nftCommit's `genid`).
   */
  genid: number;
  /** Netlink messages sent (including batch begin/end). */
  messages: number;
}

export interface ListResult {
  genid: number;
  /** A wire stream of dump records (verb 0). */
  records: Buffer;
}

/** ipset creation options as the binding takes them (family 4 or 6). */
export interface NativeIpsetCreate {
  name: string;
  type: string;
  family: 4 | 6;
  hashsize?: number;
  maxelem?: number;
  timeout?: number;
  counters?: boolean;
  comment?: boolean;
}

/** An open conntrack event subscription (from `conntrackSubscribe`). */
export interface NativeSubscription {
  /**
   * Final at once: no callback runs after this call. Idempotent. Resolves once the reader thread is joined and
   * its socket closed (on a pool thread: closing may wait for the kernel's release work).
   */
  close(): Promise<void>;
  /** Lets the process exit while the subscription is open. */
  unref(): void;
  /** Undoes unref(). */
  ref(): void;
}

/**
 * An nftables netlink socket held open across calls (from `nftSocketOpen`), bound to the namespace it was
 * opened in. Calls on it are serialised; none opens or closes a socket, so none pays the kernel's release
 * work (an RCU grace period, 7–15 ms after a commit that deleted anything; see docs/netlink.md). After a
 * failure that may leave replies unread (a rejection of kind 'system'), the next call reopens it in the same
 * namespace; a kernel refusal (kind 'netlink') keeps it.
 */
export interface NativeNftSocket {
  /**
   * Closes the socket: at once when idle, else when the call using it ends. Idempotent. Calls made afterwards
   * reject (kind 'system', errnoName 'EBADF'). May block for the kernel's release work. A socket that is
   * never closed is closed when it is garbage-collected and no queued call uses it any more.
   */
  close(): void;
}

/**
 * Where an nftables call goes: a namespace (a name under /run/netns, a path, or null for the caller's) for
 * which the call opens and closes its own socket, or a {@link NativeNftSocket}.
 */
export type NftTarget = string | null | NativeNftSocket;

/** A look instead of a full listing: the sets whose elements are wanted, and whether the other sets' definitions are left out too. */
export interface NftLook {
  elementsOf: readonly string[];
  namedSetsOnly: boolean;
}

/** The nftables part of the binding (what an {@link Nft} client needs; `FakeNft` implements it). */
export interface NftBinding {
  /**
   * Opens a socket in `netns` to hold across calls (entering the namespace on a pool thread). Optional here
   * so that hand-written test doubles need not have it; the addon and `FakeNft` do, and an {@link Nft}
   * client asked to be persistent falls back to a socket per call without it.
   */
  nftSocketOpen?(netns: string | null): Promise<NativeNftSocket>;
  /**
   * Commits a wire batch as one atomic transaction. With `genid` (an integer 1 … 2³²−1, as `nftGenid` or
   * `nftList` reported it) the batch's BEGIN carries NFNL_BATCH_GENID and the kernel refuses all of it unless
   * the ruleset is still at that generation: the rejection is kind 'netlink', errno 85, errnoName
   * 'ERESTART', opIndex -1 (the batch envelope), and nothing is applied. See {@link CommitResult.genid}.
   * Without `release` the batch is copied, and the caller may reuse its Buffer at once. With `release` it is
   * read in place and, once the commit is done (either way), its ArrayBuffer detached (length 0 afterwards):
   * only for a Buffer that owns its ArrayBuffer (never a slice of Node's pool) and that the caller neither
   * reads nor writes again (docs/wire.md, "Fresh memory").
   */
  nftCommit(target: NftTarget, batch: Buffer, genid?: number, release?: boolean): Promise<CommitResult>;
  /**
   * nftCommit on the calling (JS) thread, for small batches (docs/netlink.md, "Small batches"): sends nothing
   * and returns undefined unless `target` is a held socket that is free at once; throws what nftCommit rejects
   * with. Optional: a binding without it is committed through nftCommit.
   */
  nftCommitSync?(target: NftTarget, batch: Buffer, genid?: number): CommitResult | undefined;
  /** The netlink bytes of a batch (BEGIN … END), for replay by nftSendEncoded. */
  nftEncode(batch: Buffer): Promise<Buffer>;
  /**
   * Sends already encoded netlink bytes as one batch; errors carry the message index as opIndex. The bytes are
   * sent in place: the caller leaves `netlink` unchanged until the call settles.
   */
  nftSendEncoded(target: NftTarget, netlink: Buffer): Promise<CommitResult>;
  /**
   * family 0 = all families; table null = all tables. With `elementsOf`, a look: only tables and set
   * definitions are listed (with `namedSetsOnly`, only those of the sets named), and the elements of the sets
   * named (no chains, no rules). A binding may ignore both and list everything (a superset).
   */
  nftList(target: NftTarget, family: number, table: string | null, elementsOf?: readonly string[] | null, namedSetsOnly?: boolean): Promise<ListResult>;
  nftGenid(target: NftTarget): Promise<number>;
}

/**
 * An ipset (libipset session) socket held open across calls (from `ipsetSocketOpen`), bound to the namespace
 * it was opened in: the ipset counterpart of {@link NativeConntrackSocket}, with the same rules. Each call on it
 * starts afresh (libipset's set-name cache cleared, the session's data and options reset), and a call that
 * failed leaves a fresh session behind.
 */
export interface NativeIpsetSocket {
  /** Closes the socket (idempotent; as {@link NativeConntrackSocket.close}). */
  close(): void;
}

/**
 * Where an ipset call goes: a namespace (a name under /run/netns, a path, or null for the caller's) for which
 * the call opens and closes its own socket, or a {@link NativeIpsetSocket}.
 */
export type IpsetTarget = string | null | NativeIpsetSocket;

/** The ipset part of the binding. */
export interface IpsetBinding {
  /**
   * Opens a socket in `netns` to hold across calls. Optional here so that hand-written test doubles need not
   * have it; the addon does, and a persistent `IpsetClient` falls back to a socket per call without it.
   */
  ipsetSocketOpen?(netns: string | null): Promise<NativeIpsetSocket>;
  // ipset (docs/wire.md, "ipset members"); set errors carry errnoName ENOENT / EEXIST / EAFNOSUPPORT / EINVAL.
  ipsetCreate(target: IpsetTarget, options: NativeIpsetCreate): Promise<void>;
  ipsetDestroy(target: IpsetTarget, name: string): Promise<void>;
  ipsetFlush(target: IpsetTarget, name: string): Promise<void>;
  ipsetRename(target: IpsetTarget, from: string, to: string): Promise<void>;
  ipsetSwap(target: IpsetTarget, a: string, b: string): Promise<void>;
  ipsetAdd(target: IpsetTarget, name: string, members: Buffer): Promise<void>;
  ipsetDel(target: IpsetTarget, name: string, members: Buffer): Promise<void>;
  /** One byte per member: 1 if the set contains it. */
  ipsetTest(target: IpsetTarget, name: string, members: Buffer): Promise<Buffer>;
  /** `ipset list` plain text of one set (null = all); headersOnly leaves out the members. */
  ipsetList(target: IpsetTarget, name: string | null, headersOnly: boolean): Promise<string>;
}

/**
 * A ctnetlink socket held open across calls (from `conntrackSocketOpen`), bound to the namespace it was
 * opened in: the conntrack counterpart of {@link NativeNftSocket}, with the same rules. Calls on it are
 * serialised; none opens or closes a socket, so none waits for the kernel's release work (closing any
 * netfilter socket right after an nf_tables commit that deleted something waits for an RCU grace period,
 * 7–15 ms). After a rejection of kind 'system' the next call reopens it in the same namespace; a kernel
 * refusal (kind 'netlink') keeps it.
 */
export interface NativeConntrackSocket {
  /**
   * Closes the socket: at once when idle, else when the call using it ends. Idempotent. Calls made afterwards
   * reject (kind 'system', errnoName 'EBADF', a message saying the socket was closed). A socket that is never
   * closed is closed when it is garbage-collected and no queued call uses it any more.
   */
  close(): void;
}

/**
 * Where a conntrack call goes: a namespace (a name under /run/netns, a path, or null for the caller's) for
 * which the call opens and closes its own socket, or a {@link NativeConntrackSocket}.
 */
export type ConntrackTarget = string | null | NativeConntrackSocket;

/** The conntrack part of the binding. */
export interface ConntrackBinding {
  /**
   * Opens a socket in `netns` to hold across calls (entering the namespace on a pool thread). Optional here so
   * that hand-written test doubles need not have it; the addon does, and a persistent `ConntrackClient` falls
   * back to a socket per call without it.
   */
  conntrackSocketOpen?(netns: string | null): Promise<NativeConntrackSocket>;
  // conntrack (docs/wire.md, "Conntrack records"): filters and entries are Buffers of fixed-size records.
  conntrackDump(target: ConntrackTarget, filters: Buffer | null): Promise<Buffer>;
  /**
   * The target namespace's number of tracked entries (every zone and family, entries whose first packet is
   * still in flight included): one IPCTNL_MSG_CT_GET_STATS request, answered from the namespace's counter
   * (the one `conntrack -C` shows) without walking the conntrack hash as a dump does. Optional here so that
   * hand-written test doubles need not have it; the addon does, and `ConntrackClient.count()` falls back to
   * a dump without it.
   */
  conntrackCount?(target: ConntrackTarget): Promise<number>;
  /**
   * conntrackCount on the calling (JS) thread (docs/netlink.md, "Small batches"): undefined, asking nothing,
   * unless `target` is a held socket that is free at once; throws what conntrackCount rejects with.
   */
  conntrackCountSync?(target: ConntrackTarget): number | undefined;
  conntrackDelete(target: ConntrackTarget, filters: Buffer): Promise<number>;
  /** Deletes exactly these entry records (original tuple, zone, id); how many the kernel deleted. */
  conntrackDeleteEntries(target: ConntrackTarget, entries: Buffer): Promise<number>;
  conntrackCreate(target: ConntrackTarget, entries: Buffer): Promise<number>;
  /** family 0 = both. */
  conntrackFlushZone(target: ConntrackTarget, zone: number, family: number): Promise<void>;
  /**
   * groups: 1 = new, 4 = destroy. The callback gets batches of entry records and a count of overruns (events
   * the kernel dropped, or batches the JS thread did not take in time); `error` (kind 'system') when the reader
   * stopped on a failure, after which nothing more comes. A subscription always opens a socket of its own (it
   * reads on its own thread), so it takes a namespace only. Resolves once the socket has joined the groups.
   */
  conntrackSubscribe(
    netns: string | null,
    groups: number,
    callback: (error: Error | null, entries: Buffer, lost: number) => void,
  ): Promise<NativeSubscription>;
}

/** One nftables notification as the addon reports it (see `src/nft/events.ts` for the meaning). */
export interface NativeNftEvent {
  /** NFT_MSG_* of the message. */
  msg: number;
  /** nfgen_family: NFPROTO_*. */
  family: number;
  /** The table's name, '' when the message names none. */
  table: string;
  /** The chain (chains, rules), set (sets, elements), object or flowtable name, else ''. */
  name: string;
  /** Consecutive messages about the same object merged into this one (one per set element). */
  count: number;
}

/** The notifications of one committed transaction, framed by its NFT_MSG_NEWGEN. */
export interface NativeNftTransaction {
  /** NFTA_GEN_ID; 0 when no NEWGEN framed the events (sent outside a commit, or cut short by an overrun). */
  genid: number;
  /** NFTA_GEN_PROC_PID: the committing thread's id; 0 when unframed. */
  pid: number;
  /** NFTA_GEN_PROC_NAME: the committing thread's name. */
  procName: string;
  /** nlmsg_pid of the notifications: the netlink port id of the committing socket. */
  portid: number;
  /** The committing thread belonged to this process when the NEWGEN was read. */
  self: boolean;
  events: NativeNftEvent[];
}

/** An open nftables event subscription (from `nftSubscribe`): the same handle as conntrack's. */
export type NativeNftEventSubscription = NativeSubscription;

/** The nftables event part of the binding. */
export interface NftEventsBinding {
  /**
   * Joins NFNLGRP_NFTABLES in `netns` on a socket and thread of its own; resolves once joined. The callback
   * gets each wakeup's completed transactions and the number of overruns since the last call (notifications
   * the kernel dropped, or batches the JS thread did not take in time); `error` (kind 'system') when the
   * reader stopped on a failure, after which nothing more comes. `receiveBuffer`: the socket's receive buffer
   * in bytes (default 16 MiB; never less than the system default), which holds what the kernel sends while
   * the reader is behind — per set element one message of ~100 bytes.
   */
  nftSubscribe(
    netns: string | null,
    callback: (error: Error | null, transactions: NativeNftTransaction[], lost: number) => void,
    receiveBuffer?: number,
  ): Promise<NativeNftEventSubscription>;
}

/** One packet an NFLOG group delivered (`log group N` in a rule). */
export interface NativeLoggedPacket {
  prefix: string;
  /** EtherType (0x0800, 0x86dd). */
  hwProtocol: number;
  /** The netfilter hook that logged it. */
  hook: number;
  /** Interface indexes (0: absent); phys*: the bridge ports under br_netfilter. */
  indev: number;
  outdev: number;
  physindev: number;
  physoutdev: number;
  /** The packet from its network header, at most the copy range. */
  payload: Uint8Array;
}

/** The NFLOG part of the binding. */
export interface NflogBinding {
  /**
   * Binds NFLOG `group` in `netns` on a socket and thread of its own (copying `copyRange` bytes of each packet);
   * resolves once bound — rejects (kind 'netlink', EBUSY) when another socket of the namespace has the group.
   * The callback gets each wakeup's packets and the overruns since the last call.
   */
  nflogSubscribe(
    netns: string | null,
    group: number,
    copyRange: number,
    callback: (error: Error | null, packets: NativeLoggedPacket[], lost: number) => void,
  ): Promise<NativeSubscription>;
}

/** One step of a traced packet (`meta nftrace set 1`), as NFT_MSG_TRACE reports it. */
export interface NativeTraceEvent {
  /** The same for every step of one packet. */
  id: number;
  /** NFT_TRACETYPE_*: 1 a base chain's policy, 2 the end of a chain (return), 3 a rule. */
  type: number;
  /** The table's family (NFPROTO_*: 1 inet, 2 ip, 7 bridge, 10 ip6). */
  family: number;
  /** The packet's family (NFPROTO_IPV4 2, NFPROTO_IPV6 10), 0 when absent. */
  nfproto: number;
  table: string;
  chain: string;
  /** The rule's handle (rule events). */
  handle?: bigint;
  /** NF_DROP 0, NF_ACCEPT 1, NFT_CONTINUE -1, NFT_BREAK -2, NFT_JUMP -3, NFT_GOTO -4, NFT_RETURN -5. */
  verdict?: number;
  /** The chain of a jump or goto. */
  target?: string;
  /** A base chain's policy (policy events): NF_DROP 0, NF_ACCEPT 1. */
  policy?: number;
  /** Interface indexes, 0 when absent. */
  iif: number;
  oif: number;
  mark: number;
  /** The packet's network and transport headers, when the kernel sent them. */
  network?: Uint8Array;
  transport?: Uint8Array;
}

/** The nftables trace part of the binding. */
export interface NftTraceBinding {
  /**
   * Joins the nftables trace group (NFNLGRP_NFTRACE) in `netns` on a socket and thread of its own; resolves
   * once joined. The callback gets each wakeup's events and the overruns since the last call.
   */
  nftTraceSubscribe(
    netns: string | null,
    callback: (error: Error | null, events: NativeTraceEvent[], lost: number) => void,
  ): Promise<NativeSubscription>;
}

/** Everything the addon exports. */
export type NativeBinding = NftBinding & Required<Pick<NftBinding, 'nftSocketOpen' | 'nftCommitSync'>> & NftEventsBinding & NflogBinding & NftTraceBinding & IpsetBinding & ConntrackBinding &
  Required<Pick<ConntrackBinding, 'conntrackSocketOpen' | 'conntrackCount' | 'conntrackCountSync'>>;

let injected: NativeBinding | undefined;
let loaded: NativeBinding | undefined;

/** The Debian packages of the shared libraries the addon loads (README, "Install"). */
const RUNTIME_PACKAGES = 'libmnl0 libnftnl11 libipset13 libnetfilter-conntrack3';

/** Replaces the binding (tests); pass undefined to go back to the real addon. */
export function setBinding(binding: NativeBinding | undefined): void {
  injected = binding;
}

/**
 * The binding in use: an injected one, else the addon file named by the environment variable `PORTWALL_ADDON`
 * (the sanitizer build of scripts/memcheck.sh), else the addon node-gyp-build finds in the package.
 */
export function binding(): NativeBinding {
  if (injected) return injected;
  if (!loaded) {
    const require = createRequire(import.meta.url);
    const file = process.env.PORTWALL_ADDON;
    const root = packageRoot(path.dirname(fileURLToPath(import.meta.url)));
    try {
      loaded = (file ? require(path.resolve(file)) : require('node-gyp-build')(root)) as NativeBinding;
    } catch (cause) {
      // Usually a shared library the addon links against is not installed: say which, and the packages.
      const why = cause instanceof Error ? `: ${cause.message.split('\n')[0]}` : '';
      throw new PortwallError('ERR_NATIVE_MISSING', `cannot load the portwall addon from ${file || root}${why} ` +
        `(it needs libmnl, libnftnl, libipset and libnetfilter_conntrack: on Debian, apt-get install ${RUNTIME_PACKAGES})`, { cause });
    }
  }
  return loaded;
}

// src/ and dist/src/ both live below the package root, which holds binding.gyp.
function packageRoot(dir: string): string {
  const require = createRequire(import.meta.url);
  for (let d = dir; ; d = path.dirname(d)) {
    try {
      require.resolve(path.join(d, 'package.json'));
      return d;
    } catch {
      if (path.dirname(d) === d) return dir;
    }
  }
}
