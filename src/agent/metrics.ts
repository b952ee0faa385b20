/**
 * The agent's Prometheus metrics, on a registry of their own (never prom-client's global one, so a process
 * that embeds portwall keeps its metrics apart). Every metric is documented in docs/agent.md ("Metrics").
 * Label values come from small fixed sets — route templates, never raw paths — so cardinality stays bounded.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

import type { CounterReport } from '../apply/counters.js';

/** What an apply was for: one op kind of the API, a whole state, or the core's own drift repair. */
export type ApplyKind = 'port' | 'group' | 'floatingip' | 'state' | 'repair';

/** Every {@link ApplyKind}, in the order the metrics pre-create their series. */
export const APPLY_KINDS: readonly ApplyKind[] = ['port', 'group', 'floatingip', 'state', 'repair'];

/** Options of {@link AgentMetrics}. */
export interface AgentMetricsOptions {
  /** Also register prom-client's default process metrics (CPU, memory, event loop, GC); default true. */
  processMetrics?: boolean;
}

// Seconds: a one-port change takes about a millisecond, a full sync of a big host seconds.
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const BATCH_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];

/** The agent's metrics and the methods that record them. */
export class AgentMetrics {
  /** The registry every metric below lives on. */
  readonly registry = new Registry();
  readonly #apply: Histogram<'op'>;
  readonly #commit: Histogram;
  readonly #batchOps: Histogram;
  readonly #elements: Counter<'change'>;
  readonly #repairs: Counter<'cause'>;
  readonly #conflicts: Counter;
  readonly #conntrackRemoved: Counter;
  readonly #requests: Counter<'route' | 'status'>;
  readonly #errors: Counter<'code'>;
  readonly #generation: Gauge;

  constructor(options: AgentMetricsOptions = {}) {
    const registers = [this.registry];
    this.#apply = new Histogram({
      name: 'portwall_apply_duration_seconds',
      help: 'Time from a change being submitted until it was applied, by what was applied',
      labelNames: ['op'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.#commit = new Histogram({
      name: 'portwall_commit_duration_seconds',
      help: 'Wall time of one committed batch of coalesced changes',
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.#batchOps = new Histogram({
      name: 'portwall_batch_ops',
      help: 'Changes per committed batch (requests coalesced into one commit)',
      buckets: BATCH_BUCKETS,
      registers,
    });
    this.#elements = new Counter({
      name: 'portwall_elements_total',
      help: 'Set elements added to or removed from the kernel by applied changes',
      labelNames: ['change'],
      registers,
    });
    this.#repairs = new Counter({
      name: 'portwall_drift_repairs_total',
      help: 'Repairs of kernel state that drifted from the desired state, by cause',
      labelNames: ['cause'],
      registers,
    });
    this.#conflicts = new Counter({
      name: 'portwall_commit_conflicts_total',
      help: 'Batches the kernel refused because another writer had committed first (each recomputed and sent again)',
      registers,
    });
    this.#conntrackRemoved = new Counter({
      name: 'portwall_conntrack_removed_total',
      help: 'Conntrack entries deleted because the policy no longer allows them',
      registers,
    });
    this.#requests = new Counter({
      name: 'portwall_api_requests_total',
      help: 'API requests answered, by route template and HTTP status',
      labelNames: ['route', 'status'],
      registers,
    });
    this.#errors = new Counter({
      name: 'portwall_errors_total',
      help: 'Errors answered or met by the agent, by error code',
      labelNames: ['code'],
      registers,
    });
    this.#generation = new Gauge({
      name: 'portwall_generation',
      help: 'The nftables ruleset generation after the agent\'s latest commit',
      registers,
    });
    this.#createKnownSeries();
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /** The Content-Type of {@link AgentMetrics.text} (Prometheus text exposition format). */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** The current value of every metric, in Prometheus text format. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** One change applied: how long it took from submission to outcome. */
  observeApply(op: ApplyKind, seconds: number): void {
    this.#apply.observe({ op }, seconds);
  }

  /** One batch committed: its wall time and how many ops it carried. */
  observeCommit(seconds: number, ops: number): void {
    this.#commit.observe(seconds);
    this.#batchOps.observe(ops);
  }

  /** Set elements an applied change added and removed. */
  countElements(elements: { added: number; removed: number }): void {
    if (elements.added > 0) this.#elements.inc({ change: 'added' }, elements.added);
    if (elements.removed > 0) this.#elements.inc({ change: 'removed' }, elements.removed);
  }

  /** One drift repair; `cause` should come from a small fixed set (e.g. `flushed`, `foreign-change`). */
  countDriftRepair(cause: string): void {
    this.#repairs.inc({ cause });
  }

  /** Batches of one change refused because another writer committed first (ApplyResult.conflicts). */
  countConflicts(batches: number): void {
    if (batches > 0) this.#conflicts.inc(batches);
  }

  /** Conntrack entries deleted by a cleanup. */
  countConntrackRemoved(entries: number): void {
    if (entries > 0) this.#conntrackRemoved.inc(entries);
  }

  /** One API request answered; `route` is the route template (e.g. `/v1/ports/{id}`), never the raw path. */
  countRequest(route: string, status: number | string): void {
    this.#requests.inc({ route, status: String(status) });
  }

  /** One error, by its code (e.g. `ERR_INVALID_STATE`, `ERR_CONFLICT`). */
  countError(code: string): void {
    this.#errors.inc({ code });
  }

  /** The ruleset generation after a commit. */
  setGeneration(genid: number): void {
    this.#generation.set(genid);
  }

  /**
   * Exports the kernel's hit counters, read by `read` when scraped (at most once per `maxAgeMs`: a read lists
   * portwall's tables): packets dropped per base-policy step (label `step`: the drop rule's comment, a fixed
   * set of a few dozen) and packets admitted per security group (label `group`: one series per group).
   */
  watchCounters(read: () => Promise<CounterReport>, maxAgeMs = 10_000): void {
    let cached: { at: number; report: Promise<CounterReport> } | undefined;
    const report = (): Promise<CounterReport> => {
      if (!cached || performance.now() - cached.at > maxAgeMs) cached = { at: performance.now(), report: read() };
      return cached.report;
    };
    // One gauge per label: its series are the sums `sums` makes of the latest report, replaced at each scrape.
    const summed = (name: string, help: string, label: string, sums: (r: CounterReport, add: (key: string, n: number) => void) => void): void => {
      new Gauge({
        name, help, labelNames: [label], registers: [this.registry],
        async collect() {
          const r = await report().catch(() => undefined);
          if (!r) return;
          this.reset();
          const by = new Map<string, number>();
          sums(r, (key, n) => by.set(key, (by.get(key) ?? 0) + n));
          for (const [key, n] of by) this.set({ [label]: key }, n);
        },
      });
    };
    summed('portwall_policy_dropped_packets', "Packets dropped per base-policy step (the kernel's rule counters, summed over chains)", 'step',
      (r, add) => r.steps.forEach((s) => add(s.step || 'unnamed', s.packets)));
    summed('portwall_group_rule_hits', "Flows (and stateless packets) admitted per security group: its rules' element counters, summed", 'group',
      (r, add) => r.rules.forEach((x) => x.groupId !== undefined && add(x.groupId, x.packets)));
  }

  // Series with known label values exist (at zero) from the start, so rates work before the first event.
  #createKnownSeries(): void {
    for (const op of APPLY_KINDS) this.#apply.zero({ op });
    this.#elements.inc({ change: 'added' }, 0);
    this.#elements.inc({ change: 'removed' }, 0);
  }
}
