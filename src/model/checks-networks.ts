/**
 * Networks: unique ids, zones (unique, inside the configured range — docs/requirements.md), attachment mode and
 * bridge, DHCP servers and IPv6 routers as canonical host prefixes, flavour and layer-2 guards (bridged only).
 */
import { elements, stringField, type CheckContext } from './context.js';
import { elementPath, show } from './problems.js';
import type { L2GuardsInput, NetworkInput } from './schema.js';
import type { L2Guards, Network, NetworkFlavor } from './types.js';
import { deviceNameProblem, parseHostAddress, textProblem } from './values.js';

/** The networks of a state and what ports need to check against them. */
export interface NetworkIndex {
  networks: Map<string, Network>;
  /** Every string network id in the file, including those of objects that failed the schema. */
  ids: { has(id: string): boolean };
  /** Bridge device → the path of the network that owns it (a port device may not reuse it). */
  bridges: Map<string, string>;
}

/** Checks `networks` and returns the valid ones, normalised. */
export function checkNetworks(ctx: CheckContext, raw: unknown): NetworkIndex {
  const { problems, config } = ctx;
  const ids = new Set<string>();
  const index: NetworkIndex = { networks: new Map(), ids, bridges: new Map() };
  const idPaths = new Map<string, string>();
  const zonePaths = new Map<number, string>();

  elements(raw).forEach((element, i) => {
    const id = stringField(element, 'id');
    if (id !== undefined) ids.add(id);
    if (!ctx.sound(`/networks/${i}`)) return;
    const n = element as NetworkInput;
    const path = elementPath('', 'networks', i, n);
    let valid = true;
    const fail = (field: string, message: string) => {
      problems.add(`${path}.${field}`, message);
      valid = false;
    };

    const sameId = idPaths.get(n.id);
    const idText = textProblem(n.id);
    if (idText !== undefined) fail('id', idText);
    if (sameId !== undefined) fail('id', `duplicate network id ${show(n.id)}, also ${sameId}`);
    else idPaths.set(n.id, path);

    const { min, max } = config.zoneRange;
    const sameZone = zonePaths.get(n.zone);
    if (n.zone < min || n.zone > max) fail('zone', `zone ${n.zone} is outside the configured zone range ${min}-${max}`);
    else if (sameZone !== undefined) fail('zone', `zone ${n.zone} is also ${sameZone}'s; networks never share a zone`);
    else zonePaths.set(n.zone, path);

    if (n.mode === 'bridged' && n.bridge === undefined) fail('bridge', 'is required for a bridged network');
    if (n.mode === 'routed' && n.bridge !== undefined) fail('bridge', 'a routed network has no bridge (its ports are routed devices)');
    if (n.mode === 'bridged' && n.bridge !== undefined) {
      const why = deviceNameProblem(n.bridge);
      const owner = index.bridges.get(n.bridge);
      if (why !== undefined) fail('bridge', why);
      else if (owner !== undefined) fail('bridge', `bridge ${show(n.bridge)} is also ${owner}'s; one bridge is one network`);
      else index.bridges.set(n.bridge, path);
    }

    const dhcpServers = hostList(n.dhcp_servers, (k, message) => fail(`dhcp_servers[${k}]`, message));
    const routers = hostList(n.routers, (k, message) => fail(`routers[${k}]`, message), 6);
    const flavor: NetworkFlavor = n.flavor ?? 'neutron';
    const guards = l2Guards(flavor, n.l2_guards);
    if (n.mode === 'routed' && n.l2_guards !== undefined && guards !== undefined) {
      fail('l2_guards', 'layer-2 guards need a bridged network (a routed port is no bridge port)');
    }

    if (valid && sameId === undefined) {
      index.networks.set(n.id, {
        id: n.id,
        zone: n.zone,
        mode: n.mode,
        ...(n.mode === 'bridged' ? { bridge: n.bridge! } : {}),
        dhcpServers,
        routers,
        ...(flavor === 'cloudstack' ? { flavor } : {}),
        ...(n.mode === 'bridged' && guards !== undefined ? { l2Guards: guards } : {}),
        ...(n.log_drops ? { logDrops: n.log_drops } : {}),
        ...(n.log_accepts ? { logAccepts: n.log_accepts } : {}),
      });
    }
  });
  return index;
}

/**
 * The guards a network's ports get: each field as given, else the flavour's default (CloudStack's ebtables
 * rules: all on; Neutron: all off). Undefined when none is on.
 */
export function l2Guards(flavor: NetworkFlavor, given: L2GuardsInput | undefined): L2Guards | undefined {
  const on = flavor === 'cloudstack';
  const g: L2Guards = {
    arp: given?.arp ?? on,
    dhcpSnooping: given?.dhcp_snooping ?? on,
    broadcast: given?.broadcast ?? on,
    dropIpv6: given?.drop_ipv6 ?? on,
    dropVlan: given?.drop_vlan ?? on,
  };
  return Object.values(g).some(Boolean) ? g : undefined;
}

// fe80::/10 in canonical (lowercase, compressed) spelling.
const LINK_LOCAL = /^fe[89ab][0-9a-f]:/;

/** Host addresses as canonical /32 or /128 prefixes, duplicates dropped (two spellings of one server). */
function hostList(list: string[] | undefined, fail: (k: number, message: string) => void, family?: 6): string[] {
  const out = new Set<string>();
  (list ?? []).forEach((text, k) => {
    const host = parseHostAddress(text);
    if (host.problem !== undefined) fail(k, host.problem);
    // Router advertisements are ICMPv6 and hosts accept them only from a link-local source (RFC 4861
    // §6.1.2): any other "router" address could never admit one.
    else if (family === 6 && host.value.family !== 6) fail(k, `routers send IPv6 router advertisements; ${show(text)} is IPv4`);
    else if (family === 6 && !LINK_LOCAL.test(host.value.prefix)) {
      fail(k, `router advertisements come from a link-local address (fe80::/10); ${show(text)} is not one`);
    } else out.add(host.value.prefix);
  });
  return [...out];
}
