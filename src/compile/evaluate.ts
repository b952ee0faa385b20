/**
 * The policy as a function: would a port's chain admit this packet? It follows the chains that
 * `./layout.ts` builds, step by step, on the compiled policy (not on the kernel), so it answers for any
 * renderer. Conntrack cleanup asks it whether a tracked flow's original direction is still allowed; `explain`
 * will ask it which rule admits or drops a packet.
 */
import { cachedRange, familyOf, prefixContains, prefixRange, type AddrRange } from './addr.js';
import type { CompiledRule, GroupMembers, PortPolicy } from './ir.js';
import { PORT_PROTOCOLS } from '../model/values.js';
import { ND_DAD, ND_IN, ND_OUT } from './layout.js';

/** What the evaluator needs besides the port: the members of remote groups (a PolicyIR has them). */
export interface Members {
  readonly members: readonly GroupMembers[];
}

/** A packet as the policy sees it (the original direction of a flow). */
export interface Packet {
  family: 4 | 6;
  /** IP protocol number. */
  protocol: number;
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
  /** ICMP/ICMPv6 type and code. */
  icmp?: { type: number; code: number };
  /** Source MAC, when known (conntrack does not know it: the MAC check is then skipped). */
  srcMac?: string;
}

/** `egress`: the packet leaves the port (from the VM); `ingress`: it is delivered to the port. */
export type Direction = 'ingress' | 'egress';

/** Why a packet is admitted or dropped. */
export interface Decision {
  allowed: boolean;
  /**
   * The step of the chain that decided: 'unfiltered', 'l2-guard', 'anti-spoof', 'dhcp', 'nd', 'router-advert',
   * 'rule', 'default'.
   */
  reason: string;
  /** The security-group rule that admitted the packet (reason 'rule'). */
  ruleId?: string;
}

const DHCP4 = { client: 68, server: 67 };
const DHCP6 = { client: 546, server: 547 };
const UDP = 17;
const ICMPV6 = 58;
const RA = 134;

/** A remote group's members in one family: host addresses as numbers, wider prefixes as ranges. */
interface MemberSet {
  hosts: Set<bigint>;
  nets: AddrRange[];
}

/** Per members list (they are never changed once made): group id → its member sets, IPv4 and IPv6. */
const MEMBER_INDEX = new WeakMap<readonly GroupMembers[], Map<string, { 4?: MemberSet; 6?: MemberSet }>>();

function memberSet(members: readonly GroupMembers[], groupId: string, family: 4 | 6): MemberSet | undefined {
  let index = MEMBER_INDEX.get(members);
  if (!index) {
    index = new Map();
    for (const m of members) {
      const set: MemberSet = { hosts: new Set(), nets: [] };
      for (const p of m.prefixes) {
        const r = prefixRange(p);
        if (r.lo === r.hi) set.hosts.add(r.lo);
        else set.nets.push(r);
      }
      let byFamily = index.get(m.groupId);
      if (!byFamily) index.set(m.groupId, (byFamily = {}));
      byFamily[m.family] = set;
    }
    MEMBER_INDEX.set(members, index);
  }
  return index.get(groupId)?.[family];
}

/** The decision of a port's chain for a packet (see {@link Decision}). */
export function evaluate(ir: Members, port: PortPolicy, direction: Direction, pkt: Packet): Decision {
  if (!port.filtered) return { allowed: true, reason: 'unfiltered' };
  if (guarded(port, direction, pkt)) return { allowed: false, reason: 'l2-guard' };
  const dhcp = pkt.family === 4 ? DHCP4 : DHCP6;
  const isUdp = (sport: number, dport: number) => pkt.protocol === UDP && pkt.sport === sport && pkt.dport === dport;
  const icmp6 = pkt.family === 6 && pkt.protocol === ICMPV6 ? pkt.icmp?.type : undefined;
  if (direction === 'egress') {
    if (icmp6 !== undefined && ND_DAD.includes(icmp6) && pkt.src === '::') return { allowed: true, reason: 'nd' };
    const own = port.spoof.some((s) => s.family === pkt.family && (pkt.srcMac === undefined || s.mac === pkt.srcMac) && prefixContains(s.prefix, pkt.src));
    if (!own) return { allowed: false, reason: 'anti-spoof' };
    if (isUdp(dhcp.client, dhcp.server)) return { allowed: true, reason: 'dhcp' };
    if (isUdp(dhcp.server, dhcp.client)) return { allowed: false, reason: 'dhcp' };
    if (icmp6 === RA) return { allowed: false, reason: 'router-advert' };
    if (icmp6 !== undefined && ND_OUT.includes(icmp6)) return { allowed: true, reason: 'nd' };
  } else {
    if (icmp6 !== undefined && ND_IN.includes(icmp6)) return { allowed: true, reason: 'nd' };
    if (icmp6 === RA) return { allowed: port.routers.some((r) => prefixContains(r, pkt.src)), reason: 'router-advert' };
    if (isUdp(dhcp.server, dhcp.client)) return { allowed: port.dhcpServers.some((d) => prefixContains(d, pkt.src)), reason: 'dhcp' };
  }
  const rule = port.rules.find((r) => r.direction === direction && matches(ir, r, direction, pkt));
  return rule ? { allowed: true, reason: 'rule', ruleId: rule.ruleId } : { allowed: false, reason: 'default' };
}

/** Whether the port's policy admits the packet in that direction. */
export function allows(ir: Members, port: PortPolicy, direction: Direction, pkt: Packet): boolean {
  return evaluate(ir, port, direction, pkt).allowed;
}

const IPV4_BROADCAST = ['255.255.255.255/32', '224.0.0.0/4'];

/**
 * Whether a layer-2 guard of the bridge table drops the packet before the inet chains see it (the guards
 * that an IP packet can show: DHCP snooping, IPv4 broadcast and multicast by address, IPv6). What only the
 * frame shows — ARP, VLAN tags, a group MAC on a unicast address — is not a packet this function is asked about.
 */
function guarded(port: PortPolicy, direction: Direction, pkt: Packet): boolean {
  const g = port.l2Guards;
  if (!g) return false;
  if (pkt.family === 6) return g.dropIpv6;
  const udp = pkt.protocol === UDP;
  if (g.dhcpSnooping && udp) {
    if (direction === 'egress' && (pkt.sport === DHCP4.server || pkt.dport === DHCP4.client)) return true;
    if (direction === 'ingress' && pkt.dport === DHCP4.server) return true;
  }
  const dhcp = udp && (pkt.dport === DHCP4.server || pkt.dport === DHCP4.client);
  return g.broadcast && !dhcp && IPV4_BROADCAST.some((b) => prefixContains(b, pkt.dst));
}

function matches(ir: Members, r: CompiledRule, direction: Direction, pkt: Packet): boolean {
  if (r.family !== pkt.family) return false;
  if (r.protocol !== undefined) {
    if (r.protocol !== pkt.protocol) return false;
    if (r.ports !== undefined && PORT_PROTOCOLS.has(r.protocol)) {
      if (pkt.dport === undefined || pkt.dport < r.ports.min || pkt.dport > r.ports.max) return false;
    }
    if (r.icmp !== undefined && (r.protocol === 1 || r.protocol === ICMPV6)) {
      if (pkt.icmp === undefined || pkt.icmp.type !== r.icmp.type) return false;
      if (r.icmp.code !== undefined && pkt.icmp.code !== r.icmp.code) return false;
    }
  }
  const remote = direction === 'ingress' ? pkt.src : pkt.dst;
  switch (r.remote.kind) {
    case 'any':
      return true;
    case 'prefix':
      return prefixContains(r.remote.prefix, remote);
    case 'group': {
      const members = memberSet(ir.members, r.remote.groupId, r.family);
      if (!members) return false;
      if (familyOf(remote) !== r.family) return false;
      const a = cachedRange(remote);
      return members.hosts.has(a.lo) || members.nets.some((n) => a.lo >= n.lo && a.lo <= n.hi);
    }
  }
}
