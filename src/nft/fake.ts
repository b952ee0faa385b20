/**
 * A fake of the native binding's nftables functions (STYLE.md rule 5), for unit tests without root.
 *
 * It decodes each wire batch exactly as the addon receives it, applies it to an in-memory ruleset per
 * namespace with the kernel's errors (see `./fake-ruleset.ts`), all or nothing, and answers list() with a
 * wire dump in the kernel's shape — rbtree intervals as descending start/end elements, base chains with
 * their default policy, verdict-map data length 16 — so the client's decoding is exercised as well.
 * It never replaces the kernel tests.
 */
import type { CommitResult, ListResult, NftBinding } from '../native.js';
import { NFT_SET_ELEM_INTERVAL_END, SET_FLAGS } from './constants.js';
import { KernelRefusal, applyRecord, emptyRuleset } from './fake-ruleset.js';
import type { Ruleset } from './fake-ruleset.js';
import { errnoName, strerror } from '../native-errors.js';
import { readRecords, writeRecords } from './wire-records.js';
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

/** In-memory nftables implementing {@link NftBinding}. */
export class FakeNft implements NftBinding {
  readonly #namespaces: ReadonlySet<string> | undefined;
  readonly #rulesets = new Map<string, Ruleset>();
  /** Number of batches committed (all namespaces), for tests that check nothing was sent. */
  commits = 0;

  constructor(options: FakeNftOptions = {}) {
    this.#namespaces = options.namespaces && new Set(options.namespaces);
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

  async nftCommit(netns: string | null, batch: Buffer): Promise<CommitResult> {
    const current = this.#ruleset(netns);
    let records: RawRecord[];
    try {
      records = readRecords(batch);
    } catch (err) {
      throw nativeError('wire', 22, (err as Error).message);
    }
    // All or nothing: work on a copy and keep it only if every record applies.
    const next = structuredClone(current);
    records.forEach((rec, opIndex) => {
      try {
        applyRecord(next, rec);
      } catch (err) {
        if (!(err instanceof KernelRefusal)) throw err;
        throw nativeError('netlink', err.errno, `${strerror(err.errno)} (${err.message})`, opIndex);
      }
    });
    next.genid = current.genid + 1;
    this.#rulesets.set(netns ?? '', next);
    this.commits++;
    return { genid: next.genid, messages: records.length + 2 };
  }

  /** The fake's "netlink bytes" are the wire batch itself. */
  async nftEncode(batch: Buffer): Promise<Buffer> {
    return Buffer.from(batch);
  }

  async nftSendEncoded(netns: string | null, netlink: Buffer): Promise<CommitResult> {
    return this.nftCommit(netns, netlink);
  }

  async nftList(netns: string | null, family: number, table: string | null): Promise<ListResult> {
    const rs = this.#ruleset(netns);
    return { genid: rs.genid, records: writeRecords(dumpRecords(rs, family, table)) };
  }

  async nftGenid(netns: string | null): Promise<number> {
    return this.#ruleset(netns).genid;
  }
}

/** The dump of a ruleset in the addon's order: per table the table, its chains, each set and its elements, rules. */
function dumpRecords(rs: Ruleset, family: number, table: string | null): RawRecord[] {
  const out: RawRecord[] = [];
  for (const t of rs.tables.values()) {
    if ((family !== 0 && t.family !== family) || (table !== null && t.table.name !== table)) continue;
    const head = { verb: 0, family: t.family };
    out.push({ ...t.table, ...head });
    for (const c of t.chains.values()) out.push({ ...c.chain, ...head });
    for (const s of t.sets.values()) {
      const elements = isRbtree(s.set) ? descending(s.elements) : s.elements;
      out.push({ ...s.set, ...head }, { ...head, kind: 'elements', table: t.table.name, set: s.set.name, elements });
    }
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
