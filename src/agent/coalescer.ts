/**
 * Request coalescing: changes that arrive close together are committed as one batch, one batch at a time.
 *
 * An op reaching an idle coalescer is committed as soon as one whole turn of the event loop has brought no
 * further op (at most `4 × windowMs` after it), so a lone request (or a client that waits for each answer)
 * waits a few microseconds, not a window. One quiet turn, not the same turn: clients that connected while the
 * agent was busy wait in the listening socket's backlog, and Node accepts one Unix-socket connection per turn
 * (docs/agent.md, "Coalescing"), so their requests arrive one turn apart and would otherwise each be committed
 * alone. Ops arriving while a
 * batch is being committed form the next batch; if they are still coming (the last less than `windowMs`
 * ago) it waits until `windowMs` passed without a new op (at most `4 × windowMs` from its first op), then
 * takes everything queued — so a burst costs a few commits, not one per op. Commits never overlap. Each
 * submitter gets its own outcome — the one at its op's index in what `commit` resolved — or, when the commit
 * itself throws, that error.
 */

/** Commits a batch; resolves one outcome per op, in order. */
export type CommitBatch<Op, Outcome> = (ops: readonly Op[]) => Promise<readonly Outcome[]>;

/** Options of a {@link Coalescer}. */
export interface CoalescerOptions<Op, Outcome> {
  /** Commits one batch. Never called again before the previous call has settled. */
  commit: CommitBatch<Op, Outcome>;
  /** While ops arrive during a commit less than this apart (ms, default 2), the next batch waits for quiet. */
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
  #timer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  /** When the latest op arrived, and when the first op still queued did. */
  #lastAt = -Infinity;
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
      const now = performance.now();
      this.#lastAt = now;
      if (this.#queue.length === 0) this.#firstAt = now;
      this.#queue.push({ op, resolve, reject });
      // Idle: this op is not part of a burst (a client that waits for each answer never waits here).
      if (!this.#running && this.#timer === undefined) this.#schedule(false);
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

  // A lone op goes after a turn of the event loop that brought no other; a burst's batch once it is quiet for
  // the window (either way, at most 4 windows after the first op).
  #schedule(burst: boolean): void {
    if (!burst) {
      // The first check runs in the turn the op arrived in; each later one after a whole turn's poll.
      let seen = -1;
      const check = () => {
        this.#timer = undefined;
        if (this.#queue.length > seen && performance.now() - this.#firstAt < 4 * this.#windowMs) {
          seen = this.#queue.length;
          this.#timer = setImmediate(check);
        } else void this.#flush();
      };
      this.#timer = setImmediate(check);
      return;
    }
    const now = performance.now();
    const wait = Math.min(this.#lastAt + this.#windowMs, this.#firstAt + 4 * this.#windowMs) - now;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      // Still arriving and not yet waited the most: wait on.
      const t = performance.now();
      if (t - this.#lastAt < this.#windowMs && t - this.#firstAt < 4 * this.#windowMs) this.#schedule(true);
      else void this.#flush();
    }, Math.max(0, wait));
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
    if (this.#queue.length > 0) this.#schedule(performance.now() - this.#lastAt < this.#windowMs);
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
