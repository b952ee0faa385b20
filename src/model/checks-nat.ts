/**
 * Floating IPs and NAT options (docs/requirements.md, "Model"): Neutron's floating IP shape and nova-network's
 * option names. A floating IP is a unique host address; when associated, `fixed_ip_address` is a fixed IP of
 * `port_id` of the same family (no NAT between families), and a fixed IP address has at most one floating IP
 * on the host, whichever network's port holds it. The NAT options are canonical prefixes and host addresses;
 * the metadata host is IPv4 (169.254.169.254 is).
 */
import { elements, type CheckContext } from './context.js';
import { elementPath, show } from './problems.js';
import type { FloatingIpInput, NatInput } from './schema.js';
import type { FloatingIp, IpFamily, Nat, Port, Prefix } from './types.js';
import { parseHostAddress, parseIpPrefix, textProblem } from './values.js';

/**
 * Whether `fip` clashes with `other` (named `otherName` in the message): the same floating address, or the
 * same fixed IP mapped again — of the same port, or of a port of another network that holds the same address
 * (the host's one NAT table maps each fixed address to one floating IP, docs/dataplane.md). The field and
 * message, or undefined.
 */
export function floatingIpClash(fip: FloatingIp, f: FloatingIpInput, other: FloatingIp, otherName: string): { field: string; message: string } | undefined {
  if (other.floatingIp === fip.floatingIp) {
    return { field: 'floating_ip_address', message: `${show(f.floating_ip_address)} is also ${otherName}'s; a floating IP is unique on the host` };
  }
  if (fip.portId === undefined || other.portId === undefined || other.fixedIp !== fip.fixedIp) return undefined;
  if (other.portId === fip.portId) {
    return { field: 'fixed_ip_address', message: `port ${show(fip.portId)}'s ${show(fip.fixedIp)} already has ${otherName}` };
  }
  return {
    field: 'fixed_ip_address',
    message: `${show(fip.fixedIp)} is also port ${show(other.portId)}'s (another network), which has ${otherName}: ` +
      'the host\'s NAT maps a fixed IP to one floating IP',
  };
}

/** Checks `floatingips` against the ports; returns the valid ones by id. */
export function checkFloatingIps(ctx: CheckContext, raw: unknown, ports: ReadonlyMap<string, Port>): Map<string, FloatingIp> {
  const out = new Map<string, FloatingIp>();
  const idPaths = new Map<string, string>();
  // The floating IPs seen so far by address and by mapped fixed IP: the only ones a new one can clash with.
  const byAddress = new Map<Prefix, [FloatingIp, string]>();
  const byFixed = new Map<Prefix, [FloatingIp, string]>();
  // Which port holds an address as a fixed IP: indexed once, on the first floating IP.
  let owners: Map<Prefix, string> | undefined;
  const owner = (address: Prefix) => (owners ??= fixedIpOwners(ports)).get(address);
  elements(raw).forEach((element, i) => {
    if (!ctx.sound(`/floatingips/${i}`)) return;
    const f = element as FloatingIpInput;
    const path = elementPath('', 'floatingips', i, f);
    const fip = checkFloatingIp(f, i, ports, owner, (field, message) => ctx.problems.add(`${path}.${field}`, message));
    const fail = (field: string, message: string) => ctx.problems.add(`${path}.${field}`, message);
    if (idPaths.has(f.id)) return fail('id', `duplicate floating IP id ${show(f.id)}, also ${idPaths.get(f.id)}`);
    idPaths.set(f.id, path);
    if (!fip) return;
    const clash = (seen: [FloatingIp, string] | undefined) => seen && floatingIpClash(fip, f, ...seen);
    const sameAddress = clash(byAddress.get(fip.floatingIp));
    if (sameAddress) return fail(sameAddress.field, sameAddress.message);
    byAddress.set(fip.floatingIp, [fip, path]);
    if (fip.fixedIp !== undefined) {
      const sameFixed = clash(byFixed.get(fip.fixedIp));
      if (sameFixed) return fail(sameFixed.field, sameFixed.message);
      byFixed.set(fip.fixedIp, [fip, path]);
    }
    out.set(fip.id, fip);
  });
  return out;
}

/**
 * One floating IP on its own (the agent's `PUT /v1/floatingips/{id}` and the state file): its addresses and
 * its association. `owner` names the port holding an address as a fixed IP, if any. Reports through
 * `fail(field, message)`; returns undefined when anything is wrong.
 */
export function checkFloatingIp(
  f: FloatingIpInput, index: number, ports: ReadonlyMap<string, Port>, owner: (address: Prefix) => string | undefined, fail: (field: string, message: string) => void,
): FloatingIp | undefined {
  const idText = textProblem(f.id);
  if (idText !== undefined) {
    fail('id', idText);
    return undefined;
  }
  const floating = parseHostAddress(f.floating_ip_address);
  if (floating.problem !== undefined) {
    fail('floating_ip_address', floating.problem);
    return undefined;
  }
  if (floating.value.family !== 4) {
    fail('floating_ip_address', `${show(f.floating_ip_address)} is IPv6: floating IPs are IPv4 (portwall's NAT table is IPv4, as Neutron's floating IPs are)`);
    return undefined;
  }
  // The floating address must not be a port's own: it would name two zones in the zone maps.
  const holder = owner(floating.value.prefix);
  if (holder !== undefined) {
    fail('floating_ip_address', `${show(f.floating_ip_address)} is a fixed IP of port ${show(holder)}`);
    return undefined;
  }
  const fip: FloatingIp = { id: f.id, floatingIp: floating.value.prefix, family: floating.value.family, index };
  const portId = f.port_id ?? undefined;
  if (portId === undefined) {
    if (f.fixed_ip_address != null) fail('port_id', 'is required with fixed_ip_address');
    return f.fixed_ip_address != null ? undefined : fip;
  }
  const port = ports.get(portId);
  if (!port) {
    fail('port_id', `unknown port ${show(portId)}`);
    return undefined;
  }
  const fixed = fixedIpOf(port, f.fixed_ip_address ?? undefined, fip.family, fail);
  if (fixed === undefined) return undefined;
  return { ...fip, portId, fixedIp: fixed };
}

// Each fixed IP of `ports` with the port holding it (one walk). Not cached across calls: a handle changes its
// ports map in place, so an index kept for the map itself would go stale.
function fixedIpOwners(ports: ReadonlyMap<string, Port>): Map<Prefix, string> {
  const index = new Map<Prefix, string>();
  for (const p of ports.values()) for (const ip of p.fixedIps) index.set(ip, p.id);
  return index;
}

// The port's fixed IP the floating IP maps to: the one named (it must be the port's, of the same family), or
// the port's only one of that family.
function fixedIpOf(port: Port, named: string | undefined, family: IpFamily, fail: (field: string, message: string) => void): Prefix | undefined {
  const ofFamily = port.fixedIps.filter((p) => !p.includes(':') === (family === 4));
  if (named === undefined) {
    if (ofFamily.length === 1) return ofFamily[0];
    fail('fixed_ip_address', `port ${show(port.id)} has ${ofFamily.length} IPv${family} fixed IPs: name the one to map`);
    return undefined;
  }
  const fixed = parseHostAddress(named);
  if (fixed.problem !== undefined) {
    fail('fixed_ip_address', fixed.problem);
    return undefined;
  }
  if (fixed.value.family !== family) {
    fail('fixed_ip_address', `${show(named)} is IPv${fixed.value.family}, the floating IP IPv${family}: no NAT between families`);
    return undefined;
  }
  if (!port.fixedIps.includes(fixed.value.prefix)) {
    fail('fixed_ip_address', `${show(named)} is not a fixed IP of port ${show(port.id)}`);
    return undefined;
  }
  return fixed.value.prefix;
}

/** Checks `nat`; returns it normalised, or undefined when absent or invalid. */
export function checkNat(ctx: CheckContext, raw: unknown): Nat | undefined {
  if (raw === undefined || !ctx.sound('/nat')) return undefined;
  const n = raw as NatInput;
  const before = ctx.problems.count;
  const fail = (field: string, message: string) => ctx.problems.add(`nat.${field}`, message);
  // portwall's NAT table is IPv4 (`ip portwall_nat`): every address here is IPv4.
  const prefixes = (list: readonly string[] | undefined, field: string): Prefix[] => (list ?? []).flatMap((text, k) => {
    const p = parseIpPrefix(text);
    if (p.problem !== undefined) fail(`${field}[${k}]`, p.problem);
    else if (p.value.family !== 4) fail(`${field}[${k}]`, `${show(text)} is IPv6: NAT is IPv4 only`);
    else return [p.value.prefix];
    return [];
  });
  const host = (text: string, field: string, family?: IpFamily): Prefix | undefined => {
    const p = parseHostAddress(text);
    if (p.problem !== undefined) fail(field, p.problem);
    else if (family !== undefined && p.value.family !== family) fail(field, `${show(text)} must be an IPv${family} address`);
    else return p.value.prefix;
    return undefined;
  };
  const fixedRange = prefixes(n.fixed_range, 'fixed_range');
  if (n.fixed_range.length === 0) fail('fixed_range', 'needs at least one prefix');
  const routingSourceIp = host(n.routing_source_ip, 'routing_source_ip', 4);
  const dmzCidr = prefixes(n.dmz_cidr, 'dmz_cidr');
  const metadataHost = n.metadata_host == null ? undefined : host(n.metadata_host, 'metadata_host', 4);
  if (ctx.problems.count > before || routingSourceIp === undefined) return undefined;
  const nat: Nat = { fixedRange, routingSourceIp, dmzCidr, metadataPort: n.metadata_port ?? 8775 };
  if (metadataHost !== undefined) nat.metadataHost = metadataHost;
  return nat;
}
