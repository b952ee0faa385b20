/**
 * The in-memory state of a library handle: the model it programmed, every port's compiled policy, the rule
 * profiles, the claims (`../compile/claims.ts`) that add up to the content of portwall's sets, and the chains
 * and sets of each group and profile (`../compile/layout-groups.ts`). A change to one port or one group
 * recomputes only what depends on it and yields the operations that make the kernel match — no listing, no
 * whole-host compile, no whole-host diff (docs/dataplane.md, "Incremental updates"). The skeleton is
 * recomputed only when its inputs (networks, remote-group use) change.
 *
 * The engine trusts that the kernel holds what it last committed; the handle guarantees that with the
 * generation id. After a failed commit it is thrown away and rebuilt from the model (see {@link Engine.undo}).
 */
import { DigestSum } from './adopt-record.js';
import { diff, type Diff } from './diff.js';
import { prefixRange, type AddrRange } from '../compile/addr.js';
import { ClaimStore } from '../compile/claims.js';
import { lostRules, profileGroups, profileKey, type CompiledRule, type GroupMembers, type GroupPolicy, type PolicyIR, type PortPolicy, type ProfilePolicy } from '../compile/ir.js';
import { memberFamilies, skeleton, skeletonSignature, type RemoteUse, type SkeletonInput } from '../compile/layout-skeleton.js';
import { remoteUses, withElements } from '../compile/layout.js';
import { familyKey, familyKeyParts, insideAny, netMemberKeys, portClaims, portHosts, portNets, prefixClaims, profilePointer, zoneNetKeys } from '../compile/layout-units.js';
import { groupElements, groupObjects, profileObjects } from '../compile/layout-groups.js';
import { BRIDGE, GROUP_VERSIONS, INET, groupSetVersion, idHash, profileLabel } from '../compile/names.js';
import { NumberSpace, RuleCache, assignProfiles, assignTags, compilePort, groupMembers, profileSpace, remoteFamiliesOf } from '../compile/policy.js';
import { fipClaims } from '../compile/layout-nat.js';
import { CLOUDSTACK_GROUP, type FloatingIp, type Model, type Nat, type Network, type Port, type PortwallConfig, type Prefix, type SecurityGroup } from '../model/types.js';
import type { StateIndex } from '../model/validate-one.js';
import type { Element, Elements, NftObject, NftSet, Operation } from '../nft/types.js';

/** Numbers the kernel already gives ports, profiles and groups (read from a listing), kept by a rebuild. */
export interface Hints {
  /** Port id → tag (the bridge table's `port_tag` comments). */
  tags: ReadonlyMap<string, number>;
  /** Profile label → number (the `profiles` set's comments). */
  profiles: ReadonlyMap<string, number>;
  /** The `slug_hash` tail of a group's set names → the version they carry. */
  versions?: ReadonlyMap<string, number>;
  /** The elements of the groups' sets as listed (so a change that would delete some gets a new version). */
  elements?: ReadonlyMap<string, readonly Element[]>;
}

/** A port whose admitted traffic may have changed: its policy before and after (undefined: absent). */
export interface PortChange {
  old?: PortPolicy;
  now?: PortPolicy;
}

/** The changes since the last settle: the ports changed themselves, and their peers, listed when asked. */
export interface ChangeSet {
  own: PortChange[];
  /** {@link NO_PEERS} when no remote group lost a member. */
  peers: () => PortChange[];
}

/** The `peers` of a change set without peers. */
export const NO_PEERS = (): PortChange[] => [];

/** Whether floating IP `before` (associated) no longer maps the same way in `after` (moved, changed or gone). */
export function fipMoved(before: FloatingIp, after: FloatingIp | undefined): boolean {
  return after?.portId !== before.portId || after?.fixedIp !== before.fixedIp || after?.floatingIp !== before.floatingIp;
}

/** The operations that make the kernel match the engine, and what they remove. */
export interface Pending extends Diff {
  /** The skeleton changed (a full diff was needed). */
  skeleton: boolean;
}

interface Profile {
  policy: ProfilePolicy;
  users: Set<string>;
}

/** The diff of no units (read only: its lists are copied, never written to). */
const NO_CHANGE: Diff = { operations: [], removed: [], elementsAdded: 0 };

/** Operations of one batch that must come after the claims' element changes (deleting sets and chains). */
const isLate = (op: Operation): boolean => op.verb === 'delete' && (op.object.kind === 'set' || op.object.kind === 'chain');

const FULL_PREFIX_UNIT = 'prefixes';

export class Engine implements StateIndex {
  readonly #rules: RuleCache;
  readonly #policies = new Map<string, PortPolicy>();
  readonly #tagSpace: NumberSpace;
  readonly #profileSpace: NumberSpace;
  readonly #profiles = new Map<string, Profile>();
  /** Profiles no port uses: they stay until {@link collect} removes them (a port may want them back). */
  readonly #unused = new Set<string>();
  /** The security groups as programmed: rules and the version of their sets. */
  readonly #groups = new Map<string, GroupPolicy>();
  /** Chains and sets of each group (`group:ID`) and profile (`profile:N`): desired, and as last committed. */
  readonly #units = new Map<string, NftObject[]>();
  #unitsCommitted = new Map<string, NftObject[]>();
  readonly #unitsDirty = new Set<string>();
  readonly #remote = new Map<string, Map<RemoteUse, number>>();
  #members = new Map<string, Set<4 | 6>>();
  readonly #groupPorts = new Map<string, Set<string>>();
  /** Per `group|family`, the ports making the group a member prefix wider than a host (netMemberKeys). */
  readonly #netCounts = new Map<string, number>();
  /** The `group|family` keys with such members, as the group units and the skeleton were last built with. */
  #nets = new Set<string>();
  /** Per routed `network|family`, the ports owning a prefix wider than a host there (zoneNetKeys). */
  readonly #zoneNetCounts = new Map<string, number>();
  /** Stateless ports: the skeleton has its untracking rules and sets only while there is one. */
  #statelessPorts = 0;
  readonly #store = new ClaimStore();
  /** Ports with prefixes wider than a host, and those ranges (the prefix unit's inputs). */
  readonly #wide = new Map<string, AddrRange[]>();
  /** Host address (`family|lo`) → the port owning it (nearly always one), or the ports, for conntrack cleanup. */
  readonly #hosts = new Map<string, string | Set<string>>();
  /** Uniqueness indexes of the model: `device:…`, `mac:<net> <mac>`, `ip:<net> <prefix>` → port id. */
  readonly #unique = new Map<string, string>();
  readonly #ruleGroup = new Map<string, string>();
  /**
   * What a fresh {@link build} left of those three indexes (`#hosts`, `#unique`, `#ruleGroup`), which its
   * first batch does not need: built by {@link completeIndexes} while that batch is in the kernel, or by
   * whatever reads them or edits the model first (every edit starts in {@link #replace}). Undefined once built.
   */
  #deferred: (() => void) | undefined;
  /** Something the skeleton depends on may have changed since the last settle (remote-group use). */
  #shapeDirty = true;
  /** Group slots per profile id, how many profiles fill each number, and the most (docs/dataplane.md). */
  readonly #slotsOf = new Map<number, number>();
  readonly #slotCounts = new Map<string, number>();
  #slots = 1;
  /** Whether a remote use appeared or went since the member families were last derived ({@link #refreshMembers}). */
  #usesChanged = false;
  #committed: { signature: string; objects: NftObject[]; sets: Map<string, NftSet> } | undefined;
  /** The skeleton last built, and the signature of its inputs ({@link #skeleton}). */
  #lastSkeleton: { signature: string; objects: NftObject[] } | undefined;
  #changes = new Map<string, PortChange>();
  /** Remote groups that lost a member address since the last settle: their peers' flows are judged. */
  #lostGroups = new Set<string>();
  /** Port id → the floating IPs associated with it. */
  readonly #fipsOf = new Map<string, Set<string>>();
  /** Floating address → floating IP id. */
  readonly #floatingAt = new Map<Prefix, string>();
  /** Floating IPs whose old mapping went since the last settle (their NATed flows are deleted). */
  #fipChanges = new Map<string, FloatingIp>();
  #undo: (() => void)[] = [];
  #membersView: GroupMembers[] | undefined;
  /**
   * The digest of what the kernel holds as of the last settle ({@link digest}), once computed: kept up to date
   * by each change's delta, which {@link pending} computes and {@link settle} adds (undefined: none, or the
   * digest is not known to be current — it is computed again when next asked for).
   */
  #digest: DigestSum | undefined;
  #digestDelta: DigestSum | undefined;

  private constructor(readonly model: Model, readonly config: PortwallConfig) {
    this.#rules = new RuleCache(model.groups);
    this.#tagSpace = new NumberSpace(config.markMask, 'bridged ports');
    this.#profileSpace = profileSpace(config);
  }

  /**
   * Everything computed from a model, keeping hinted numbers where valid. The result is uncommitted: diff
   * {@link objects} against a listing, commit, then {@link settle}.
   */
  static build(model: Model, config: PortwallConfig, hints: Hints = { tags: new Map(), profiles: new Map() }): Engine {
    const e = new Engine(model, config);
    // Its first batch comes from a full diff: no element changes to record while it fills.
    e.#store.untracked();
    // Numbering as compilePolicy does it: hinted tags and profile numbers kept, the rest lowest free first.
    const tags = assignTags(model, config, hints.tags);
    for (const t of tags.values()) e.#tagSpace.claim(t);
    const policies: PortPolicy[] = [];
    for (const port of model.ports.values()) {
      const p = compilePort(port, model.networks.get(port.networkId)!, model.groups, e.#rules, tags.get(port.id));
      policies.push(p);
      e.#policies.set(p.portId, p);
      e.#indexGroups(p, true);
      e.#indexWide(p.portId, portNets(p), true);
    }
    // Who owns each host address, and the uniqueness indexes: for changes and cleanups after the first batch.
    e.#deferred = () => {
      for (const p of model.ports.values()) e.#indexPort(p, true);
      for (const g of model.groups.values()) e.#indexGroup(g, true);
      for (const p of policies) e.#indexHosts(p.portId, portHosts(p), true);
    };
    // The group units after the ports: a group's chain looks remote groups up in member-prefix sets only
    // where some port makes one a member with a prefix.
    e.#nets = new Set(e.#netCounts.keys());
    for (const id of [...model.groups.keys()].sort()) e.#setGroupUnit(id, hintedVersion(id, model, hints), hints.elements);
    for (const pr of assignProfiles(policies, config, (key) => hints.profiles.get(profileLabel(key)))) {
      e.#profileSpace.claim(pr.id);
      e.#addProfile(pr.key, pr.id);
    }
    for (const p of policies) if (p.filtered) e.#use(p);
    e.#members = memberFamilies(e.#remoteInput());
    for (const p of policies) {
      e.#store.set(`port:${p.portId}`, portClaims(p, e.#members));
      e.#store.set(`pp:${p.portId}`, profilePointer(p));
    }
    e.#refreshPrefixes();
    for (const f of model.floatingIps?.values() ?? []) e.#fipIndex(f, true);
    for (const f of model.floatingIps?.values() ?? []) e.#fipClaims(f.id);
    for (const p of policies) e.#changes.set(p.portId, { now: p });
    return e;
  }

  /**
   * The groups' units again, now that their sets' elements are known from a listing: a group whose rules
   * would delete more from its sets than an in-place delete may gets a new version, as {@link build} with
   * those elements as hints does. For a fresh engine that was built from hints without elements (an adoption
   * whose record did not match): the same engine as a build from the listing's hints, without building again
   * when tags, profile numbers and versions are the same (see {@link sameNumbering}).
   */
  relistGroups(listed: ReadonlyMap<string, readonly Element[]>): void {
    this.#digest = undefined;
    for (const [id, g] of this.#groups) {
      // Only a group whose listed sets lose too much to its objects now is laid out again (with a new version).
      const objects = this.#units.get(`group:${id}`) ?? [];
      if (needsVersion(listed, groupElements(objects))) this.#setGroupUnit(id, g.version, listed);
    }
  }

  /** The desired objects of portwall's tables. */
  objects(): NftObject[] {
    return withElements([...this.#skeleton().objects, ...[...this.#units.values()].flat()], this.#store);
  }

  /** The set definitions among the {@link objects} (what a client must know to encode their elements). */
  sets(): NftSet[] {
    const out: NftSet[] = [];
    for (const o of this.#skeleton().objects) if (o.kind === 'set') out.push(o);
    for (const objects of this.#units.values()) for (const o of objects) if (o.kind === 'set') out.push(o);
    return out;
  }

  /**
   * {@link digestOf} the {@link objects}, for the adopt record: from the sum kept since it was first computed
   * (each change adds its delta: O(change), where hashing every element costs ~40 ms at 5000 ports). Asked for
   * between a settle and the next change only (what the kernel holds).
   */
  digest(): string {
    if (!this.#digest) {
      this.#digest = new DigestSum().objects(this.objects());
      // Current as of now: a settle that follows with no change in between keeps it.
      this.#digestDelta = new DigestSum();
    }
    return this.#digest.text();
  }

  /**
   * The skeleton of the current inputs, with their signature: built once per signature (a full sync lists
   * {@link objects} and then settles, an adoption digests them and then settles — each asked for the same
   * skeleton twice, ~20 ms at 5000 ports in a fresh process).
   */
  #skeleton(input = this.#skeletonInput()): { signature: string; objects: NftObject[] } {
    const signature = skeletonSignature(input);
    if (this.#lastSkeleton?.signature !== signature) this.#lastSkeleton = { signature, objects: skeleton(input) };
    return this.#lastSkeleton;
  }

  /**
   * What {@link objects} holds, counted: its tables, and how many chains, rules, sets and elements — without
   * listing a single element (a status check at 5000 ports would otherwise build ~100 000 of them).
   */
  counts(): ObjectCounts {
    const settled = this.#committed && !this.#shapeDirty ? this.#committed.objects : this.#skeleton().objects;
    const out = countObjects([...settled, ...[...this.#units.values()].flat()]);
    for (const setId of this.#store.setIds()) out.counts.elements += this.#store.count(setId);
    return out;
  }

  /** The compiled policy, as `compilePolicy` gives it (for renderers and explain). */
  ir(): PolicyIR {
    return {
      config: this.config, networks: [...this.model.networks.values()], ports: [...this.#policies.values()],
      members: this.members, profiles: [...this.#profiles.values()].map((p) => p.policy).sort((a, b) => a.id - b.id),
      groups: [...this.#groups.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)),
    };
  }

  /** The networks (conntrack cleanup reads their zones). */
  get networks(): Network[] {
    return [...this.model.networks.values()];
  }

  /** Remote-group members (computed when asked, e.g. by conntrack cleanup's evaluator). */
  get members(): GroupMembers[] {
    this.#membersView ??= groupMembers([...this.#policies.values()]);
    return this.#membersView;
  }

  /** Every port's policy now. */
  portPolicies(): Iterable<PortPolicy> {
    return this.#policies.values();
  }

  /**
   * The remote groups, each with the families its rules name: those of the rule profiles some port uses, which is
   * what {@link members} lists (found from the few profiles rather than every port).
   */
  remoteFamilies(): Map<string, Set<4 | 6>> {
    return remoteFamiliesOf([...this.#profiles.values()].filter((p) => p.users.size > 0).map((p) => p.policy.rules));
  }

  /** The port's policy now. */
  policy(portId: string): PortPolicy | undefined {
    return this.#policies.get(portId);
  }

  /**
   * Builds what {@link build} left for later (docs/dataplane.md, "The JavaScript of a full sync"): a caller
   * that has handed the first batch to the kernel calls this while the kernel works. Anything that needs
   * those indexes builds them itself first, so calling it is never required.
   */
  completeIndexes(): void {
    const build = this.#deferred;
    this.#deferred = undefined;
    build?.();
  }

  /** Whether {@link completeIndexes} has anything left to do. */
  get indexesPending(): boolean {
    return this.#deferred !== undefined;
  }

  /** Current ports owning a host address (any zone). */
  hostOwners(family: 4 | 6, lo: bigint): PortPolicy[] {
    this.completeIndexes();
    const owners = this.#hosts.get(`${family}|${lo}`) ?? [];
    return (typeof owners === 'string' ? [owners] : [...owners]).map((id) => this.#policies.get(id)!);
  }

  /** Current non-host prefixes with their port. */
  wideOwners(): { r: AddrRange; port: PortPolicy }[] {
    return [...this.#wide].flatMap(([id, rs]) => rs.map((r) => ({ r, port: this.#policies.get(id)! })));
  }

  /** Rule profiles no port uses any more (still in the kernel). */
  get unusedProfiles(): number {
    return this.#unused.size;
  }

  // ---- changes -----------------------------------------------------------------------------------------

  /** Adds, replaces (a validated port) or removes (undefined) one port. */
  setPort(id: string, port: Port | undefined): void {
    this.#replace(this.model.ports, id, port, (p, add) => this.#indexPort(p, add));
    this.#recompile(id);
  }

  /**
   * Adds, replaces (a validated floating IP) or removes (undefined) one floating IP: element changes only,
   * unless it is the first or last associated one (the NAT table comes or goes).
   */
  setFloatingIp(id: string, fip: FloatingIp | undefined): void {
    const map = (this.model.floatingIps ??= new Map());
    const before = this.#replace(map, id, fip, (f, add) => this.#fipIndex(f, add));
    if (before?.fixedIp !== undefined && fipMoved(before, fip) && !this.#fipChanges.has(id)) this.#fipChanges.set(id, before);
    this.#fipClaims(id);
    this.#shapeDirty = true;
  }

  /** Sets the `nat` options (undefined: no default SNAT, no metadata redirect): a skeleton change. */
  setNat(nat: Nat | undefined): void {
    const before = this.model.nat;
    this.#undo.push(() => (before ? (this.model.nat = before) : delete this.model.nat));
    if (nat) this.model.nat = nat;
    else delete this.model.nat;
    // Ports with a floating IP are listed for the zone rules only with `nat`.
    if (!before !== !nat) for (const id of this.model.floatingIps?.keys() ?? []) this.#fipClaims(id);
    this.#shapeDirty = true;
  }

  /** Floating IPs whose mapping moved or went since the last settle, as they were (their NATed flows go). */
  fipChanges(): FloatingIp[] {
    return [...this.#fipChanges.values()];
  }

  /**
   * Adds, replaces (a validated group) or removes (undefined) one security group: its own chains and sets
   * change (in place when only adding, else as a new version), the profiles that contain it only when it
   * appears or goes (or, for CloudStack-flavour profiles, its egress rules do).
   */
  setGroup(id: string, group: SecurityGroup | undefined): void {
    const before = this.#replace(this.model.groups, id, group, (g, add) => this.#indexGroup(g, add));
    const oldRules = this.#rules.rules([id]);
    this.#rules.forget(id);
    // Whether the group lost a rule: a port's union of groups can only have lost what the group lost (the
    // CloudStack flavour's built-in rules aside, which depend on the groups' egress rules).
    const groupLost = lostRules(oldRules, this.#rules.rules([id]));
    const old = this.#groups.get(id);
    this.#setGroupUnit(id, old?.version ?? 0);
    for (const prof of this.#profiles.values()) {
      if (!prof.policy.groupIds.includes(id)) continue;
      const rules = this.#rules.rules(prof.policy.groupIds);
      prof.policy = { ...prof.policy, rules };
      if (!before || !group || prof.policy.groupIds.includes(CLOUDSTACK_GROUP)) this.#setProfileUnit(prof.policy);
    }
    this.#refreshMembers();
    // Which groups are remote groups, and in which families, follows the rules.
    this.#membersView = undefined;
    // The group's ports keep their profile (same groups): only their rules change, unless the group's kind
    // did (untracking is per port), which recompiles them in full.
    const kindChanged = before?.stateful !== group?.stateful;
    // Ports with the same groups (in the same order) share one rule list: its successor is computed once.
    const lists = new Map<readonly CompiledRule[], { rules: CompiledRule[]; lost: boolean }>();
    for (const portId of [...(this.#groupPorts.get(id) ?? [])]) {
      if (kindChanged) this.#recompile(portId);
      else this.#rerule(portId, lists, groupLost);
    }
  }

  /** A port whose groups' rules changed: a new policy object with the new rules, claims unchanged. */
  #rerule(id: string, lists: Map<readonly CompiledRule[], { rules: CompiledRule[]; lost: boolean }>, groupLost: boolean): void {
    const old = this.#policies.get(id);
    if (!old) return;
    // Same groups and addresses: the indexes (by port id), the profile and the claims stay.
    let next = lists.get(old.rules);
    if (!next) {
      const groups = profileGroups(old);
      const rules = this.#rules.rules(groups);
      const lost = groups.includes(CLOUDSTACK_GROUP) ? lostRules(old.rules, rules) : groupLost;
      lists.set(old.rules, (next = { rules, lost }));
    }
    const now: PortPolicy = { ...old, rules: next.rules };
    this.#policies.set(id, now);
    const change = this.#changes.get(id);
    // Rules only added: no flow of the port loses permission, so conntrack cleanup has nothing to judge.
    if (!change && !next.lost) return;
    this.#changes.set(id, { old: change ? change.old : old, now });
  }

  /**
   * Removes rule profiles no port uses, at most `max` of them (each is a few hash elements and two chains:
   * cheap, but a port that wants the combination back would have to build it again). Returns how many went.
   */
  collect(max = Infinity): { profiles: number } {
    let profiles = 0;
    for (const key of [...this.#unused]) {
      if (profiles >= max) break;
      const prof = this.#profiles.get(key)!;
      this.#unused.delete(key);
      this.#profiles.delete(key);
      this.#store.set(`profile:${prof.policy.id}`, []);
      this.#setUnit(`profile:${prof.policy.id}`, []);
      this.#setSlots(prof.policy.id, undefined);
      this.#profileSpace.release(prof.policy.id);
      profiles++;
    }
    return { profiles };
  }

  /**
   * The ports changed since the last {@link settle} (for conntrack cleanup): those edited or re-ruled
   * (`own`), and, computed only when asked (a member leaving a group that 1000 ports name as remote group
   * makes 1000 peers, which a namespace that tracks nothing never needs), the peers of groups a member left.
   */
  changes(): ChangeSet {
    const own = [...this.#changes.values()];
    const groups = [...this.#lostGroups];
    if (groups.length === 0) return { own, peers: NO_PEERS };
    const ownIds = new Set(this.#changes.keys());
    return { own, peers: () => this.#peersOf(groups, ownIds) };
  }

  /**
   * The operations that bring the kernel from what was last settled to the engine's state: element deletes
   * and adds only, unless the skeleton changed (then a full diff of the two, which is rare: a network or a
   * remote-group use appearing or going).
   */
  pending(): Pending {
    const committed = this.#committed;
    // The skeleton's inputs are compared only when one may have changed: the common change costs nothing here.
    const input = !committed || this.#shapeDirty ? this.#skeletonInput() : undefined;
    if (!committed || (input && committed.signature !== skeletonSignature(input))) {
      const next = [...this.#skeleton(input!).objects, ...[...this.#units.values()].flat()];
      const before = [...(committed?.objects ?? []), ...[...this.#unitsCommitted.values()].flat()];
      const current = withBefore(before, this.#store);
      this.#store.takeDelta();
      // (Rare: the digest is computed again when next asked for.)
      this.#digestDelta = undefined;
      return { ...diff(withElements(next, this.#store), current), skeleton: true };
    }
    // The chains and sets of the groups and profiles that changed: one diff of the old against the new, its
    // set and chain deletes after the claims' element changes (a verdict-map element leaves before its chain).
    // Most changes (a port's) leave every unit as it was: no diff to build then.
    const dirty = [...this.#unitsDirty];
    const unitDiff = dirty.length === 0 ? NO_CHANGE : diff(dirty.flatMap((u) => this.#units.get(u) ?? []), dirty.flatMap((u) => this.#unitsCommitted.get(u) ?? []));
    const delta = this.#digest ? new DigestSum() : undefined;
    for (const u of delta ? dirty : []) delta!.objects(this.#units.get(u) ?? []).objects(this.#unitsCommitted.get(u) ?? [], -1);
    const ops: Operation[] = unitDiff.operations.filter((op) => !isLate(op));
    const adds: Operation[] = [];
    const removed: Diff['removed'] = [];
    let elementsAdded = 0;
    for (const [setId, d] of this.#store.takeDelta()) {
      const s = committed.sets.get(setId);
      if (!s) throw new Error(`elements for ${setId}, which the skeleton does not declare`);
      if (d.removed) {
        ops.push({ verb: 'delete', object: elementsOf(s, d.removed) });
        removed.push({ set: s, elements: d.removed });
        delta?.elements(s.family, s.table, s.name, d.removed, -1);
      }
      if (d.added) {
        adds.push({ verb: 'add', object: elementsOf(s, d.added) });
        elementsAdded += d.added.length;
        delta?.elements(s.family, s.table, s.name, d.added, 1);
      }
    }
    this.#digestDelta = delta;
    return {
      operations: [...ops, ...adds, ...unitDiff.operations.filter(isLate)],
      removed: [...unitDiff.removed, ...removed], elementsAdded: elementsAdded + unitDiff.elementsAdded, skeleton: false,
    };
  }

  /** The kernel now holds the engine's state (a commit succeeded, or there was nothing to commit). */
  settle(): void {
    this.#store.takeDelta();
    // The digest follows the change whose delta pending() computed; without one it is not known to be current.
    if (this.#digest && this.#digestDelta) this.#digest.add(this.#digestDelta);
    else this.#digest = undefined;
    this.#digestDelta = undefined;
    for (const u of this.#unitsDirty) {
      const objects = this.#units.get(u);
      if (objects) this.#unitsCommitted.set(u, objects);
      else this.#unitsCommitted.delete(u);
    }
    this.#unitsDirty.clear();
    if (!this.#committed || this.#shapeDirty) {
      const input = this.#skeletonInput();
      const signature = skeletonSignature(input);
      if (this.#committed?.signature !== signature) {
        const { objects } = this.#skeleton(input);
        const sets = new Map<string, NftSet>();
        for (const o of objects) if (o.kind === 'set') sets.set(`${o.family}:${o.name}`, o);
        this.#committed = { signature, objects, sets };
      }
      this.#shapeDirty = false;
    }
    this.#changes = new Map();
    this.#lostGroups = new Set();
    this.#fipChanges = new Map();
    this.#undo = [];
  }

  /**
   * Puts the model back as it was at the last {@link settle}. The derived state is then stale: the caller
   * drops this engine and builds a new one from the model.
   */
  undo(): void {
    for (const f of this.#undo.reverse()) f();
    this.#undo = [];
  }

  /** {@link StateIndex}: the port holding a device, a `network MAC` or a `network prefix`. */
  portWith(what: 'device' | 'mac' | 'ip', key: string): string | undefined {
    this.completeIndexes();
    return this.#unique.get(`${what}:${key}`);
  }

  /** {@link StateIndex}: the group a rule id belongs to. */
  groupOfRule(ruleId: string): string | undefined {
    this.completeIndexes();
    return this.#ruleGroup.get(ruleId);
  }

  /** For the conntrack cleanup: the addresses of the floating IPs that NAT to a port now. */
  floatingOf(portId: string): Prefix[] {
    const out: Prefix[] = [];
    for (const id of this.#fipsOf.get(portId) ?? []) {
      const f = this.model.floatingIps?.get(id);
      if (f?.fixedIp !== undefined && f.family === 4) out.push(f.floatingIp);
    }
    return out;
  }

  /** The ids of the floating IPs associated with a port. */
  floatingIpsOf(portId: string): Iterable<string> {
    return this.#fipsOf.get(portId) ?? [];
  }

  /** {@link StateIndex}: the floating IP with this address. */
  floatingIpAt(address: Prefix): string | undefined {
    return this.#floatingAt.get(address);
  }

  /** {@link StateIndex}: the ports in a group. */
  portsIn(groupId: string): Iterable<string> {
    return this.#groupPorts.get(groupId) ?? [];
  }

  /** Tag, profile and group-set numbers as a listing would give them (to keep them across a rebuild). */
  hints(): Hints {
    const tags = new Map<string, number>();
    for (const p of this.#policies.values()) if (p.tag !== undefined) tags.set(p.portId, p.tag);
    const profiles = new Map<string, number>();
    for (const prof of this.#profiles.values()) profiles.set(profileLabel(prof.policy.key), prof.policy.id);
    const versions = new Map<string, number>();
    const elements = new Map<string, readonly Element[]>();
    for (const [unit, objects] of this.#unitsCommitted) {
      if (!unit.startsWith('group:')) continue;
      for (const o of objects) if (o.kind === 'set') collectVersion(versions, o.name);
      for (const [set, e] of groupElements(objects)) elements.set(set, e);
    }
    return { tags, profiles, versions, elements };
  }

  // ---- internals ---------------------------------------------------------------------------------------

  #indexPort(p: Port, add: boolean): void {
    const keys = [`device:${p.device}`, `mac:${p.networkId} ${p.mac}`, ...p.fixedIps.map((ip) => `ip:${p.networkId} ${ip}`)];
    for (const k of keys) {
      if (add) this.#unique.set(k, p.id);
      else if (this.#unique.get(k) === p.id) this.#unique.delete(k);
    }
  }

  #indexGroup(g: SecurityGroup, add: boolean): void {
    for (const r of g.rules) {
      if (add) this.#ruleGroup.set(r.id, g.id);
      else if (this.#ruleGroup.get(r.id) === g.id) this.#ruleGroup.delete(r.id);
    }
  }

  /**
   * Replaces (or, with undefined, deletes) one model entry, journaled for {@link undo}, with its uniqueness
   * index in step. Returns the entry it replaced.
   */
  #replace<T>(map: Map<string, T>, id: string, value: T | undefined, index: (x: T, add: boolean) => void): T | undefined {
    // Deferred indexes are built from the model as it was before this edit.
    this.completeIndexes();
    const before = map.get(id);
    this.#undo.push(() => (before ? map.set(id, before) : map.delete(id)));
    if (before) index(before, false);
    if (value) {
      map.set(id, value);
      index(value, true);
    } else map.delete(id);
    return before;
  }

  /** Recomputes one port from the model (added, changed, removed or touched by a group change). */
  #recompile(id: string): void {
    const old = this.#policies.get(id);
    const port = this.model.ports.get(id);
    const net = port && this.model.networks.get(port.networkId);
    let tag = old?.tag;
    const bridged = net?.mode === 'bridged';
    if (tag !== undefined && !bridged) {
      this.#tagSpace.release(tag);
      tag = undefined;
    } else if (tag === undefined && bridged) tag = this.#tagSpace.next();
    const now = port && net ? compilePort(port, net, this.model.groups, this.#rules, tag) : undefined;
    const before = { hosts: old ? portHosts(old) : [], nets: old ? portNets(old) : [] };
    const after = { hosts: now ? portHosts(now) : [], nets: now ? portNets(now) : [] };
    // A port that keeps its addresses (a change of groups, a member joining or leaving) keeps its host index.
    const moved = !sameStrings(before.hosts, after.hosts) || !sameStrings(before.nets, after.nets);
    if (old) {
      this.#indexGroups(old, false);
      if (moved) {
        this.#indexHosts(old.portId, before.hosts, false);
        this.#indexWide(old.portId, before.nets, false);
      }
      if (old.filtered) this.#release(old);
    }
    if (now) {
      this.#policies.set(id, now);
      this.#indexGroups(now, true);
      if (moved) {
        this.#indexHosts(now.portId, after.hosts, true);
        this.#indexWide(now.portId, after.nets, true);
      }
      if (now.filtered) this.#use(now);
    } else this.#policies.delete(id);
    this.#membersView = undefined;
    this.#store.set(`port:${id}`, now ? portClaims(now, this.#members) : []);
    this.#store.set(`pp:${id}`, now ? profilePointer(now) : []);
    for (const f of this.#fipsOf.get(id) ?? []) this.#fipClaims(f);
    const wide = [...before.nets, ...after.nets];
    const ranges = [...this.#wide.values()].flat();
    if (wide.length > 0 || insideAny([...before.hosts, ...after.hosts], ranges)) this.#refreshPrefixes();
    const change = this.#changes.get(id) ?? (old ? { old } : {});
    if (now) change.now = now;
    else delete change.now;
    this.#changes.set(id, change);
    // A member that left a remote group (or lost an address in it) may have been a peer of the ports whose
    // rules name that group: their flows with it are judged too.
    for (const g of lostMemberships(old, now)) if (this.#remote.has(g)) this.#lostGroups.add(g);
    this.#syncNets([...(old ? netMemberKeys(old) : []), ...(now ? netMemberKeys(now) : [])]);
  }

  /** The ports whose rules use one of `groups` as a remote group, as changes with the policy the same. */
  #peersOf(groups: readonly string[], skip: ReadonlySet<string>): PortChange[] {
    const out: PortChange[] = [];
    const seen = new Set(skip);
    for (const prof of this.#profiles.values()) {
      const remote = remoteGroupsOf(prof.policy.rules);
      if (!groups.some((g) => remote.has(g))) continue;
      for (const id of prof.users) {
        const p = this.#policies.get(id);
        if (p && !seen.has(id)) {
          seen.add(id);
          out.push({ old: p, now: p });
        }
      }
    }
    return out;
  }

  #fipIndex(f: FloatingIp, add: boolean): void {
    if (add) this.#floatingAt.set(f.floatingIp, f.id);
    else if (this.#floatingAt.get(f.floatingIp) === f.id) this.#floatingAt.delete(f.floatingIp);
    if (f.portId === undefined) return;
    let s = this.#fipsOf.get(f.portId);
    if (!s) this.#fipsOf.set(f.portId, (s = new Set()));
    if (add) s.add(f.id);
    else if (s.delete(f.id) && s.size === 0) this.#fipsOf.delete(f.portId);
  }

  #fipClaims(id: string): void {
    const f = this.model.floatingIps?.get(id);
    const port = f?.portId === undefined ? undefined : this.#policies.get(f.portId);
    this.#store.set(`fip:${id}`, f ? fipClaims(f, port, this.model.nat !== undefined) : []);
  }

  #indexGroups(p: PortPolicy, add: boolean): void {
    for (const g of new Set(p.groupIds)) {
      let s = this.#groupPorts.get(g);
      if (!s) this.#groupPorts.set(g, (s = new Set()));
      if (add) s.add(p.portId);
      else if (s.delete(p.portId) && s.size === 0) this.#groupPorts.delete(g);
    }
    count(this.#netCounts, netMemberKeys(p), add);
    // The zone sets of prefix ranges are the skeleton's: a network's first or last such port changes it.
    if (count(this.#zoneNetCounts, zoneNetKeys(p), add)) this.#shapeDirty = true;
    if (!p.stateful) {
      this.#statelessPorts += add ? 1 : -1;
      if (this.#statelessPorts === (add ? 1 : 0)) this.#shapeDirty = true;
    }
  }

  /**
   * After a port's change: a group that gained its first member prefix in a family, or lost its last, gets
   * or loses its member-prefix set, and the groups naming it as a remote group their rule that looks there.
   */
  #syncNets(keys: readonly string[]): void {
    const flipped = new Set<string>();
    for (const k of keys) {
      const has = this.#netCounts.has(k);
      if (has === this.#nets.has(k)) continue;
      if (has) this.#nets.add(k);
      else this.#nets.delete(k);
      flipped.add(familyKeyParts(k).id);
    }
    const named = [...flipped].filter((g) => this.#remote.has(g));
    if (named.length === 0) return;
    this.#shapeDirty = true;
    for (const [id, g] of [...this.#groups]) {
      if (g.rules.some((r) => r.remote.kind === 'group' && named.includes(r.remote.groupId))) this.#setGroupUnit(id, g.version);
    }
  }

  /** The port's host addresses: who owns address X. */
  #indexHosts(portId: string, hosts: readonly string[], add: boolean): void {
    for (const h of hosts) {
      const r = prefixRange(h);
      const k = `${r.family}|${r.lo}`;
      const s = this.#hosts.get(k);
      if (add) {
        if (s === undefined) this.#hosts.set(k, portId);
        else if (typeof s === 'string') this.#hosts.set(k, new Set([s, portId]));
        else s.add(portId);
      } else if (s === portId) this.#hosts.delete(k);
      else if (typeof s !== 'string' && s?.delete(portId) && s.size === 1) this.#hosts.set(k, [...s][0]!);
    }
  }

  /** The port's prefixes wider than a host (the prefix unit's input). */
  #indexWide(portId: string, nets: readonly string[], add: boolean): void {
    if (add && nets.length) this.#wide.set(portId, nets.map(prefixRange));
    else if (!add) this.#wide.delete(portId);
  }

  /** Points a filtered port at its profile, creating the profile when its combination of groups is new. */
  #use(p: PortPolicy): void {
    const key = profileKey(profileGroups(p));
    let prof = this.#profiles.get(key);
    if (!prof) prof = this.#addProfile(key, this.#profileSpace.next());
    prof.users.add(p.portId);
    this.#unused.delete(key);
    p.profile = prof.policy.id;
  }

  #release(p: PortPolicy): void {
    const key = profileKey(profileGroups(p));
    const prof = this.#profiles.get(key);
    if (!prof) return;
    prof.users.delete(p.portId);
    if (prof.users.size === 0) this.#unused.add(key);
  }

  #addProfile(key: string, id: number): Profile {
    const groupIds = JSON.parse(key) as string[];
    const policy: ProfilePolicy = { id, key, groupIds, rules: this.#rules.rules(groupIds) };
    const prof = { policy, users: new Set<string>() };
    this.#profiles.set(key, prof);
    this.#setProfileUnit(policy);
    return prof;
  }

  #setProfileUnit(policy: ProfilePolicy): void {
    const p = profileObjects(this.config, policy, (g) => this.#groups.has(g));
    this.#store.set(`profile:${policy.id}`, p.claims);
    this.#setUnit(`profile:${policy.id}`, p.objects);
    this.#setSlots(policy.id, p.slots);
  }

  /**
   * Counts the group slots each profile fills: the skeleton has a verdict map per slot up to the most any
   * profile (used or not yet collected) fills, so a change of that number changes the skeleton.
   */
  #setSlots(id: number, slots: number | undefined): void {
    const before = this.#slotsOf.get(id);
    if (before === slots) return;
    if (before !== undefined) count(this.#slotCounts, [String(before)], false);
    if (slots === undefined) this.#slotsOf.delete(id);
    else {
      this.#slotsOf.set(id, slots);
      count(this.#slotCounts, [String(slots)], true);
    }
    const most = Math.max(1, ...[...this.#slotCounts.keys()].map(Number));
    if (most !== this.#slots) {
      this.#slots = most;
      this.#shapeDirty = true;
    }
  }

  /**
   * Recomputes a group's chains and sets at `version`, or at the next version when the kernel's (committed)
   * ones would lose anything: set and chain deletes are cheap, element deletes from interval sets are not.
   */
  #setGroupUnit(id: string, version: number, listed?: ReadonlyMap<string, readonly Element[]>): void {
    const unit = `group:${id}`;
    const old = this.#groups.get(id);
    if (!this.model.groups.has(id)) {
      if (old) this.#countUses(old.rules, -1);
      this.#groups.delete(id);
      this.#setUnit(unit, []);
      return;
    }
    const rules = this.#rules.rules([id]);
    let g: GroupPolicy = { id, version, rules };
    const hasNets = (remote: string, f: 4 | 6): boolean => this.#nets.has(familyKey(remote, f));
    let objects = groupObjects(this.config, g, hasNets);
    const committed = this.#unitsCommitted.get(unit);
    const before = committed ? groupElements(committed) : listed;
    if (before && needsVersion(before, groupElements(objects))) {
      g = { id, version: (version + 1) % GROUP_VERSIONS, rules };
      objects = groupObjects(this.config, g, hasNets);
    }
    this.#groups.set(id, g);
    // The new uses before the old go: a use the group keeps never drops to zero on the way, which would make
    // the next batch recompute the skeleton's signature (O(networks and remote groups)) for nothing.
    this.#countUses(rules, 1);
    if (old) this.#countUses(old.rules, -1);
    this.#setUnit(unit, objects);
  }

  #setUnit(unit: string, objects: NftObject[]): void {
    if (objects.length) this.#units.set(unit, objects);
    else this.#units.delete(unit);
    this.#unitsDirty.add(unit);
  }

  #countUses(rules: readonly CompiledRule[], by: 1 | -1): void {
    for (const [g, uses] of remoteUses([rules])) {
      let m = this.#remote.get(g);
      if (!m) this.#remote.set(g, (m = new Map()));
      for (const use of uses) {
        const n = (m.get(use) ?? 0) + by;
        if (n > 0) m.set(use, n);
        else m.delete(use);
        if (n === 0 || (n === 1 && by === 1)) this.#shapeDirty = this.#usesChanged = true;
      }
      if (m.size === 0) this.#remote.delete(g);
    }
  }

  /** Member sets follow remote-group use: ports of a group whose member families changed are reclaimed. */
  #refreshMembers(): void {
    // The member families follow from which remote uses exist at all: unchanged unless one appeared or went.
    if (!this.#usesChanged) return;
    this.#usesChanged = false;
    const next = memberFamilies(this.#remoteInput());
    const changed = new Set<string>();
    for (const g of new Set([...next.keys(), ...this.#members.keys()])) {
      const a = [...(next.get(g) ?? [])].sort().join();
      const b = [...(this.#members.get(g) ?? [])].sort().join();
      if (a !== b) changed.add(g);
    }
    this.#members = next;
    if (changed.size === 0) return;
    for (const g of changed) {
      for (const id of this.#groupPorts.get(g) ?? []) {
        const p = this.#policies.get(id);
        if (p) this.#store.set(`port:${id}`, portClaims(p, this.#members));
      }
    }
    this.#refreshPrefixes();
  }

  #refreshPrefixes(): void {
    const ranges = [...this.#wide.values()].flat();
    const ports = [...this.#policies.values()].filter((p) => this.#wide.has(p.portId) || insideAny(portHosts(p), ranges));
    this.#store.set(FULL_PREFIX_UNIT, ports.length ? prefixClaims(ports, this.#members) : []);
  }

  #remoteInput(): SkeletonInput['remote'] {
    const out = new Map<string, Set<RemoteUse>>();
    for (const [g, m] of this.#remote) if (m.size) out.set(g, new Set(m.keys()));
    return out;
  }

  #skeletonInput(): SkeletonInput {
    let floating = false;
    for (const f of this.model.floatingIps?.values() ?? []) if (f.portId !== undefined) floating = true;
    return {
      config: this.config, networks: [...this.model.networks.values()], remote: this.#remoteInput(), nat: this.model.nat, floating,
      nets: this.#nets, zoneNets: new Set(this.#zoneNetCounts.keys()), stateless: this.#statelessPorts > 0,
      profileSlots: this.#slots,
    };
  }
}

/** An elements object of set `s`. */
function elementsOf(s: NftSet, elements: Elements['elements']): Elements {
  return { kind: 'elements', family: s.family, table: s.table, set: s.name, elements };
}

// The remote groups a rule list names, per (shared, never mutated) rule list.
const remoteGroupCache = new WeakMap<ProfilePolicy['rules'], ReadonlySet<string>>();
function remoteGroupsOf(rules: ProfilePolicy['rules']): ReadonlySet<string> {
  let s = remoteGroupCache.get(rules);
  if (!s) {
    s = new Set(rules.flatMap((r) => (r.remote.kind === 'group' ? [r.remote.groupId] : [])));
    remoteGroupCache.set(rules, s);
  }
  return s;
}

/** Adds (or takes) one to each key's count, dropping zeros; whether a key appeared or went. */
function count(counts: Map<string, number>, keys: readonly string[], add: boolean): boolean {
  let flipped = false;
  for (const k of keys) {
    const n = (counts.get(k) ?? 0) + (add ? 1 : -1);
    if (n > 0) counts.set(k, n);
    else counts.delete(k);
    if (n === 0 || (n === 1 && add)) flipped = true;
  }
  return flipped;
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Groups in which `old` had a member address that `now` no longer has there. */
function lostMemberships(old: PortPolicy | undefined, now: PortPolicy | undefined): string[] {
  if (!old) return [];
  const kept = new Set(now ? now.groupIds.flatMap((g) => now.memberPrefixes.map((x) => `${g} ${x}`)) : []);
  return [...new Set(old.groupIds.filter((g) => old.memberPrefixes.some((x) => !kept.has(`${g} ${x}`))))];
}

/** The tables of a list of objects, and how many chains, rules, sets and elements it holds. */
export interface ObjectCounts {
  tables: { family: NftObject['family']; name: string }[];
  counts: { chains: number; rules: number; sets: number; elements: number };
}

/** {@link ObjectCounts} of a list of objects (a listing, or a compile). */
export function countObjects(objects: readonly NftObject[]): ObjectCounts {
  const counts = { chains: 0, rules: 0, sets: 0, elements: 0 };
  const tables: ObjectCounts['tables'] = [];
  for (const o of objects) {
    if (o.kind === 'table') tables.push({ family: o.family, name: o.name });
    else if (o.kind === 'chain') counts.chains++;
    else if (o.kind === 'rule') counts.rules++;
    else if (o.kind === 'set') counts.sets++;
    else if (o.kind === 'elements') counts.elements += o.elements.length;
  }
  // By name, then family: the same order whether counted from memory or from a listing.
  tables.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.family < b.family ? -1 : a.family > b.family ? 1 : 0));
  return { tables, counts };
}

/** The skeleton with each set's elements as they were before the store's pending changes. */
function withBefore(objects: readonly NftObject[], store: ClaimStore): NftObject[] {
  const out = [...objects];
  for (const o of objects) {
    if (o.kind !== 'set') continue;
    const elements: Element[] = store.elementsBefore(`${o.family}:${o.name}`);
    if (elements.length) out.push({ kind: 'elements', family: o.family, table: o.table, set: o.name, elements });
  }
  return out;
}

/**
 * Whether a group's change must give its sets a new version rather than delete elements from them in place
 * (docs/dataplane.md, "Security groups and rule profiles"). A delete from a concatenated interval set rewrites
 * the set per element, ~1 ms at 50 elements and tens of ms at thousands; a new version instead refills the
 * group's chains, and any rule added makes the kernel validate the whole ruleset's jump graph, ~5 ms at 5000
 * ports. So a few elements leave small sets in place; more, or from a bigger set, take a new version. Elements
 * count by key and comment; a set that goes altogether does not count (deleting a whole set is cheap).
 */
function needsVersion(before: ReadonlyMap<string, readonly Element[]>, after: ReadonlyMap<string, readonly Element[]>): boolean {
  const id = (e: Element) => `${JSON.stringify(e.key)} ${e.comment ?? ''}`;
  let lost = 0;
  for (const [set, elements] of before) {
    const next = after.get(set);
    if (!next) continue;
    const have = new Set(next.map(id));
    const gone = elements.filter((e) => !have.has(id(e))).length;
    if (gone === 0) continue;
    lost += gone;
    if (elements.length > IN_PLACE_MAX_SET || lost > IN_PLACE_MAX_LOST) return true;
  }
  return false;
}

/** The largest group set elements are deleted from in place, and how many elements one change may delete so. */
export const IN_PLACE_MAX_SET = 64;
export const IN_PLACE_MAX_LOST = 4;

/** Records the version a group set's name carries, by the name's `slug_hash` tail. */
function collectVersion(versions: Map<string, number>, name: string): void {
  const v = groupSetVersion(name);
  if (v) versions.set(v.tail, v.version);
}

/**
 * Whether two sets of hints number everything alike (tags, profile numbers, group set versions): then a build
 * from either gives the same engine, up to the groups' versions that listed elements decide
 * ({@link Engine.relistGroups}).
 */
export function sameNumbering(a: Hints, b: Hints): boolean {
  const same = (x: ReadonlyMap<string, number> | undefined, y: ReadonlyMap<string, number> | undefined): boolean => {
    if ((x?.size ?? 0) !== (y?.size ?? 0)) return false;
    for (const [k, v] of x ?? []) if (y!.get(k) !== v) return false;
    return true;
  };
  return same(a.tags, b.tags) && same(a.profiles, b.profiles) && same(a.versions, b.versions);
}

/** The version a listing (hints) gives a group's sets: by its own sets' names, else by its remote references'. */
function hintedVersion(id: string, model: Model, hints: Hints): number {
  const versions = hints.versions;
  if (!versions?.size) return 0;
  const own = versions.get(idHash(id));
  if (own !== undefined) return own;
  for (const r of model.groups.get(id)?.rules ?? []) {
    const v = r.remoteGroupId === undefined ? undefined : versions.get(idHash(`${id}\n${r.remoteGroupId}`));
    if (v !== undefined) return v;
  }
  return 0;
}

/**
 * Hints from a listing of portwall's tables: tags (`port_tag` comments), profiles (`profiles` comments) and
 * the versions of the groups' sets (their names).
 */
export function hintsFrom(objects: readonly NftObject[], config: PortwallConfig): Hints {
  const tags = new Map<string, number>();
  const profiles = new Map<string, number>();
  const versions = new Map<string, number>();
  const elements = new Map<string, Element[]>();
  for (const o of objects) {
    if (o.kind === 'set' && o.family === 'inet' && o.table === config.tables.inet) collectVersion(versions, o.name);
    if (o.kind === 'elements' && o.family === 'inet' && o.table === config.tables.inet && groupSetVersion(o.set)) elements.set(o.set, o.elements);
    if (o.kind !== 'elements') continue;
    if (o.family === 'bridge' && o.table === config.tables.bridge && o.set === BRIDGE.portTag) {
      for (const e of o.elements) if (e.comment !== undefined && typeof e.data === 'number') tags.set(e.comment, e.data);
    }
    if (o.family === 'inet' && o.table === config.tables.inet && o.set === INET.profiles) {
      for (const e of o.elements) if (e.comment !== undefined && typeof e.key[0] === 'number') profiles.set(e.comment, e.key[0]);
    }
  }
  return { tags, profiles, versions, elements };
}

