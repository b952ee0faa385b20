/**
 * Conntrack cleanup after a change (docs/requirements.md, "Zones and conntrack cleanup"): delete exactly the tracked flows the new policy no longer
 * admits, in the zones of the ports whose policy may have shrunk, and nothing else — no flush, other zones
 * never.
 *
 * Which ports are affected comes from the handle's own record of the change: every port added, changed or
 * removed (with its policy before and after), and the ports of a group whose rules or members changed. A
 * removed port's zone and addresses come from its old policy. A port that is new to a handle that already
 * trusts its memory is not judged ({@link mayShrink}): like Neutron's, its filter applies to new flows; the
 * flows of every port are judged by the full pass that follows an adoption by listing. An adoption from an adopt
 * record whose writer owed no cleanup has no such pass (docs/dataplane.md, "Adopting from the record"): flows
 * a port had before it was first filtered stay then, as they would have had no restart come in between.
 *
 * Each endpoint of a candidate entry is attributed to the port that owns it in the entry's zone: the longest
 * prefix over every port of that zone, as they are now and (for the changed ports) as they were, so an address
 * pair never claims another port's more specific address, and the same address in another tenant's zone is
 * that tenant's. An entry is judged only on the sides that belong to an affected port, each against its owner's
 * new policy in the entry's original direction (several owners at the same length: refused only if all of
 * them refuse); the refused entries are deleted by their exact identity (tuple with ports or ICMP id, zone,
 * conntrack id) in one pipelined call.
 *
 * A routed port's flows with a local port of another network live in that network's zone when it is lower
 * (two routed networks) or bridged (docs/dataplane.md, "Zones and conntrack"), so they are looked for there
 * too (see {@link foreignZones}) — there an endpoint is the routed port's when the other endpoint is a port of
 * that zone and no port of that zone owns the address as a host (a wider prefix there loses to the routed
 * port's host address, as the host's routes decide).
 *
 * An entry is judged as the port chains saw its first packet: after DNAT, before SNAT. A flow to a floating IP
 * (or to the metadata address) is judged with the destination it was translated to, its reply's source, so
 * it belongs to the port behind the floating IP and is weighed against that port's addresses and against the
 * peer's rules naming that port; a port's floating IPs are dumped as destinations beside its addresses.
 */
import { STATUS, type ConntrackEntry, type ConntrackFilter } from '../conntrack.js';
import { familyOf, prefixContains, prefixRange, type AddrRange } from '../compile/addr.js';
import { allows, type Members, type Packet } from '../compile/evaluate.js';
import { lostRules, type GroupMembers, type PolicyIR, type PortPolicy } from '../compile/ir.js';
import { portAddresses } from '../compile/layout-ports.js';
import { isHost } from '../compile/layout-units.js';
import type { Network } from '../model/types.js';

/** What cleanup needs of a conntrack client (the real one, or a fake in unit tests). */
export interface ConntrackLike {
  list(filters?: ConntrackFilter | readonly ConntrackFilter[]): Promise<ConntrackEntry[]>;
  /** Deletes exactly these listed entries (original tuple incl. ICMP id, zone, conntrack id). */
  deleteEntries(entries: readonly ConntrackEntry[]): Promise<number>;
  /** Releases what the client holds (a persistent ConntrackClient's socket); the handle calls it on close. */
  close?(): Promise<void>;
  /**
   * The namespace's number of tracked entries (no table walk). When it is 0 the cleanup skips its dump, which
   * walks the kernel's whole conntrack hash (~10 ms here) even for an empty table.
   */
  count?(): Promise<number>;
}

/** The policy as cleanup reads it: the evaluator's members, the networks, who owns an address now. */
export interface CleanupView {
  readonly networks: readonly Network[];
  readonly members: readonly GroupMembers[];
  /** The current ports with this host address (any zone). */
  hostOwners(family: 4 | 6, lo: bigint): readonly PortPolicy[];
  /** The current ports' prefixes wider than a host. */
  wideOwners(): readonly { r: AddrRange; port: PortPolicy }[];
  /** The floating IPs (host prefixes) associated with a port now; none when left out. */
  floatingOf?(portId: string): readonly string[];
}

/** A {@link CleanupView} of a whole compiled policy (indexes built once). */
export function viewOf(ir: PolicyIR): CleanupView {
  const hosts = new Map<string, PortPolicy[]>();
  const wide: { r: AddrRange; port: PortPolicy }[] = [];
  for (const p of ir.ports) {
    for (const f of [4, 6] as const) {
      for (const x of portAddresses(p, f)) {
        const r = prefixRange(x);
        if (!isHost(x)) wide.push({ r, port: p });
        else push(hosts, `${r.family}|${r.lo}`, p);
      }
    }
  }
  return {
    networks: ir.networks, members: ir.members,
    hostOwners: (family, lo) => hosts.get(`${family}|${lo}`) ?? [],
    wideOwners: () => wide,
  };
}

/** A port whose admitted flows may have shrunk. */
export interface AffectedPort {
  portId: string;
  /** The port in the new policy; undefined when it was removed. */
  port?: PortPolicy;
  /** Its policy before the change, when it had one. */
  old?: PortPolicy;
  /** Zones its flows can be in. */
  zones: number[];
  /** Its old and new addresses (prefixes). */
  addresses: string[];
  /** Its floating IPs now (host prefixes): its DNATed flows have them as their original destination. */
  floating: readonly string[];
}

/**
 * Whether a port's change may have taken permission from some of its flows (conservatively: anything that
 * is not plainly a widening). A port new to the handle is not judged (its flows before it was filtered are
 * the full pass's, on a handle's first change); a removed port always is.
 */
export function mayShrink(old: PortPolicy | undefined, now: PortPolicy | undefined): boolean {
  if (!old) return false;
  if (!now) return true;
  if (!now.filtered) return false;
  if (!old.filtered || old.zone !== now.zone || old.mode !== now.mode || old.stateful !== now.stateful || old.mac !== now.mac) return true;
  const missing = <T>(a: readonly T[], b: readonly T[], key: (x: T) => string) => {
    if (a === b) return false; // a rule change keeps the port's other lists (1000 ports of a group each time)
    const have = new Set(b.map(key));
    return a.some((x) => !have.has(key(x)));
  };
  if (missing(old.spoof, now.spoof, (s) => `${s.mac} ${s.prefix}`) || missing(old.fixedIps, now.fixedIps, String) ||
    missing(old.dhcpServers, now.dhcpServers, String) || missing(old.routers, now.routers, String)) return true;
  return lostRules(old.rules, now.rules);
}

/** What a cleanup did. */
export interface CleanupResult {
  /** Entries the kernel deleted. */
  deleted: number;
  /** Candidate entries judged. */
  examined: number;
  /**
   * Ports whose flows the change put in question (judged; or, when the namespace tracks nothing, that would
   * have been — then a big change's ports are counted without sorting out those that only gained).
   */
  ports: number;
}

/**
 * The affected ports of a change: each changed port with its policy before and after (merged by port id; the
 * earliest `old` and the latest `now` win when changes are merged across batches).
 */
export function affectedPorts(view: CleanupView, changes: readonly { old?: PortPolicy; now?: PortPolicy }[]): AffectedPort[] {
  const foreign = foreignZones(view.networks);
  const byId = new Map<string, AffectedPort>();
  for (const { old, now } of changes) {
    const id = (now ?? old)?.portId;
    if (id === undefined) continue;
    const a = byId.get(id) ?? { portId: id, zones: [], addresses: [], floating: view.floatingOf?.(id) ?? [] };
    if (old && !a.old) a.old = old;
    if (now) a.port = now;
    else delete a.port;
    const zones = new Set(a.zones);
    const addresses = new Set(a.addresses);
    for (const p of [old, now]) {
      if (!p) continue;
      zones.add(p.zone);
      if (p.mode === 'routed') for (const z of foreign(p.zone)) zones.add(z);
      for (const f of [4, 6] as const) for (const x of portAddresses(p, f)) addresses.add(x);
    }
    a.zones = [...zones].sort((x, y) => x - y);
    a.addresses = [...addresses].sort();
    byId.set(id, a);
  }
  return [...byId.values()].filter((a) => a.addresses.length > 0).sort((a, b) => (a.portId < b.portId ? -1 : a.portId > b.portId ? 1 : 0));
}

const FAMILY = { 4: 'ipv4', 6: 'ipv6' } as const;
// Beyond this many (zone, address) filters the kernel dump is cheaper filtered by zone only.
const MAX_FILTERS = 256;

/**
 * Deletes the conntrack entries of affected ports that the new policy refuses. Entries of stateless ports'
 * flows do not exist (notrack), entries of unfiltered ports are all still allowed.
 */
export async function cleanup(ct: ConntrackLike, view: CleanupView, affected: readonly AffectedPort[]): Promise<CleanupResult> {
  const ports = affected.filter((a) => !a.port || (a.port.filtered && a.port.stateful));
  if (ports.length === 0 || (ct.count && (await ct.count()) === 0)) return { deleted: 0, examined: 0, ports: ports.length };
  const entries = await ct.list(filtersOf(ports));
  const owners = new Owners(view, ports);
  const doomed = new Map<number, ConntrackEntry>();
  let examined = 0;
  for (const e of entries) {
    // After DNAT, as the port chains saw it (see packetOf).
    const dnat = (e.status & STATUS.DST_NAT) !== 0;
    const target = dnat ? e.reply.src : e.orig.dst;
    const src = owners.find(e.zone, e.orig.src), dst = owners.find(e.zone, target);
    let from = src.owners, to = dst.owners;
    // A flow between a port of this zone and a routed port of another network, tracked in this zone: an
    // endpoint no port of this zone owns, or owns only by a prefix wider than that port's host address (the
    // longest prefix over every port wins, as in the dataplane).
    if (!src.host && dst.owners.length > 0) from = owners.foreign(e.zone, e.orig.src, dst.owners, src.owners);
    if (!dst.host && src.owners.length > 0) to = owners.foreign(e.zone, target, src.owners, dst.owners);
    const judgeFrom = from.some((o) => o.affected), judgeTo = to.some((o) => o.affected);
    if (!judgeFrom && !judgeTo) continue;
    examined++;
    const pkt = packetOf(e, target, dnat);
    const refused = (judgeFrom && from.every((o) => refuses(view, o, 'egress', pkt))) ||
      (judgeTo && to.every((o) => refuses(view, o, 'ingress', pkt)));
    if (refused) doomed.set(e.id, e);
  }
  const deleted = doomed.size ? await ct.deleteEntries([...doomed.values()]) : 0;
  return { deleted, examined, ports: ports.length };
}

/**
 * What to dump: each affected address in each of its zones, both ways — or, beyond {@link MAX_FILTERS} of those
 * (a full pass: every port, a routed one in every lower zone too), whole zones. Counted before any is built: a
 * full pass at 5000 ports would otherwise build millions of filters to throw away.
 */
function filtersOf(ports: readonly AffectedPort[]): ConntrackFilter[] {
  let n = 0;
  for (const a of ports) if ((n += a.zones.length * (2 * a.addresses.length + a.floating.length)) > MAX_FILTERS) break;
  if (n > MAX_FILTERS) {
    const zones = new Set<number>();
    for (const a of ports) for (const zone of a.zones) zones.add(zone);
    return [...zones].map((zone) => ({ zone }));
  }
  const filters: ConntrackFilter[] = [];
  for (const a of ports) {
    for (const zone of a.zones) {
      for (const addr of a.addresses) {
        const family = FAMILY[familyOf(addr)];
        filters.push({ zone, family, src: addr }, { zone, family, dst: addr });
      }
      for (const addr of a.floating) filters.push({ zone, family: FAMILY[familyOf(addr)], dst: addr });
    }
  }
  return filters;
}

/** A port owning addresses in one zone: now, before the change, or both. */
interface Owner {
  id: string;
  zone: number;
  routed: boolean;
  /** The port in the new policy; undefined when it was removed. */
  port?: PortPolicy;
  affected: boolean;
}

/**
 * Who owns an address in a zone: the current ports (from the view's indexes) and the affected ports as they
 * were before the change; an address belongs to its longest matching prefix in the zone.
 */
class Owners {
  readonly #owners = new Map<string, Owner>();
  // Old policies of affected ports: hosts by family|address, wider prefixes in a short list.
  readonly #oldHosts = new Map<string, Owner[]>();
  readonly #nets: { r: AddrRange; o: Owner }[] = [];
  readonly #hit: Set<string>;
  readonly #found = new Map<string, { owners: Owner[]; host: boolean }>();

  constructor(readonly view: CleanupView, affected: readonly AffectedPort[]) {
    this.#hit = new Set(affected.map((a) => a.portId));
    const now = new Map(affected.filter((a) => a.port).map((a) => [a.portId, a.port!]));
    for (const { r, port } of view.wideOwners()) this.#nets.push({ r, o: this.#owner(port.zone, port.portId, port.mode === 'routed', port) });
    for (const a of affected) {
      const old = a.old;
      if (!old) continue;
      const o = this.#owner(old.zone, old.portId, old.mode === 'routed', now.get(old.portId));
      for (const f of [4, 6] as const) {
        for (const x of portAddresses(old, f)) {
          const r = prefixRange(x);
          if (isHost(x)) push(this.#oldHosts, `${r.family}|${r.lo}`, o);
          else this.#nets.push({ r, o });
        }
      }
    }
  }

  #owner(zone: number, id: string, routed: boolean, port: PortPolicy | undefined): Owner {
    const k = `${zone}|${id}`;
    let o = this.#owners.get(k);
    if (!o) this.#owners.set(k, (o = { id, zone, routed, affected: this.#hit.has(id), ...(port ? { port } : {}) }));
    return o;
  }

  #hosts(x: AddrRange, where: (o: Owner) => boolean): Owner[] {
    const out: Owner[] = [];
    for (const p of this.view.hostOwners(x.family, x.lo)) {
      const o = this.#owner(p.zone, p.portId, p.mode === 'routed', p);
      if (where(o) && !out.includes(o)) out.push(o);
    }
    for (const o of this.#oldHosts.get(`${x.family}|${x.lo}`) ?? []) if (where(o) && !out.includes(o)) out.push(o);
    return out;
  }

  /**
   * The owners of `address` in `zone` (several only when their prefixes are equally long), and whether they
   * own it as a host address.
   */
  find(zone: number, address: string): { owners: Owner[]; host: boolean } {
    // A port's address is an endpoint of many of its flows: each (zone, address) is worked out once.
    const k = `${zone} ${address}`;
    let found = this.#found.get(k);
    if (found === undefined) {
      const x = prefixRange(address);
      const hosts = this.#hosts(x, (o) => o.zone === zone);
      found = hosts.length ? { owners: hosts, host: true } : { owners: longest(this.#nets, x, (o) => o.zone === zone), host: false };
      this.#found.set(k, found);
    }
    return found;
  }

  /**
   * The routed ports of other networks owning `address`, for an entry in `zone` whose other endpoint is
   * `peer` (ports of `zone`): a flow with a routed peer is in the lower of two routed zones, a flow with a
   * bridged peer in the bridged zone. `near`: the ports of `zone` owning it by a wider prefix, which keep it
   * unless another network's port has it as a host address.
   */
  foreign(zone: number, address: string, peer: readonly Owner[], near: Owner[]): Owner[] {
    const bridged = peer.some((o) => !o.routed);
    const where = (o: Owner) => o.routed && o.zone !== zone && (bridged || o.zone > zone);
    const x = prefixRange(address);
    const hosts = this.#hosts(x, where);
    if (hosts.length) return hosts;
    return near.length ? near : longest(this.#nets, x, where);
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

/**
 * The entry's original direction as the port chains saw it: DNAT (prerouting, output) has run, SNAT
 * (postrouting) has not — a DNATed flow's destination (`dst`, given) and port are its reply's source.
 */
function packetOf(e: ConntrackEntry, dst: string, dnat: boolean): Packet {
  const pkt: Packet = { family: e.family === 'ipv4' ? 4 : 6, protocol: e.protocol, src: e.orig.src, dst };
  if (e.orig.sport !== undefined) pkt.sport = e.orig.sport;
  const dport = dnat && e.reply.sport !== undefined ? e.reply.sport : e.orig.dport;
  if (dport !== undefined) pkt.dport = dport;
  if (e.icmp) pkt.icmp = { type: e.icmp.type, code: e.icmp.code };
  return pkt;
}

/** Whether the owner's new policy refuses the entry's original direction on its side. */
function refuses(ir: Members, o: Owner, direction: 'ingress' | 'egress', pkt: Packet): boolean {
  const port = o.port;
  if (!port || port.zone !== o.zone) return true; // the port is gone, or left that network
  // An address the port no longer has (egress: anti-spoof of the evaluator).
  if (direction === 'ingress' && !portAddresses(port, pkt.family).some((x) => prefixContains(x, pkt.dst))) return true;
  return !allows(ir, port, direction, pkt);
}

/**
 * The other zones a routed port's flows may be tracked in: lower routed zones (a flow between two local routed
 * ports gets the lower zone) and bridged zones (a flow with a bridged port gets the bridged network's zone).
 */
function foreignZones(networks: readonly Network[]): (zone: number) => number[] {
  return (zone) => networks.filter((n) => n.zone !== zone && (n.mode === 'bridged' || n.zone < zone)).map((n) => n.zone);
}
