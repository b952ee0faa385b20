/**
 * The nftables client of one network namespace: transactions, listings and the set registry.
 *
 * Element keys are encoded with their set's datatypes, so a transaction that adds elements to a set it does
 * not define itself needs that set's definition. The client remembers every set it has seen — in the last
 * list() and in its committed transactions — and transactions resolve such sets through it.
 *
 * By default every call opens and closes its own netlink socket. A `persistent` client holds one socket for
 * all its calls instead (docs/netlink.md): closing a netfilter socket after a commit that deleted anything
 * waits for the kernel's release work (7–15 ms), far more than a small commit itself.
 */
import { HeldSocketQueue } from '../held-socket.js';
import { binding as loadBinding } from '../native.js';
import type { NativeNftSocket, NftBinding, NftLook, NftTarget } from '../native.js';
import { FAMILIES } from './constants.js';
import { fromNative } from '../native-errors.js';
import { Transaction } from './transaction.js';
import { SetRegistry } from './set-registry.js';
import { decodeRecords } from './wire.js';
import type { Family, NftObject, NftSet, Operation } from './types.js';

/** Options of {@link Nft}. */
export interface NftOptions {
  /** Network namespace: a name under /run/netns, a path, or null/undefined for the caller's namespace. */
  netns?: string | null;
  /** The binding to use (tests inject a fake, see `./fake.ts`); defaults to the native addon. */
  binding?: NftBinding;
  /**
   * Hold one netlink socket for all calls of this client (opened on first use, in `netns`) instead of one
   * socket per call; release it with {@link Nft.close}. Calls on it run one after another. After a system
   * error the addon reopens it on the next call. Default false. A binding without `nftSocketOpen` (a
   * hand-written test double) is used with a socket per call.
   */
  persistent?: boolean;
}

/** What list() returns: the ruleset generation the dump belongs to and the decoded objects. */
export interface Listing {
  genid: number;
  objects: NftObject[];
}

/** nftables in one network namespace. */
export class Nft {
  /** The namespace this client talks to (null: the caller's). */
  readonly netns: string | null;
  /** Whether the client holds one socket across calls (see {@link NftOptions.persistent}). */
  readonly persistent: boolean;
  readonly #binding: NftBinding | undefined;
  readonly #sets = new SetRegistry();
  // A persistent client's socket and the calls queued on it.
  readonly #held: HeldSocketQueue<NftBinding, NativeNftSocket>;

  constructor(options: NftOptions = {}) {
    this.netns = options.netns ?? null;
    this.persistent = options.persistent ?? false;
    this.#binding = options.binding;
    this.#held = new HeldSocketQueue(this.netns, (b) => b.nftSocketOpen?.bind(b));
  }

  // Resolved per call, so constructing a client never loads the addon and setBinding() applies at once.
  get #native(): NftBinding {
    return this.#binding ?? loadBinding();
  }

  // Runs one binding call on this client's target: the namespace, or the held socket (opened on first use).
  #call<T>(fn: (native: NftBinding, target: NftTarget) => Promise<T>): Promise<T> {
    if (!this.persistent) return fn(this.#native, this.netns);
    return this.#held.run(() => this.#native, fn);
  }

  /**
   * Releases a persistent client's socket: waits until every call already made has settled, then closes it
   * (which may take the kernel a few milliseconds after deletions). The client stays usable — a later call
   * opens a new socket — so call it again when done with those. Resolves at once for a per-call client or
   * when no socket is open; never rejects.
   */
  close(): Promise<void> {
    return this.#held.close();
  }

  /** A new, empty transaction bound to this client. */
  transaction(): Transaction {
    return new Transaction({
      resolveSet: (family, table, name) => this.knownSet(family, table, name),
      sink: {
        netns: this.netns,
        // The transaction's own encoding (WireWriter: unpooled), never read after this: released once copied.
        send: (batch, genid) => this.#call((native, target) => native.nftCommit(target, batch, genid, true)),
        sendNow: (batch, genid) => {
          if (!this.persistent) return undefined;
          return this.#held.runNow((native, socket) => native.nftCommitSync?.(socket, batch, genid));
        },
        committed: (ops) => this.#learn(ops),
      },
    });
  }

  /**
   * Lists the ruleset, or one family, or one table. The sets it returns replace what the client knew about
   * that scope. With `elementsOf`, a cheap look: tables and set definitions (with `namedSetsOnly`, only of
   * the sets named), and the elements of the sets of those names only (no chains, no rules; a binding may
   * return more). With `namesOnly` too, the sets not named come as their names alone (`key` empty) and the
   * client learns nothing from the look but the named sets' definitions.
   */
  async list(filter: { family?: Family; table?: string; elementsOf?: readonly string[]; namedSetsOnly?: boolean; namesOnly?: boolean } = {}): Promise<Listing> {
    const only = filter.elementsOf ? { elementsOf: filter.elementsOf, namedSetsOnly: filter.namedSetsOnly ?? false } : null;
    const full = only && filter.namesOnly ? new Set(only.elementsOf) : undefined;
    const result = filter.table !== undefined && filter.family === undefined
      ? await this.#dumpTableOfEveryFamily(filter.table, only, full)
      : await this.#dump(filter.family === undefined ? 0 : FAMILIES.code(filter.family), filter.table ?? null, only, full);
    const objects = result.objects;
    if (full) {
      for (const o of objects) if (o.kind === 'set' && full.has(o.name)) this.#sets.set(o.family, o.table, o.name, o);
      return { genid: result.genid, objects };
    }
    // The listing replaces what the client knew in its scope.
    const named = only?.namedSetsOnly ? new Set(only.elementsOf) : undefined;
    this.#sets.dropWhere(filter.family, filter.table, (name) => named !== undefined && !named.has(name));
    for (const o of objects) if (o.kind === 'set') this.#sets.set(o.family, o.table, o.name, o);
    return { genid: result.genid, objects };
  }

  async #dump(family: number, table: string | null, only: NftLook | null, full?: ReadonlySet<string>): Promise<Listing> {
    try {
      const result = await this.#call((native, target) => (only ? native.nftList(target, family, table, only.elementsOf, only.namedSetsOnly) : native.nftList(target, family, table)));
      return { genid: result.genid, objects: decodeRecords(result.records, full) };
    } catch (err) {
      throw fromNative(err, this.netns);
    }
  }

  // A rule dump filtered by table name stops at the first table of that name, whatever its family (the
  // kernel's nf_tables_dump_rules), so tables of one name in several families are dumped family by family.
  async #dumpTableOfEveryFamily(table: string, only: NftLook | null, full?: ReadonlySet<string>): Promise<Listing> {
    for (let attempt = 0; ; attempt++) {
      const all = await this.#dump(0, table, only, full);
      const families = [...new Set(all.objects.filter((o) => o.kind === 'table').map((o) => o.family))];
      if (families.length <= 1) return all;
      const parts: Listing[] = [];
      for (const f of families) parts.push(await this.#dump(FAMILIES.code(f), table, only, full));
      if (parts.every((p) => p.genid === all.genid) || attempt >= 3) {
        // Parts of different generations (writers kept committing): report the oldest, so a batch computed from
        // this listing and committed with its genid is refused rather than built on a stale part.
        return { genid: Math.min(...parts.map((p) => p.genid)), objects: parts.flatMap((p) => p.objects) };
      }
    }
  }

  /**
   * The current ruleset generation id (the kernel's, bumped by 1 per committed batch), for
   * `transaction().commit({ genid })`. `list()` reports the generation of its snapshot as well.
   */
  async genid(): Promise<number> {
    try {
      return await this.#call((native, target) => native.nftGenid(target));
    } catch (err) {
      throw fromNative(err, this.netns);
    }
  }

  /** The definition of a set, as last listed or committed through this client. */
  knownSet(family: Family, table: string, name: string): NftSet | undefined {
    return this.#sets.get(family, table, name);
  }

  /** Teaches the client set definitions it has not listed (e.g. sets another process manages). */
  rememberSets(sets: readonly NftSet[]): void {
    for (const s of sets) this.#sets.set(s.family, s.table, s.name, s);
  }

  // Keeps the registry in step with a committed transaction.
  #learn(ops: readonly Operation[]): void {
    for (const { verb, object: o } of ops) {
      const removed = verb === 'delete' || verb === 'destroy';
      if (o.kind === 'set') {
        if (removed) this.#sets.delete(o.family, o.table, o.name);
        else if (verb === 'add' || verb === 'create') this.#sets.set(o.family, o.table, o.name, o);
      } else if (o.kind === 'table' && removed) {
        this.#sets.dropTable(o.family, o.name);
      }
    }
  }
}

/** Opens an nftables client for a namespace (see {@link NftOptions}). */
export function openNft(options: NftOptions = {}): Nft {
  return new Nft(options);
}
