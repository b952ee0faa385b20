/**
 * The library handle: a long-lived owner of portwall's tables in one namespace (docs/dataplane.md,
 * "Incremental updates").
 *
 * ```ts
 * const pw = Portwall.open({ netns: 'compute1' });
 * await pw.apply(JSON.parse(readFileSync('state.json', 'utf8')));   // adopts what the kernel holds, once
 * await pw.upsertPort(port);                                          // O(that port): a few hash elements
 * await pw.removePort(port.id);
 * await pw.close();
 * ```
 *
 * The handle holds one netlink socket and the state it programmed in memory. It lists the kernel only to
 * adopt: on its first change, and again whenever it cannot vouch for the kernel — a batch refused because
 * another writer committed since (the generation id travels in every batch), a commit that did not move the
 * generation by exactly one, any failed commit. Otherwise a change is computed from memory alone: validate
 * the object, recompute the port or group and what depends on it, commit the element adds and deletes. The
 * state is the kernel's: a new handle, a restart or another process adopts whatever is there.
 *
 * Conntrack cleanup runs right after each commit for the ports the change touched; the first change of a
 * handle, and the first after an adoption or a cleanup that threw, judges every port (a full pass), so a
 * cleanup is never skipped for good. Changes on one handle run one at a time.
 *
 * Rule profiles that no port uses any more stay in the kernel a while (a port may want the combination back
 * soon): a timer collects a few per batch after a quiet delay ({@link PortwallOptions.profileGc}), or call
 * {@link Portwall.collectProfiles}. Removing one is cheap (hash elements and two chains).
 */
import { ConntrackClient, type ConntrackFilter } from '../conntrack.js';
import { PortwallError } from '../errors.js';
import { IpsetClient } from '../ipset.js';
import type { PolicyIR } from '../compile/ir.js';
import { InvalidStateError } from '../model/problems.js';
import { validateState } from '../model/validate.js';
import { groupInUse, validateFloatingIp, validateGroup, validatePort } from '../model/validate-one.js';
import { DEFAULT_CONFIG, type FloatingIp, type Model, type Port, type PortwallConfig } from '../model/types.js';
import { Nft } from '../nft/client.js';
import type { NftBinding } from '../native.js';
import type { Family, NftObject, Operation } from '../nft/types.js';
import { affectedPorts, cleanup, mayShrink, type CleanupResult, type ConntrackLike } from './cleanup.js';
import { ADOPT_RECORD, namespaceInstance, readRecord, recordOperations, withoutRecord, type AdoptRecord } from './adopt-record.js';
import { diff, type Diff } from './diff.js';
import { Engine, NO_PEERS, countObjects, fipMoved, hintsFrom, sameNumbering, type ChangeSet, type Hints, type PortChange } from './engine.js';
import { hostAddress } from '../compile/addr.js';
import { BRIDGE, INET, ownTables } from '../compile/names.js';
import { IpsetMirror, type IpsetLike, type PublishResult } from './ipsets.js';
import { summarize } from './summary.js';
import { explain, type Explanation } from '../explain.js';
import { explainLive, type LiveExplainOptions, type LiveExplanation } from '../trace.js';
import { readCounters, type CounterReport } from './counters.js';
import type { Direction, Packet } from '../compile/evaluate.js';

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
  /**
   * Collection of rule profiles no port uses: once the handle has been idle (no change) for `delayMs`, a batch
   * removes at most `max` of them, then the next after another idle `delayMs`, while some remain. `false`:
   * only {@link Portwall.collectProfiles} collects. Default `{ delayMs: 1000, max: 64 }`.
   */
  profileGc?: { delayMs: number; max: number } | false;
  /**
   * The adopt record (docs/dataplane.md, "Adopting from the record"): a handle that committed writes, once
   * quiet ({@link recordIdleMs}) and as it closes, the generation and a digest of what it programmed; a new
   * handle whose state compiles to that digest, with nobody having committed since, adopts without listing
   * every element. Default true.
   */
  adoptRecord?: boolean;
  /**
   * Also write the adopt record once the handle has been quiet (no commit) for this many milliseconds after
   * a commit, so that a process killed without closing (SIGKILL, a crash) still leaves a record its successor
   * can adopt from. `0`: right after each commit (one more small batch each); `false`: only as the handle
   * closes. Default 1000. A whole number up to 2^31 − 1, else `open()` throws ERR_INVALID_VALUE.
   */
  recordIdleMs?: number | false;
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
  /** One line per group of operations, e.g. `delete element inet portwall ports_dev (1)`. */
  plan: string;
  /**
   * Milliseconds per stage: validate and recompute (`compile`), adopting listing (`list`, 0 when the handle
   * trusted its memory), computing the operations (`diff`), the kernel commit, the conntrack cleanup.
   */
  timings: { compile: number; list: number; diff: number; commit: number; cleanup: number };
  /** Whether the handle listed the kernel and rebuilt its state for this change. */
  adopted: boolean;
  /**
   * How it adopted: from a full listing, or from the adopt record (set names and a few small sets
   * listed; the kernel proved to hold what the state compiles to).
   */
  adoptedFrom?: 'listing' | 'record';
  /**
   * Batches the kernel refused before this one went through, because another writer had committed since the
   * generation the batch was computed against; each time the handle listed, adopted and recomputed (at most
   * 5 times, then the change fails with ERR_CONFLICT). 0 when nobody else wrote.
   */
  conflicts: number;
}

/** One edit of {@link Portwall.batch}: the incremental operations as data. */
export type Edit =
  | { op: 'upsertPort'; port: unknown }
  | { op: 'removePort'; id: string }
  | { op: 'upsertGroup'; group: unknown }
  | { op: 'removeGroup'; id: string }
  | { op: 'upsertFloatingIp'; floatingIp: unknown }
  | { op: 'removeFloatingIp'; id: string };

/** What {@link Portwall.batch} did. */
export interface BatchResult extends ApplyResult {
  /** Per edit, in order: undefined when it was committed, else why it was left out. */
  refused: (InvalidStateError | undefined)[];
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

/** {@link Portwall.summary}: the counts of {@link StatusResult}, and whether a listing gave them. */
export interface StatusSummary extends Omit<StatusResult, 'objects'> {
  /** False: counted from the handle's memory, the kernel's generation showing nobody else committed since. */
  listed: boolean;
}

const now = (): number => performance.now();

// Changes whose cleanup threw, kept for the retry.
const MAX_PENDING = 4096;
/** Up to this many changed ports, the ones that may have lost permission are sorted out before anything is asked. */
const FEW_CHANGES = 64;
// A refused batch (another writer committed since) is recomputed against a fresh listing this many times.
const MAX_CONFLICTS = 5;
// Operations beyond which an apply's plan is summarized at once rather than on first read (see #change).
const LAZY_PLAN_MAX = 64;
const GC_DEFAULT = { delayMs: 1000, max: 64 };
const RECORD_IDLE_DEFAULT_MS = 1000;
const RECORD_TRIES = 3;
/** The longest quiet period a timer can wait (Node clamps larger delays to 1 ms). */
export const RECORD_IDLE_MAX_MS = 2 ** 31 - 1;

/** How a change is computed: from the handle's memory, or by a full rebuild. */
type Mutation =
  /** `whole`: a whole state, applied as edits on a trusted handle (the published ipsets are checked whole too). */
  | { kind: 'edit'; edit: (e: Engine) => void; whole?: boolean }
  | { kind: 'replace'; model: Model };

export class Portwall {
  readonly config: PortwallConfig;
  readonly netns: string | null;
  readonly #nft: Nft;
  readonly #ct: ConntrackLike | null;
  readonly #ipsets: IpsetMirror | undefined;
  readonly #ownIpsets: IpsetClient | undefined;
  readonly #gc: { delayMs: number; max: number } | false;
  #queue: Promise<unknown> = Promise.resolve();
  /** The state the kernel holds (as far as this handle knows), or undefined before the first apply. */
  #engine: Engine | undefined;
  /** The generation the engine's state is at; undefined: adopt (list) before the next change. */
  #genid: number | undefined;
  /** A full cleanup pass is owed (first change, after an adoption, after a cleanup that threw). */
  #cleanDebt = true;
  /** Changes whose cleanup threw: judged again by the next cleanup. */
  #pending: PortChange[] = [];
  /**
   * A change was committed without its cleanup (`cleanup: false`; a profile collection excepted, which takes
   * no permission away): flows it would have deleted may remain, so no adopt record of this handle says
   * `clean`. Kept for the handle's life: a later full pass does not judge the flows of a port that went.
   */
  #uncleaned = false;
  #gcTimer: NodeJS.Timeout | undefined;
  /** When the last change (not a collection) committed, for the collector's quiet period. */
  #lastChange = 0;
  #closed = false;
  readonly #adoptRecord: boolean;
  /** A commit since the last adopt record was written (or since opening). */
  #recordOwed = false;
  readonly #recordIdleMs: number | false;
  #recordTimer: NodeJS.Timeout | undefined;
  /** When the last batch committed (or a record's write last failed), for the record's quiet period. */
  #lastCommit = 0;
  /** Quiet-period writes of the record that failed since the last commit. */
  #recordFailures = 0;
  /** Live traces under way ({@link explainLive}): no record is written meanwhile. */
  #tracing = 0;

  private constructor(options: PortwallOptions) {
    this.config = { ...DEFAULT_CONFIG, ...options.config, tables: { ...DEFAULT_CONFIG.tables, ...options.config?.tables } };
    this.netns = options.netns ?? null;
    this.#nft = new Nft({ netns: this.netns, persistent: true, ...(options.binding ? { binding: options.binding } : {}) });
    this.#ct = options.conntrack === undefined ? new ConntrackClient({ netns: this.netns, persistent: true }) : options.conntrack;
    if (this.config.publishIpsets) {
      // The handle's own client holds its socket (released by close()); a caller's is the caller's to manage.
      this.#ipsets = new IpsetMirror(options.ipsets ?? (this.#ownIpsets = new IpsetClient({ ...(options.netns ? { netns: options.netns } : {}), persistent: true })));
    }
    this.#gc = options.profileGc === undefined ? GC_DEFAULT : options.profileGc;
    this.#adoptRecord = options.adoptRecord ?? true;
    const idle = options.recordIdleMs ?? RECORD_IDLE_DEFAULT_MS;
    if (idle !== false && !(Number.isInteger(idle) && idle >= 0 && idle <= RECORD_IDLE_MAX_MS)) {
      throw new PortwallError('ERR_INVALID_VALUE', `recordIdleMs: a whole number of milliseconds from 0 to ${RECORD_IDLE_MAX_MS}, or false (got ${String(idle)})`);
    }
    this.#recordIdleMs = idle;
  }

  /** A handle on portwall's tables in one namespace. Opening touches nothing (the socket opens on first use). */
  static open(options: PortwallOptions = {}): Portwall {
    return new Portwall(options);
  }

  /** Validates a state document (or passes a Model through). Throws ERR_INVALID_STATE naming every bad field. */
  model(state: unknown): Model {
    return isModel(state) ? state : validateState(state, this.config);
  }

  /**
   * Makes the kernel match `state` in one atomic batch, then deletes the conntrack entries the new policy no
   * longer admits. An invalid state throws before anything is sent. The first apply of a handle adopts what
   * the kernel holds; later ones change only the ports and groups that differ (a change of networks rebuilds
   * the layout in memory, still without listing).
   */
  apply(state: unknown, options: ApplyOptions = {}): Promise<ApplyResult> {
    return this.#serial(async () => {
      const model = this.model(state);
      const e = this.#engine;
      // A whole-state apply promises the kernel matches afterwards: if anyone else committed, adopt first.
      if (this.#genid !== undefined && (await this.#nft.genid()) !== this.#genid) this.#genid = undefined;
      if (!e || this.#genid === undefined || !sameNetworks(e.model, model)) return this.#change({ kind: 'replace', model }, options);
      return this.#change({ kind: 'edit', edit: (x) => editTo(x, model), whole: true }, options);
    });
  }

  /**
   * Adds or replaces one port (Neutron's port object, as in the state file's `ports`), validated against the
   * handle's state (its network and groups exist, device, MAC and fixed IPs unique). Only that port's
   * elements change (and a new rule profile's verdict elements, when its combination of groups is new).
   */
  upsertPort(port: unknown, options: ApplyOptions = {}): Promise<ApplyResult> {
    return this.#edit({ op: 'upsertPort', port }, options);
  }

  /** Removes one port by id: its elements, its remote-group memberships, its flows. */
  removePort(id: string, options: ApplyOptions = {}): Promise<ApplyResult> {
    return this.#edit({ op: 'removePort', id }, options);
  }

  /**
   * Adds or replaces one security group with its `security_group_rules` (Neutron's object). Only the group's
   * own chains and sets change, however many ports use it: a rule added is an element added; a rule taken
   * away gives the group's sets a new version (docs/dataplane.md, "Security groups and rule profiles").
   */
  upsertGroup(group: unknown, options: ApplyOptions = {}): Promise<ApplyResult> {
    return this.#edit({ op: 'upsertGroup', group }, options);
  }

  /** Removes one security group; refused (ERR_INVALID_STATE) while a port or another group's rule uses it. */
  removeGroup(id: string, options: ApplyOptions = {}): Promise<ApplyResult> {
    return this.#edit({ op: 'removeGroup', id }, options);
  }

  /**
   * Adds, moves or removes the association of one floating IP (Neutron's object, as in the state file's
   * `floatingips`), validated against the handle's ports and floating IPs. An element-only batch (the first
   * floating IP creates the NAT table); moving or disassociating it deletes the flows NATed through it.
   */
  upsertFloatingIp(floatingIp: unknown, options: ApplyOptions = {}): Promise<ApplyResult> {
    return this.#edit({ op: 'upsertFloatingIp', floatingIp }, options);
  }

  /** Removes one floating IP by id, and the flows NATed through it. */
  removeFloatingIp(id: string, options: ApplyOptions = {}): Promise<ApplyResult> {
    return this.#edit({ op: 'removeFloatingIp', id }, options);
  }

  /**
   * Several edits in one atomic batch (what an agent does with a burst of requests). Each edit is checked
   * against the state after the edits before it (a group, then a port in it); an invalid one is left out and
   * reported in `refused` at its index, the others are committed together. Anything else that goes wrong
   * (the kernel refuses the batch) fails them all and changes nothing.
   */
  batch(edits: readonly Edit[], options: ApplyOptions = {}): Promise<BatchResult> {
    return this.#serial(async () => {
      this.#state('batch');
      let refused: (InvalidStateError | undefined)[] = [];
      const result = await this.#change({
        kind: 'edit',
        edit: (x) => {
          refused = edits.map((edit) => {
            let apply: (x: Engine) => void;
            try {
              apply = this.#prepare(edit, x);
            } catch (err) {
              if (err instanceof InvalidStateError) return err;
              throw err;
            }
            apply(x);
            return undefined;
          });
        },
      }, options);
      // Added to the result, not spread into a copy: a spread would write out the plan (a getter) on every
      // batch, and V8 copies such a spread property by property.
      const out = result as BatchResult;
      out.refused = refused;
      return out;
    });
  }

  /**
   * Lists the kernel and makes it match the handle's state again, whatever the generation id says — the
   * agent's periodic safety net and its answer to drift (someone else changed portwall's tables).
   */
  resync(options: ApplyOptions = {}): Promise<ApplyResult> {
    return this.#serial(() => {
      const e = this.#state('resync');
      this.#genid = undefined;
      return this.#change({ kind: 'replace', model: e.model }, options);
    });
  }

  /**
   * Whether nobody has committed since this handle's last commit or adoption: the kernel's generation is
   * still the one the handle holds (one GETGEN round trip). False before the first change.
   */
  current(): Promise<boolean> {
    return this.#serial(async () => this.#genid !== undefined && (await this.#nft.genid()) === this.#genid);
  }

  /** One incremental operation: checked against the handle's state, then one change. */
  #edit(edit: Edit, options: ApplyOptions): Promise<ApplyResult> {
    return this.#serial(() => this.#change({ kind: 'edit', edit: this.#prepare(edit, this.#state(edit.op)) }, options));
  }

  /** Checks one edit against `e` (throws InvalidStateError naming the object and field) and returns its change. */
  #prepare(edit: Edit, e: Engine): (x: Engine) => void {
    switch (edit.op) {
      case 'upsertPort': {
        const p = validatePort(edit.port, e, this.config, edit.op);
        const lost = floatingIpsLost(e, p.id, p);
        if (lost.length) throw new InvalidStateError(lost, edit.op);
        return (x) => x.setPort(p.id, p);
      }
      case 'removePort': {
        const id = edit.id;
        if (!e.model.ports.has(id)) throw new InvalidStateError([{ path: `ports (${id})`, message: `unknown port ${JSON.stringify(id)}` }], edit.op);
        const lost = floatingIpsLost(e, id, undefined);
        if (lost.length) throw new InvalidStateError(lost, edit.op);
        return (x) => x.setPort(id, undefined);
      }
      case 'upsertGroup': {
        const g = validateGroup(edit.group, e, this.config, edit.op);
        return (x) => x.setGroup(g.id, g);
      }
      case 'removeGroup': {
        const id = edit.id;
        if (!e.model.groups.has(id)) throw new InvalidStateError([{ path: `security_groups (${id})`, message: `unknown security group ${JSON.stringify(id)}` }], edit.op);
        const used = groupInUse(id, e);
        if (used.length) throw new InvalidStateError(used, edit.op);
        return (x) => x.setGroup(id, undefined);
      }
      case 'upsertFloatingIp': {
        const f = validateFloatingIp(edit.floatingIp, e, this.config, edit.op);
        return (x) => x.setFloatingIp(f.id, f);
      }
      case 'removeFloatingIp': {
        const id = edit.id;
        if (!e.model.floatingIps?.has(id)) throw new InvalidStateError([{ path: `floatingips (${id})`, message: `unknown floating IP ${JSON.stringify(id)}` }], edit.op);
        return (x) => x.setFloatingIp(id, undefined);
      }
      default:
        throw new InvalidStateError([{ path: 'op', message: `unknown edit ${JSON.stringify((edit as { op: unknown }).op)}` }], 'batch');
    }
  }

  /**
   * Removes rule profiles that no port uses, at most `max` in this batch. Returns how many were removed. It
   * never adopts: if another writer committed since this handle's last change, it collects nothing (that
   * writer's state stands; the handle's next change adopts).
   */
  collectProfiles(max = Infinity): Promise<number> {
    return this.#serial(async () => {
      const e = this.#engine;
      if (!e || this.#genid === undefined || e.unusedProfiles === 0) return 0;
      let n = 0;
      const done = await this.#change({ kind: 'edit', edit: (x) => void (n = x.collect(max).profiles) }, { cleanup: false }, false)
        .then(() => true, (err: unknown) => {
          if (err instanceof PortwallError && err.code === 'ERR_CONFLICT') return false;
          throw err;
        });
      return done ? n : 0;
    });
  }

  /** Rule profiles that no port uses, not yet collected. */
  get unusedProfiles(): number {
    return this.#engine?.unusedProfiles ?? 0;
  }

  /** The ports of the handle's state (empty before its first apply). */
  ports(): ReadonlyMap<string, Port> {
    return this.#engine?.model.ports ?? new Map();
  }

  /** The validated state the handle programmed (undefined before its first apply). */
  programmed(): Model | undefined {
    return this.#engine?.model;
  }

  /** The floating IPs of the handle's state. */
  floatingIps(): ReadonlyMap<string, FloatingIp> {
    return this.#engine?.model.floatingIps ?? new Map();
  }

  /**
   * Which step of the programmed policy decides `packet` for one port: a security-group rule, or a base-policy
   * step (anti-spoof, DHCP, ND, a layer-2 guard, the default drop) — see {@link explain}. From memory; no
   * kernel round trip.
   */
  explain(portId: string, packet: string | Packet, direction?: Direction): Explanation {
    const ir = this.#state('explain').ir();
    return explain(ir, portId, packet, direction);
  }

  /**
   * Traces the next real packet matching `packet` through the kernel (nftables tracing: see {@link traceLive})
   * and explains it statically as well: the answer holds both, and `agrees` says whether the kernel's verdict
   * matches the static one (undefined when no packet came within `timeoutMs`, default 10 s). The packet must
   * be sent by someone else while this waits (`onArmed` says when). The handle's port gives the direction
   * (unless given) and, for a routed port's egress, the input device the trace matches.
   * @throws PortwallError ERR_INVALID_VALUE as {@link Portwall.explain}; ERR_KERNEL when the trace cannot be armed.
   */
  explainLive(portId: string, packet: string | Packet, options: LiveExplainOptions = {}): Promise<LiveExplanation> {
    const ir = this.#state('explainLive').ir();
    // The trace's two commits touch only its own tables: when each is the one commit after the generation the
    // handle trusts, the handle trusts the new one (else its next change adopts, as after any other writer).
    // The kernel then holds a generation no record names: one is owed, as after a change.
    const onCommit = (genid: number) => {
      if (this.#genid !== undefined && genid === nextGen(this.#genid)) this.#genid = genid;
      this.#owe();
    };
    // No adopt record is written while the trace's commits come and go (a record's batch between them would leave
    // the handle trusting a generation behind the kernel's); one already under way finishes first.
    this.#tracing++;
    return this.#queue
      .then(() => explainLive(ir, portId, packet, { ...options, netns: this.netns, tables: this.config.tables, onCommit }))
      .finally(() => this.#tracing--);
  }

  /** The compiled policy the handle programmed (undefined before its first apply). */
  policy(): PolicyIR | undefined {
    return this.#engine?.ir();
  }

  /**
   * Waits for pending changes, stops the profile collector, writes the adopt record if this handle committed
   * since it last wrote one (best effort: one small batch, refused if anyone else committed since) and releases the netlink sockets
   * (nftables, conntrack, and the ipset socket of a handle that publishes ipsets with its own client).
   */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#gcTimer) clearTimeout(this.#gcTimer);
    if (this.#recordTimer) clearTimeout(this.#recordTimer);
    this.#gcTimer = this.#recordTimer = undefined;
    await this.#queue;
    if (this.#recordOwed) await this.#writeRecord().catch(() => undefined);
    await this.#nft.close();
    await this.#ct?.close?.();
    await this.#ownIpsets?.close();
  }

  /** The batch `apply` would commit, without committing it (it lists the kernel and compiles in full). */
  plan(state: unknown): Promise<PlanResult> {
    return this.#serial(async () => {
      const model = this.model(state);
      const listing = await this.#list();
      const e = Engine.build(model, this.config, hintsFrom(listing.objects, this.config));
      const d = diff(e.objects(), listing.objects);
      const tx = this.#nft.transaction();
      for (const op of d.operations) tx.canonical(op.verb, op.object);
      if (tx.error) throw tx.error;
      return { operations: [...tx.operations], text: tx.toString(), summary: summarize(tx.operations), ir: e.ir() };
    });
  }

  /**
   * The kernel's hit counters: packets and bytes per security-group rule (per rule profile, so per port) and
   * drops per base-policy step. Rules are named by group too once the handle holds a state.
   */
  async counters(): Promise<CounterReport> {
    const { objects } = await this.#list();
    return readCounters(objects, this.#engine?.model);
  }

  /** What portwall's tables hold now (a listing). */
  async status(): Promise<StatusResult> {
    const { objects, genid } = await this.#list();
    return { ...countObjects(objects), objects, genid };
  }

  /**
   * How many chains, rules, sets and elements portwall's tables hold, and the generation — counted from the
   * handle's memory when nobody has committed since its last commit or adoption (one GETGEN round trip: the
   * kernel then holds exactly what the handle programmed), else from a listing as {@link status}. A listing of
   * 5000 ports costs about a second and a few hundred MB; a status check should not.
   */
  summary(): Promise<StatusSummary> {
    return this.#serial(async () => {
      const e = this.#engine;
      if (e && this.#genid !== undefined && (await this.#nft.genid()) === this.#genid) {
        return { ...e.counts(), genid: this.#genid, listed: false };
      }
      const { objects, genid } = await this.#list();
      return { ...countObjects(objects), genid, listed: true };
    });
  }

  /**
   * Writes the adopt record of the handle's state: only while it can vouch for the kernel, in a batch the
   * kernel refuses if anyone else committed since (the record then stays as it was, or absent, and no handle
   * will trust it: its generation is past).
   */
  async #writeRecord(): Promise<void> {
    const e = this.#engine;
    const base = this.#genid;
    const instance = namespaceInstance(this.netns);
    if (!this.#adoptRecord || !e || base === undefined || instance === undefined) return;
    // Only a handle that cleans up can vouch for the flows: not one without a conntrack client.
    const clean = this.#ct !== null && !this.#cleanDebt && this.#pending.length === 0 && !this.#uncleaned;
    const record = { genid: nextGen(base), instance, ports: e.model.ports.size, groups: e.model.groups.size, digest: e.digest(), clean };
    const tx = this.#nft.transaction();
    for (const op of recordOperations(record, this.config)) tx.canonical(op.verb, op.object);
    if (tx.error) throw tx.error;
    // Refused when someone committed since (a live trace's own commits included, which move the generation the
    // handle trusts): a later try may find it current again.
    const { genid } = await tx.commit({ genid: base });
    this.#recordOwed = false;
    this.#recordFailures = 0;
    // The handle still vouches when the record's commit was the only one since its last.
    this.#genid = genid === record.genid ? genid : undefined;
  }

  /** A commit since the last record: the record is owed, and written once the handle is quiet. */
  #owe(): void {
    this.#recordOwed = true;
    this.#recordFailures = 0;
    this.#lastCommit = now();
    this.#scheduleRecord();
  }

  /**
   * Writes the adopt record once the handle has been quiet for {@link PortwallOptions.recordIdleMs} after a
   * commit (a change since then starts the wait again), as close does.
   */
  #scheduleRecord(): void {
    const idleMs = this.#recordIdleMs;
    if (idleMs === false || !this.#adoptRecord || this.#closed || !this.#recordOwed || this.#recordTimer) return;
    const quiet = () => now() - this.#lastCommit >= idleMs;
    this.#recordTimer = setTimeout(() => {
      this.#recordTimer = undefined;
      // Behind any change queued meanwhile (which starts the wait again). Not while a live trace is under way:
      // its last commit owes the record again and sets the wait going. Errors here belong to no caller: the
      // record stays as it was and the wait starts again, a few times (another writer's commit fails every
      // try); after that, the next commit or close tries again.
      this.#serial(async () => {
        if (this.#tracing > 0) return;
        if (!quiet()) return this.#scheduleRecord();
        if (!this.#closed && this.#recordOwed) await this.#writeRecord();
      }).catch(() => {
        if (++this.#recordFailures >= RECORD_TRIES) return;
        this.#lastCommit = now();
        this.#scheduleRecord();
      });
    }, Math.max(0, idleMs - (now() - this.#lastCommit)));
    this.#recordTimer.unref();
  }

  /**
   * Adopts from the adopt record: a peek at the record alone (one set), then, when its generation is the
   * kernel's, its namespace this one and its counts the state's, a look at every set's name and the small
   * sets hints come from; when the state then compiles to the record's digest, the engine of that compile (the
   * kernel holds exactly it) and whether the record's writer owed no conntrack cleanup. When the digests differ,
   * the compile and the hints it was made with (`matches` false: the caller lists in full, and keeps that compile
   * if the listing numbers things alike). Undefined when the record cannot vouch before any compile.
   */
  async #adoptFromRecord(model: Model): Promise<{ engine: Engine; genid: number; listMs: number; clean: boolean; matches: boolean; hints: Hints } | undefined> {
    const mark = now();
    const instance = namespaceInstance(this.netns);
    const vouches = (r: AdoptRecord | undefined, genid: number): r is AdoptRecord =>
      r !== undefined && r.genid === genid && r.instance === instance && r.ports === model.ports.size && r.groups === model.groups.size;
    const peek = await this.#list({ elementsOf: [ADOPT_RECORD], namedSetsOnly: true });
    if (!vouches(peek.record, peek.genid)) return undefined;
    // Of the other sets, their names alone (group set versions): decoding ~2700 definitions took ~50 ms of an
    // agent's start at 5000 ports.
    const look = await this.#list({ elementsOf: [INET.profiles, BRIDGE.portTag, ADOPT_RECORD], namesOnly: true });
    const listMs = now() - mark;
    const r = look.record;
    if (!vouches(r, look.genid)) return undefined;
    const hints = hintsFrom(look.objects, this.config);
    const e = Engine.build(model, this.config, hints);
    const matches = e.digest() === r.digest;
    // The kernel holds exactly the engine's sets: the client learns their definitions from it, not a listing.
    if (matches) this.#nft.rememberSets(e.sets());
    return { engine: e, genid: look.genid, listMs, clean: r.clean, matches, hints };
  }

  #state(op: string): Engine {
    if (this.#closed) throw new PortwallError('ERR_TRANSACTION_STATE', `${op}: the handle is closed`);
    const e = this.#engine;
    if (!e) throw new PortwallError('ERR_TRANSACTION_STATE', `${op}: no state yet — apply a whole state first (apply(state))`);
    return e;
  }

  /**
   * One change, one batch. From memory when the handle can vouch for the kernel, else after adopting (a
   * listing). A batch refused because another writer committed since is recomputed from a fresh listing.
   */
  async #change(m: Mutation, options: ApplyOptions, adopt = true): Promise<ApplyResult> {
    for (let attempt = 0; ; attempt++) {
      const t: ApplyResult['timings'] = { compile: 0, list: 0, diff: 0, commit: 0, cleanup: 0 };
      let mark = now();
      const trusted = this.#engine !== undefined && this.#genid !== undefined;
      let e: Engine;
      let d: Diff;
      let base: number;
      let previous: Engine | undefined;
      let adoptedFrom: ApplyResult['adoptedFrom'];
      // An adopted kernel's flows are all judged once (a full pass), unless the record says nobody owes that.
      let owesPass = true;
      if (trusted && m.kind === 'edit') {
        e = this.#engine!;
        base = this.#genid!;
        try {
          m.edit(e);
          t.compile = now() - mark;
          mark = now();
          d = e.pending();
        } catch (err) {
          // Refused half way (e.g. no tag left for one more bridged port): the model goes back as it was.
          e.undo();
          this.#forget(e);
          throw err;
        }
      } else if (trusted && m.kind === 'replace') {
        // New networks (or a new model on a trusted handle): rebuild in memory, diff against what we hold.
        previous = this.#engine!;
        base = this.#genid!;
        e = Engine.build(m.model, this.config, previous.hints());
        t.compile = now() - mark;
        mark = now();
        d = diff(e.objects(), previous.objects());
      } else {
        const quick = m.kind === 'replace' && this.#adoptRecord ? await this.#adoptFromRecord(m.model) : undefined;
        if (quick?.matches) {
          // The kernel holds what the state compiles to: nothing to list, diff or commit.
          t.list = quick.listMs;
          t.compile = now() - mark - quick.listMs;
          mark = now();
          ({ engine: e, genid: base } = quick);
          owesPass = !quick.clean;
          d = { operations: [], removed: [], elementsAdded: 0 };
          adoptedFrom = 'record';
        } else {
          const listing = await this.#list();
          t.list = now() - mark;
          mark = now();
          base = listing.genid;
          const model = m.kind === 'replace' ? m.model : this.#engine?.model;
          if (!model) throw new PortwallError('ERR_TRANSACTION_STATE', 'no state yet — apply a whole state first');
          const hints = hintsFrom(listing.objects, this.config);
          // The record's compile of this very model, when the listing numbers things as the look did: only the
          // groups' versions wait for their listed elements (a state that differs from the record's costs one
          // compile, not two).
          if (quick && sameNumbering(quick.hints, hints)) {
            e = quick.engine;
            e.relistGroups(hints.elements ?? new Map());
          } else e = Engine.build(model, this.config, hints);
          if (m.kind === 'edit') m.edit(e);
          t.compile = now() - mark;
          mark = now();
          d = diff(e.objects(), listing.objects);
          adoptedFrom = 'listing';
        }
      }
      t.diff = now() - mark;
      const adopted = !trusted;
      // What the cleanup judges: the engine's record of the change, or (a rebuild) every port before and after.
      const changes: ChangeSet = previous ? { own: rebuilt(previous, e), peers: NO_PEERS } : e.changes();
      const moved = previous ? rebuiltFips(previous, e) : e.fipChanges();
      let genid = base;
      let committed: { size: number; operations: readonly Operation[] } | undefined;
      if (d.operations.length > 0) {
        const tx = this.#nft.transaction();
        for (const op of d.operations) tx.canonical(op.verb, op.object);
        mark = now();
        try {
          if (tx.error) throw tx.error;
          const sent = tx.commit({ genid: base });
          if (e.indexesPending) {
            // A fresh engine's batch is a large one, on a pool thread: build what the engine left for later
            // while the kernel works (once the call has reached the pool: microtasks first, then this).
            sent.catch(() => undefined);
            await new Promise((resolve) => setImmediate(resolve));
            e.completeIndexes();
          }
          genid = (await sent).genid;
        } catch (err) {
          // ERR_SYSTEM once the batch may have been sent (an acknowledgement lost or unreadable, the generation
          // read after the commit failing) leaves the outcome unknown: a listing says whether the kernel holds
          // the change. If it does, the change succeeded (docs/netlink.md, "Unknown outcomes").
          const landed = !tx.error && err instanceof PortwallError && err.code === 'ERR_SYSTEM' ? await this.#landed(e) : undefined;
          if (landed === undefined) {
            // Not applied (or not known to be): put the model back and adopt again before the next change.
            if (m.kind === 'edit') {
              e.undo();
              this.#forget(e);
            } else if (this.#engine) this.#forget(this.#engine);
            if (err instanceof PortwallError && err.code === 'ERR_CONFLICT' && adopt && attempt < MAX_CONFLICTS) continue;
            throw err;
          }
          genid = landed;
        }
        t.commit = now() - mark;
        committed = { size: tx.size, operations: tx.operations };
        // (Here, not at the end: a cleanup that throws below still leaves the record owed and written.)
        this.#owe();
      }
      e.settle();
      // (Without a commit to overlap, e.g. an adoption from the record: here, before the change returns.)
      e.completeIndexes();
      this.#engine = e;
      // Exactly one generation further: ours alone. Anything else: someone else committed too; adopt next time.
      this.#genid = d.operations.length === 0 || genid === nextGen(base) ? genid : undefined;
      if (adopted) this.#cleanDebt = owesPass;
      // (A profile collection, the one change made without adopting, takes no permission away.)
      if (committed && adopt && !(options.cleanup ?? true)) this.#uncleaned = true;
      mark = now();
      // Cleanup first: the flows that lost permission stop before anything else can fail. If it throws, the
      // ipsets still follow the commit, then its error is thrown (the next change retries the cleanup).
      const outcome = await this.#cleanup(e, changes, this.#cleanDebt, options.cleanup ?? true)
        .then((r) => ({ r }), (error: unknown) => ({ error }));
      t.cleanup = now() - mark;
      // An edit of a trusted handle publishes what its ports moved; anything else lists and publishes whole.
      const publishing = this.#ipsets?.publish(e, trusted && m.kind === 'edit' && !m.whole ? changes.own : undefined);
      const ipsets = 'error' in outcome ? await publishing?.catch(() => undefined) : await publishing;
      if ('error' in outcome) throw outcome.error;
      const cleaned = outcome.r;
      if (options.cleanup ?? true) cleaned.deleted += await this.#natCleanup(moved);
      if (adopt) this.#lastChange = now();
      this.#scheduleGc();
      const removed = d.removed.reduce((n, r) => n + r.elements.length, 0);
      const published = (ipsets?.published.length ?? 0) + (ipsets?.destroyed.length ?? 0) > 0;
      // A small change's plan is written out when first read (most callers of a one-port change never look at
      // it); a large one's at once, so that a result kept for later never holds a full sync's operations.
      let ops = committed?.operations;
      let plan: string | undefined;
      if (ops && ops.length > LAZY_PLAN_MAX) {
        plan = summarize(ops);
        ops = undefined;
      }
      const result: ApplyResult = {
        changed: committed !== undefined || published,
        operations: committed?.size ?? 0,
        elements: { added: d.elementsAdded, removed },
        genid,
        cleanup: cleaned,
        get plan() {
          return (plan ??= ops ? summarize(ops) : '');
        },
        timings: t,
        adopted,
        conflicts: attempt,
      };
      if (ipsets) result.ipsets = ipsets;
      if (adoptedFrom) result.adoptedFrom = adoptedFrom;
      return result;
    }
  }

  /**
   * After a commit whose outcome is unknown: the generation of a listing that equals `e` (the kernel holds the
   * change), else undefined (it does not, or the listing failed too).
   */
  async #landed(e: Engine): Promise<number | undefined> {
    try {
      const listing = await this.#list();
      return diff(e.objects(), listing.objects).operations.length === 0 ? listing.genid : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * After a failed commit: the kernel may hold anything (another writer), so the next change adopts. The
   * model (put back by undo) stays the state to converge to; its indexes are rebuilt for validation.
   */
  #forget(e: Engine): void {
    this.#engine = Engine.build(e.model, this.config, e.hints());
    this.#genid = undefined;
  }

  /**
   * The cleanup after a commit: the changed ports, or every port (`full`). A cleanup that throws keeps its
   * changes for the next one and owes a full pass; the error propagates.
   */
  async #cleanup(e: Engine, changes: ChangeSet, full: boolean, withCleanup: boolean): Promise<CleanupResult> {
    const none = { deleted: 0, examined: 0, ports: 0 };
    if (!this.#ct) return none;
    if (!withCleanup) return none;
    // Widening changes take nothing away. Many changes (a group's rule removed: each of its ports) are sorted
    // out only when the namespace tracks anything at all.
    const shrinking = (c: PortChange) => c.old === c.now || mayShrink(c.old, c.now);
    let shrunk = changes.own.length <= FEW_CHANGES ? changes.own.filter(shrinking) : undefined;
    const peersOwed = changes.peers !== NO_PEERS;
    const owed = this.#pending;
    const put = shrunk ?? changes.own;
    if (put.length === 0 && owed.length === 0 && !full && !peersOwed) return none;
    // Until it succeeds, these changes and a full pass are owed (the full pass covers the peers).
    this.#pending = [...owed, ...put].slice(-MAX_PENDING);
    this.#cleanDebt = true;
    let r: CleanupResult;
    // Nothing tracked in the namespace: nothing to judge (asked before the peers are even listed — a member
    // leaving a big remote group makes every port that names the group a peer).
    if (this.#ct.count && (await this.#ct.count()) === 0) r = { ...none, ports: owed.length + put.length + (full ? e.model.ports.size : 0) };
    else {
      shrunk ??= changes.own.filter(shrinking);
      const all = full ? [...e.model.ports.keys()].map((id) => ({ now: e.policy(id)! })) : [];
      r = await cleanup(this.#ct, e, affectedPorts(e, [...owed, ...shrunk, ...all, ...changes.peers()]));
    }
    this.#pending = [];
    this.#cleanDebt = false;
    return r;
  }

  /**
   * Deletes the flows NATed through floating IPs that moved or went: DNATed ones (original destination the
   * floating IP, reply source its fixed IP) and SNATed ones (original source the fixed IP, reply destination
   * the floating IP), so an old session stops at once instead of reaching the old VM (or leaving from its
   * address) until it times out. In every zone: a VM of another routed network reaching the floating IP is
   * tracked in the lower of the two zones (docs/dataplane.md, "Zones and conntrack"), maybe not its port's; the
   * reply tuple names the translation, so the same addresses in another tenant's zone, not NATed, stay.
   */
  async #natCleanup(moved: readonly FloatingIp[]): Promise<number> {
    if (!this.#ct || moved.length === 0) return 0;
    // One dump for all of them: each walks the whole conntrack hash, whatever it filters.
    const pairs = new Set<string>();
    const filters: ConntrackFilter[] = [];
    for (const fip of moved) {
      const floating = hostAddress(fip.floatingIp);
      const fixed = hostAddress(fip.fixedIp!);
      pairs.add(`${floating} ${fixed}`);
      filters.push({ family: 'ipv4', dst: floating }, { family: 'ipv4', src: fixed });
    }
    const entries = await this.#ct.list(filters);
    const natted = entries.filter((x) => pairs.has(`${x.orig.dst} ${x.reply.src}`) || pairs.has(`${x.reply.dst} ${x.orig.src}`));
    return natted.length > 0 ? this.#ct.deleteEntries(natted) : 0;
  }

  #scheduleGc(gap = 0): void {
    if (!this.#gc || this.#closed || this.#gcTimer || !this.#engine || this.#genid === undefined || this.#engine.unusedProfiles === 0) return;
    const { delayMs, max } = this.#gc;
    const idle = now() - this.#lastChange;
    this.#gcTimer = setTimeout(() => {
      this.#gcTimer = undefined;
      // Only after a quiet period; a change since then starts the wait again.
      if (now() - this.#lastChange < delayMs) return this.#scheduleGc();
      // Errors here belong to no caller: the next change adopts and retries.
      this.collectProfiles(max).catch(() => undefined).finally(() => this.#scheduleGc(delayMs / 4));
    }, Math.max(gap, delayMs - idle));
    this.#gcTimer.unref();
  }

  /**
   * All tables in one consistent generation (listed again if a commit landed between the dumps), without the
   * adopt record (given apart). With `elementsOf`: set definitions (with `namedSetsOnly`, of those sets only;
   * with `namesOnly`, of the others their names alone) and the elements of those sets only.
   */
  async #list(look?: { elementsOf: readonly string[]; namedSetsOnly?: boolean; namesOnly?: boolean }): Promise<{ objects: NftObject[]; genid: number; record?: AdoptRecord }> {
    const wanted = ownTables(this.config.tables);
    const names = [...new Set(wanted.map(([, name]) => name))];
    for (let attempt = 0; ; attempt++) {
      // One dump per distinct name (a dump by name alone returns that name in every family).
      const lists = await Promise.all(names.map((table) => this.#nft.list({ table, ...look })));
      const genids = new Set(lists.map((l) => l.genid));
      // Still different after retries (writers kept committing): the first (oldest) generation, so that a batch
      // computed from this listing is refused by the kernel instead of resting on a stale part.
      if (genids.size === 1 || attempt > 2) {
        const objects = lists.flatMap((l) => l.objects).filter((o) => wanted.some(([f, t]) => o.family === f && tableOf(o) === t));
        const record = readRecord(objects, this.config);
        return { objects: withoutRecord(objects, this.config), genid: lists[0]!.genid, ...(record ? { record } : {}) };
      }
    }
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }
}

const tableOf = (o: NftObject): string => (o.kind === 'table' ? o.name : o.table);

/** Every port before (`old`) and after (`now`) a rebuild, for the cleanup. */
function rebuilt(old: Engine, now: Engine): PortChange[] {
  const ids = new Set([...old.model.ports.keys(), ...now.model.ports.keys()]);
  return [...ids].map((id) => {
    const c: PortChange = {};
    const a = old.policy(id), b = now.policy(id);
    if (a) c.old = a;
    if (b) c.now = b;
    return c;
  });
}

/** The generation after `g` (the kernel's counter skips 0 when it wraps). */
function nextGen(g: number): number {
  const n = (g + 1) >>> 0;
  return n === 0 ? 1 : n;
}

function sameNetworks(a: Model, b: Model): boolean {
  if (a.networks.size !== b.networks.size) return false;
  for (const [id, n] of a.networks) if (JSON.stringify(n) !== JSON.stringify(b.networks.get(id))) return false;
  return true;
}

/**
 * Edits `e` into `model` (same networks): the NAT options, floating IPs that changed or went, changed groups,
 * then ports, groups that went, and new floating IPs (their ports exist by then).
 */
function editTo(e: Engine, model: Model): void {
  const have = e.model;
  if (JSON.stringify(have.nat) !== JSON.stringify(model.nat)) e.setNat(model.nat);
  const fips = model.floatingIps ?? new Map<string, FloatingIp>();
  const sameFip = (a: FloatingIp | undefined, b: FloatingIp | undefined) => JSON.stringify({ ...a, index: 0 }) === JSON.stringify({ ...b, index: 0 });
  for (const [id, f] of [...(have.floatingIps ?? [])]) if (!sameFip(f, fips.get(id))) e.setFloatingIp(id, fips.get(id));
  for (const [id, g] of model.groups) if (JSON.stringify(have.groups.get(id)) !== JSON.stringify(g)) e.setGroup(id, g);
  for (const id of [...have.ports.keys()]) if (!model.ports.has(id)) e.setPort(id, undefined);
  for (const [id, p] of model.ports) {
    const old = have.ports.get(id);
    if (!old || JSON.stringify({ ...old, index: 0 }) !== JSON.stringify({ ...p, index: 0 })) e.setPort(id, p);
  }
  for (const id of [...have.groups.keys()]) if (!model.groups.has(id)) e.setGroup(id, undefined);
  for (const [id, f] of fips) if (!have.floatingIps?.has(id)) e.setFloatingIp(id, f);
}

/**
 * The floating IPs a port change would leave pointing at nothing (the port removed, or the fixed IP they map
 * gone): refused like a group still in use — disassociate the floating IP first.
 */
function floatingIpsLost(e: Engine, portId: string, port: Port | undefined): { path: string; message: string }[] {
  const out: { path: string; message: string }[] = [];
  for (const id of e.floatingIpsOf(portId)) {
    const f = e.model.floatingIps?.get(id);
    if (!f || (port && port.fixedIps.includes(f.fixedIp!))) continue;
    out.push({
      path: port ? `ports (${portId}).fixed_ips` : `ports (${portId})`,
      message: `floating IP ${JSON.stringify(f.id)} maps ${f.fixedIp!.replace(/\/\d+$/, '')} of this port: disassociate it first`,
    });
  }
  return out;
}

/** The floating IPs whose mapping a rebuild moved or removed, for the NAT cleanup. */
function rebuiltFips(old: Engine, now: Engine): FloatingIp[] {
  return [...(old.model.floatingIps?.values() ?? [])].filter((f) => f.fixedIp !== undefined && fipMoved(f, now.model.floatingIps?.get(f.id)));
}

function isModel(x: unknown): x is Model {
  const m = x as Partial<Model> | null;
  return typeof m === 'object' && m !== null && m.networks instanceof Map && m.ports instanceof Map && m.groups instanceof Map;
}
