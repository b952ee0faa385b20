/**
 * The agent's core: the desired state and the one {@link Portwall} handle that programs it (docs/agent.md).
 *
 * The desired state is the last whole state (the state file, or `PUT /v1/state`) with the API's edits on top;
 * a reload of the file replaces it. A coalesced batch of API changes becomes one {@link Portwall.batch}
 * (one kernel commit); a whole state is its own `apply`. Floating IPs are edits like ports and groups
 * (validated against the ports and each other, programmed as NAT map elements).
 */
import type { Logger } from 'pino';

import { PortwallError } from '../errors.js';
import type { Problem } from '../model/problems.js';
import type { ApplyResult, Edit, Portwall } from '../apply/portwall.js';
import type { Explanation } from '../explain.js';
import type { LiveExplanation } from '../trace.js';
import { objectUnknownKeys, unknownKeys } from '../model/unknown-keys.js';
import type { AgentBackend, AgentOp, OpOutcome } from './backend.js';
import type { AgentMetrics, ApplyKind } from './metrics.js';

/** A state document as the agent keeps it: collections by id, in insertion order. */
interface Desired {
  /** Everything but the collections below, as last given (networks, and any other top-level fields). */
  rest: Record<string, unknown>;
  ports: Map<string, unknown>;
  groups: Map<string, unknown>;
  floatingips: Map<string, unknown>;
}

/** The agent's {@link AgentBackend}: the API's batches, the state file, drift repairs — one handle. */
export class AgentCore implements AgentBackend {
  #desired: Desired | undefined;
  /** When the desired state last came from a whole document, and from where. */
  #source = 'none';

  constructor(
    readonly handle: Portwall,
    readonly metrics: AgentMetrics,
    readonly logger: Logger,
  ) {}

  /** Whether a whole state has been applied (the API's edits need one). */
  get ready(): boolean {
    return this.#desired !== undefined;
  }

  /**
   * Applies a whole state document (the state file, `PUT /v1/state`); throws InvalidStateError when invalid.
   * `model`: the document already validated (the state file's loader names line and column).
   */
  async applyState(doc: unknown, source: string, model: unknown = doc, viaApi = false): Promise<ApplyResult> {
    const t = performance.now();
    const result = await this.handle.apply(model);
    this.#desired = toDesired(doc as Record<string, unknown>);
    this.#source = source;
    this.#record('state', 1, result, t, viaApi);
    return result;
  }

  /**
   * Lists the kernel and puts the desired state back if it differs (drift, or the periodic check). The
   * periodic check lists only when the generation moved since the handle's last commit: an unchanged
   * generation means nobody changed anything.
   */
  async repair(cause: string): Promise<ApplyResult | undefined> {
    if (!this.#desired) return undefined;
    if (cause === 'periodic' && (await this.handle.current())) return undefined;
    const t = performance.now();
    const result = await this.handle.resync();
    this.#record('repair', 0, result, t, false);
    if (result.changed) this.metrics.countDriftRepair(cause);
    return result;
  }

  async commit(ops: readonly AgentOp[]): Promise<OpOutcome[]> {
    const out: OpOutcome[] = new Array(ops.length);
    // Runs of edits become one batch each; a whole state is its own apply, in order.
    let run: number[] = [];
    const flush = async () => {
      if (run.length) await this.#commitEdits(ops, run, out);
      run = [];
    };
    for (const [i, op] of ops.entries()) {
      if (op.kind !== 'state') {
        run.push(i);
        continue;
      }
      await flush();
      out[i] = await outcomeOf(() => this.applyState(op.state, 'api', op.state, true));
    }
    await flush();
    // Applied or refused, the caller hears which of its keys were ignored.
    ops.forEach((op, i) => {
      const warnings = bodyWarnings(op);
      if (warnings.length) out[i]!.warnings = warnings;
    });
    return out;
  }

  async status(): Promise<unknown> {
    const d = this.#desired;
    const s = await this.handle.summary();
    return {
      netns: this.handle.netns,
      source: this.#source,
      genid: s.genid,
      desired: d ? { ports: d.ports.size, security_groups: d.groups.size, floatingips: d.floatingips.size } : null,
      programmed: { tables: s.tables, ...s.counts, counted: s.listed ? 'listing' : 'memory' },
      unusedProfiles: this.handle.unusedProfiles,
    };
  }

  /** The desired state as a document (what a restart with `--state` of it would program). */
  document(): Record<string, unknown> | undefined {
    const d = this.#desired;
    if (!d) return undefined;
    const doc: Record<string, unknown> = { ...d.rest, security_groups: [...d.groups.values()], ports: [...d.ports.values()] };
    if (d.floatingips.size) doc.floatingips = [...d.floatingips.values()];
    return doc;
  }

  async #commitEdits(ops: readonly AgentOp[], idx: readonly number[], out: OpOutcome[]): Promise<void> {
    const d = this.#desired;
    if (!d) {
      const err = new PortwallError('ERR_TRANSACTION_STATE', 'no state yet: PUT /v1/state (or start the agent with --state FILE) first');
      for (const i of idx) out[i] = { ok: false, error: err };
      return;
    }
    const edits: Edit[] = [];
    const slots: number[] = [];
    for (const i of idx) {
      const op = ops[i]!;
      if (op.kind === 'state') continue; // never in a run of edits
      edits.push(editOf(op));
      slots.push(i);
    }
    if (edits.length === 0) return;
    const t = performance.now();
    let result;
    try {
      result = await this.handle.batch(edits);
    } catch (error) {
      for (const i of slots) out[i] = { ok: false, error };
      return;
    }
    this.#record(kindOf(ops[slots[0]!]!), edits.length, result, t, true);
    const { genid, changed, timings, elements } = result;
    slots.forEach((i, k) => {
      const refused = result.refused[k];
      if (refused) {
        out[i] = { ok: false, error: refused };
        return;
      }
      remember(d, ops[i]!);
      out[i] = { ok: true, genid, changed, timings: rounded(timings), elements };
    });
  }

  /**
   * GET /v1/explain, from the handle's programmed state; with `liveMs`, the live trace too (one at a time: the
   * trace tables are the namespace's, so a second live request while one runs is refused, 409).
   */
  explain(query: { port: string; packet: string; direction?: 'ingress' | 'egress'; liveMs?: number }): Explanation | Promise<LiveExplanation> {
    if (query.liveMs === undefined) return this.handle.explain(query.port, query.packet, query.direction);
    if (this.#tracing) throw new PortwallError('ERR_CONFLICT', 'a live trace is already running in this namespace; try again when it has ended');
    this.#tracing = true;
    const done = (): void => {
      this.#tracing = false;
    };
    try {
      const p = this.handle.explainLive(query.port, query.packet, { timeoutMs: query.liveMs, ...(query.direction ? { direction: query.direction } : {}) });
      p.then(done, done);
      return p;
    } catch (e) {
      done();
      throw e;
    }
  }
  #tracing = false;

  /**
   * Metrics and the log line of one commit. The API layer times the requests and batches it hands over
   * (`viaApi`); the core counts what only it sees: elements, conntrack entries, the generation, and the
   * latency of changes that came from the state file or a repair.
   */
  #record(kind: ApplyKind, ops: number, r: ApplyResult, started: number, viaApi: boolean): void {
    if (!viaApi) this.metrics.observeApply(kind, (performance.now() - started) / 1000);
    this.metrics.countElements(r.elements);
    this.metrics.countConntrackRemoved(r.cleanup.deleted);
    this.metrics.countConflicts(r.conflicts);
    if (r.genid !== undefined) this.metrics.setGeneration(r.genid);
    // The line is built only when it will be written (the default level is info; the benchmark's agents run at warn).
    if ((r.changed || kind === 'state') && this.logger.isLevelEnabled('info')) {
      const line = { event: kind === 'repair' ? 'repair' : 'commit', kind, ops, genid: r.genid, adopted: r.adopted, elements: r.elements, conntrackDeleted: r.cleanup.deleted, timings: rounded(r.timings), ...(r.conflicts ? { conflicts: r.conflicts } : {}) };
      this.logger.info(line, kind === 'repair' ? 'repaired drift' : 'committed');
    }
  }
}

function toDesired(doc: Record<string, unknown>): Desired {
  const { ports, security_groups: groups, floatingips, ...rest } = doc;
  const byId = (xs: unknown) => new Map((Array.isArray(xs) ? xs : []).map((x) => [String((x as { id?: unknown }).id), x] as const));
  return { rest, ports: byId(ports), groups: byId(groups), floatingips: byId(floatingips) };
}

/** The keys of an op's body the schema does not know, with the paths its validation problems have. */
function bodyWarnings(op: AgentOp): Problem[] {
  if (op.kind === 'state') return unknownKeys(op.state);
  if (op.body === undefined) return [];
  return objectUnknownKeys(op.kind === 'port' ? 'ports' : op.kind === 'group' ? 'security_groups' : 'floatingips', op.body);
}

function editOf(op: Exclude<AgentOp, { kind: 'state' }>): Edit {
  if (op.kind === 'port') return op.body === undefined ? { op: 'removePort', id: op.id } : { op: 'upsertPort', port: op.body };
  if (op.kind === 'floatingip') return op.body === undefined ? { op: 'removeFloatingIp', id: op.id } : { op: 'upsertFloatingIp', floatingIp: op.body };
  return op.body === undefined ? { op: 'removeGroup', id: op.id } : { op: 'upsertGroup', group: op.body };
}

function kindOf(op: AgentOp): ApplyKind {
  return op.kind === 'group' ? 'group' : op.kind === 'floatingip' ? 'floatingip' : 'port';
}

function remember(d: Desired, op: AgentOp): void {
  if (op.kind === 'state') return;
  const map = op.kind === 'port' ? d.ports : op.kind === 'group' ? d.groups : d.floatingips;
  if (op.body === undefined) map.delete(op.id);
  else map.set(op.id, op.body);
}

async function outcomeOf(fn: () => Promise<ApplyResult>): Promise<OpOutcome> {
  try {
    const { genid, changed, timings, elements } = await fn();
    return { ok: true, genid, changed, timings: rounded(timings), elements };
  } catch (error) {
    return { ok: false, error };
  }
}

/** Milliseconds to the microsecond, for answers and log lines. */
function rounded(t: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k in t) out[k] = Math.round(t[k]! * 1000) / 1000;
  return out;
}
