/**
 * A fake of the native binding's nftables functions (docs/requirements.md, "Testing rules"), for unit tests without root.
 *
 * It decodes each wire batch exactly as the addon receives it, applies it to an in-memory ruleset per
 * namespace with the kernel's errors (see `./fake-ruleset.ts`), all or nothing, and answers list() with a
 * wire dump in the kernel's shape — rbtree intervals as descending start/end elements, base chains with
 * their default policy, verdict-map data length 16 — so the client's decoding is exercised as well.
 * Each namespace has a generation id (1 at first, +1 per committed non-empty batch), which a commit with `genid`
 * must match, and held sockets (`nftSocketOpen`) are counted, as are listings per namespace.
 * It never replaces the kernel tests.
 */
import type { CommitResult, ListResult, NativeNftSocket, NftBinding, NftLook, NftTarget } from '../native.js';
import { NFT_SET_ELEM_INTERVAL_END, SET_FLAGS } from './constants.js';
import { KernelRefusal, applyRecord, emptyRuleset } from './fake-ruleset.js';
import type { BatchSets, Ruleset } from './fake-ruleset.js';
import { errnoName, strerror } from '../native-errors.js';
import { VERB_CODES, readRecords, writeRecords } from './wire-records.js';
import type { RawElement, RawRecord, RawSet } from './wire-records.js';

/** Options of {@link FakeNft}. */
export interface FakeNftOptions {
  /** Namespace names that exist (besides the caller's, null); others fail like a missing /run/netns entry. */
  namespaces?: string[];
}

type NativeLikeError = Error & { kind: 'netlink' | 'system' | 'wire'; errno: number; errnoName?: string; opIndex: number };

function nativeError(kind: NativeLikeError['kind'], errno: number, message: string, opIndex = -1): NativeLikeError {
  return Object.assign(new Error(message), { kind, errno, errnoName: errnoName(errno), opIndex });
}

const ERESTART = 85;
const EBADF = 9;

/** A held socket of the fake ({@link FakeNft.nftSocketOpen}): a namespace and whether it was closed. */
export class FakeNftSocket implements NativeNftSocket {
  #closed = false;

  constructor(
    /** The namespace it was opened in (null: the caller's). */
    readonly netns: string | null,
  ) {}

  /** Whether close() was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Closes it (idempotent); calls made with it afterwards reject like the addon's (kind 'system', EBADF). */
  close(): void {
    this.#closed = true;
  }
}

/** In-memory nftables implementing {@link NftBinding}. */
export class FakeNft implements NftBinding {
  readonly #namespaces: ReadonlySet<string> | undefined;
  readonly #rulesets = new Map<string, Ruleset>();
  readonly #sockets = new WeakSet<FakeNftSocket>();
  /** Number of batches committed (all namespaces), for tests that check nothing was sent. */
  commits = 0;
  /** Number of sockets nftSocketOpen opened (all namespaces). */
  socketsOpened = 0;
  /** Number of nftList calls per namespace (null: the caller's), whether through a socket or not. */
  readonly lists = new Map<string | null, number>();

  constructor(options: FakeNftOptions = {}) {
    this.#namespaces = options.namespaces && new Set(options.namespaces);
  }

  // The namespace a call goes to; a closed socket is refused as the addon refuses it.
  #netnsOf(target: NftTarget): string | null {
    if (target === null || typeof target === 'string') return target;
    if (!(target instanceof FakeNftSocket) || !this.#sockets.has(target)) {
      throw new TypeError('target must be a network namespace (a string or null) or a socket from nftSocketOpen()');
    }
    if (target.closed) throw nativeError('system', EBADF, 'the nftables socket was closed (NftSocket.close())');
    return target.netns;
  }

  #ruleset(netns: string | null): Ruleset {
    if (netns !== null && this.#namespaces && !this.#namespaces.has(netns)) {
      const path = netns.includes('/') ? netns : `/run/netns/${netns}`;
      throw nativeError('system', 2, `open network namespace ${path}: ${strerror(2)}`);
    }
    const key = netns ?? '';
    let rs = this.#rulesets.get(key);
    if (!rs) this.#rulesets.set(key, (rs = emptyRuleset()));
    return rs;
  }

  /** Opens a held socket in `netns` (which must exist); counted in {@link socketsOpened}. */
  async nftSocketOpen(netns: string | null): Promise<FakeNftSocket> {
    this.#ruleset(netns);
    const socket = new FakeNftSocket(netns);
    this.#sockets.add(socket);
    this.socketsOpened++;
    return socket;
  }

  /**
   * Applies a batch, all or nothing, bumping the namespace's generation by 1. With `genid`, refuses the whole
   * batch unless the namespace is at that generation, as the kernel does (kind 'netlink', errno ERESTART,
   * opIndex -1), after the wire checks (the addon encodes before the kernel sees anything).
   */
  async nftCommit(target: NftTarget, batch: Buffer, genid?: number): Promise<CommitResult> {
    if (genid !== undefined && !(Number.isInteger(genid) && genid >= 1 && genid <= 0xffffffff)) {
      throw new TypeError('genid must be an integer from 1 to 2^32-1');
    }
    const netns = this.#netnsOf(target);
    const current = this.#ruleset(netns);
    let records: RawRecord[];
    try {
      records = readRecords(batch);
    } catch (err) {
      throw nativeError('wire', 22, (err as Error).message);
    }
    if (genid !== undefined && genid !== current.genid) {
      throw nativeError('netlink', ERESTART,
        `batch (batch BEGIN genid ${genid}): ${strerror(ERESTART)}: the ruleset's generation moved on (another writer committed since); nothing was applied`);
    }
    // All or nothing: work on a copy and keep it only if every record applies.
    const next = structuredClone(current);
    const created: BatchSets = new Map();
    records.forEach((rec, opIndex) => {
      if (!sendsMessage(rec)) return; // the kernel never sees it
      try {
        applyRecord(next, rec, created);
      } catch (err) {
        if (!(err instanceof KernelRefusal)) throw err;
        throw nativeError('netlink', err.errno, `${strerror(err.errno)} (${err.message})`, opIndex);
      }
    });
    // Like the kernel, a batch without a message between BEGIN and END (no records, or only element lists
    // with no elements, which the addon does not send) is no transaction and leaves the generation alone.
    // (The kernel also keeps it for a batch of no-ops, such as adding what exists; the fake does not model that.)
    if (records.some(sendsMessage)) next.genid = current.genid + 1;
    this.#rulesets.set(netns ?? '', next);
    this.commits++;
    return { genid: next.genid, messages: records.length + 2 };
  }

  /** The fake's "netlink bytes" are the wire batch itself. */
  async nftEncode(batch: Buffer): Promise<Buffer> {
    return Buffer.from(batch);
  }

  async nftSendEncoded(target: NftTarget, netlink: Buffer): Promise<CommitResult> {
    return this.nftCommit(target, netlink);
  }

  async nftList(target: NftTarget, family: number, table: string | null, elementsOf?: readonly string[] | null, namedSetsOnly = false): Promise<ListResult> {
    const netns = this.#netnsOf(target);
    const rs = this.#ruleset(netns);
    this.lists.set(netns, (this.lists.get(netns) ?? 0) + 1);
    const look = elementsOf ? { elementsOf, namedSetsOnly } : null;
    return { genid: rs.genid, records: writeRecords(dumpRecords(rs, family, table, look)) };
  }

  async nftGenid(target: NftTarget): Promise<number> {
    return this.#ruleset(this.#netnsOf(target)).genid;
  }
}

// Whether the addon turns a record into a netlink message (docs/wire.md: an element list with no elements is
// sent only as a flush).
function sendsMessage(r: RawRecord): boolean {
  return r.kind !== 'elements' || r.verb === VERB_CODES.flush || r.elements.length > 0;
}

/**
 * The dump of a ruleset in the addon's order: per table the table, its chains, each set and its elements, rules.
 * With a look, as the addon does: tables and sets only (or only the named sets), elements of the named sets.
 */
function dumpRecords(rs: Ruleset, family: number, table: string | null, look: NftLook | null): RawRecord[] {
  const out: RawRecord[] = [];
  for (const t of rs.tables.values()) {
    if ((family !== 0 && t.family !== family) || (table !== null && t.table.name !== table)) continue;
    const head = { verb: 0, family: t.family };
    out.push({ ...t.table, ...head });
    if (!look) for (const c of t.chains.values()) out.push({ ...c.chain, ...head });
    for (const s of t.sets.values()) {
      const named = look?.elementsOf.includes(s.set.name ?? '') ?? true;
      if (look?.namedSetsOnly && !named) continue;
      out.push({ ...s.set, ...head });
      if (!named) continue;
      const elements = isRbtree(s.set) ? descending(s.elements) : s.elements;
      out.push({ ...head, kind: 'elements', table: t.table.name, set: s.set.name, elements });
    }
    if (look) continue;
    for (const c of t.chains.values()) {
      // Like the kernel, a dumped rule's position is the handle of the rule before it.
      c.rules.forEach((r, i) => out.push({ ...r, ...head, position: c.rules[i - 1]?.handle }));
    }
  }
  return out;
}

const RBTREE_MASK = SET_FLAGS.code('interval') | SET_FLAGS.code('concat');
const isRbtree = (s: RawSet): boolean => ((s.flags ?? 0) & RBTREE_MASK) === SET_FLAGS.code('interval');

// The rbtree dumps from the highest key down; at equal keys the start comes before the end.
function descending(elements: RawElement[]): RawElement[] {
  const end = (e: RawElement) => ((e.flags ?? 0) & NFT_SET_ELEM_INTERVAL_END ? 1 : 0);
  return [...elements].sort((a, b) => Buffer.compare(Buffer.from(b.key!), Buffer.from(a.key!)) || end(a) - end(b));
}
