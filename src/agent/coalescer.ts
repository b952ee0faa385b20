/**
 * Request coalescing: changes that arrive close together are committed as one batch, one batch at a time.
 *
 * The first op submitted to an idle coalescer opens a window of `windowMs` (0, the default: until the event
 * loop has handled the I/O already received, so requests that arrived together are one batch and a lone
 * request waits for nothing); every op submitted before it closes joins the same batch. Ops submitted while a batch is being committed wait and form the next batch,
 * which starts as soon as the running one settles (they have waited already). Commits never overlap. Each
 * submitter gets its own outcome — the one at its op's index in what `commit` resolved — or, when the commit
 * itself throws, that error.
 */

/** Commits a batch; resolves one outcome per op, in order. */
export type CommitBatch<Op, Outcome> = (ops: readonly Op[]) => Promise<readonly Outcome[]>;

/** Options of a {@link Coalescer}. */
export interface CoalescerOptions<Op, Outcome> {
  /** Commits one batch. Never called again before the previous call has settled. */
  commit: CommitBatch<Op, Outcome>;
  /** How long the first op of a batch waits for others (milliseconds; default 0: the current I/O only). */
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
  #running = false;
  #idle: (() => void)[] = [];

  constructor(options: CoalescerOptions<Op, Outcome>) {
    const windowMs = options.windowMs ?? 0;
    if (!Number.isFinite(windowMs) || windowMs < 0) throw new RangeError(`windowMs must be ≥ 0, got ${windowMs}`);
    this.#commit = options.commit;
    this.#windowMs = windowMs;
  }

  /** Queues `op` for the next batch; resolves its own outcome, or rejects when the batch's commit threw. */
  submit(op: Op): Promise<Outcome> {
    return new Promise<Outcome>((resolve, reject) => {
      this.#queue.push({ op, resolve, reject });
      if (!this.#running && this.#timer === undefined) {
        const go = () => {
          this.#timer = undefined;
          void this.#flush();
        };
        this.#timer = this.#windowMs === 0 ? setImmediate(go) : setTimeout(go, this.#windowMs);
      }
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
    if (this.#queue.length > 0) void this.#flush();
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
