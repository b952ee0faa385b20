/**
 * Conntrack cleanup after an apply (SPEC §2.7): delete exactly the tracked flows the new policy no longer
 * admits, in the zones of the ports whose policy shrank, and nothing else — no flush, other zones never.
 *
 * Which ports are affected is read from what the batch removed from the kernel (the old policy is what the
 * kernel held): a removed per-port element names its port by key (device or tag), a removed member-set
 * element names its group (→ the ports whose rules use it), a port that newly needs filtering is affected too
 * (port security switched on). A removed port's zone and addresses come from the old listing. Each candidate
 * entry — in those zones, from or to those addresses — is judged by the evaluator on the new policy, in its
 * original direction; the ones it refuses are deleted by exact tuple in one pipelined call.
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
  delete(filters: ConntrackFilter | readonly ConntrackFilter[]): Promise<number>;
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

/** Old per-port facts read back from the listing of the inet table taken before the commit. */
function oldPorts(old: readonly NftObject[], table: string) {
  const sets = new Map<string, NftSet>();
  for (const o of old) if (o.kind === 'set' && o.family === 'inet' && o.table === table) sets.set(o.name, o);
  const info = new Map<string, { portId?: string; zone?: number; addresses: Set<string> }>();
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

  const routedZones = ir.networks.filter((n) => n.mode === 'routed').map((n) => n.zone);
  const out: AffectedPort[] = [];
  for (const key of [...keys].sort()) {
    const was = info.get(key);
    const port = (was?.portId !== undefined ? byId.get(was.portId) : undefined) ?? byKey.get(key);
    if (!port && was?.zone === undefined) continue; // nothing known about it: no zone to look in
    const zones = new Set<number>();
    if (was?.zone !== undefined) zones.add(was.zone);
    if (port) zones.add(port.zone);
    // Routed flows between two local ports of different networks live in the lower zone (see layout zones()).
    if (port?.mode === 'routed') for (const z of routedZones) if (z < port.zone) zones.add(z);
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

const FAMILY = { 4: 'ipv4', 6: 'ipv6' } as const;
// Beyond this many (zone, address) filters the kernel dump is cheaper filtered by zone only.
const MAX_FILTERS = 256;

/**
 * Deletes the conntrack entries of affected ports that the new policy refuses. Entries of stateless ports'
 * flows do not exist (notrack), entries of unfiltered ports are all still allowed.
 */
export async function cleanup(ct: ConntrackLike, ir: PolicyIR, affected: readonly AffectedPort[]): Promise<CleanupResult> {
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
  const owners = new AddressIndex(ports);
  const doomed = new Map<number, ConntrackFilter>();
  let examined = 0;
  for (const e of entries) {
    const from = owners.find(e.zone, e.orig.src);
    const to = owners.find(e.zone, e.orig.dst);
    for (const a of new Set([...from, ...to])) {
      examined++;
      if (!refused(ir, a, e, from.includes(a), to.includes(a))) continue;
      const f: ConntrackFilter = { zone: e.zone, family: e.family, protocol: e.protocol, src: e.orig.src, dst: e.orig.dst };
      if (e.orig.sport !== undefined) f.sport = e.orig.sport;
      if (e.orig.dport !== undefined) f.dport = e.orig.dport;
      doomed.set(e.id, f);
      break;
    }
  }
  const deleted = doomed.size ? await ct.delete([...doomed.values()]) : 0;
  return { deleted, examined, ports: ports.length };
}

/** Affected ports by (zone, address): hosts in a map, wider prefixes (address pairs) in a short list. */
class AddressIndex {
  readonly #hosts = new Map<string, AffectedPort[]>();
  readonly #nets = new Map<number, { r: AddrRange; a: AffectedPort }[]>();

  constructor(ports: readonly AffectedPort[]) {
    for (const a of ports) {
      for (const addr of a.addresses) {
        const r = prefixRange(addr);
        for (const zone of a.zones) {
          if (r.lo === r.hi) {
            const k = `${zone}|${r.family}|${r.lo}`;
            const list = this.#hosts.get(k);
            if (list) list.push(a);
            else this.#hosts.set(k, [a]);
          } else {
            const list = this.#nets.get(zone) ?? [];
            list.push({ r, a });
            this.#nets.set(zone, list);
          }
        }
      }
    }
  }

  /** The affected ports that have `address` in `zone`. */
  find(zone: number, address: string): AffectedPort[] {
    const x = prefixRange(address);
    const out = [...(this.#hosts.get(`${zone}|${x.family}|${x.lo}`) ?? [])];
    for (const { r, a } of this.#nets.get(zone) ?? []) {
      if (r.family === x.family && x.lo >= r.lo && x.lo <= r.hi && !out.includes(a)) out.push(a);
    }
    return out;
  }
}

/** Whether the new policy refuses an entry's original direction on this port. */
function refused(ir: PolicyIR, a: AffectedPort, e: ConntrackEntry, fromPort: boolean, toPort: boolean): boolean {
  const port = a.port;
  if (!port) return true; // the port is gone
  const pkt: Packet = { family: e.family === 'ipv4' ? 4 : 6, protocol: e.protocol, src: e.orig.src, dst: e.orig.dst };
  if (e.orig.sport !== undefined) pkt.sport = e.orig.sport;
  if (e.orig.dport !== undefined) pkt.dport = e.orig.dport;
  if (e.icmp) pkt.icmp = { type: e.icmp.type, code: e.icmp.code };
  if (fromPort && !allows(ir, port, 'egress', pkt)) return true;
  if (toPort) {
    // An address the port no longer has: refused unless another port of the zone has it now.
    const owns = (p: PortPolicy) => portAddresses(p, pkt.family).some((x) => prefixContains(x, pkt.dst));
    if (!owns(port)) return !ir.ports.some((p) => p !== port && p.zone === e.zone && owns(p));
    if (!allows(ir, port, 'ingress', pkt)) return true;
  }
  return false;
}
