/**
 * Request coalescing: changes that arrive close together are committed as one batch, one batch at a time.
 *
 * A batch is committed as soon as one whole turn of the event loop has brought no further op, and at the
 * latest `4 × windowMs` after its first op: an op reaching an idle coalescer, and the ops that queued while the
 * previous batch was being committed, alike. A lone request (or a client that waits for each answer) waits a
 * few microseconds, not a window; under steady load a batch is whatever arrived during the commit before it,
 * so batches grow with the load and nothing waits for a quiet period that a steady stream never leaves.
 * One quiet turn, not the same turn: clients that connected while the agent was busy wait in the listening
 * socket's backlog, and Node accepts one Unix-socket connection per turn (docs/agent.md, "Coalescing"), so
 * their requests arrive one turn apart and would otherwise each be committed alone. Commits never overlap.
 * Each submitter gets its own outcome — the one at its op's index in what `commit` resolved — or, when the
 * commit itself throws, that error.
 */

/** Commits a batch; resolves one outcome per op, in order. */
export type CommitBatch<Op, Outcome> = (ops: readonly Op[]) => Promise<readonly Outcome[]>;

/** Options of a {@link Coalescer}. */
export interface CoalescerOptions<Op, Outcome> {
  /** Commits one batch. Never called again before the previous call has settled. */
  commit: CommitBatch<Op, Outcome>;
  /** A batch waits for more ops while each turn of the event loop brings one, at most 4 × this (ms, default 2) after its first. */
  windowMs?: number;
}

interface Waiter<Op, Outcome> {
  op: Op;
  resolve: (outcome: Outcome) => void;
  reject: (error: unknown) => void;
}

/** Batches submitted ops into serial calls of a commit function (see the module comment). */
export class Coalescer<Op, Outcome> {
  readonly #commit: CommitBatch<Op, Outcome>;
  readonly #windowMs: number;
  #queue: Waiter<Op, Outcome>[] = [];
  #timer: NodeJS.Immediate | undefined;
  /** When the first op still queued arrived. */
  #firstAt = 0;
  #running = false;
  #idle: (() => void)[] = [];

  constructor(options: CoalescerOptions<Op, Outcome>) {
    const windowMs = options.windowMs ?? 2;
    if (!Number.isFinite(windowMs) || windowMs < 0) throw new RangeError(`windowMs must be ≥ 0, got ${windowMs}`);
    this.#commit = options.commit;
    this.#windowMs = windowMs;
  }

  /** Queues `op` for the next batch; resolves its own outcome, or rejects when the batch's commit threw. */
  submit(op: Op): Promise<Outcome> {
    return new Promise<Outcome>((resolve, reject) => {
      if (this.#queue.length === 0) this.#firstAt = performance.now();
      this.#queue.push({ op, resolve, reject });
      // While a commit runs, the batch is scheduled when it ends.
      if (!this.#running && this.#timer === undefined) this.#schedule();
    });
  }

  /** Ops queued and not yet handed to `commit`. */
  get pending(): number {
    return this.#queue.length;
  }

  /** Whether a commit is running. */
  get busy(): boolean {
    return this.#running;
  }

  /** Resolves once nothing is queued and no commit runs. */
  idle(): Promise<void> {
    if (!this.#running && this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  // Flushes after a turn of the event loop that brought no op, or once the first queued op waited 4 windows.
  // The first check runs in the current turn; each later one after a whole turn's poll for I/O.
  #schedule(): void {
    let seen = -1;
    const check = () => {
      this.#timer = undefined;
      if (this.#queue.length > seen && performance.now() - this.#firstAt < 4 * this.#windowMs) {
        seen = this.#queue.length;
        this.#timer = setImmediate(check);
      } else void this.#flush();
    };
    this.#timer = setImmediate(check);
  }

  // Commits everything queued, settles each waiter, then starts the next batch or reports idleness.
  async #flush(): Promise<void> {
    const batch = this.#queue;
    this.#queue = [];
    this.#running = true;
    try {
      settle(batch, await this.#run(batch.map((w) => w.op)));
    } catch (error) {
      for (const w of batch) w.reject(error);
    } finally {
      this.#running = false;
    }
    if (this.#queue.length > 0) this.#schedule();
    else for (const done of this.#idle.splice(0)) done();
  }

  // The commit, guarded: a synchronous throw or a wrong number of outcomes rejects the whole batch.
  async #run(ops: readonly Op[]): Promise<readonly Outcome[]> {
    const outcomes = await this.#commit(ops);
    if (outcomes.length !== ops.length) {
      throw new Error(`commit resolved ${outcomes.length} outcomes for a batch of ${ops.length} ops`);
    }
    return outcomes;
  }
}

function settle<Op, Outcome>(batch: readonly Waiter<Op, Outcome>[], outcomes: readonly Outcome[]): void {
  batch.forEach((w, i) => w.resolve(outcomes[i]!));
}
