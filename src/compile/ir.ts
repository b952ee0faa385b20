/**
 * The compiled policy: what each port may send and receive, resolved from the model (groups unioned,
 * remote groups resolved to member sets, anti-spoof pairs expanded, defaults applied). Every output is
 * rendered from this one form: the nftables layout (`./layout.ts`), Neutron-style iptables-restore input
 * (`../render/iptables.ts`), and the evaluator used for conntrack cleanup and `explain`.
 */
import { CLOUDSTACK_GROUP, type IpFamily, type L2Guards, type Network, type PortwallConfig, type Prefix, type SgRule } from '../model/types.js';

/** Where a rule's remote side may be. */
export type Remote =
  | { kind: 'any' }
  | { kind: 'prefix'; prefix: Prefix }
  /** Members of a remote group, per family: the fixed IPs and address pairs (never /0) of its ports. */
  | { kind: 'group'; groupId: string };

/** One security-group rule as it applies to a port: the model's rule with its remote side resolved. */
export interface CompiledRule extends Pick<SgRule, 'groupId' | 'direction' | 'family' | 'protocol' | 'ports' | 'icmp'> {
  ruleId: string;
  remote: Remote;
}

/** An allowed (source MAC, source prefix) combination for anti-spoofing. */
export interface SpoofPair {
  mac: string;
  prefix: Prefix;
  family: IpFamily;
}

export interface PortPolicy {
  portId: string;
  device: string;
  networkId: string;
  zone: number;
  mode: 'bridged' | 'routed';
  bridge?: string;
  mac: string;
  fixedIps: Prefix[];
  /** false when port_security_enabled is false or the port is a system port: no filtering at all. */
  filtered: boolean;
  /** false when the port's groups are stateless (no conntrack for its traffic). */
  stateful: boolean;
  /** Bridged ports: the tag written into the skb mark bits under `config.markMask` (1-based, unique). */
  tag?: number;
  /** Filtered ports: the number of their rule profile (the interned combination of their groups). */
  profile?: number;
  /** Fixed IPs with the port MAC, address pairs, the IPv6 link-local of each MAC, 0.0.0.0/32 for DHCP discover. */
  spoof: SpoofPair[];
  /** What the port adds to a remote group it is in: fixed IPs and address-pair prefixes, never a /0. */
  memberPrefixes: Prefix[];
  /** DHCP servers and IPv6 routers of the port's network. */
  dhcpServers: Prefix[];
  routers: Prefix[];
  /** The port's security groups, in state-file order. */
  groupIds: string[];
  /** Ports of CloudStack-flavour networks (absent: Neutron's semantics). */
  flavor?: 'cloudstack';
  /** Bridged ports of networks with layer-2 guards on (docs/dataplane.md, "Layer-2 guards"). */
  l2Guards?: L2Guards;
  /**
   * The union of the port's groups' rules (plus, for the CloudStack flavour, its built-in rules: see
   * {@link profileGroups}). Empty for a filtered Neutron port with no group: only DHCP/ND pass.
   */
  rules: CompiledRule[];
}

/**
 * The groups whose rules a port's profile holds: its own, and for a CloudStack-flavour port the reserved
 * {@link CLOUDSTACK_GROUP}, whose rules (DNS, and egress while no group of the port has an egress rule) depend on
 * the others — so a Neutron and a CloudStack port with the same groups have different profiles.
 */
export function profileGroups(p: Pick<PortPolicy, 'groupIds' | 'flavor'>): string[] {
  return p.flavor === 'cloudstack' ? [...p.groupIds, CLOUDSTACK_GROUP] : p.groupIds;
}

/** The member addresses of a remote group, per family (what its member set holds). */
export interface GroupMembers {
  groupId: string;
  family: IpFamily;
  prefixes: Prefix[];
}

/**
 * A rule profile: the security-group rules of a combination of groups, shared by every filtered port with
 * exactly those groups (docs/dataplane.md, "Rule profiles"). Its number lives in the same mark bits as tags;
 * its chains jump to its groups' chains.
 */
export interface ProfilePolicy {
  id: number;
  /** The identity of the combination: {@link profileKey} of its groups. */
  key: string;
  groupIds: string[];
  rules: CompiledRule[];
}

/**
 * A security group as the layout programs it: its compiled rules, and the version its sets are named with
 * (docs/dataplane.md, "Rule profiles"; a fresh layout uses 0, a handle counts up as rules are taken away).
 */
export interface GroupPolicy {
  id: string;
  version: number;
  rules: CompiledRule[];
}

export interface PolicyIR {
  config: PortwallConfig;
  networks: Network[];
  ports: PortPolicy[];
  /** Only groups that some rule uses as a remote group. */
  members: GroupMembers[];
  /** The rule profiles of the filtered ports, by number. */
  profiles: ProfilePolicy[];
  /** Every security group of the model, by id. */
  groups: GroupPolicy[];
}

/** The identity of a combination of groups (order and repetition do not matter). */
export function profileKey(groupIds: readonly string[]): string {
  // Asked twice per port when a handle compiles a host, and ports list their groups in few distinct orders:
  // the list as given is a cheaper key than the sorted set it stands for.
  const given = JSON.stringify(groupIds);
  let key = PROFILE_KEYS.get(given);
  if (key === undefined) {
    if (PROFILE_KEYS.size >= 10_000) PROFILE_KEYS.clear();
    PROFILE_KEYS.set(given, (key = JSON.stringify([...new Set(groupIds)].sort())));
  }
  return key;
}

const PROFILE_KEYS = new Map<string, string>();

/** What a compiled rule matches, without its id: two rules with one key admit the same packets. */
export function ruleMatchKey(r: CompiledRule): string {
  let k = MATCH_KEYS.get(r);
  if (k === undefined) MATCH_KEYS.set(r, (k = JSON.stringify([r.direction, r.family, r.protocol, r.ports, r.icmp, r.remote])));
  return k;
}

// Compiled rules are shared by every rule list with their group (compiled once per group), and are never
// changed after compiling: their keys are computed once.
const MATCH_KEYS = new WeakMap<CompiledRule, string>();

// Rule lists are shared by every port (and profile) with the same groups: their keys are computed once per list.
const RULE_KEYS = new WeakMap<readonly CompiledRule[], Set<string>>();

/** Whether `next` lacks a rule of `prev` (by what the rule matches, not its id): a rule list that shrank. */
export function lostRules(prev: readonly CompiledRule[], next: readonly CompiledRule[]): boolean {
  if (prev === next) return false;
  let answers = LOST.get(prev);
  if (!answers) LOST.set(prev, (answers = new WeakMap()));
  let lost = answers.get(next);
  if (lost === undefined) {
    const keys = (rules: readonly CompiledRule[]): Set<string> => {
      let k = RULE_KEYS.get(rules);
      if (!k) RULE_KEYS.set(rules, (k = new Set(rules.map(ruleMatchKey))));
      return k;
    };
    const have = keys(next);
    lost = [...keys(prev)].some((k) => !have.has(k));
    answers.set(next, lost);
  }
  return lost;
}

// The answer per pair of (shared, never changed) lists: a group change asks it for each of its 1000 ports.
const LOST = new WeakMap<readonly CompiledRule[], WeakMap<readonly CompiledRule[], boolean>>();

/**
 * The groups behind hand-made policies (tests, renderers fed without a model): each group's rules as the
 * ports carry them, version 0. The CloudStack flavour's built-in rules belong to no group.
 */
export function groupsOfPorts(ports: readonly PortPolicy[]): GroupPolicy[] {
  const out = new Map<string, Map<string, CompiledRule>>();
  for (const p of ports) {
    for (const r of p.rules) {
      if (r.groupId === CLOUDSTACK_GROUP) continue;
      let g = out.get(r.groupId);
      if (!g) out.set(r.groupId, (g = new Map()));
      g.set(r.ruleId, r);
    }
  }
  return [...out].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([id, rules]) => ({ id, version: 0, rules: [...rules.values()] }));
}
