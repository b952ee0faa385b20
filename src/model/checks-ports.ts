/**
 * Ports: unique ids and device names, legal device names that are not a bridge, a known network, a unicast
 * MAC unique on its network, fixed IPs that are host addresses unique on the network, known security groups
 * of one kind (all stateful or all stateless — docs/requirements.md), and allowed address pairs as Neutron takes them
 * (at most {@link MAX_ADDRESS_PAIRS}, no duplicates, a missing MAC is the port's).
 */
import type { NetworkIndex } from './checks-networks.js';
import type { GroupIndex } from './checks-groups.js';
import { elements, type CheckContext } from './context.js';
import { elementPath, show } from './problems.js';
import type { PortInput } from './schema.js';
import type { AddressPair, Port } from './types.js';
import { deviceNameProblem, parseHostAddress, parseIpPrefix, parseUnicastMac, textProblem } from './values.js';

/** Neutron's default `max_allowed_address_pair`. */
export const MAX_ADDRESS_PAIRS = 10;

type Fail = (field: string, message: string) => void;

/** Checks `ports` against the networks and groups and returns the valid ports, normalised. */
export function checkPorts(ctx: CheckContext, raw: unknown, nets: NetworkIndex, groups: GroupIndex): Map<string, Port> {
  const { problems } = ctx;
  const ports = new Map<string, Port>();
  const list = elements(raw);
  // Paths are only built for messages; the maps remember the index of the port that came first.
  const portPath = (i: number) => elementPath('', 'ports', i, list[i]);
  const idAt = new Map<string, number>();
  const deviceAt = new Map<string, number>();
  // Per network: MAC and fixed IP → port (Neutron allocates each once per network; networks may overlap).
  const macAt = new Map<string, number>();
  const ipAt = new Map<string, number>();

  list.forEach((element, i) => {
    if (!ctx.sound(`/ports/${i}`)) return;
    const p = element as PortInput;
    let valid = true;
    const fail: Fail = (field, message) => {
      problems.add(`${portPath(i)}.${field}`, message);
      valid = false;
    };

    const sameId = idAt.get(p.id);
    const idText = textProblem(p.id);
    if (idText !== undefined) fail('id', idText);
    if (sameId !== undefined) fail('id', `duplicate port id ${show(p.id)}, also ${portPath(sameId)}`);
    else idAt.set(p.id, i);

    const deviceProblem = deviceNameProblem(p.device);
    const sameDevice = deviceAt.get(p.device);
    const bridgeOwner = nets.bridges.get(p.device);
    if (deviceProblem !== undefined) fail('device', deviceProblem);
    else if (sameDevice !== undefined) fail('device', `device ${show(p.device)} is also ${portPath(sameDevice)}'s`);
    else if (bridgeOwner !== undefined) fail('device', `${show(p.device)} is the bridge of ${bridgeOwner}, not a port device`);
    else deviceAt.set(p.device, i);

    if (!nets.ids.has(p.network_id)) fail('network_id', `unknown network ${show(p.network_id)}`);

    const mac = parseUnicastMac(p.mac_address);
    if (mac.problem !== undefined) fail('mac_address', mac.problem);
    else {
      const key = `${p.network_id} ${mac.value}`;
      const other = macAt.get(key);
      if (other !== undefined) fail('mac_address', `MAC ${mac.value} is also ${portPath(other)}'s on network ${show(p.network_id)}`);
      else macAt.set(key, i);
    }

    const fixedIps: string[] = [];
    (p.fixed_ips ?? []).forEach((fixed, k) => {
      const host = parseHostAddress(fixed.ip_address);
      if (host.problem !== undefined) return fail(`fixed_ips[${k}].ip_address`, host.problem);
      const key = `${p.network_id} ${host.value.prefix}`;
      const other = ipAt.get(key);
      const field = `fixed_ips[${k}].ip_address`;
      if (other === i) return fail(field, `${show(fixed.ip_address)} is listed twice`);
      if (other !== undefined) {
        return fail(field, `${show(fixed.ip_address)} is also ${portPath(other)}'s on network ${show(p.network_id)}`);
      }
      ipAt.set(key, i);
      fixedIps.push(host.value.prefix);
    });

    const portSecurity = p.port_security_enabled ?? true;
    const groupIds = checkPortGroups(p, portSecurity, groups, fail);
    const addressPairs = checkPairs(p, portSecurity, mac.value, fail);

    if (valid) {
      ports.set(p.id, {
        id: p.id,
        networkId: p.network_id,
        device: p.device,
        mac: mac.value!,
        fixedIps: fixedIps.slice(), // without the room push() left: the model keeps it
        groupIds,
        portSecurity,
        kind: p.kind ?? 'user',
        addressPairs,
        index: i,
      });
    }
  });
  return ports;
}

/** The port's group ids, known, deduplicated (a group listed twice is the same group), of one kind. */
function checkPortGroups(p: PortInput, portSecurity: boolean, groups: GroupIndex, fail: Fail): string[] {
  const ids = [...new Set(p.security_groups ?? [])];
  // Neutron: "Port has security group associated. Cannot disable port security…" — filtering off with groups
  // on is a contradiction, not a preference.
  if (!portSecurity && ids.length > 0) {
    fail('security_groups', 'port_security_enabled is false, so the port can have no security groups');
    return ids;
  }
  let first: { id: string; stateful: boolean } | undefined;
  (p.security_groups ?? []).forEach((id, k) => {
    if (groups.complete && !groups.ids.has(id)) return fail(`security_groups[${k}]`, `unknown security group ${show(id)}`);
    const g = groups.groups.get(id);
    if (g === undefined) return;
    if (first === undefined) first = { id, stateful: g.stateful };
    else if (first.stateful !== g.stateful) {
      const kind = (s: boolean) => (s ? 'stateful' : 'stateless');
      fail(`security_groups[${k}]`, `${show(id)} is ${kind(g.stateful)} but ${show(first.id)} is ${kind(first.stateful)}; one port cannot mix them`);
    }
  });
  return ids;
}

/** Canonical address pairs: prefix without host bits, MAC lowercase (the port's when absent). */
function checkPairs(p: PortInput, portSecurity: boolean, portMac: string | undefined, fail: Fail): AddressPair[] {
  const list = p.allowed_address_pairs ?? [];
  if (list.length === 0) return [];
  // Pairs widen anti-spoofing; without port security there is none to widen (Neutron refuses it as well).
  if (!portSecurity) {
    fail('allowed_address_pairs', 'port_security_enabled is false, so the port can have no allowed address pairs');
    return [];
  }
  if (list.length > MAX_ADDRESS_PAIRS) {
    fail('allowed_address_pairs', `${list.length} pairs; at most ${MAX_ADDRESS_PAIRS} are allowed (Neutron's max_allowed_address_pair)`);
  }
  const pairs: AddressPair[] = [];
  const seen = new Map<string, number>();
  list.forEach((pair, k) => {
    const at = `allowed_address_pairs[${k}]`;
    const prefix = parseIpPrefix(pair.ip_address);
    if (prefix.problem !== undefined) fail(`${at}.ip_address`, prefix.problem);
    let mac = portMac;
    if (pair.mac_address != null) {
      const parsed = parseUnicastMac(pair.mac_address);
      if (parsed.problem !== undefined) return fail(`${at}.mac_address`, parsed.problem);
      mac = parsed.value;
    }
    // Without a valid port MAC the port is already rejected; its pairs are still checked above.
    if (prefix.value === undefined || mac === undefined) return;
    const key = `${prefix.value.prefix} ${mac}`;
    const twin = seen.get(key);
    if (twin !== undefined) return fail(at, `the same pair as allowed_address_pairs[${twin}] (${prefix.value.prefix}, ${mac})`);
    seen.set(key, k);
    pairs.push({ prefix: prefix.value.prefix, family: prefix.value.family, mac });
  });
  return pairs;
}
