/**
 * Conntrack cleanup after an apply (SPEC §2.7): delete exactly the tracked flows the new policy no longer
 * admits, in the zones of the ports whose policy shrank, and nothing else — no flush, other zones never.
 *
 * Which ports are affected is read from what the batch removed from the kernel (the old policy is what the
 * kernel held): a removed per-port element names its port by key (device or tag), a removed member-set
 * element names its group (→ the ports whose rules use it), a port that newly needs filtering is affected too
 * (port security switched on). A removed port's zone and addresses come from the old listing.
 *
 * Each endpoint of a candidate entry is attributed to the port that owns it in the entry's zone: the longest
 * prefix over every port of that zone, old (from the listing) and new (from the IR), so an address pair
 * never claims another port's more specific address, and the same address in another tenant's zone is that
 * tenant's. An entry is judged only on the sides that belong to an affected port, each against its owner's
 * new policy in the entry's original direction (several owners at the same length: refused only if all of
 * them refuse); the refused entries are deleted by their exact identity (tuple with ports or ICMP id, zone,
 * conntrack id) in one pipelined call.
 *
 * A routed port's flows with a local port of another network live in that network's zone when it is lower
 * (two routed networks) or bridged (docs/dataplane.md, "Zones and conntrack"), so they are looked for there
 * too (see {@link foreignZones}) — there an endpoint is the routed port's only if no port of that zone owns the
 * address and the other endpoint is a port of that zone.
 */
import type { ConntrackEntry, ConntrackFilter } from '../conntrack.js';
import { familyOf, isDefaultRoute, prefixContains, prefixRange, type AddrRange } from '../compile/addr.js';
import { allows, type Packet } from '../compile/evaluate.js';
import type { PolicyIR, PortPolicy } from '../compile/ir.js';
import { keyKind, portAddresses, portKey } from '../compile/layout-ports.js';
import { INET, memberSetName, type KeyKind } from '../compile/names.js';
import type { Element, NftObject, NftSet } from '../nft/types.js';
import type { RemovedElements } from './diff.js';

/** What cleanup needs of a conntrack client (the real one, or a fake in unit tests). */
export interface ConntrackLike {
  list(filters?: ConntrackFilter | readonly ConntrackFilter[]): Promise<ConntrackEntry[]>;
  /** Deletes exactly these listed entries (original tuple incl. ICMP id, zone, conntrack id). */
  deleteEntries(entries: readonly ConntrackEntry[]): Promise<number>;
}

/** A port whose admitted flows may have shrunk. */
export interface AffectedPort {
  /** `dev:<device>` or `tag:<tag>`. */
  key: string;
  portId?: string;
  /** The port in the new policy; undefined when it was removed. */
  port?: PortPolicy;
  /** Zones its flows can be in. */
  zones: number[];
  /** Its old and new addresses (prefixes). */
  addresses: string[];
}

/** What a cleanup did. */
export interface CleanupResult {
  /** Entries the kernel deleted. */
  deleted: number;
  /** Candidate entries judged. */
  examined: number;
  ports: number;
}

const keyOf = (kind: KeyKind, value: unknown): string => `${kind}:${String(value)}`;
const KEY_KINDS: Partial<Record<string, KeyKind>> = { ifname: 'dev', mark: 'tag' };
// Sets keyed by an ifname that is not a port device.
const NOT_PORT_KEYED = new Set<string>([INET.bridges, INET.bridgeFwd]);

interface OldPort {
  portId?: string;
  zone?: number;
  routed?: boolean;
  addresses: Set<string>;
}

/** Old per-port facts read back from the listing of the inet table taken before the commit. */
function oldPorts(old: readonly NftObject[], table: string) {
  const sets = new Map<string, NftSet>();
  for (const o of old) if (o.kind === 'set' && o.family === 'inet' && o.table === table) sets.set(o.name, o);
  const info = new Map<string, OldPort>();
  const at = (key: string) => {
    let i = info.get(key);
    if (!i) info.set(key, (i = { addresses: new Set() }));
    return i;
  };
  for (const o of old) {
    if (o.kind !== 'elements' || o.family !== 'inet' || o.table !== table) continue;
    const set = sets.get(o.set);
    const kind = set && KEY_KINDS[set.key[0]!];
    if (!set || !kind) continue;
    const zone = /^zone (\d+) /.exec(set.comment ?? '')?.[1];
    const isPorts = o.set === INET.ports(kind);
    const isSpoof = o.set === INET.spoof(4, kind) || o.set === INET.spoof(6, kind);
    for (const e of o.elements) {
      const i = at(keyOf(kind, e.key[0]));
      if (isPorts && e.comment !== undefined) i.portId = e.comment;
      if (zone !== undefined && (o.set.startsWith('zdev_') || o.set.startsWith('ztag_'))) {
        i.zone = Number(zone);
        i.routed = o.set.startsWith('zdev_');
        if (e.comment !== undefined) i.portId ??= e.comment;
      }
      if (isSpoof) {
        const ip = String(e.key[2]);
        if (!isDefaultRoute(ip) && ip !== '0.0.0.0') i.addresses.add(ip);
      }
    }
  }
  return { sets, info };
}

/** The ports a batch may have taken permissions from (see the module comment). Pure. */
export function affectedPorts(ir: PolicyIR, old: readonly NftObject[], removed: readonly RemovedElements[]): AffectedPort[] {
  const table = ir.config.tables.inet;
  const { info } = oldPorts(old, table);
  const keys = new Set<string>();
  const byKey = new Map(ir.ports.map((p) => [keyOf(keyKind(p), portKey(p)), p]));
  const byId = new Map(ir.ports.map((p) => [p.portId, p]));

  for (const { set, elements } of removed) {
    if (set.family !== 'inet' || set.table !== table) continue;
    const kind = KEY_KINDS[set.key[0]!];
    if (kind && !NOT_PORT_KEYED.has(set.name)) {
      for (const e of elements) keys.add(keyOf(kind, e.key[0]));
      continue;
    }
    // A member left a remote group: every port whose rules use the group may have lost a peer.
    const groups = new Set(ir.members.filter((m) => memberSetName(m.groupId, m.family) === set.name).map((m) => m.groupId));
    if (groups.size === 0) continue;
    for (const p of ir.ports) {
      if (p.rules.some((r) => r.remote.kind === 'group' && groups.has(r.remote.groupId))) keys.add(keyOf(keyKind(p), portKey(p)));
    }
  }
  // Port security switched on (or a new port): flows admitted while unfiltered are judged now.
  const oldFiltered = new Set(old.flatMap((o) => (o.kind === 'elements' && o.family === 'inet' && o.table === table &&
    (o.set === INET.ports('dev') || o.set === INET.ports('tag')) ? o.elements.map((e: Element) => keyOf(o.set === INET.ports('dev') ? 'dev' : 'tag', e.key[0])) : [])));
  for (const p of ir.ports) {
    const key = keyOf(keyKind(p), portKey(p));
    if (p.filtered && !oldFiltered.has(key)) keys.add(key);
  }

  const foreign = foreignZones(ir);
  const out: AffectedPort[] = [];
  for (const key of [...keys].sort()) {
    const was = info.get(key);
    const port = (was?.portId !== undefined ? byId.get(was.portId) : undefined) ?? byKey.get(key);
    if (!port && was?.zone === undefined) continue; // nothing known about it: no zone to look in
    const zones = new Set<number>();
    if (was?.zone !== undefined) zones.add(was.zone);
    if (port) zones.add(port.zone);
    if (port?.mode === 'routed') for (const z of foreign(port.zone)) zones.add(z);
    const addresses = new Set(was?.addresses ?? []);
    if (port) for (const f of [4, 6] as const) for (const a of portAddresses(port, f)) addresses.add(a);
    if (addresses.size === 0) continue;
    const a: AffectedPort = { key, zones: [...zones].sort((x, y) => x - y), addresses: [...addresses].sort() };
    if (port) a.port = port;
    const portId = port?.portId ?? was?.portId;
    if (portId !== undefined) a.portId = portId;
    out.push(a);
  }
  return out;
}


/** What one committed batch removed, with the listing taken before it (the old state). */
export interface CleanupScope {
  old: readonly NftObject[];
  removed: readonly RemovedElements[];
}

/**
 * The affected ports of several batches (a retry carries the batches whose cleanup failed) and, with `all`,
 * every port of the IR (a full pass: no earlier cleanup is known to have run), merged by key.
 */
export function affectedBy(ir: PolicyIR, scopes: readonly CleanupScope[], all: boolean): AffectedPort[] {
  const byKey = new Map<string, AffectedPort>();
  const merge = (a: AffectedPort) => {
    const b = byKey.get(a.key);
    if (!b) return void byKey.set(a.key, { ...a, zones: [...a.zones], addresses: [...a.addresses] });
    b.zones = [...new Set([...b.zones, ...a.zones])].sort((x, y) => x - y);
    b.addresses = [...new Set([...b.addresses, ...a.addresses])].sort();
    if (a.port) b.port = a.port;
    b.portId ??= a.portId;
  };
  for (const s of scopes) affectedPorts(ir, s.old, s.removed).forEach(merge);
  if (all) {
    const foreign = foreignZones(ir);
    for (const p of ir.ports) {
      const addresses = [4, 6].flatMap((f) => portAddresses(p, f as 4 | 6));
      if (addresses.length === 0) continue;
      const zones = [p.zone, ...(p.mode === 'routed' ? foreign(p.zone) : [])];
      merge({ key: keyOf(keyKind(p), portKey(p)), portId: p.portId, port: p, zones, addresses });
    }
  }
  return [...byKey.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/**
 * The other zones a routed port's flows may be tracked in: lower routed zones (a flow between two local routed
 * ports gets the lower zone) and bridged zones (a flow with a bridged port gets the bridged network's zone).
 */
function foreignZones(ir: PolicyIR): (zone: number) => number[] {
  return (zone) => ir.networks.filter((n) => n.zone !== zone && (n.mode === 'bridged' || n.zone < zone)).map((n) => n.zone);
}

const FAMILY = { 4: 'ipv4', 6: 'ipv6' } as const;
// Beyond this many (zone, address) filters the kernel dump is cheaper filtered by zone only.
const MAX_FILTERS = 256;

/**
 * Deletes the conntrack entries of affected ports that the new policy refuses. `old` is the listing taken
 * before the commit (the owners of addresses that are gone). Entries of stateless ports' flows do not exist
 * (notrack), entries of unfiltered ports are all still allowed.
 */
export async function cleanup(ct: ConntrackLike, ir: PolicyIR, affected: readonly AffectedPort[], old: readonly NftObject[] = []): Promise<CleanupResult> {
  const ports = affected.filter((a) => !a.port || (a.port.filtered && a.port.stateful));
  if (ports.length === 0) return { deleted: 0, examined: 0, ports: 0 };
  const filters: ConntrackFilter[] = [];
  for (const a of ports) {
    for (const zone of a.zones) {
      for (const addr of a.addresses) {
        const family = FAMILY[familyOf(addr)];
        filters.push({ zone, family, src: addr }, { zone, family, dst: addr });
      }
    }
  }
  const zones = [...new Set(ports.flatMap((a) => a.zones))];
  const entries = await ct.list(filters.length <= MAX_FILTERS ? filters : zones.map((zone) => ({ zone })));
  const owners = new Owners(ir, old, ports);
  const doomed = new Map<number, ConntrackEntry>();
  let examined = 0;
  for (const e of entries) {
    let from = owners.find(e.zone, e.orig.src);
    let to = owners.find(e.zone, e.orig.dst);
    // A flow between a port of this zone and a routed port of another network, tracked in this zone.
    if (from.length === 0 && to.length > 0) from = owners.foreign(e.zone, e.orig.src, to);
    else if (to.length === 0 && from.length > 0) to = owners.foreign(e.zone, e.orig.dst, from);
    const judgeFrom = from.some((o) => o.affected), judgeTo = to.some((o) => o.affected);
    if (!judgeFrom && !judgeTo) continue;
    examined++;
    const pkt = packetOf(e);
    const refused = (judgeFrom && from.every((o) => refuses(ir, o, 'egress', pkt))) ||
      (judgeTo && to.every((o) => refuses(ir, o, 'ingress', pkt)));
    if (refused) doomed.set(e.id, e);
  }
  const deleted = doomed.size ? await ct.deleteEntries([...doomed.values()]) : 0;
  return { deleted, examined, ports: ports.length };
}

/** A port owning addresses in one zone: new (in the IR), old (in the listing), or both. */
interface Owner {
  id: string;
  zone: number;
  routed: boolean;
  /** The port in the new policy; undefined when it was removed. */
  port?: PortPolicy;
  affected: boolean;
}

/** Every port's (zone, prefix), old and new; an address belongs to its longest matching prefix in the zone. */
class Owners {
  // Hosts (/32, /128) by zone|family|address, wider prefixes (address pairs) in a short list.
  readonly #hosts = new Map<string, Owner[]>();
  readonly #nets: { r: AddrRange; o: Owner }[] = [];
  // The same for routed ports only, by family|address, for the other-network lookup.
  readonly #routedHosts = new Map<string, Owner[]>();

  constructor(ir: PolicyIR, old: readonly NftObject[], affected: readonly AffectedPort[]) {
    const { info } = oldPorts(old, ir.config.tables.inet);
    const hit = new Set(affected.flatMap((a) => [a.portId ?? a.key, ...(info.get(a.key)?.portId !== undefined ? [info.get(a.key)!.portId!] : [])]));
    const owners = new Map<string, Owner>();
    const add = (zone: number, id: string, routed: boolean, port: PortPolicy | undefined, prefixes: Iterable<string>) => {
      const k = `${zone}|${id}`;
      let o = owners.get(k);
      if (!o) owners.set(k, (o = { id, zone, routed, affected: hit.has(id), ...(port ? { port } : {}) }));
      for (const p of prefixes) {
        const r = prefixRange(p);
        if (r.lo !== r.hi) this.#nets.push({ r, o });
        else {
          push(this.#hosts, `${zone}|${r.family}|${r.lo}`, o);
          if (routed) push(this.#routedHosts, `${r.family}|${r.lo}`, o);
        }
      }
    };
    const byId = new Map(ir.ports.map((p) => [p.portId, p]));
    const byKey = new Map(ir.ports.map((p) => [keyOf(keyKind(p), portKey(p)), p]));
    for (const p of ir.ports) add(p.zone, p.portId, p.mode === 'routed', p, [4, 6].flatMap((f) => portAddresses(p, f as 4 | 6)));
    for (const [key, i] of info) {
      if (i.zone === undefined) continue;
      const port = i.portId !== undefined ? byId.get(i.portId) : byKey.get(key);
      add(i.zone, i.portId ?? key, i.routed ?? false, port, i.addresses);
    }
  }

  /** The owners of `address` in `zone` (several only when their prefixes are equally long). */
  find(zone: number, address: string): Owner[] {
    const x = prefixRange(address);
    return this.#hosts.get(`${zone}|${x.family}|${x.lo}`) ?? longest(this.#nets, x, (o) => o.zone === zone);
  }

  /**
   * The routed ports of other networks owning `address`, for an entry in `zone` whose other endpoint is
   * `peer` (ports of `zone`): a flow with a routed peer is in the lower of two routed zones, a flow with a
   * bridged peer in the bridged zone.
   */
  foreign(zone: number, address: string, peer: readonly Owner[]): Owner[] {
    const bridged = peer.some((o) => !o.routed);
    const where = (o: Owner) => o.routed && o.zone !== zone && (bridged || o.zone > zone);
    const x = prefixRange(address);
    const hosts = (this.#routedHosts.get(`${x.family}|${x.lo}`) ?? []).filter(where);
    return hosts.length ? hosts : longest(this.#nets, x, where);
  }
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (!list) map.set(key, [value]);
  else if (!list.includes(value)) list.push(value);
}

function longest(list: readonly { r: AddrRange; o: Owner }[], x: AddrRange, where: (o: Owner) => boolean): Owner[] {
  let best: bigint | undefined;
  let out: Owner[] = [];
  for (const { r, o } of list) {
    if (r.family !== x.family || x.lo < r.lo || x.lo > r.hi || !where(o)) continue;
    const size = r.hi - r.lo;
    if (best === undefined || size < best) [best, out] = [size, [o]];
    else if (size === best && !out.includes(o)) out.push(o);
  }
  return out;
}

function packetOf(e: ConntrackEntry): Packet {
  const pkt: Packet = { family: e.family === 'ipv4' ? 4 : 6, protocol: e.protocol, src: e.orig.src, dst: e.orig.dst };
  if (e.orig.sport !== undefined) pkt.sport = e.orig.sport;
  if (e.orig.dport !== undefined) pkt.dport = e.orig.dport;
  if (e.icmp) pkt.icmp = { type: e.icmp.type, code: e.icmp.code };
  return pkt;
}

/** Whether the owner's new policy refuses the entry's original direction on its side. */
function refuses(ir: PolicyIR, o: Owner, direction: 'ingress' | 'egress', pkt: Packet): boolean {
  const port = o.port;
  if (!port || port.zone !== o.zone) return true; // the port is gone, or left that network
  // An address the port no longer has (egress: anti-spoof of the evaluator).
  if (direction === 'ingress' && !portAddresses(port, pkt.family).some((x) => prefixContains(x, pkt.dst))) return true;
  return !allows(ir, port, direction, pkt);
}
