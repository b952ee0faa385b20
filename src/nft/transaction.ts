/**
 * A transaction: a list of operations committed as one netlink batch, all or nothing.
 *
 * Like knftables' Transaction it is a value: each call validates its object at once and records the
 * canonical operation; the first invalid call is kept as the transaction's error, later calls are ignored,
 * and commit() rejects with that error without touching the kernel.
 */
import { PortwallError } from '../errors.js';
import type { CommitResult } from '../native.js';
import { fromNative } from '../native-errors.js';
import { renderOperations } from './render.js';
import { validateOperation } from './validate.js';
import { SetRegistry } from './set-registry.js';
import { encodeOperations } from './wire.js';
import type { SetResolver } from './wire.js';
import type { Chain, Elements, NftObject, NftSet, Operation, Rule, Table, Verb } from './types.js';

/** What a transaction commits through (an Nft client provides it). */
export interface TransactionSink {
  /** Namespace the batch goes to, for error mapping. */
  readonly netns: string | null;
  /**
   * Sends an encoded batch; rejects with the addon's error. `genid`, when given, is the generation the batch
   * is conditional on (the binding's nftCommit `genid`); it is undefined for an unconditional commit.
   */
  send(batch: Buffer, genid?: number): Promise<CommitResult>;
  /**
   * Commits `batch` at once on the caller's thread when it can (a held socket free right now), else returns
   * undefined and the batch goes through {@link TransactionSink.send}. Asked only for small batches.
   */
  sendNow?(batch: Buffer, genid?: number): CommitResult | undefined;
  /** Called after a successful commit, to learn the sets it created or removed. */
  committed(ops: readonly Operation[]): void;
}

/** Options of a standalone {@link Transaction} (a client's `transaction()` fills both). */
export interface TransactionOptions {
  /** Definitions of sets the transaction does not add itself (elements need their key types). */
  resolveSet?: SetResolver;
  /** Where commit() sends the batch; without it the transaction can be built, printed and encoded only. */
  sink?: TransactionSink;
}

/** Options of {@link Transaction.commit}. */
export interface CommitOptions {
  /**
   * Commit only if the ruleset is still at this generation (optimistic concurrency); otherwise nothing is
   * applied and commit() rejects with ERR_CONFLICT.
   */
  genid?: number;
}

/** The most elements a batch committed on the JS thread may carry (see Transaction's `#small`). */
export const SMALL_BATCH_ELEMENTS = 64;

type ObjectOf<V extends Verb> = V extends 'insert' | 'replace' ? Rule : NftObject;

/** An ordered, validated batch of nftables operations. */
export class Transaction {
  readonly #ops: Operation[] = [];
  // Sets added (or, as null, removed) earlier in this transaction, and tables it deletes.
  readonly #sets = new SetRegistry<NftSet | null>();
  readonly #droppedTables = new Set<string>();
  // Whether this transaction adds or removes any set or table (then its own records shadow the client's).
  #shadows = false;
  readonly #resolveSet: SetResolver;
  readonly #sink: TransactionSink | undefined;
  #error: PortwallError | undefined;
  #committed = false;

  constructor(options: TransactionOptions = {}) {
    this.#resolveSet = options.resolveSet ?? (() => undefined);
    this.#sink = options.sink;
  }

  /** Adds an object; existing objects are left as they are (rules are appended, or placed after `position`). */
  add(object: NftObject): this {
    return this.#push('add', object);
  }

  /** Creates an object; the commit fails with EEXIST if it exists. */
  create(object: Table | Chain | NftSet | Elements): this {
    return this.#push('create', object);
  }

  /** Inserts a rule at the start of its chain, or before the rule whose handle is `position`. */
  insert(rule: Rule): this {
    return this.#push('insert', rule);
  }

  /** Replaces the rule with `rule.handle`. */
  replace(rule: Rule): this {
    return this.#push('replace', rule);
  }

  /** Deletes an object (rules by handle); the commit fails with ENOENT if it does not exist. */
  delete(object: NftObject): this {
    return this.#push('delete', object);
  }

  /** Removes a table's or a chain's rules, or a set's elements. */
  flush(object: Table | Chain | NftSet): this {
    return this.#push('flush', object);
  }

  /** Deletes an object if it exists (kernel ≥ 6.3). */
  destroy(object: NftObject): this {
    return this.#push('destroy', object);
  }

  /**
   * Records an operation whose element values are already canonical — what portwall's own layout and diff
   * produce. Everything is validated as by {@link add} and the others except each element's values, which
   * are parsed once, when the batch is encoded (instead of once more here): a full sync of 100k elements
   * spends its time in the kernel, not in checking values twice.
   */
  canonical(verb: Verb, object: NftObject): this {
    return this.#push(verb, object as never, true);
  }

  /** The canonical operations recorded so far (up to the first error). */
  get operations(): readonly Operation[] {
    return this.#ops;
  }

  /** Number of operations. */
  get size(): number {
    return this.#ops.length;
  }

  /** The first validation error, if any call failed. */
  get error(): PortwallError | undefined {
    return this.#error;
  }

  /** The wire batch of the operations (throws the first error, if any). */
  encode(): Buffer {
    if (this.#error) throw this.#error;
    return encodeOperations(this.#ops, (f, t, n) => this.#knownSet(f, t, n));
  }

  /** The operations in `nft -f` syntax, for logs and golden tests. */
  toString(): string {
    const known: NftSet[] = [];
    for (const op of this.#ops) {
      if (op.object.kind !== 'elements') continue;
      const set = this.#knownSet(op.object.family, op.object.table, op.object.set);
      if (set && !known.includes(set)) known.push(set);
    }
    return renderOperations([...this.#ops], known);
  }

  /**
   * Commits the batch. Resolves with the new generation id; rejects with the first validation error,
   * ERR_KERNEL (naming the operation and object the kernel refused; nothing was applied), ERR_CONFLICT,
   * ERR_NETNS, ERR_SYSTEM or ERR_WIRE. A transaction commits at most once.
   *
   * With `options.genid` (a generation id from `Nft.genid()` or `Nft.list()`, an integer 1 … 2³²−1) the
   * commit is optimistic: the kernel applies the batch only if the ruleset is still at that generation, and
   * otherwise refuses all of it, which rejects with ERR_CONFLICT (errnoName 'ERESTART'): recompute against a
   * fresh listing and try again. The resolved `genid` is read after the commit and may already count another
   * writer's commit; it equals `options.genid + 1` when none came in between.
   *
   * A small batch of element operations is committed on the JS thread when the client's held socket is free
   * (docs/netlink.md, "Small batches"); anything else on a pool thread. The outcome is the same either way.
   */
  async commit(options: CommitOptions = {}): Promise<CommitResult> {
    if (this.#committed) throw new PortwallError('ERR_TRANSACTION_STATE', 'the transaction was already committed');
    this.#committed = true;
    if (this.#error) throw this.#error;
    const sink = this.#sink;
    if (!sink) throw new PortwallError('ERR_TRANSACTION_STATE', 'the transaction has no client to commit through');
    const { genid } = options;
    if (genid !== undefined && !(Number.isInteger(genid) && genid >= 1 && genid <= 0xffffffff)) {
      // 0 would turn the kernel's check off, and the kernel never reports generation 0.
      throw new PortwallError('ERR_INVALID_VALUE', `commit: genid must be an integer from 1 to 2^32-1, not ${genid}`, {
        field: 'genid',
      });
    }
    const batch = this.encode();
    let result: CommitResult;
    try {
      const now = this.#small() ? sink.sendNow?.(batch, genid) : undefined;
      result = now ?? (genid === undefined ? await sink.send(batch) : await sink.send(batch, genid));
    } catch (err) {
      throw fromNative(err, sink.netns, this.#ops, { genid });
    }
    sink.committed(this.#ops);
    return result;
  }

  #push<V extends Verb>(verb: V, object: ObjectOf<V>, canonicalElements = false): this {
    if (this.#committed) {
      throw new PortwallError('ERR_TRANSACTION_STATE', `${verb} after commit: start a new transaction`);
    }
    if (this.#error) return this;
    try {
      const op = validateOperation(verb, object, this.#ops.length, (f, t, n) => this.#knownSet(f, t, n), canonicalElements);
      this.#track(op);
      this.#ops.push(op);
    } catch (err) {
      // Anything validation trips over (even a TypeError on a malformed object) is this call's error.
      const kind = String((object as { kind?: unknown } | null)?.kind);
      const details = { object, opIndex: this.#ops.length, cause: err };
      this.#error =
        err instanceof PortwallError ? err : new PortwallError('ERR_INVALID_OBJECT', `${verb} ${kind}: ${err}`, details);
    }
    return this;
  }

  /**
   * Whether the kernel's share of this batch is shorter than a pool thread's round trip, so that it may be
   * committed on the JS thread (docs/netlink.md, "Small batches"): element operations only (no rule, chain or
   * set: those can make the kernel validate the whole ruleset), at most {@link SMALL_BATCH_ELEMENTS}
   * elements, and no delete from a concatenated interval set (a pipapo delete can take milliseconds).
   */
  #small(): boolean {
    let elements = 0;
    for (const { verb, object: o } of this.#ops) {
      if (o.kind !== 'elements') return false;
      elements += o.elements.length;
      if (elements > SMALL_BATCH_ELEMENTS) return false;
      if (verb === 'add' || verb === 'create') continue;
      const set = this.#knownSet(o.family, o.table, o.set);
      if (!set || (set.key.length > 1 && set.flags?.includes('interval'))) return false;
    }
    return true;
  }

  // Sets added or removed earlier in this transaction shadow what the client knows.
  #track(op: Operation): void {
    const o = op.object;
    if (o.kind === 'set') {
      const removed = op.verb === 'delete' || op.verb === 'destroy';
      if (removed || op.verb === 'add' || op.verb === 'create') {
        this.#sets.set(o.family, o.table, o.name, removed ? null : o);
        this.#shadows = true;
      }
    } else if (o.kind === 'table' && (op.verb === 'delete' || op.verb === 'destroy')) {
      // Sets of the table added earlier in this transaction go with it.
      this.#sets.dropTable(o.family, o.name);
      this.#droppedTables.add(`${o.family} ${o.name}`);
      this.#shadows = true;
    }
  }

  #knownSet(family: NftSet['family'], table: string, name: string): NftSet | undefined {
    // The common transaction (elements of sets it neither adds nor removes) asks the client straight away.
    if (!this.#shadows) return this.#resolveSet(family, table, name);
    const local = this.#sets.get(family, table, name);
    if (local !== undefined) return local ?? undefined;
    if (this.#droppedTables.has(`${family} ${table}`)) return undefined;
    return this.#resolveSet(family, table, name);
  }
}
