/**
 * Publishing remote-group memberships as ipsets (config `publishIpsets`), for hosts that still run iptables
 * consumers (`-m set --match-set`), e.g. during a migration from Neutron's iptables driver. The sets carry the
 * same names the iptables renderer uses (`pw4-<group>-<hash>`), so `portwall plan --format iptables` output
 * matches what is published. A whole publish lists the sets and replaces each one that differs atomically
 * (filled aside, then swapped in); sets of groups no longer used as remote groups are destroyed unless an
 * iptables rule still references them. Between whole publishes, {@link IpsetMirror} adds and deletes only the
 * members a change moved (docs/dataplane.md, "Published ipsets").
 */
import type { IpsetClient } from '../ipset.js';
import { familyOf } from '../compile/addr.js';
import type { GroupMembers, PortPolicy } from '../compile/ir.js';
import type { Prefix } from '../model/types.js';
import { memberSetName } from '../render/iptables-syntax.js';
import type { PortChange } from './engine.js';

/** The ipset operations publishing needs (an IpsetClient fits; tests may pass a fake). */
export type IpsetLike = Pick<IpsetClient, 'list' | 'create' | 'replace' | 'destroy' | 'add' | 'del'>;

export interface PublishResult {
  /** Sets whose members were (re)published. */
  published: string[];
  /** Stale sets destroyed. */
  destroyed: string[];
  /** Stale sets kept because something (an iptables rule) still uses them. */
  inUse: string[];
}

export const OURS = /^pw[46]-/;

/**
 * Makes the namespace's `pw4-…`/`pw6-…` ipsets hold exactly the IR's remote-group members. Sets that already
 * hold them are left alone, so applying the same state twice changes nothing.
 */
export async function publishIpsets(ipsets: IpsetLike, groups: readonly GroupMembers[]): Promise<PublishResult> {
  const existing = new Map((await ipsets.list()).map((s) => [s.name, s]));
  const result: PublishResult = { published: [], destroyed: [], inUse: [] };
  const wanted = new Set<string>();
  for (const m of groups) {
    const name = memberSetName(m.groupId, m.family);
    wanted.add(name);
    const members = m.prefixes.map(entryOf).sort();
    const have = existing.get(name);
    if (have && same((have.members ?? []).map(String), members)) continue;
    if (!have) await ipsets.create(name, { type: 'hash:net', family: m.family === 4 ? 'ipv4' : 'ipv6' });
    await ipsets.replace(name, members);
    result.published.push(name);
  }
  for (const [name, info] of existing) {
    if (!OURS.test(name) || wanted.has(name)) continue;
    // The kernel refuses to destroy a set an iptables rule references: keep it, report it.
    if (info.references > 0) result.inUse.push(name);
    else {
      await ipsets.destroy(name);
      result.destroyed.push(name);
    }
  }
  return result;
}

function same(have: readonly string[], want: readonly string[]): boolean {
  return have.length === want.length && [...have].sort().every((m, i) => m === want[i]);
}

/** A member prefix as `ipset list` prints it: host entries of a hash:net set without their /32 or /128. */
function entryOf(prefix: Prefix): string {
  return prefix.replace(familyOf(prefix) === 4 ? /\/32$/ : /\/128$/, '');
}

/** What a handle's state tells the mirror: what {@link publishIpsets} needs, and what to count from. */
export interface MemberSource {
  /** Every remote group's members by family (what a whole publish makes the sets hold). */
  readonly members: readonly GroupMembers[];
  /** The remote groups and the families their rules name (which sets exist). */
  remoteFamilies(): ReadonlyMap<string, ReadonlySet<4 | 6>>;
  /** Every port's policy (counted once, after a whole publish). */
  portPolicies(): Iterable<PortPolicy>;
}

/**
 * The published ipsets as a long-lived handle keeps them: a whole publish (a listing of every set) when it has
 * nothing to go by — the first time, for a whole state, after an adoption or a failed publish, or when a group
 * starts or stops being a remote group — and otherwise, from the ports a change touched, only the members that
 * came or went: `ipset add` and `del` of those, nothing listed. Each member is counted by the ports that give it,
 * so a member two ports share (overlapping addresses on two networks) stays until both have let it go.
 */
export class IpsetMirror {
  /** Per published set, each entry with how many ports give it; undefined when a whole publish is due. */
  #held: Map<string, Map<string, number>> | undefined;
  /** The remote groups and families the sets were last published for. */
  #wanted = '';

  constructor(readonly ipsets: IpsetLike) {}

  /**
   * Brings the sets in step with `source`: from `changed` (the ports the change touched, each as it was at the
   * last publish and as it is now) when the mirror can, else by a whole publish.
   */
  async publish(source: MemberSource, changed?: readonly PortChange[]): Promise<PublishResult> {
    const families = source.remoteFamilies();
    const wanted = wantedKey(families);
    const held = this.#held;
    this.#held = undefined; // until this publish has succeeded
    if (changed && held && wanted === this.#wanted) {
      const result = await this.#apply(held, families, changed);
      this.#held = held;
      return result;
    }
    const result = await publishIpsets(this.ipsets, source.members);
    const counts = new Map<string, Map<string, number>>();
    for (const p of source.portPolicies()) entries(p, families, (set, entry) => bump(counts, set, entry, 1));
    this.#held = counts;
    this.#wanted = wanted;
    return result;
  }

  async #apply(held: Map<string, Map<string, number>>, families: ReadonlyMap<string, ReadonlySet<4 | 6>>, changed: readonly PortChange[]): Promise<PublishResult> {
    // Each touched entry's count before the change, to tell what came (0 → some) and went (some → 0).
    const before = new Map<string, Map<string, number>>();
    const touch = (set: string, entry: string, by: 1 | -1): void => {
      let was = before.get(set);
      if (!was) before.set(set, (was = new Map()));
      if (!was.has(entry)) was.set(entry, held.get(set)?.get(entry) ?? 0);
      bump(held, set, entry, by);
    };
    for (const c of changed) {
      if (c.old) entries(c.old, families, (set, entry) => touch(set, entry, -1));
      if (c.now) entries(c.now, families, (set, entry) => touch(set, entry, 1));
    }
    const result: PublishResult = { published: [], destroyed: [], inUse: [] };
    for (const [set, was] of [...before].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const came: string[] = [];
      const went: string[] = [];
      for (const [entry, n] of was) {
        const now = held.get(set)?.get(entry) ?? 0;
        if (n === 0 && now > 0) came.push(entry);
        else if (n > 0 && now === 0) went.push(entry);
      }
      if (came.length) await this.ipsets.add(set, came);
      if (went.length) await this.ipsets.del(set, went);
      if (came.length || went.length) result.published.push(set);
    }
    return result;
  }
}

/** A port's entries in the published sets: each of its member prefixes in each of its remote groups' sets. */
function entries(p: PortPolicy, families: ReadonlyMap<string, ReadonlySet<4 | 6>>, add: (set: string, entry: string) => void): void {
  for (const g of p.groupIds) {
    const fams = families.get(g);
    if (!fams) continue;
    for (const prefix of p.memberPrefixes) {
      const family = familyOf(prefix);
      if (fams.has(family)) add(memberSetName(g, family), entryOf(prefix));
    }
  }
}

function bump(counts: Map<string, Map<string, number>>, set: string, entry: string, by: 1 | -1): void {
  let m = counts.get(set);
  if (!m) counts.set(set, (m = new Map()));
  const n = (m.get(entry) ?? 0) + by;
  if (n > 0) m.set(entry, n);
  else m.delete(entry);
}

function wantedKey(families: ReadonlyMap<string, ReadonlySet<4 | 6>>): string {
  return JSON.stringify([...families].map(([g, f]) => [g, [...f].sort()]).sort(([a], [b]) => (a! < b! ? -1 : 1)));
}
