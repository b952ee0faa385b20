/**
 * Validation of one port or one security group against a state that is already valid (a library handle's
 * incremental operations): the same checks and messages as a whole state file, plus the ones that span
 * objects — device names unique on the host, MACs and fixed IPs unique on their network, rule ids unique,
 * groups of one kind per port, floating addresses that are no port's fixed IP — answered from indexes instead
 * of the whole state, so checking one port costs what that port costs.
 */
import { checkGroups, type GroupIndex } from './checks-groups.js';
import type { NetworkIndex } from './checks-networks.js';
import { checkFloatingIp, floatingIpClash } from './checks-nat.js';
import { checkPorts } from './checks-ports.js';
import { soundness, type CheckContext } from './context.js';
import { InvalidStateError, Problems, elementPath, show } from './problems.js';
import { matchesSchema, schemaProblems, type SchemaProblem } from './schema-errors.js';
import type { FloatingIpInput, PortInput } from './schema.js';
import type { FloatingIp, Model, Port, PortwallConfig, Prefix, SecurityGroup } from './types.js';
import { parseHostAddress, parseUnicastMac } from './values.js';

/** What a state already holds, as the cross-object checks ask it. */
export interface StateIndex {
  readonly model: Model;
  /** The port holding a device name, a `network MAC` or a `network prefix` now. */
  portWith(what: 'device' | 'mac' | 'ip', key: string): string | undefined;
  /** The group a rule id belongs to now. */
  groupOfRule(ruleId: string): string | undefined;
  /** Ports that are in a group now. */
  portsIn(groupId: string): Iterable<string>;
  /** The floating IP whose address `address` is, now. */
  floatingIpAt(address: Prefix): string | undefined;
}

function start(doc: Record<string, unknown>, config: PortwallConfig): { ctx: CheckContext; problems: Problems } {
  const problems = new Problems();
  let found: SchemaProblem[] = [];
  if (!matchesSchema(doc)) {
    found = schemaProblems(doc);
    for (const p of found) problems.add(p.path, p.message);
  }
  return { ctx: { problems, config, sound: soundness(found) }, problems };
}

/**
 * Validates one port (Neutron's port object) for a state that holds `index`. Replacing a port of the same id
 * is allowed.
 * @throws {@link InvalidStateError} naming every bad field (paths `ports[0] (device).field`).
 */
export function validatePort(raw: unknown, index: StateIndex, config: PortwallConfig, source = 'port'): Port {
  const { ctx, problems } = start({ networks: [], ports: [raw] }, config);
  const { model } = index;
  // The model's maps answer "is this id defined" themselves: nothing O(state) per port.
  const nets: NetworkIndex = { networks: model.networks, ids: model.networks, bridges: bridgesOf(model) };
  const groups: GroupIndex = { groups: model.groups, ids: model.groups, complete: true };
  const port = checkPorts(ctx, [raw], nets, groups).values().next().value as Port | undefined;
  // The clashes with other ports, judged on the raw fields so they are reported with every other problem.
  if (ctx.sound('/ports/0')) {
    const p = raw as PortInput;
    const at = elementPath('', 'ports', 0, raw);
    const clash = (field: string, what: 'device' | 'mac' | 'ip', key: string, message: (other: string) => string) => {
      const other = index.portWith(what, key);
      if (other !== undefined && other !== p.id) problems.add(`${at}.${field}`, message(other));
    };
    clash('device', 'device', p.device, (o) => `device ${show(p.device)} is also port ${show(o)}'s`);
    // A valid port carries its MAC and fixed IPs parsed already (every fixed IP, in order); else parse again.
    const mac = port ? port.mac : parseUnicastMac(p.mac_address).value;
    if (mac !== undefined) clash('mac_address', 'mac', `${p.network_id} ${mac}`, (o) => `MAC ${mac} is also port ${show(o)}'s on network ${show(p.network_id)}`);
    (p.fixed_ips ?? []).forEach((f, k) => {
      const prefix = port ? port.fixedIps[k] : parseHostAddress(f.ip_address).value?.prefix;
      if (!prefix) return;
      clash(`fixed_ips[${k}].ip_address`, 'ip', `${p.network_id} ${prefix}`, (o) => `${show(f.ip_address)} is also port ${show(o)}'s on network ${show(p.network_id)}`);
      // No fixed IP is a floating address, in any network (it would name two zones in the zone maps).
      const fip = index.floatingIpAt(prefix);
      if (fip !== undefined) problems.add(`${at}.fixed_ips[${k}].ip_address`, `${show(f.ip_address)} is the address of floating IP ${show(fip)}`);
    });
  }
  if (!problems.empty || !port) throw new InvalidStateError(problems.list.length ? problems.list : [{ path: 'ports[0]', message: 'not a valid port' }], source);
  return port;
}

// A model's networks never change once built (a new set of networks is a new model): their bridges, once.
const BRIDGES = new WeakMap<Model['networks'], Map<string, string>>();

function bridgesOf(model: Model): Map<string, string> {
  let bridges = BRIDGES.get(model.networks);
  if (!bridges) {
    bridges = new Map();
    for (const n of model.networks.values()) if (n.bridge !== undefined) bridges.set(n.bridge, `network ${show(n.id)}`);
    BRIDGES.set(model.networks, bridges);
  }
  return bridges;
}

/**
 * Validates one security group (with its `security_group_rules`) for a state that holds `index`.
 * @throws {@link InvalidStateError} naming every bad field (paths `security_groups[0] (id).…`).
 */
export function validateGroup(raw: unknown, index: StateIndex, config: PortwallConfig, source = 'security group'): SecurityGroup {
  const { ctx, problems } = start({ networks: [], security_groups: [raw] }, config);
  const { model } = index;
  const group = checkGroups(ctx, [raw], model.groups.keys()).groups.values().next().value as SecurityGroup | undefined;
  if (group) {
    const at = elementPath('', 'security_groups', 0, raw);
    const rules = (raw as { security_group_rules?: unknown[] }).security_group_rules ?? [];
    group.rules.forEach((r, k) => {
      const other = index.groupOfRule(r.id);
      if (other !== undefined && other !== group.id) {
        problems.add(`${elementPath(at, 'security_group_rules', k, rules[k])}.id`, `duplicate rule id ${show(r.id)}, also in security group ${show(other)}`);
      }
    });
    // A port's groups are all stateful or all stateless: changing a group's kind must keep that true (a group
    // that keeps its kind keeps it true; its ports are not walked — a group of 1000 ports changes often).
    const kindKept = model.groups.get(group.id)?.stateful === group.stateful;
    for (const portId of kindKept ? [] : index.portsIn(group.id)) {
      const port = model.ports.get(portId);
      const mixed = port?.groupIds.find((g) => g !== group.id && model.groups.get(g)?.stateful !== group.stateful);
      if (mixed !== undefined) {
        problems.add(`${at}.stateful`, `port ${show(portId)} is also in ${show(mixed)}, which is ${group.stateful ? 'stateless' : 'stateful'}; one port cannot mix them`);
        break;
      }
    }
  }
  if (!problems.empty || !group) throw new InvalidStateError(problems.list.length ? problems.list : [{ path: 'security_groups[0]', message: 'not a valid security group' }], source);
  return group;
}

/**
 * Why a group cannot be removed now: ports in it, or rules of other groups naming it as their remote group
 * (Neutron refuses to delete a group in use). Empty when it can.
 * @throws nothing; returns problems for the caller to throw.
 */
export function groupInUse(groupId: string, index: StateIndex): { path: string; message: string }[] {
  const out: { path: string; message: string }[] = [];
  const at = `security_groups (${groupId})`;
  for (const portId of index.portsIn(groupId)) {
    out.push({ path: at, message: `in use by port ${show(portId)}` });
    break;
  }
  for (const g of index.model.groups.values()) {
    if (g.id === groupId) continue;
    const r = g.rules.find((x) => x.remoteGroupId === groupId);
    if (r) out.push({ path: at, message: `remote group of rule ${show(r.id)} in security group ${show(g.id)}` });
  }
  return out;
}

/**
 * Validates one floating IP (Neutron's object) against the ports and the other floating IPs of the state
 * `index` holds: its addresses, its port and fixed IP, a floating address unique on the host and no port's
 * fixed IP, at most one floating IP per fixed IP. Replacing a floating IP of the same id is allowed.
 * @throws {@link InvalidStateError} naming every bad field (paths `floatingips[0] (id).field`).
 */
export function validateFloatingIp(raw: unknown, index: StateIndex, config: PortwallConfig, source = 'floatingip'): FloatingIp {
  const { ctx, problems } = start({ networks: [], floatingips: [raw] }, config);
  const { model } = index;
  // A fixed IP is unique within its network: one look per network, nothing O(ports).
  const owner = (address: Prefix) => {
    for (const n of model.networks.keys()) {
      const id = index.portWith('ip', `${n} ${address}`);
      if (id !== undefined) return id;
    }
    return undefined;
  };
  let fip: FloatingIp | undefined;
  if (ctx.sound('/floatingips/0')) {
    const f = raw as FloatingIpInput;
    const at = elementPath('', 'floatingips', 0, raw);
    fip = checkFloatingIp(f, 0, model.ports, owner, (field, message) => problems.add(`${at}.${field}`, message));
    for (const o of fip ? (model.floatingIps ?? new Map<string, FloatingIp>()).values() : []) {
      const clash = o.id === f.id ? undefined : floatingIpClash(fip!, f, o, `floating IP ${show(o.id)}`);
      if (clash) problems.add(`${at}.${clash.field}`, clash.message);
    }
  }
  if (!problems.empty || !fip) throw new InvalidStateError(problems.list, source);
  return fip;
}

