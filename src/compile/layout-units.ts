/**
 * The elements of portwall's sets, as claims of three kinds of unit (docs/dataplane.md, "Incremental
 * updates"), so that a change recomputes only its own units:
 * - a **port**: its key in the port, profile, anti-spoof, DHCP and router sets, its zone bookkeeping, the host
 *   addresses it owns (zone, stateless and bridge-routing sets, decided per address by longest prefix — a
 *   host address is the longest there is, so equal claims are broken by rank), and its host addresses in the
 *   member sets of its remote groups. All hash sets, apart from the address-pair prefixes of its own
 *   anti-spoof (a concatenated interval set that only ports with such pairs touch);
 * - a port's **profile pointer**: its element in `profile_dev`/`profile_tag`;
 * - the **prefixes**: everything that depends on address-pair prefixes wider than a host (ranges owned by
 *   longest prefix, members that are prefixes). Computed from the few ports that have such prefixes, or whose
 *   host addresses lie inside one.
 * Rule profiles and security groups have chains and sets of their own (`./layout-groups.ts`).
 */
import type { Element } from '../nft/types.js';
import { familyOf, hostAddress, mergeRanges, prefixRange, rangeValue } from './addr.js';
import { own, type Claim } from './claims.js';
import type { PortPolicy } from './ir.js';
import { ElementSink, clip, keyKind, portAddresses, portKey } from './layout-ports.js';
import { BRIDGE, GUARD_SETS, INET, memberNetSetName, memberSetName, zoneSetName, type KeyKind } from './names.js';

const FAMILIES = [4, 6] as const;
// Set ids, one string each however many claims name them (a host's ports make 100k+ claims), per family.
const SET_IDS = { inet: new Map<string, string>(), bridge: new Map<string, string>() };
const setId = (family: 'inet' | 'bridge', set: string): string => {
  const ids = SET_IDS[family];
  let id = ids.get(set);
  if (id === undefined) {
    if (ids.size >= 65_536) ids.clear();
    ids.set(set, (id = `${family}:${set}`));
  }
  return id;
};
const inet = (set: string): string => setId('inet', set);
const bridge = (set: string): string => setId('bridge', set);

// The ids of the fixed sets every port names, composed once: a name composed per claim would be a new string
// to hash at each lookup (docs/dataplane.md, "The JavaScript of a full sync").
const perFamily = <T>(make: (f: 4 | 6) => T): Record<4 | 6, T> => ({ 4: make(4), 6: make(6) });
const perKind = <T>(make: (k: KeyKind) => T): Record<KeyKind, T> => ({ dev: make('dev'), tag: make('tag') });
const IDS = {
  zoneHost: { routed: perFamily((f) => inet(INET.zoneAddr('routed', f, 'host'))), bridged: perFamily((f) => inet(INET.zoneAddr('bridged', f, 'host'))) },
  stateless: perFamily((f) => inet(INET.stateless(f))),
  routeTag: perFamily((f) => inet(INET.routeTag(f))),
  statelessBr: perFamily((f) => inet(INET.statelessBr(f))),
  ports: perKind((k) => inet(INET.ports(k))),
  spoof: perFamily((f) => perKind((k) => inet(INET.spoof(f, k)))),
  dhcp: perFamily((f) => perKind((k) => inet(INET.dhcp(f, k)))),
  ra6: perKind((k) => inet(INET.ra6(k))),
};

/** Whether a canonical prefix is one host (/32, /128). */
export function isHost(prefix: string): boolean {
  return prefix.endsWith(familyOf(prefix) === 4 ? '/32' : '/128');
}

/** Who wins an address several ports claim at the same length: stateful before stateless, then the lower id. */
export function ownerRank(p: PortPolicy): string {
  return `${p.stateful ? 0 : 1}${p.portId}`;
}

/** The claims of one port; `members` says which groups have member sets, per family. */
export function portClaims(p: PortPolicy, members: ReadonlyMap<string, ReadonlySet<4 | 6>>): Claim[] {
  const out: Claim[] = [];
  const comment = clip(p.portId);
  const add = (setId: string, element: Element): void => void out.push(own(setId, element));
  const key = portKey(p);
  const rank = ownerRank(p);

  // Zone bookkeeping and untracking by key: every port, filtered or not.
  if (p.mode === 'bridged') add(inet(zoneSetName(p.networkId, 'tag')), { key: [p.tag!], comment });
  else {
    add(inet(INET.zoneDev), { key: [p.device], data: p.zone, comment });
    add(inet(zoneSetName(p.networkId, 'dev')), { key: [p.device], comment });
  }
  if (!p.stateful) add(inet(p.mode === 'routed' ? INET.statelessDev : INET.statelessTag), { key: [key], comment });

  // Host addresses, decided per address (the longest prefix there is; ties by rank).
  for (const f of FAMILIES) {
    for (const prefix of portAddresses(p, f)) {
      if (!isHost(prefix)) continue;
      const addr = hostAddress(prefix);
      const items: { setId: string; element: Element }[] = [{ setId: IDS.zoneHost[p.mode][f], element: { key: [addr], data: p.zone, comment } }];
      if (p.mode === 'routed') items.push({ setId: inet(zoneSetName(p.networkId, f === 4 ? 'ip4' : 'ip6')), element: { key: [addr], comment } });
      if (!p.stateful) items.push({ setId: IDS.stateless[f], element: { key: [addr], comment } });
      // A copy without the room push() left (the store keeps ~15k of these lists at 5000 ports).
      out.push({ slot: `own${f}|${addr}`, rank, items: items.slice() });
      if (p.mode !== 'bridged' || p.bridge === undefined) continue;
      if (p.filtered) {
        out.push({ slot: `rt${f}|${p.bridge}|${addr}`, rank, items: [{ setId: IDS.routeTag[f], element: { key: [p.bridge, addr], data: p.tag!, comment } }] });
      }
      out.push({ slot: `sb${f}|${p.bridge}|${addr}`, rank, items: p.stateful ? [] : [{ setId: IDS.statelessBr[f], element: { key: [p.bridge, addr], comment } }] });
    }
  }

  if (p.mode === 'bridged') add(bridge(BRIDGE.portTag), { key: [p.device], data: p.tag!, comment });
  if (p.filtered) filteredClaims(p, add);

  // Member sets of the port's remote groups: host addresses here, prefixes in the prefix unit. Last: a port
  // joining or leaving a group changes only these, and the claim store skips the unchanged head of a unit's list.
  for (const g of new Set(p.groupIds)) {
    const fams = members.get(g);
    if (!fams) continue;
    for (const prefix of p.memberPrefixes) {
      const f = familyOf(prefix);
      if (fams.has(f) && isHost(prefix)) add(inet(memberSetName(g, f)), { key: [hostAddress(prefix)] });
    }
  }
  return out;
}

/** A filtered port's own entries: its key, anti-spoof pairs, DHCP servers, routers, layer-2 guards. */
function filteredClaims(p: PortPolicy, add: (setId: string, element: Element) => void): void {
  const comment = clip(p.portId);
  const k = keyKind(p);
  const key = portKey(p);

  add(IDS.ports[k], { key: [key], comment });
  const nets = new ElementSink();
  for (const s of p.spoof) {
    const t = s.family === 4 ? 'ipv4_addr' : 'ipv6_addr';
    if (isHost(s.prefix)) add(IDS.spoof[s.family][k], { key: [key, s.mac, hostAddress(s.prefix)], comment });
    else nets.add(INET.spoofNet(s.family, k), [k === 'dev' ? 'ifname' : 'mark', 'ether_addr', t], [key, s.mac, s.prefix], p.portId);
  }
  for (const server of p.dhcpServers) {
    const v4 = familyOf(server) === 4;
    add(IDS.dhcp[v4 ? 4 : 6][k], { key: [key, hostAddress(server)], comment });
  }
  for (const router of p.routers) if (familyOf(router) === 6) add(IDS.ra6[k], { key: [key, hostAddress(router)], comment });
  if (p.mode === 'bridged') {
    add(bridge(BRIDGE.l2Ports), { key: [p.device], comment });
    // Layer-2 guards: the port's device in each guard's set (the rules are constant).
    const guards = p.l2Guards;
    if (guards) for (const [g, setName] of Object.entries(GUARD_SETS)) if (guards[g as keyof typeof GUARD_SETS]) add(bridge(setName), { key: [p.device], comment });
    for (const s of p.spoof) {
      add(bridge(BRIDGE.macOk), { key: [p.device, s.mac], comment });
      if (s.family !== 4) continue;
      if (isHost(s.prefix)) add(bridge(BRIDGE.arpOk), { key: [p.device, s.mac, hostAddress(s.prefix)], comment });
      else nets.add(BRIDGE.arpOkNet, ['ifname', 'ether_addr', 'ipv4_addr'], [p.device, s.mac, s.prefix], p.portId);
    }
  }
  for (const name of nets.names()) {
    const setId = name === BRIDGE.arpOkNet ? bridge(name) : inet(name);
    for (const e of nets.elements(name)) add(setId, e);
  }
}

/** A filtered port's pointer to its rule profile (its own unit: a port changing profile touches this element only). */
export function profilePointer(p: PortPolicy): Claim[] {
  if (!p.filtered) return [];
  return [own(inet(INET.profile(keyKind(p))), { key: [portKey(p)], data: p.profile!, comment: clip(p.portId) })];
}

/** The non-host prefixes a port brings into the prefix unit (ownership and membership). */
export function portNets(p: PortPolicy): string[] {
  const out = new Set<string>();
  for (const f of FAMILIES) for (const x of portAddresses(p, f)) if (!isHost(x)) out.add(x);
  for (const x of p.memberPrefixes) if (!isHost(x)) out.add(x);
  return [...out];
}

/**
 * The `group|family` keys of the groups a port makes a member of with a prefix wider than a host: only such
 * groups get a member-prefix set, and a rule naming one as its remote group a second rule for it
 * (docs/dataplane.md, "Member prefixes").
 */
export function netMemberKeys(p: PortPolicy): string[] {
  const fams = new Set<4 | 6>();
  for (const x of p.memberPrefixes) if (!isHost(x)) fams.add(familyOf(x));
  if (fams.size === 0) return [];
  return [...new Set(p.groupIds)].flatMap((g) => [...fams].map((f) => familyKey(g, f)));
}

/** A group's or network's key per family (`id|4`), as {@link netMemberKeys} and {@link zoneNetKeys} give them. */
export const familyKey = (id: string, family: 4 | 6): string => `${id}|${family}`;

/** The id and family of a {@link familyKey}. */
export function familyKeyParts(key: string): { id: string; family: 4 | 6 } {
  const bar = key.lastIndexOf('|');
  return { id: key.slice(0, bar), family: Number(key.slice(bar + 1)) as 4 | 6 };
}

/**
 * The `network|family` keys a routed port owns a prefix wider than a host in: only such networks get the zone
 * set of prefix ranges (`znet4_`/`znet6_`) and the `zone_cross` rule looking there (docs/dataplane.md, "Zones").
 */
export function zoneNetKeys(p: PortPolicy): string[] {
  if (p.mode !== 'routed') return [];
  return FAMILIES.filter((f) => portAddresses(p, f).some((x) => !isHost(x))).map((f) => familyKey(p.networkId, f));
}

/** The host addresses a port owns or adds to groups (what a prefix may have to be carved around). */
export function portHosts(p: PortPolicy): string[] {
  const out = new Set<string>();
  for (const f of FAMILIES) for (const x of portAddresses(p, f)) if (isHost(x)) out.add(x);
  return [...out];
}

/** Whether any of `hosts` lies inside one of `ranges` (`prefixRange` of the prefix unit's prefixes). */
export function insideAny(hosts: readonly string[], ranges: readonly { family: 4 | 6; lo: bigint; hi: bigint }[]): boolean {
  if (ranges.length === 0) return false;
  return hosts.some((h) => {
    const x = prefixRange(h);
    return ranges.some((r) => r.family === x.family && x.lo >= r.lo && x.lo <= r.hi);
  });
}

/**
 * The ports the prefix unit is computed from: those with non-host prefixes, and those with a host address
 * inside one of them (an address the more specific host owns is carved out of the prefix's range).
 */
export function prefixPorts(ports: Iterable<PortPolicy>): PortPolicy[] {
  const all = [...ports];
  const wide = new Set(all.filter((p) => portNets(p).length > 0));
  const ranges = [...wide].flatMap((p) => portNets(p).map(prefixRange));
  return all.filter((p) => wide.has(p) || insideAny(portHosts(p), ranges));
}

/** One address range and the port it belongs to. */
export interface Owned {
  lo: bigint;
  hi: bigint;
  port: PortPolicy;
}

/**
 * Longest-prefix ownership of the given ports' addresses of one family: disjoint ranges, each owned by the
 * port with the most specific prefix covering it (CIDR prefixes nest or are disjoint). Equal prefixes of two
 * ports: {@link ownerRank}. Adjacent ranges of one port merge.
 */
export function longestPrefix(ports: readonly PortPolicy[], family: 4 | 6): Owned[] {
  const items = ports.flatMap((port) => portAddresses(port, family).map((prefix) => ({ ...prefixRange(prefix), port })));
  items.sort((a, b) => (a.lo !== b.lo ? (a.lo < b.lo ? -1 : 1) : a.hi !== b.hi ? (a.hi > b.hi ? -1 : 1) : ownerRank(a.port) < ownerRank(b.port) ? -1 : 1));
  const out: Owned[] = [];
  const emit = (lo: bigint, hi: bigint, port: PortPolicy): void => {
    if (lo > hi) return;
    const last = out[out.length - 1];
    if (last && last.port === port && last.hi + 1n === lo) last.hi = hi;
    else out.push({ lo, hi, port });
  };
  const stack: { lo: bigint; hi: bigint; port: PortPolicy }[] = [];
  let pos = 0n;
  const closeBefore = (x: bigint | undefined): void => {
    while (stack.length > 0 && (x === undefined || stack[stack.length - 1]!.hi < x)) {
      const top = stack.pop()!;
      emit(pos, top.hi, top.port);
      pos = top.hi + 1n;
    }
  };
  for (const it of items) {
    const top = stack[stack.length - 1];
    if (top && top.lo === it.lo && top.hi === it.hi) continue; // the same prefix: the first (preferred) keeps it
    closeBefore(it.lo);
    if (stack.length > 0) emit(pos, it.lo - 1n, stack[stack.length - 1]!.port);
    pos = it.lo;
    stack.push(it);
  }
  closeBefore(undefined);
  return out;
}

/**
 * The prefix unit's claims, from {@link prefixPorts} (the caller may pass more ports; only ranges that are
 * not one of their owner's host addresses are emitted — those are claimed per port).
 */
export function prefixClaims(ports: readonly PortPolicy[], members: ReadonlyMap<string, ReadonlySet<4 | 6>>): Claim[] {
  const out: Claim[] = [];
  const add = (setId: string, element: Element): void => void out.push(own(setId, element));
  const hostsOf = new Map(ports.map((p) => [p, new Set(portHosts(p).map((h) => prefixRange(h).lo))]));
  const wide = (o: Owned): boolean => !(o.lo === o.hi && hostsOf.get(o.port)!.has(o.lo));
  for (const f of FAMILIES) {
    for (const o of longestPrefix(ports, f).filter(wide)) {
      const key = [rangeValue(f, o.lo, o.hi)];
      add(inet(INET.zoneAddr(o.port.mode, f, 'net')), { key, data: o.port.zone, comment: clip(o.port.portId) });
      if (o.port.mode === 'routed') add(inet(zoneSetName(o.port.networkId, f === 4 ? 'net4' : 'net6')), { key, comment: clip(o.port.portId) });
      if (!o.port.stateful) add(inet(INET.statelessNet(f)), { key, comment: clip(o.port.portId) });
    }
    const bridges = [...new Set(ports.filter((p) => p.mode === 'bridged' && p.bridge !== undefined).map((p) => p.bridge!))].sort();
    for (const b of bridges) {
      const on = ports.filter((p) => p.mode === 'bridged' && p.bridge === b);
      for (const o of longestPrefix(on.filter((p) => p.filtered), f).filter(wide)) {
        add(inet(INET.routeTagNet(f)), { key: [b, rangeValue(f, o.lo, o.hi)], data: o.port.tag!, comment: clip(o.port.portId) });
      }
      for (const o of longestPrefix(on, f).filter(wide)) {
        if (!o.port.stateful) add(inet(INET.statelessBrNet(f)), { key: [b, rangeValue(f, o.lo, o.hi)], comment: clip(o.port.portId) });
      }
    }
  }
  for (const [g, fams] of members) {
    for (const f of fams) {
      const prefixes = ports.filter((p) => p.groupIds.includes(g)).flatMap((p) => p.memberPrefixes.filter((x) => familyOf(x) === f && !isHost(x)));
      if (prefixes.length === 0) continue;
      const merged = mergeRanges(prefixes.map((x) => ({ ...prefixRange(x), label: undefined })));
      for (const m of merged) add(inet(memberNetSetName(g, f)), { key: [rangeValue(f, m.lo, m.hi)] });
    }
  }
  return out;
}
