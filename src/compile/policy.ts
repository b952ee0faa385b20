/**
 * The compile stage (Model → PolicyIR): what each port may send and receive, with Neutron's semantics —
 * a port's rules are the union of its groups' rules, a remote group stands for the addresses of the ports in
 * it, anti-spoofing allows the port's own (MAC, IP) combinations. Pure: no kernel, no clock, no randomness.
 */
import { PortwallError } from '../errors.js';
import { CLOUDSTACK_GROUP, type Model, type Network, type Port, type PortwallConfig, type Prefix, type SecurityGroup, type SgRule } from '../model/types.js';
import { familyOf, isDefaultRoute, linkLocalOf } from './addr.js';
import { profileGroups, profileKey, type CompiledRule, type GroupMembers, type PolicyIR, type PortPolicy, type ProfilePolicy, type SpoofPair } from './ir.js';

/** Options of {@link compilePolicy}. */
export interface CompileOptions {
  /**
   * Tags bridged ports already carry (port id → tag), e.g. read back from the kernel's `port_tag` map, so a
   * port keeps its tag across applies and adding one port never retags another. Invalid or clashing hints
   * are ignored.
   */
  tags?: ReadonlyMap<string, number>;
  /** Numbers rule profiles already carry (profile key → number), kept when valid. */
  profiles?: ReadonlyMap<string, number>;
  /** Versions the groups' sets already carry (group id → version). */
  versions?: ReadonlyMap<string, number>;
}

/** DHCP discover leaves a port before it has an address (Incus #4027). */
const DHCP_DISCOVER_SOURCE: Prefix = '0.0.0.0/32';

/**
 * Compiles a validated model into the policy every renderer uses.
 *
 * @throws PortwallError `ERR_INVALID_STATE` when there are more bridged ports (or rule profiles) than
 *   `config.markMask` has tags.
 */
export function compilePolicy(model: Model, config: PortwallConfig, options: CompileOptions = {}): PolicyIR {
  const tags = assignTags(model, config, options.tags);
  const rules = new RuleCache(model.groups);
  const ports: PortPolicy[] = [];
  for (const port of model.ports.values()) {
    const net = model.networks.get(port.networkId);
    if (!net) throw new Error(`port ${port.id}: network ${port.networkId} is not in the model`); // validate.ts guarantees it
    ports.push(compilePort(port, net, model.groups, rules, tags.get(port.id)));
  }
  const profiles = assignProfiles(ports, config, (key) => options.profiles?.get(key));
  const groups = [...model.groups.keys()].sort().map((id) => ({ id, version: options.versions?.get(id) ?? 0, rules: rules.rules([id]) }));
  return { config, networks: [...model.networks.values()], ports, members: groupMembers(ports), profiles, groups };
}

/** The compiled rules of each combination of groups, computed once per combination. */
export class RuleCache {
  readonly #byKey = new Map<string, { groupIds: readonly string[]; rules: CompiledRule[] }>();
  readonly #byGroup = new Map<string, CompiledRule[]>();
  constructor(readonly groups: ReadonlyMap<string, SecurityGroup>) {}

  /**
   * The union of the groups' rules (in group order), shared by every caller with the same groups; with
   * {@link CLOUDSTACK_GROUP} among them, followed by the CloudStack flavour's built-in rules. Each group's
   * rules are compiled once, whatever the number of combinations it is in.
   */
  rules(groupIds: readonly string[]): CompiledRule[] {
    const key = JSON.stringify(groupIds);
    let entry = this.#byKey.get(key);
    if (!entry) {
      const rules = groupIds.flatMap((id) => this.#group(id));
      if (groupIds.includes(CLOUDSTACK_GROUP)) rules.push(...cloudstackRules(rules));
      this.#byKey.set(key, (entry = { groupIds: [...groupIds], rules }));
    }
    return entry.rules;
  }

  /** Forgets a group's rules and the combinations that contain it (after the group changed). */
  forget(groupId: string): void {
    this.#byGroup.delete(groupId);
    for (const [k, e] of this.#byKey) if (e.groupIds.includes(groupId)) this.#byKey.delete(k);
  }

  #group(id: string): CompiledRule[] {
    let r = this.#byGroup.get(id);
    if (!r) this.#byGroup.set(id, (r = this.groups.get(id)?.rules.map(compileRule) ?? []));
    return r;
  }
}

/**
 * The CloudStack flavour's built-in rules for a port whose groups have `rules` (docs/dataplane.md, "Flavours"):
 * DNS to anywhere (udp and tcp 53: answers too large for a datagram are retried over TCP), and egress to
 * anywhere while none of the groups has an egress rule — the first egress rule restricts egress to the rules.
 */
function cloudstackRules(rules: readonly CompiledRule[]): CompiledRule[] {
  const any = { kind: 'any' } as const;
  const rule = (id: string, family: 4 | 6, protocol?: number): CompiledRule => ({
    ruleId: `${CLOUDSTACK_GROUP}:${id}${family}`, groupId: CLOUDSTACK_GROUP, direction: 'egress', family, remote: any,
    ...(protocol === undefined ? {} : { protocol, ports: { min: 53, max: 53 } }),
  });
  const out: CompiledRule[] = [];
  for (const f of [4, 6] as const) out.push(rule('dns-udp', f, 17), rule('dns-tcp', f, 6));
  if (!rules.some((r) => r.direction === 'egress')) for (const f of [4, 6] as const) out.push(rule('egress', f));
  return out;
}

/** One port's policy (without its profile number, which {@link assignProfiles} or the engine sets). */
export function compilePort(port: Port, net: Network, groups: ReadonlyMap<string, SecurityGroup>, rules: RuleCache, tag: number | undefined): PortPolicy {
  const own = port.groupIds.map((id) => groups.get(id)).filter((g) => g !== undefined);
  const policy: PortPolicy = {
    portId: port.id,
    device: port.device,
    networkId: net.id,
    zone: net.zone,
    mode: net.mode,
    mac: port.mac,
    fixedIps: [...port.fixedIps],
    filtered: port.portSecurity && port.kind !== 'system',
    // validate.ts refuses mixed groups; a port without groups keeps the stateful default.
    stateful: own.every((g) => g.stateful),
    spoof: spoofPairs(port.mac, port.fixedIps, port.addressPairs),
    memberPrefixes: [...new Set([...port.fixedIps, ...port.addressPairs.filter((a) => !isDefaultRoute(a.prefix)).map((a) => a.prefix)])],
    dhcpServers: [...net.dhcpServers],
    routers: [...net.routers],
    groupIds: [...port.groupIds],
    rules: [],
  };
  if (net.flavor === 'cloudstack') policy.flavor = 'cloudstack';
  policy.rules = rules.rules(profileGroups(policy));
  if (net.l2Guards !== undefined && net.mode === 'bridged') policy.l2Guards = { ...net.l2Guards };
  if (net.bridge !== undefined) policy.bridge = net.bridge;
  if (tag !== undefined) policy.tag = tag;
  return policy;
}

/**
 * Rule profiles of the filtered ports: one per combination of groups (ports with the same groups have the
 * same rules), numbered in the tag space of `config.markMask`. A hinted number (`hintOf(key)`, e.g. read back
 * from the kernel) is kept when valid; the others take the lowest free numbers in key order. Sets `profile` on
 * the ports.
 */
export function assignProfiles(ports: readonly PortPolicy[], config: PortwallConfig, hintOf: (key: string) => number | undefined = () => undefined): ProfilePolicy[] {
  const byKey = new Map<string, { groupIds: string[]; ports: PortPolicy[] }>();
  for (const p of ports) {
    if (!p.filtered) continue;
    const key = profileKey(profileGroups(p));
    let e = byKey.get(key);
    if (!e) byKey.set(key, (e = { groupIds: JSON.parse(key) as string[], ports: [] }));
    e.ports.push(p);
  }
  const numbers = profileSpace(config);
  const keys = [...byKey.keys()].sort();
  const ids = new Map<string, number>();
  for (const k of keys) {
    const hint = hintOf(k);
    if (hint !== undefined && numbers.claim(hint)) ids.set(k, hint);
  }
  for (const k of keys) if (!ids.has(k)) ids.set(k, numbers.next(keys.length));
  const out: ProfilePolicy[] = [];
  for (const k of keys) {
    const e = byKey.get(k)!;
    const id = ids.get(k)!;
    for (const p of e.ports) p.profile = id;
    out.push({ id, key: k, groupIds: e.groupIds, rules: e.ports[0]!.rules });
  }
  return out.sort((a, b) => a.id - b.id);
}

/**
 * Numbers in the tag space of a mark mask ({@link tagSpace}): k << shift for k = 1 … count, claimed by hint
 * or handed out lowest first.
 */
export class NumberSpace {
  readonly #shift: number;
  readonly count: number;
  readonly #used = new Set<number>();
  #cursor = 1;

  constructor(readonly mask: number, readonly what: string) {
    const { shift, count } = tagSpace(mask);
    this.#shift = shift;
    this.count = count;
  }

  /** Claims a specific number; false when it is not in the space or already taken. */
  claim(n: number): boolean {
    if (!Number.isInteger(n) || n <= 0) return false;
    const k = n / 2 ** this.#shift;
    if (!Number.isInteger(k) || k < 1 || k > this.count || this.#used.has(k)) return false;
    this.#used.add(k);
    return true;
  }

  /** Gives a number back. */
  release(n: number): void {
    const k = n / 2 ** this.#shift;
    this.#used.delete(k);
    if (k < this.#cursor) this.#cursor = k;
  }

  /** @throws PortwallError `ERR_INVALID_STATE` when `wanted` numbers do not fit. */
  ensure(wanted: number): void {
    if (wanted > this.count) {
      throw new PortwallError('ERR_INVALID_STATE', `${wanted} ${this.what}, but markMask 0x${(this.mask >>> 0).toString(16)} has only ${this.count} tags`, { field: 'ports' });
    }
  }

  /**
   * The lowest free number.
   * @throws PortwallError `ERR_INVALID_STATE` when the space is full (`wanted` says how many were asked for).
   */
  next(wanted?: number): number {
    while (this.#used.has(this.#cursor)) this.#cursor++;
    if (this.#cursor > this.count) this.ensure(Math.max(wanted ?? 0, this.count + 1));
    this.#used.add(this.#cursor);
    return this.#cursor * 2 ** this.#shift;
  }
}

/** The numbers of rule profiles: the tag space without the mark that says "allowed" (every tag bit set). */
export function profileSpace(config: Pick<PortwallConfig, 'markMask'>): NumberSpace {
  const space = new NumberSpace(config.markMask, 'rule profiles');
  space.claim(markBits(config.markMask >>> 0).tagMask);
  return space;
}

function compileRule(r: SgRule): CompiledRule {
  const out: CompiledRule = {
    ruleId: r.id,
    groupId: r.groupId,
    direction: r.direction,
    family: r.family,
    remote: r.remoteGroupId !== undefined ? { kind: 'group', groupId: r.remoteGroupId }
      : r.remotePrefix !== undefined && !isDefaultRoute(r.remotePrefix) ? { kind: 'prefix', prefix: r.remotePrefix }
      : { kind: 'any' },
  };
  if (r.protocol !== undefined) out.protocol = r.protocol;
  if (r.ports !== undefined) out.ports = { ...r.ports };
  if (r.icmp !== undefined) out.icmp = { ...r.icmp };
  return out;
}

/**
 * (MAC, prefix) combinations a port may send from: fixed IPs with the port's MAC, address pairs with theirs,
 * the link-local address of every one of those MACs, and 0.0.0.0 with the port's MAC for DHCP discover.
 */
function spoofPairs(mac: string, fixedIps: Prefix[], pairs: { prefix: Prefix; family: 4 | 6; mac: string }[]): SpoofPair[] {
  const out = new Map<string, SpoofPair>();
  const add = (m: string, prefix: Prefix): void => {
    out.set(`${m} ${prefix}`, { mac: m, prefix, family: familyOf(prefix) });
  };
  for (const ip of fixedIps) add(mac, ip);
  for (const p of pairs) add(p.mac, p.prefix);
  for (const m of new Set([mac, ...pairs.map((p) => p.mac)])) add(m, linkLocalOf(m));
  add(mac, DHCP_DISCOVER_SOURCE);
  return [...out.values()];
}

/** The remote groups the rules name, each with the families of the rules that name it. */
export function remoteFamiliesOf(ruleLists: Iterable<readonly CompiledRule[]>): Map<string, Set<4 | 6>> {
  const out = new Map<string, Set<4 | 6>>();
  for (const rules of ruleLists) {
    for (const r of rules) {
      if (r.remote.kind !== 'group') continue;
      let fams = out.get(r.remote.groupId);
      if (!fams) out.set(r.remote.groupId, (fams = new Set()));
      fams.add(r.family);
    }
  }
  return out;
}

/**
 * Members of every group that a port's rule uses as its remote group: the fixed IPs and address-pair prefixes
 * of the group's ports, per family. A /0 pair never makes its port a member of everything (Neutron LP 1867119).
 */
export function groupMembers(ports: readonly PortPolicy[]): GroupMembers[] {
  const wanted = remoteFamiliesOf(ports.filter((p) => p.filtered).map((p) => p.rules));
  // One pass over the ports (each names a few groups), not one per remote group: 400 remote groups × 5000
  // ports took ~100 ms, the first conntrack cleanup of a handle waiting on it.
  const byGroup = new Map<string, Record<4 | 6, Set<Prefix>>>();
  for (const groupId of wanted.keys()) byGroup.set(groupId, { 4: new Set(), 6: new Set() });
  for (const p of ports) {
    for (const groupId of p.groupIds) {
      const byFamily = byGroup.get(groupId);
      if (byFamily) for (const prefix of p.memberPrefixes) byFamily[familyOf(prefix)].add(prefix);
    }
  }
  const out: GroupMembers[] = [];
  for (const [groupId, fams] of [...wanted].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const byFamily = byGroup.get(groupId)!;
    for (const family of [4, 6] as const) {
      if (fams.has(family)) out.push({ groupId, family, prefixes: [...byFamily[family]].sort() });
    }
  }
  return out;
}

/**
 * The bits of `markMask` (one run of bits): its highest bit is the bridge-forwarded flag (set by the bridge
 * table's forward chain, docs/dataplane.md), the bits below it hold port tags.
 */
export function markBits(mask: number): { tagMask: number; flag: number } {
  const m = mask >>> 0;
  if (m === 0) throw new PortwallError('ERR_INVALID_VALUE', 'markMask must not be 0', { field: 'markMask', object: mask });
  let shift = 0;
  while (((m >>> shift) & 1) === 0) shift++;
  const run = m >>> shift;
  if ((run & (run + 1)) !== 0) {
    throw new PortwallError('ERR_INVALID_VALUE', `markMask 0x${m.toString(16)} must be one run of bits`, { field: 'markMask', object: mask });
  }
  if (run === 1) {
    throw new PortwallError('ERR_INVALID_VALUE', `markMask 0x${m.toString(16)} is too small: its highest bit is the bridge-forwarded flag, no bit is left for port tags`, { field: 'markMask', object: mask });
  }
  const flag = ((run + 1) / 2) * 2 ** shift;
  return { tagMask: (m - flag) >>> 0, flag };
}

/** Tag values under a contiguous mask, below its flag bit ({@link markBits}): k << shift for k = 1 … count. */
export function tagSpace(mask: number): { shift: number; count: number } {
  const { tagMask } = markBits(mask);
  let shift = 0;
  while (((tagMask >>> shift) & 1) === 0) shift++;
  return { shift, count: tagMask / 2 ** shift };
}

/**
 * Tags of bridged ports: a port keeps a valid hinted tag; the others take the lowest free tags in port-id
 * order. Deterministic for a given model and hints.
 */
export function assignTags(model: Model, config: PortwallConfig, hints: ReadonlyMap<string, number> = new Map()): Map<string, number> {
  const bridged = [...model.ports.values()]
    .filter((p) => model.networks.get(p.networkId)?.mode === 'bridged')
    .map((p) => p.id)
    .sort();
  const out = new Map<string, number>();
  if (bridged.length === 0) return out;
  const space = new NumberSpace(config.markMask, 'bridged ports');
  space.ensure(bridged.length);
  for (const id of bridged) {
    const t = hints.get(id);
    if (t !== undefined && space.claim(t)) out.set(id, t);
  }
  for (const id of bridged) if (!out.has(id)) out.set(id, space.next(bridged.length));
  return out;
}
