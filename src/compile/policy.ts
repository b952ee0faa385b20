/**
 * The compile stage (Model → PolicyIR): what each port may send and receive, with Neutron's semantics —
 * a port's rules are the union of its groups' rules, a remote group stands for the addresses of the ports in
 * it, anti-spoofing allows the port's own (MAC, IP) combinations. Pure: no kernel, no clock, no randomness.
 */
import { PortwallError } from '../errors.js';
import type { Model, PortwallConfig, Prefix, SgRule } from '../model/types.js';
import { familyOf, isDefaultRoute, linkLocalOf } from './addr.js';
import type { CompiledRule, GroupMembers, PolicyIR, PortPolicy, SpoofPair } from './ir.js';

/** Options of {@link compilePolicy}. */
export interface CompileOptions {
  /**
   * Tags bridged ports already carry (port id → tag), e.g. read back from the kernel's `port_tag` map, so a
   * port keeps its tag across applies and adding one port never retags another. Invalid or clashing hints
   * are ignored.
   */
  tags?: ReadonlyMap<string, number>;
}

/** DHCP discover leaves a port before it has an address (SPEC §2.8, Incus #4027). */
const DHCP_DISCOVER_SOURCE: Prefix = '0.0.0.0/32';

/**
 * Compiles a validated model into the policy every renderer uses.
 *
 * @throws PortwallError `ERR_INVALID_STATE` when there are more bridged ports than `config.markMask` has tags.
 */
export function compilePolicy(model: Model, config: PortwallConfig, options: CompileOptions = {}): PolicyIR {
  const tags = assignTags(model, config, options.tags);
  const ports: PortPolicy[] = [];
  for (const port of model.ports.values()) {
    const net = model.networks.get(port.networkId);
    if (!net) throw new Error(`port ${port.id}: network ${port.networkId} is not in the model`); // validate.ts guarantees it
    const groups = port.groupIds.map((id) => model.groups.get(id)).filter((g) => g !== undefined);
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
      stateful: groups.every((g) => g.stateful),
      spoof: spoofPairs(port.mac, port.fixedIps, port.addressPairs),
      dhcpServers: [...net.dhcpServers],
      routers: [...net.routers],
      rules: groups.flatMap((g) => g.rules.map(compileRule)),
    };
    if (net.bridge !== undefined) policy.bridge = net.bridge;
    const tag = tags.get(port.id);
    if (tag !== undefined) policy.tag = tag;
    ports.push(policy);
  }
  return { config, networks: [...model.networks.values()], ports, members: groupMembers(model, ports) };
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

/**
 * Members of every group that a port's rule uses as its remote group: the fixed IPs and address-pair prefixes
 * of the group's ports, per family. A /0 pair never makes its port a member of everything (Neutron LP 1867119).
 */
function groupMembers(model: Model, ports: PortPolicy[]): GroupMembers[] {
  const wanted = new Map<string, Set<4 | 6>>();
  for (const p of ports) {
    if (!p.filtered) continue;
    for (const r of p.rules) {
      if (r.remote.kind !== 'group') continue;
      let fams = wanted.get(r.remote.groupId);
      if (!fams) wanted.set(r.remote.groupId, (fams = new Set()));
      fams.add(r.family);
    }
  }
  const out: GroupMembers[] = [];
  for (const [groupId, fams] of [...wanted].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const byFamily = { 4: new Set<Prefix>(), 6: new Set<Prefix>() };
    for (const port of model.ports.values()) {
      if (!port.groupIds.includes(groupId)) continue;
      for (const ip of port.fixedIps) byFamily[familyOf(ip)].add(ip);
      for (const pair of port.addressPairs) if (!isDefaultRoute(pair.prefix)) byFamily[pair.family].add(pair.prefix);
    }
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
function assignTags(model: Model, config: PortwallConfig, hints: ReadonlyMap<string, number> = new Map()): Map<string, number> {
  const bridged = [...model.ports.values()]
    .filter((p) => model.networks.get(p.networkId)?.mode === 'bridged')
    .map((p) => p.id)
    .sort();
  const out = new Map<string, number>();
  if (bridged.length === 0) return out;
  const { shift, count } = tagSpace(config.markMask);
  if (bridged.length > count) {
    throw new PortwallError('ERR_INVALID_STATE', `${bridged.length} bridged ports, but markMask 0x${(config.markMask >>> 0).toString(16)} has only ${count} tags`, { field: 'ports' });
  }
  const used = new Set<number>();
  for (const id of bridged) {
    const t = hints.get(id);
    if (t === undefined || !Number.isInteger(t) || t <= 0) continue;
    const k = t / 2 ** shift;
    if (!Number.isInteger(k) || k < 1 || k > count || used.has(k)) continue;
    used.add(k);
    out.set(id, t);
  }
  let next = 1;
  for (const id of bridged) {
    if (out.has(id)) continue;
    while (used.has(next)) next++;
    used.add(next);
    out.set(id, next * 2 ** shift);
  }
  return out;
}
