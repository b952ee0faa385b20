/**
 * The library handle: validate → compile → layout → list → diff → one atomic commit → conntrack cleanup.
 *
 * ```ts
 * const pw = Portwall.open({ netns: 'compute1' });
 * const r = await pw.apply(JSON.parse(readFileSync('state.json', 'utf8')));
 * // r.changed, r.operations, r.cleanup.deleted; a second apply of the same state changes nothing.
 * ```
 *
 * The kernel is the only state: every apply lists portwall's tables and diffs against them, so a restart, a
 * second process or an operator's edit is adopted (or repaired) by the next apply. Applies on one handle run
 * one at a time.
 *
 * Conntrack cleanup runs right after the commit (before ipsets are published), and is never skipped for good:
 * the handle remembers the ruleset generation its last successful cleanup left behind. An apply that starts
 * from any other generation — the handle's first apply (a new process, or a restart after a crash between a
 * commit and its cleanup), an earlier cleanup that threw, another process's commit — judges every port's
 * entries (a full pass), even when its own nft diff is empty. A cleanup that threw also keeps its batch
 * (listing and removed elements) on the handle, so the retry still finds the flows of ports that batch
 * removed. A process that died between a commit and its cleanup cannot pass that on: the next process's full
 * pass judges the ports still present, but the flows of ports removed by that lost batch (their addresses
 * are no longer in the kernel) are left to expire.
 */
import { ConntrackClient } from '../conntrack.js';
import { IpsetClient } from '../ipset.js';
import { layout } from '../compile/layout.js';
import { compilePolicy } from '../compile/policy.js';
import type { PolicyIR } from '../compile/ir.js';
import { BRIDGE } from '../compile/names.js';
import { validateState } from '../model/validate.js';
import { DEFAULT_CONFIG, type Model, type PortwallConfig } from '../model/types.js';
import { Nft } from '../nft/client.js';
import type { NftBinding } from '../native.js';
import type { Family, NftObject, Operation } from '../nft/types.js';
import { affectedBy, cleanup, type CleanupResult, type CleanupScope, type ConntrackLike } from './cleanup.js';
import { diff, type Diff } from './diff.js';
import { publishIpsets, type IpsetLike, type PublishResult } from './ipsets.js';
import { summarize } from './summary.js';

/** Options of {@link Portwall.open}. */
export interface PortwallOptions {
  /** Network namespace (a name under /run/netns or a path); default: the caller's. */
  netns?: string;
  /** Overrides of {@link DEFAULT_CONFIG} (table names, mark mask, zone range). */
  config?: Partial<PortwallConfig>;
  /** The nftables binding (tests inject `FakeNft`); default: the native addon. */
  binding?: NftBinding;
  /** Conntrack client for cleanup; `null` turns cleanup off (e.g. with a fake nftables binding). */
  conntrack?: ConntrackLike | null;
  /** ipset client used when `config.publishIpsets` is set; default: a client in the same namespace. */
  ipsets?: IpsetLike;
}

/** Options of {@link Portwall.apply}. */
export interface ApplyOptions {
  /** Delete the conntrack entries the new policy refuses (default true). */
  cleanup?: boolean;
}

/** What {@link Portwall.apply} did. */
export interface ApplyResult {
  /** Whether a batch was committed (false: the kernel already matched, nothing was sent). */
  changed: boolean;
  /** Operations in the committed batch (an element operation carries many elements). */
  operations: number;
  elements: { added: number; removed: number };
  /** The ruleset generation after the commit. */
  genid?: number;
  cleanup: CleanupResult;
  /** With `config.publishIpsets`: the remote-group ipsets published or removed. */
  ipsets?: PublishResult;
  /** One line per group of operations, e.g. `delete element inet portwall in4_ports_dev (1)`. */
  plan: string;
  /** Milliseconds per stage. */
  timings: { compile: number; list: number; diff: number; commit: number; cleanup: number };
}

/** What {@link Portwall.plan} would do. */
export interface PlanResult {
  operations: Operation[];
  /** The batch as `nft -f` text. */
  text: string;
  /** One line per group of operations. */
  summary: string;
  ir: PolicyIR;
}

/** What {@link Portwall.status} reports. */
export interface StatusResult {
  tables: { family: Family; name: string }[];
  objects: NftObject[];
  counts: { chains: number; rules: number; sets: number; elements: number };
  genid: number;
}

const now = (): number => performance.now();
// Failed batches kept for a retry (each holds a listing of the tables).
const MAX_PENDING = 16;

export class Portwall {
  readonly config: PortwallConfig;
  readonly netns: string | null;
  readonly #nft: Nft;
  readonly #ct: ConntrackLike | null;
  readonly #ipsets: IpsetLike | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  /** The ruleset generation the last successful cleanup left behind (undefined: none known). */
  #cleanAt: number | undefined;
  /** Batches whose cleanup threw: retried by the next apply. */
  #pending: CleanupScope[] = [];

  private constructor(options: PortwallOptions) {
    this.config = { ...DEFAULT_CONFIG, ...options.config, tables: { ...DEFAULT_CONFIG.tables, ...options.config?.tables } };
    this.netns = options.netns ?? null;
    this.#nft = new Nft({ netns: this.netns, ...(options.binding ? { binding: options.binding } : {}) });
    this.#ct = options.conntrack === undefined ? new ConntrackClient(options.netns ? { netns: options.netns } : {}) : options.conntrack;
    if (this.config.publishIpsets) this.#ipsets = options.ipsets ?? new IpsetClient(options.netns ? { netns: options.netns } : {});
  }

  /** A handle on portwall's tables in one namespace. Opening touches nothing. */
  static open(options: PortwallOptions = {}): Portwall {
    return new Portwall(options);
  }

  /** Validates a state document (or passes a Model through). Throws ERR_INVALID_STATE naming every bad field. */
  model(state: unknown): Model {
    return isModel(state) ? state : validateState(state, this.config);
  }

  /**
   * Makes the kernel match `state` in one atomic batch, then deletes the conntrack entries the new policy no
   * longer admits. An invalid state throws before anything is sent. If another commit lands between the listing
   * and this commit, the diff is computed once more.
   */
  apply(state: unknown, options: ApplyOptions = {}): Promise<ApplyResult> {
    return this.#serial(() => this.#apply(state, options.cleanup ?? true));
  }

  /**
   * Adds or replaces one port (Neutron's port object, as in the state file's `ports`). Validated against the
   * handle's current state (network, groups, unique device/MAC/IPs); only that port's elements change.
   */
  upsertPort(port: unknown, options: ApplyOptions = {}): Promise<ApplyResult> {
    void port; void options;
    return Promise.reject(new Error('upsertPort: not implemented yet'));
  }

  /** Removes one port by id (its elements, its remote-group memberships, its flows). */
  removePort(id: string, options: ApplyOptions = {}): Promise<ApplyResult> {
    void id; void options;
    return Promise.reject(new Error('removePort: not implemented yet'));
  }

  /** Adds or replaces one security group with its `security_group_rules` (Neutron's object). */
  upsertGroup(group: unknown, options: ApplyOptions = {}): Promise<ApplyResult> {
    void group; void options;
    return Promise.reject(new Error('upsertGroup: not implemented yet'));
  }

  /** Removes one security group; refused while a port or another group's rule refers to it. */
  removeGroup(id: string, options: ApplyOptions = {}): Promise<ApplyResult> {
    void id; void options;
    return Promise.reject(new Error('removeGroup: not implemented yet'));
  }

  /** Waits for pending operations. The handle holds no kernel resources between calls. */
  async close(): Promise<void> {
    await this.#queue;
  }

  /** The batch `apply` would commit, without committing it. */
  plan(state: unknown): Promise<PlanResult> {
    return this.#serial(async () => {
      const model = this.model(state);
      const { d, ir } = await this.#compute(model);
      const tx = this.#nft.transaction();
      for (const op of d.operations) tx[op.verb](op.object as never);
      if (tx.error) throw tx.error;
      return { operations: [...tx.operations], text: tx.toString(), summary: summarize(tx.operations), ir };
    });
  }

  /** What portwall's tables hold now. */
  async status(): Promise<StatusResult> {
    const { objects, genid } = await this.#list();
    const counts = { chains: 0, rules: 0, sets: 0, elements: 0 };
    for (const o of objects) {
      if (o.kind === 'chain') counts.chains++;
      else if (o.kind === 'rule') counts.rules++;
      else if (o.kind === 'set') counts.sets++;
      else if (o.kind === 'elements') counts.elements += o.elements.length;
    }
    const tables = objects.filter((o) => o.kind === 'table').map((o) => ({ family: o.family, name: (o as { name: string }).name }));
    return { tables, objects, counts, genid };
  }

  async #apply(state: unknown, withCleanup: boolean): Promise<ApplyResult> {
    const model = this.model(state);
    for (let attempt = 0; ; attempt++) {
      const { d, ir, current, genid, timings } = await this.#compute(model);
      const removedCount = d.removed.reduce((n, r) => n + r.elements.length, 0);
      if (d.operations.length === 0) {
        let t = now();
        // Nothing to commit; a cleanup still runs unless the last one left exactly this generation behind.
        const cleaned = await this.#cleanup(ir, { old: current, removed: [] }, genid, genid, withCleanup);
        const cleanupMs = now() - t;
        const ipsets = this.#ipsets ? await publishIpsets(this.#ipsets, ir) : undefined;
        const changed = (ipsets?.published.length ?? 0) + (ipsets?.destroyed.length ?? 0) > 0;
        return { changed, operations: 0, elements: { added: 0, removed: 0 }, genid, cleanup: cleaned, ...(ipsets ? { ipsets } : {}), plan: '', timings: { ...timings, commit: 0, cleanup: cleanupMs } };
      }
      const tx = this.#nft.transaction();
      for (const op of d.operations) tx[op.verb](op.object as never);
      if (tx.error) throw tx.error;
      // Someone else committed since our listing: our diff may be stale, so diff again (once).
      if (attempt === 0 && (await this.#nft.genid()) !== genid) continue;
      let t = now();
      const result = await tx.commit();
      const commit = now() - t;
      t = now();
      // Cleanup first: the flows that lost permission stop before anything else can fail. If it throws, the
      // ipsets are still published, then its error is thrown (the next apply retries the cleanup).
      const outcome = await this.#cleanup(ir, { old: current, removed: d.removed }, genid, result.genid, withCleanup)
        .then((r) => ({ r }), (error: unknown) => ({ error }));
      const cleanupMs = now() - t;
      // Published after the commit: members only ever lag the nftables policy by this one step.
      const publishing = this.#ipsets ? publishIpsets(this.#ipsets, ir) : undefined;
      const ipsets = 'error' in outcome ? await publishing?.catch(() => undefined) : await publishing;
      if ('error' in outcome) throw outcome.error;
      const cleaned = outcome.r;
      return {
        changed: true,
        operations: tx.size,
        elements: { added: d.elementsAdded, removed: removedCount },
        genid: result.genid,
        cleanup: cleaned,
        ...(ipsets ? { ipsets } : {}),
        plan: summarize(tx.operations),
        timings: { ...timings, commit, cleanup: cleanupMs },
      };
    }
  }

  /**
   * The cleanup after a batch (`scope`) took the kernel from generation `from` to `to` (equal when nothing was
   * committed). Targeted when the last cleanup left `from` behind, a full pass otherwise (see the module
   * comment). A cleanup that throws leaves the handle dirty and its batch pending; the error propagates.
   */
  async #cleanup(ir: PolicyIR, scope: CleanupScope, from: number, to: number, withCleanup: boolean): Promise<CleanupResult> {
    const none = { deleted: 0, examined: 0, ports: 0 };
    const clean = this.#cleanAt === from && this.#pending.length === 0;
    if (!this.#ct || (clean && from === to)) return none;
    if (!withCleanup) {
      // Skipped on request: the batch's flows are the caller's choice; an earlier debt stays.
      if (clean) this.#cleanAt = to;
      return none;
    }
    const scopes = [...this.#pending, scope];
    this.#cleanAt = undefined;
    // Kept for the retry (a full pass): batches with removals, the latest ones after a long run of failures.
    this.#pending = scopes.filter((s) => s.removed.length > 0).slice(-MAX_PENDING);
    const cleaned = await cleanup(this.#ct, ir, affectedBy(ir, scopes, !clean), scopes.flatMap((s) => s.old));
    this.#pending = [];
    this.#cleanAt = to;
    return cleaned;
  }

  async #compute(model: Model): Promise<{ d: Diff; ir: PolicyIR; current: NftObject[]; genid: number; timings: { compile: number; list: number; diff: number } }> {
    let t = now();
    const { objects: current, genid } = await this.#list();
    const list = now() - t;
    t = now();
    const ir = compilePolicy(model, this.config, { tags: tagHints(current, this.config) });
    const desired = layout(ir);
    const compile = now() - t;
    t = now();
    const d = diff(desired, current);
    return { d, ir, current, genid, timings: { compile, list, diff: now() - t } };
  }

  // Both tables in one consistent generation (listed again if a commit landed between the two dumps).
  async #list(): Promise<{ objects: NftObject[]; genid: number }> {
    const { inet, bridge } = this.config.tables;
    for (let attempt = 0; ; attempt++) {
      if (inet === bridge) {
        const l = await this.#nft.list({ table: inet });
        return { objects: l.objects.filter((o) => o.family === 'inet' || o.family === 'bridge'), genid: l.genid };
      }
      const a = await this.#nft.list({ family: 'inet', table: inet });
      const b = await this.#nft.list({ family: 'bridge', table: bridge });
      if (a.genid === b.genid || attempt > 2) return { objects: [...a.objects, ...b.objects], genid: b.genid };
    }
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }
}

/** Tags the kernel's `port_tag` map already gives bridged ports (element comment = port id). */
function tagHints(current: readonly NftObject[], config: PortwallConfig): Map<string, number> {
  const hints = new Map<string, number>();
  for (const o of current) {
    if (o.kind !== 'elements' || o.family !== 'bridge' || o.table !== config.tables.bridge || o.set !== BRIDGE.portTag) continue;
    for (const e of o.elements) if (e.comment !== undefined && typeof e.data === 'number') hints.set(e.comment, e.data);
  }
  return hints;
}

function isModel(x: unknown): x is Model {
  const m = x as Partial<Model> | null;
  return typeof m === 'object' && m !== null && m.networks instanceof Map && m.ports instanceof Map && m.groups instanceof Map;
}

