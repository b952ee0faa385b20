/**
 * The skeleton of portwall's tables (docs/dataplane.md): chains, rules and set declarations, plus the few
 * constant elements (ICMPv6 types, bridges, EtherTypes). The raw chains (zones, untracking) and the sets only
 * they read go to a second inet table (`rawTableName`), so that their sets are not in the filter table's walk
 * (docs/dataplane.md, "Set order"). It depends only on the networks, the attachment modes in use, which remote
 * groups the groups' rules name per family, and a few facts of the ports as a whole (whether any is stateless;
 * which groups and networks have a prefix wider than a host) — never on one port, profile or rule, so a port,
 * a profile, a rule or a member coming or going leaves it alone, except the first or last port of such a fact
 * (SkeletonInput). Every lookup it makes is a set whose elements the claims of `./layout-units.ts` provide;
 * the groups' and profiles' own chains and sets come from `./layout-groups.ts`.
 */
import {
  F, and, counter, drop, eq, goto, inSet, jump, limit, log, mapOf, ne, notInSet, notrack, accept, or, ret, set, vmap,
  type Operand, type Part, type SetRef,
} from '../nft/match.js';
import type { NftObject } from '../nft/types.js';
import type { Nat, Network, PortwallConfig } from '../model/types.js';
import { hasNat, natTable, natZoneRules } from './layout-nat.js';
import { clip } from './layout-ports.js';
import { markBits } from './policy.js';
import {
  BRIDGE, GUARD_SETS, INET, memberNetSetName, memberSetName, rawTableName, zoneSetName, type KeyKind, type Shape,
} from './names.js';
import { TableBuilder } from './tables.js';
import { allowedMark } from './layout-groups.js';
import { KEY_TYPE } from './layout-ports.js';
import { familyKey, familyKeyParts } from './layout-units.js';

// The same ICMPv6 allowances as the iptables renderer (src/render/iptables.ts), so both say one policy.
/** ICMPv6 a port may send without a rule: MLD, router solicitation, neighbour solicitation/advertisement. */
export const ND_OUT = [130, 131, 132, 133, 135, 136, 143];
/** ICMPv6 a port may receive without a rule: MLD, neighbour solicitation/advertisement (RAs: routers only). */
export const ND_IN = [130, 131, 132, 135, 136, 143];
/** ICMPv6 sent from `::` during duplicate address detection, before the port has an address: ahead of anti-spoof. */
export const ND_DAD = [131, 135, 143];
/** EtherTypes a filtered bridged port may send: IPv4, ARP, IPv6. */
const L2_TYPES = [0x0800, 0x0806, 0x86dd];
/** ARP operations the `arp` guard lets a port send: request and reply. */
const ARP_OPS = [1, 2];
/** EtherTypes of VLAN-tagged frames (802.1Q, 802.1ad), which the `drop_vlan` guard drops. */
const TAGGED_TYPES = [0x8100, 0x88a8];
/** DHCP's ports (server, client): the `broadcast` guard's exception. */
const DHCP_PORTS = [67, 68];
const FAMILIES = [4, 6] as const;

/** A remote group's use by the rule profiles: `in|4|ports`. */
export type RemoteUse = `${'in' | 'out'}|${4 | 6}|${Shape}`;

/** What the skeleton depends on. */
export interface SkeletonInput {
  config: PortwallConfig;
  networks: readonly Network[];
  /** Remote group → the (direction, family, shape) combinations some live profile's rules use it in. */
  remote: ReadonlyMap<string, ReadonlySet<RemoteUse>>;
  /** The `nat` options (absent: no default SNAT, no metadata redirect). */
  nat?: Nat | undefined;
  /** Whether a floating IP is associated (the NAT table exists then, with or without `nat`). */
  floating?: boolean;
  /**
   * `group|family` of the groups with a member prefix wider than a host ({@link netMemberKeys}): the
   * member-prefix sets declared are those of remote groups among them.
   */
  nets?: ReadonlySet<string>;
  /** `network|family` of the routed networks with a port owning a prefix wider than a host ({@link zoneNetKeys}). */
  zoneNets?: ReadonlySet<string>;
  /** Whether some port is stateless: the untracking rules and their sets exist only then. */
  stateless?: boolean;
  /** The most group slots a rule profile fills (its number of groups): one verdict map per slot. Default 1. */
  profileSlots?: number;
}

/** The (family, group) member sets a skeleton declares. */
export function memberFamilies(remote: SkeletonInput['remote']): Map<string, Set<4 | 6>> {
  const out = new Map<string, Set<4 | 6>>();
  for (const [g, uses] of remote) {
    const fams = new Set<4 | 6>();
    for (const u of uses) fams.add(Number(u.split('|')[1]) as 4 | 6);
    if (fams.size) out.set(g, fams);
  }
  return out;
}

/** A string that changes exactly when the skeleton would. */
export function skeletonSignature(input: SkeletonInput): string {
  // A remote group's families, each with whether it has a member-prefix set ('4', or '4n').
  const remote = [...memberFamilies(input.remote)]
    .map(([g, fams]) => [g, [...fams].sort().map((f) => (input.nets?.has(familyKey(g, f)) ? `${f}n` : `${f}`))])
    .sort((a, b) => (a[0]! < b[0]! ? -1 : 1));
  const zoneNets = [...(input.zoneNets ?? [])].sort();
  return `${networksSignature(input.config, input.networks)}${JSON.stringify([remote, input.nat ?? null, !!input.floating, zoneNets, !!input.stateless, input.profileSlots ?? 1])}`;
}

// The configuration's and networks' part of the signature, remembered for the last list of (immutable,
// validated) network objects per configuration: a group change asks for the signature at every commit, and
// at hundreds of networks this part was most of that (docs/dataplane.md, "Incremental updates").
const lastNetworks = new WeakMap<PortwallConfig, { networks: readonly Network[]; text: string }>();
function networksSignature(config: PortwallConfig, networks: readonly Network[]): string {
  const last = lastNetworks.get(config);
  if (last && last.networks.length === networks.length && last.networks.every((n, i) => n === networks[i])) return last.text;
  const nets = [...networks].sort((a, b) => a.zone - b.zone).map((n) => [n.id, n.zone, n.mode, n.bridge ?? null, n.logDrops ?? 0, n.logAccepts ?? 0, n.l2Guards ?? null, n.flavor ?? null]);
  const text = JSON.stringify([config, nets]);
  lastNetworks.set(config, { networks: [...networks], text });
  return text;
}

/** The skeleton objects of the tables (the bridge table only when a network is bridged, NAT's only with NAT). */
export function skeleton(input: SkeletonInput): NftObject[] {
  const { t, raw } = inetSkeleton(input);
  const out = [...t.objects(), ...raw.objects()];
  if (input.networks.some((n) => n.mode === 'bridged')) out.push(...bridgeSkeleton(input.config).objects());
  const nat = { nat: input.nat, floating: !!input.floating };
  if (hasNat(nat)) out.push(...natTable(input.config.tables.nat, nat).objects());
  return out;
}

const addrType = (f: 4 | 6) => (f === 4 ? 'ipv4_addr' as const : 'ipv6_addr' as const);
const daddrOf = (f: 4 | 6) => (f === 4 ? F.ip.daddr : F.ip6.daddr);

function inetSkeleton(input: SkeletonInput): { t: TableBuilder; raw: TableBuilder } {
  const { config, networks } = input;
  const t = new TableBuilder('inet', config.tables.inet);
  // The raw chains and the sets only they read, in a table of their own (rawTableName).
  const raw = new TableBuilder('inet', rawTableName(config.tables));
  const modes: KeyKind[] = [];
  if (networks.some((n) => n.mode === 'routed')) modes.push('dev');
  if (networks.some((n) => n.mode === 'bridged')) modes.push('tag');
  // Tags and rule profiles share the mark bits below the bridge-forwarded flag (the mask's highest bit).
  const { tagMask, flag } = markBits(config.markMask >>> 0);
  const mask = config.markMask >>> 0;
  const tagKey = and(F.meta.mark, tagMask);
  const KEY: Record<KeyKind, Operand> = { dev: F.meta.iifname, tag: tagKey };
  const KEY_TO: Record<KeyKind, Operand> = { dev: F.meta.oifname, tag: tagKey };

  const rawPre = raw.chain(INET.rawPre, { hook: 'prerouting', priority: -300 });
  const rawOut = raw.chain(INET.rawOut, { hook: 'output', priority: -300 });
  const preFilter = t.chain(INET.preFilter, { hook: 'prerouting', priority: 0 });
  const fwdFilter = t.chain(INET.fwdFilter, { hook: 'forward', priority: 0 });
  const inFilter = t.chain(INET.inFilter, { hook: 'input', priority: 0 });
  const outFilter = t.chain(INET.outFilter, { hook: 'output', priority: 0 });
  if (modes.length === 0) return { t, raw };

  const bridgedNets = networks.filter((n) => n.mode === 'bridged' && n.bridge !== undefined);
  const bridgeNames = [...new Set(bridgedNets.map((n) => n.bridge!))].sort();
  // The bridges, in each table that looks them up (a rule reads only sets of its own table).
  const bridgeSet = (b: TableBuilder, name: string): SetRef => {
    const s = b.set(name, ['ifname'], { comment: 'bridges of bridged networks' });
    b.fill(name, bridgeNames.map((n) => ({ key: [n] })));
    return s;
  };
  const bridged = modes.includes('tag');
  const bridges = bridged ? bridgeSet(t, INET.bridges) : undefined;
  const rawBridges = bridged ? bridgeSet(raw, INET.rawBridges) : undefined;
  statelessRules(input, raw, rawPre, rawOut, tagKey, rawBridges);
  zoneRules(input, raw, rawPre, rawOut, rawBridges);

  const ndOut = t.set(INET.ndOut, ['icmpv6_type'], { comment: 'ICMPv6 a port sends without a rule' });
  const ndIn = t.set(INET.ndIn, ['icmpv6_type'], { comment: 'ICMPv6 a port receives without a rule' });
  const ndDad = t.set(INET.ndDad, ['icmpv6_type'], { comment: 'ICMPv6 a port sends from :: (DAD)' });
  t.fill(INET.ndOut, ND_OUT.map((n) => ({ key: [n] })));
  t.fill(INET.ndIn, ND_IN.map((n) => ({ key: [n] })));
  t.fill(INET.ndDad, ND_DAD.map((n) => ({ key: [n] })));

  // Security groups (./layout-groups.ts): a port's profile picks the chain of its groups' rules per direction.
  t.set(INET.profiles, ['mark'], { comment: 'rule profiles in use' });
  // One verdict map per group slot (docs/dataplane.md, "Security groups and rule profiles"): a profile jumps to
  // the chain of its k-th group from slot k, so that no profile needs a chain of its own.
  const slots = Math.max(1, input.profileSlots ?? 1);
  const slot = (dir: 'in' | 'out', k: number) =>
    t.set(INET.profileSlot(dir, k), ['mark'], { data: 'verdict', comment: `${dir === 'in' ? 'ingress' : 'egress'} chain of each rule profile's group ${k + 1}` });
  const profileSlots = {
    in: Array.from({ length: slots }, (_, k) => slot('in', k)),
    out: Array.from({ length: slots }, (_, k) => slot('out', k)),
  };
  memberSets(input, t);
  const allowed = allowedMark(config);

  for (const k of modes) {
    const kt = KEY_TYPE[k];
    const ports = t.set(INET.ports(k), [kt], { order: 'first', comment: 'filtered ports' });
    const profile = t.set(INET.profile(k), [kt], { order: 'first', data: 'mark', comment: 'rule profile of each filtered port' });
    const spoof = {
      4: t.set(INET.spoof(4, k), [kt, 'ether_addr', 'ipv4_addr'], { order: 'first', comment: 'allowed source MAC and IPv4 address per port' }),
      6: t.set(INET.spoof(6, k), [kt, 'ether_addr', 'ipv6_addr'], { order: 'first', comment: 'allowed source MAC and IPv6 address per port' }),
    };
    const spoofNet = {
      4: t.set(INET.spoofNet(4, k), [kt, 'ether_addr', 'ipv4_addr'], { order: 'first', interval: true, comment: 'allowed source MAC and IPv4 prefix per port' }),
      6: t.set(INET.spoofNet(6, k), [kt, 'ether_addr', 'ipv6_addr'], { order: 'first', interval: true, comment: 'allowed source MAC and IPv6 prefix per port' }),
    };
    const dhcp = { 4: t.set(INET.dhcp(4, k), [kt, 'ipv4_addr'], { order: 'first', comment: 'DHCP servers per port' }), 6: t.set(INET.dhcp(6, k), [kt, 'ipv6_addr'], { order: 'first', comment: 'DHCPv6 servers per port' }) };
    const ra6 = t.set(INET.ra6(k), [kt, 'ipv6_addr'], { order: 'first', comment: 'IPv6 routers per port' });
    const egress = t.chain(INET.egress(k));
    const ingress = t.chain(INET.ingress(k));
    const from = KEY[k];
    const to = KEY_TO[k];
    // Dispatch enters the port chains through these (the port chains themselves, or with `log_accepts` a
    // chain that calls them and logs the new connections they let through).
    const toEgress = acceptLogged(t, input, egress, 'egress');
    const toIngress = acceptLogged(t, input, ingress, 'ingress');

    // Dispatch: constant rules whose lookups are sets, so ports come and go as elements.
    if (k === 'dev') {
      t.rule(fwdFilter, [inSet(F.meta.iifname, ports), jump(toEgress)], 'from routed ports');
      t.rule(fwdFilter, [inSet(F.meta.oifname, ports), jump(toIngress)], 'to routed ports');
      t.rule(inFilter, [inSet(F.meta.iifname, ports), jump(toEgress)], 'from routed ports to the host');
      t.rule(outFilter, [inSet(F.meta.oifname, ports), jump(toIngress)], 'from the host to routed ports');
    } else {
      // br_netfilter shows bridged traffic to inet hooks with the bridge as iif/oif: the bridge table's tag says
      // which port. Egress is checked in prerouting (the source tag), ingress in forward (the destination tag)
      // for frames the bridge forwards (iif and oif the same bridge, and the bridge forward chain's flag set).
      // Traffic the host routes into a bridge (from elsewhere, or back out of the bridge it came from) or sends
      // there itself never meets the bridge's forward hook and carries a stale tag: chain to_bridge clears it
      // and finds the destination port from the address. The hairpin rule comes first: a port chain leaves
      // its profile (flag clear) in the mark, which must not look like a routed frame afterwards.
      const bridgeFwd = t.set(INET.bridgeFwd, ['ifname', 'ifname'], { comment: 'bridge-forwarded traffic' });
      t.fill(INET.bridgeFwd, bridgeNames.map((b) => ({ key: [b, b] })));
      t.rule(preFilter, [inSet(F.meta.iifname, bridges!), inSet(tagKey, ports), jump(toEgress)], 'from bridged ports');
      const forwarded = eq(and(F.meta.mark, flag), flag);
      const routed = eq(and(F.meta.mark, flag), 0);
      const toBridge = t.chain(INET.toBridge);
      t.rule(fwdFilter, [inSet([F.meta.iifname, F.meta.oifname], bridgeFwd), routed, jump(toBridge)], 'routed back out of its bridge (hairpin)');
      t.rule(fwdFilter, [inSet([F.meta.iifname, F.meta.oifname], bridgeFwd), forwarded, inSet(tagKey, ports), jump(toIngress)], 'to bridged ports');
      t.rule(fwdFilter, [inSet(F.meta.oifname, bridges!), notInSet([F.meta.iifname, F.meta.oifname], bridgeFwd), jump(toBridge)], 'routed into a bridged network');
      t.rule(outFilter, [inSet(F.meta.oifname, bridges!), jump(toBridge)], 'from the host into a bridged network');
      t.rule(toBridge, [set(F.meta.mark, and(F.meta.mark, (~mask) >>> 0))], 'clear the stale port tag');
      for (const f of FAMILIES) {
        const hosts = t.set(INET.routeTag(f), ['ifname', addrType(f)], { order: 'first', data: 'mark', comment: `bridged port tag by bridge and IPv${f} address` });
        const nets = t.set(INET.routeTagNet(f), ['ifname', addrType(f)], { order: 'first', interval: true, data: 'mark', comment: `bridged port tag by bridge and IPv${f} prefix` });
        // Disjoint by construction (a prefix range never holds a host another port owns), so at most one hits.
        t.rule(toBridge, [set(F.meta.mark, mapOf([F.meta.oifname, daddrOf(f)], hosts))], 'the destination port by address');
        t.rule(toBridge, [set(F.meta.mark, mapOf([F.meta.oifname, daddrOf(f)], nets))], 'the destination port by prefix');
      }
      t.rule(toBridge, [inSet(tagKey, ports), goto(toIngress)], 'to bridged ports');
    }

    // Every drop counts; on networks with `log_drops` it is logged first (a chain per drop rule).
    const stop = (chain: string, matches: Part[], step: string): void => t.rule(chain, [...matches, ...dropAs(t, input, chain, step)], step);

    // Egress, anti-spoof before the DHCP allowance (Neutron LP 1558658). Anti-spoof reads `ether
    // saddr`, which a routed port that is not an Ethernet device (tun) lacks: such ports send nothing.
    if (k === 'dev') stop(egress, [ne(F.meta.iiftype, 1)], 'routed ports must be Ethernet devices');
    t.rule(egress, [eq(F.ip6.saddr, '::'), inSet(F.icmpv6.type, ndDad), ret()], 'ND and MLD from :: (DAD)');
    stop(egress, [notInSet([from, F.ether.saddr, F.ip.saddr], spoof[4]), notInSet([from, F.ether.saddr, F.ip.saddr], spoofNet[4])], 'IPv4 anti-spoof');
    stop(egress, [notInSet([from, F.ether.saddr, F.ip6.saddr], spoof[6]), notInSet([from, F.ether.saddr, F.ip6.saddr], spoofNet[6])], 'IPv6 anti-spoof');
    t.rule(egress, [eq(F.meta.nfproto, 'ipv4'), eq(F.udp.sport, 68), eq(F.udp.dport, 67), ret()], 'DHCP client');
    stop(egress, [eq(F.ip.saddr, '0.0.0.0')], '0.0.0.0 is for DHCP discover only');
    t.rule(egress, [eq(F.meta.nfproto, 'ipv6'), eq(F.udp.sport, 546), eq(F.udp.dport, 547), ret()], 'DHCPv6 client');
    stop(egress, [eq(F.meta.nfproto, 'ipv4'), eq(F.udp.sport, 67), eq(F.udp.dport, 68)], 'DHCP server on a port');
    stop(egress, [eq(F.meta.nfproto, 'ipv6'), eq(F.udp.sport, 547), eq(F.udp.dport, 546)], 'DHCPv6 server on a port');
    stop(egress, [eq(F.icmpv6.type, 'nd-router-advert')], 'router advertisement from a port');
    t.rule(egress, [inSet(F.icmpv6.type, ndOut), ret()], 'ND and MLD');
    stop(egress, [eq(F.ct.state, 'invalid')], 'invalid conntrack state');
    t.rule(egress, [eq(F.ct.state, 'established,related'), ret()]);

    t.rule(ingress, [inSet(F.icmpv6.type, ndIn), ret()], 'ND and MLD');
    t.rule(ingress, [inSet([to, F.ip6.saddr], ra6), eq(F.icmpv6.type, 'nd-router-advert'), ret()], 'RA from the network routers');
    stop(ingress, [eq(F.icmpv6.type, 'nd-router-advert')], 'RA from anyone else');
    stop(ingress, [eq(F.ct.state, 'invalid')], 'invalid conntrack state');
    t.rule(ingress, [eq(F.ct.state, 'established,related'), ret()]);
    // The ports first: a new connection's packet of any other kind then skips the lookup.
    t.rule(ingress, [eq(F.udp.sport, 67), eq(F.udp.dport, 68), inSet([to, F.ip.saddr], dhcp[4]), ret()], 'DHCP from the network servers');
    t.rule(ingress, [eq(F.udp.sport, 547), eq(F.udp.dport, 546), inSet([to, F.ip6.saddr], dhcp[6]), ret()], 'DHCPv6 from the network servers');
    stop(ingress, [eq(F.meta.nfproto, 'ipv4'), eq(F.udp.sport, 67), eq(F.udp.dport, 68)], 'DHCP from anyone else');
    stop(ingress, [eq(F.meta.nfproto, 'ipv6'), eq(F.udp.sport, 547), eq(F.udp.dport, 546)], 'DHCPv6 from anyone else');

    // Security-group rules: the port's profile goes into the mark (a map value replaces the whole mark: on a
    // filtered port's packets the mask's bits are portwall's), each slot's map jumps to the chain of one of its
    // groups, and a group that allows the packet leaves the "allowed" mark — which no slot holds, so the maps
    // after it miss.
    for (const [chain, dir, key] of [[egress, 'out', from], [ingress, 'in', to]] as const) {
      t.rule(chain, [set(F.meta.mark, mapOf(key, profile))], 'the port\'s rule profile');
      profileSlots[dir].forEach((m, k) => t.rule(chain, [vmap(tagKey, m)], `its security group ${k + 1}`));
      t.rule(chain, [eq(tagKey, allowed), ret()], 'allowed by a security group rule');
      stop(chain, [], 'no rule allows it');
    }
  }
  return { t, raw };
}

/**
 * The end of a drop rule: `counter drop`, or — when some network logs its drops — `counter goto CHAIN`, where
 * CHAIN logs the packet for each such network (matched by its conntrack zone, rate-limited per network) with
 * the prefix `pw ZONE STEP`, then drops it (docs/dataplane.md, "Drop log"). Untracked packets have no zone
 * and are not logged.
 */
function dropAs(t: TableBuilder, input: SkeletonInput, chain: string, step: string): Part[] {
  const logged = input.networks.filter((n) => n.logDrops).sort((a, b) => a.zone - b.zone);
  if (logged.length === 0) return [counter(), drop()];
  let i = 0;
  while (t.hasChain(INET.dropChain(chain, i))) i++;
  const c = t.chain(INET.dropChain(chain, i));
  for (const n of logged) {
    const rate = n.logDrops!;
    t.rule(c, [eq(F.ct.zone, n.zone), limit({ rate, per: 'second', burst: Math.min(rate, 5) }), log({ group: input.config.logGroup, prefix: `pw ${n.zone} ${step}` })], clip(`log drops of network ${n.id}`));
  }
  t.rule(c, [drop()]);
  return [counter(), goto(c)];
}

/**
 * The chain dispatch jumps to for a port chain: the chain itself, or — when some network logs its accepts —
 * `CHAIN_acc`, which jumps to it and, for what comes back (the port's policy allowed it), logs a new connection
 * per logging network (matched by its conntrack zone, rate-limited per network and direction) with the prefix
 * `pw ZONE accept-DIRECTION` (docs/dataplane.md, "Drop log"). The mark cannot tell afterwards which port
 * chain ran (the port chain leaves a rule profile or the "allowed" mark in it), so the log rules sit behind the jump.
 */
function acceptLogged(t: TableBuilder, input: SkeletonInput, chain: string, dir: 'egress' | 'ingress'): string {
  const logged = input.networks.filter((n) => n.logAccepts).sort((a, b) => a.zone - b.zone);
  if (logged.length === 0) return chain;
  const c = t.chain(INET.acceptChain(chain));
  t.rule(c, [jump(chain)], 'the port chain: what returns was allowed');
  for (const n of logged) {
    const rate = n.logAccepts!;
    t.rule(c, [eq(F.ct.state, 'new'), eq(F.ct.zone, n.zone), limit({ rate, per: 'second', burst: Math.min(rate, 5) }), log({ group: input.config.logGroup, prefix: `pw ${n.zone} accept-${dir}` })], clip(`log accepts of network ${n.id}`));
  }
  return c;
}

/**
 * Member sets (hosts: hash, prefixes: interval) of the remote groups some group's rules name; a prefix set
 * only for a group that has a member prefix wider than a host. The host sets go
 * ahead of the per-network zone sets: a member joining or leaving touches only them (docs/dataplane.md, "Set order").
 */
function memberSets(input: SkeletonInput, t: TableBuilder): void {
  for (const [g, fams] of [...memberFamilies(input.remote)].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    for (const f of FAMILIES) {
      if (!fams.has(f)) continue;
      t.set(memberSetName(g, f), [addrType(f)], { order: 'middle', comment: clip(`member addresses of ${g}`) });
      if (input.nets?.has(familyKey(g, f))) {
        t.set(memberNetSetName(g, f), [addrType(f)], { order: 'rare', interval: true, comment: clip(`member prefixes of ${g}`) });
      }
    }
  }
}

/**
 * Conntrack zones, set before conntrack (priority -300), with one map lookup per rule (docs/dataplane.md,
 * "Zones"). The first `ct zone set` a packet meets wins (the kernel ignores later ones), so the order is:
 * 1. bridged networks by bridge (`zone_br`: bridge → zone): a frame from a bridge is in the bridge's network
 *    whatever its addresses say, so tenants with identical addresses never share a zone;
 * 2. bridged networks by destination address, for packets not from a bridge (routed in from an uplink or a
 *    routed port): the same zone as the port's replies, which come from the bridge;
 * 3. a packet from a routed port to an address a routed port owns: chain `zone_cross`, the only place with a
 *    rule per network — lowest zone first, by device and by address, each returning once it matched — so that a
 *    flow between two local routed ports of different networks gets the lower zone both ways;
 * 4. routed networks by device (`zone_dev`), then (not from a bridge) by destination address.
 * Addresses are hash maps of the hosts and interval maps of the prefix ranges each network owns; ownership is
 * by longest prefix over every port (./layout-units.ts), so no address is in two networks' entries.
 */
function zoneRules(input: SkeletonInput, t: TableBuilder, rawPre: string, rawOut: string, bridges: SetRef | undefined): void {
  const nets = [...input.networks].sort((a, b) => a.zone - b.zone);
  if (input.nat) {
    natZoneRules(t, rawPre, input.nat, {
      ...(nets.some((n) => n.mode === 'bridged' && n.bridge !== undefined) ? { bridge: { name: INET.zoneBridge } } : {}),
      ...(nets.some((n) => n.mode === 'routed') ? { dev: { name: INET.zoneDev } } : {}),
    });
  }
  const notFromBridge = bridges ? [notInSet(F.meta.iifname, bridges)] : [];
  const zoneMap = (name: string, key: 'ifname' | 4 | 6, comment: string, interval = false): SetRef =>
    t.set(name, [key === 'ifname' ? 'ifname' : addrType(key)], {
      data: 'ct_zone', typeof: key === 'ifname' ? 'iifname' : key === 4 ? 'ip daddr' : 'ip6 daddr', order: 'first', interval, comment,
    });
  const byAddress = (mode: 'routed' | 'bridged', withNets: (f: 4 | 6) => boolean = () => true) => FAMILIES.flatMap((f) => [
    { f, set: zoneMap(INET.zoneAddr(mode, f, 'host'), f, `zone of the ${mode} IPv${f} hosts each network owns`) },
    ...(withNets(f) ? [{ f, set: zoneMap(INET.zoneAddr(mode, f, 'net'), f, `zone of the ${mode} IPv${f} prefix ranges each network owns`, true) }] : []),
  ]);

  const bridged = nets.filter((n) => n.mode === 'bridged' && n.bridge !== undefined);
  for (const n of nets.filter((x) => x.mode === 'bridged')) t.set(zoneSetName(n.id, 'tag'), ['mark'], { order: 'last', comment: clip(`zone ${n.zone} of network ${n.id}`) }); // looked up by no rule
  if (bridged.length > 0) {
    const byBridge = zoneMap(INET.zoneBridge, 'ifname', 'zone of each bridged network, by bridge');
    const first = new Map<string, number>();
    for (const n of bridged) if (!first.has(n.bridge!)) first.set(n.bridge!, n.zone);
    t.fill(INET.zoneBridge, [...first].map(([b, zone]) => ({ key: [b], data: zone })));
    t.rule(rawPre, [set(F.ct.zone, mapOf(F.meta.iifname, byBridge))], 'zone by bridge');
    t.rule(rawOut, [set(F.ct.zone, mapOf(F.meta.oifname, byBridge))], 'zone by bridge');
    for (const s of byAddress('bridged')) t.rule(rawPre, [...notFromBridge, set(F.ct.zone, mapOf(daddrOf(s.f), s.set))], 'zone of a bridged network by address');
    // From the host to an address whose route is not the bridge yet (a floating IP, DNATed in output).
    if (input.floating) for (const s of byAddress('bridged')) t.rule(rawOut, [set(F.ct.zone, mapOf(daddrOf(s.f), s.set))], 'zone of a bridged network by address');
  }

  const routed = nets.filter((n) => n.mode === 'routed');
  if (routed.length === 0) return;
  const byDev = zoneMap(INET.zoneDev, 'ifname', 'zone of each routed port, by device');
  // The prefix-range maps only while a routed port owns a prefix wider than a host in that family.
  const addrs = byAddress('routed', (f) => [...(input.zoneNets ?? [])].some((k) => familyKeyParts(k).family === f));
  const cross = t.chain(INET.zoneCross);
  // A packet from a routed port looks its device up once and ends raw_pre in zone_port (goto): what follows
  // here would only set a zone it has already.
  const fromPort = t.chain(INET.zonePort);
  t.rule(rawPre, [inSet(F.meta.iifname, byDev), goto(fromPort)], 'from a routed port');
  for (const s of addrs) t.rule(fromPort, [inSet(daddrOf(s.f), s.set), jump(cross)], 'between routed ports: the lower zone');
  t.rule(fromPort, [set(F.ct.zone, mapOf(F.meta.iifname, byDev))], 'zone of a routed port by device');
  t.rule(rawOut, [set(F.ct.zone, mapOf(F.meta.oifname, byDev))], 'zone of a routed port by device');
  for (const s of addrs) t.rule(rawPre, [...notFromBridge, set(F.ct.zone, mapOf(daddrOf(s.f), s.set))], 'zone of a routed network by address');
  if (input.floating) for (const s of addrs) t.rule(rawOut, [set(F.ct.zone, mapOf(daddrOf(s.f), s.set))], 'zone of a routed network by address');
  for (const n of routed) {
    // Set comments start with the zone: an operator reads a port's network and zone from them.
    const about = clip(`zone ${n.zone} of network ${n.id}`);
    const why = clip(`zone of network ${n.id}`);
    const dev = t.set(zoneSetName(n.id, 'dev'), ['ifname'], { order: 'last', comment: about });
    // Each rule returns once it sets the zone: the kernel would ignore every later `ct zone set`, and without the
    // return a packet between two ports looked up every network's sets (~200 lookups per packet at 100 networks).
    t.rule(cross, [inSet(F.meta.iifname, dev), set(F.ct.zone, n.zone), ret()], why);
    for (const f of FAMILIES) {
      for (const what of [f === 4 ? 'ip4' : 'ip6', f === 4 ? 'net4' : 'net6'] as const) {
        const net = what.startsWith('net');
        // Prefix ranges only where a port of the network owns a prefix: most networks have none.
        if (net && !input.zoneNets?.has(familyKey(n.id, f))) continue;
        const s = t.set(zoneSetName(n.id, what), [addrType(f)], { order: net ? 'rare' : 'last', interval: net, comment: about });
        t.rule(cross, [inSet(daddrOf(f), s), set(F.ct.zone, n.zone), ret()], why);
      }
    }
  }
}

/**
 * Ports of stateless groups: their traffic skips conntrack, both ways. From a port: by its key (routed device,
 * bridged tag). To a port: by the host's output device (routed), by bridge and address (bridged, the port's
 * own network only), and for packets not from a bridge by destination address — only what a stateless port
 * owns by longest prefix over all ports, so a stateless port's pair prefix never untracks another port.
 * Untracking comes first: a `ct zone set` attaches a conntrack template, after which `notrack` does nothing.
 * Only while some port is stateless.
 */
function statelessRules(input: SkeletonInput, t: TableBuilder, rawPre: string, rawOut: string, tagKey: Operand, bridges: SetRef | undefined): void {
  // Without a stateless port every packet would pay these lookups for nothing.
  if (!input.stateless) return;
  const why = 'stateless security groups';
  if (input.networks.some((n) => n.mode === 'routed')) {
    const dev = t.set(INET.statelessDev, ['ifname'], { order: 'first', comment: 'routed ports of stateless groups' });
    t.rule(rawPre, [inSet(F.meta.iifname, dev), notrack(), accept()], why);
    t.rule(rawOut, [inSet(F.meta.oifname, dev), notrack(), accept()], why);
  }
  if (bridges) {
    const tag = t.set(INET.statelessTag, ['mark'], { order: 'first', comment: 'bridged ports of stateless groups' });
    t.rule(rawPre, [inSet(tagKey, tag), notrack(), accept()], why);
  }
  const notFromBridge = bridges ? [notInSet(F.meta.iifname, bridges)] : [];
  for (const f of FAMILIES) {
    const hosts = t.set(INET.stateless(f), [addrType(f)], { order: 'first', comment: 'addresses stateless ports own' });
    const nets = t.set(INET.statelessNet(f), [addrType(f)], { order: 'first', interval: true, comment: 'prefix ranges stateless ports own' });
    t.rule(rawPre, [...notFromBridge, inSet(daddrOf(f), hosts), notrack(), accept()], why);
    t.rule(rawPre, [...notFromBridge, inSet(daddrOf(f), nets), notrack(), accept()], why);
  }
  if (!bridges) return;
  for (const f of FAMILIES) {
    const hosts = t.set(INET.statelessBr(f), ['ifname', addrType(f)], { order: 'first', comment: 'bridge and address of bridged stateless ports' });
    const nets = t.set(INET.statelessBrNet(f), ['ifname', addrType(f)], { order: 'first', interval: true, comment: 'bridge and prefix range of bridged stateless ports' });
    for (const s of [hosts, nets]) {
      t.rule(rawPre, [inSet([F.meta.iifname, daddrOf(f)], s), notrack(), accept()], why);
      t.rule(rawOut, [inSet([F.meta.oifname, daddrOf(f)], s), notrack(), accept()], why);
    }
  }
}

/**
 * The bridge-family table of bridged mode (docs/dataplane.md, "Port identity"): it tags each frame with its
 * bridge port in the skb mark — the source port in prerouting, the destination port in forward (plus the
 * bridge-forwarded flag, the highest bit of markMask) — so that the inet chains, reached through br_netfilter
 * where iif/oif are the bridge, know the port and whether the bridge (not the host's routing) forwarded it.
 * L2 anti-spoofing lives here too: a port sends only from its own MACs, ARP only with its own sender (MAC,
 * IP), and only IPv4, IPv6 and ARP frames (as Neutron's ebtables rules).
 */
function bridgeSkeleton(config: PortwallConfig): TableBuilder {
  const t = new TableBuilder('bridge', config.tables.bridge);
  const mask = config.markMask >>> 0;
  const { flag } = markBits(mask);
  const portTag = t.set(BRIDGE.portTag, ['ifname'], { data: 'mark', comment: 'tag of each bridged port' });
  const l2Ports = t.set(BRIDGE.l2Ports, ['ifname'], { comment: 'filtered bridged ports' });
  const l2Types = t.set('l2_types', ['ether_type'], { comment: 'EtherTypes a filtered port may send' });
  t.fill('l2_types', L2_TYPES.map((e) => ({ key: [e] })));
  const macOk = t.set(BRIDGE.macOk, ['ifname', 'ether_addr'], { comment: 'source MACs per port' });
  const arpOk = t.set(BRIDGE.arpOk, ['ifname', 'ether_addr', 'ipv4_addr'], { comment: 'ARP sender MAC and IP per port' });
  const arpOkNet = t.set(BRIDGE.arpOkNet, ['ifname', 'ether_addr', 'ipv4_addr'], { interval: true, comment: 'ARP sender MAC and IP prefix per port' });

  // Tag bits (and the flag) are cleared first, so a frame from a non-port (an uplink) never carries a stale or
  // forged tag; a port's frame then gets its tag (the map's mark replaces the whole mark).
  const clear = set(F.meta.mark, and(F.meta.mark, (~mask) >>> 0));
  const from = t.chain(BRIDGE.fromPort, { hook: 'prerouting', priority: -300 });
  t.rule(from, [clear], 'clear the port tag bits');
  t.rule(from, [set(F.meta.mark, mapOf(F.meta.iifname, portTag))], 'tag frames from ports');
  t.rule(from, [inSet(F.meta.iifname, l2Ports), notInSet(F.ether.type, l2Types), counter(), drop()], 'only IPv4, ARP and IPv6 from ports');
  t.rule(from, [inSet(F.meta.iifname, l2Ports), notInSet([F.meta.iifname, F.ether.saddr], macOk), counter(), drop()], 'MAC anti-spoof');
  const arpKey = [F.meta.iifname, F.arp.saddrEther, F.arp.saddrIp];
  t.rule(from, [inSet(F.meta.iifname, l2Ports), notInSet(arpKey, arpOk), notInSet(arpKey, arpOkNet), counter(), drop()], 'ARP anti-spoof');
  const to = t.chain(BRIDGE.toPort, { hook: 'forward', priority: -200 });
  t.rule(to, [clear], 'clear the source port tag');
  t.rule(to, [set(F.meta.mark, mapOf(F.meta.oifname, portTag))], 'tag frames to ports');
  // The flag tells inet forward a bridge-forwarded frame (tagged here) from one the host routes back out of
  // the bridge it came from (iif = oif = the bridge too, but still the source's tag): set on every frame.
  t.rule(to, [set(F.meta.mark, or(F.meta.mark, flag))], 'bridge-forwarded');
  guardRules(t, from, to);
  return t;
}

/**
 * Layer-2 guards (docs/dataplane.md, "Layer-2 guards"), CloudStack's ebtables defaults: constant rules, one
 * port set per guard, so turning a guard on for a port is one hash element. They follow the tagging and the
 * anti-spoof rules in both chains and only ever drop. The transport matches carry `ether type ip` (DHCP and
 * broadcast are IPv4 matters here; DHCPv6 servers on a port are dropped by the inet egress chain).
 */
function guardRules(t: TableBuilder, from: string, to: string): void {
  const g = {
    arp: t.set(GUARD_SETS.arp, ['ifname'], { comment: 'ports sending ARP requests and replies only' }),
    dhcp: t.set(GUARD_SETS.dhcpSnooping, ['ifname'], { comment: 'ports with DHCP snooping' }),
    bcast: t.set(GUARD_SETS.broadcast, ['ifname'], { comment: 'ports without IPv4 broadcast and multicast but DHCP' }),
    ip6: t.set(GUARD_SETS.dropIpv6, ['ifname'], { comment: 'ports without IPv6' }),
    vlan: t.set(GUARD_SETS.dropVlan, ['ifname'], { comment: 'ports without VLAN-tagged frames' }),
  };
  const arpOps = t.set('arp_ops', ['arp_op'], { comment: 'ARP operations a guarded port may send' });
  t.fill('arp_ops', ARP_OPS.map((n) => ({ key: [n] })));
  const tagged = t.set('tagged_types', ['ether_type'], { comment: 'EtherTypes of VLAN-tagged frames' });
  t.fill('tagged_types', TAGGED_TYPES.map((n) => ({ key: [n] })));
  const ip4 = eq(F.ether.type, 0x0800);

  const bcast = t.chain(BRIDGE.bcast);
  for (const port of DHCP_PORTS) t.rule(bcast, [eq(F.udp.dport, port), ret()], 'DHCP');
  t.rule(bcast, [eq(and(F.ether.daddr, '01:00:00:00:00:00'), '01:00:00:00:00:00'), counter(), drop()], 'broadcast or multicast MAC');
  t.rule(bcast, [eq(F.ip.daddr, '255.255.255.255'), counter(), drop()], 'IPv4 broadcast');
  t.rule(bcast, [eq(F.ip.daddr, '224.0.0.0/4'), counter(), drop()], 'IPv4 multicast');

  t.rule(from, [inSet(F.meta.iifname, g.arp), notInSet(F.arp.operation, arpOps), counter(), drop()], 'ARP request and reply only');
  t.rule(from, [inSet(F.meta.iifname, g.dhcp), ip4, eq(F.udp.sport, 67), counter(), drop()], 'DHCP snooping: no DHCP server on a port');
  t.rule(from, [inSet(F.meta.iifname, g.dhcp), ip4, eq(F.udp.dport, 68), counter(), drop()], 'DHCP snooping: no DHCP server on a port');
  t.rule(from, [inSet(F.meta.iifname, g.bcast), ip4, jump(bcast)], 'no IPv4 broadcast or multicast but DHCP');
  t.rule(from, [inSet(F.meta.iifname, g.ip6), eq(F.ether.type, 0x86dd), counter(), drop()], 'no IPv6');
  t.rule(from, [inSet(F.meta.iifname, g.vlan), inSet(F.ether.type, tagged), counter(), drop()], 'no VLAN-tagged frames');
  t.rule(to, [inSet(F.meta.oifname, g.dhcp), ip4, eq(F.udp.dport, 67), counter(), drop()], 'DHCP snooping: no DHCP client messages to a port');
  t.rule(to, [inSet(F.meta.oifname, g.bcast), ip4, jump(bcast)], 'no IPv4 broadcast or multicast but DHCP');
  t.rule(to, [inSet(F.meta.oifname, g.ip6), eq(F.ether.type, 0x86dd), counter(), drop()], 'no IPv6');
  t.rule(to, [inSet(F.meta.oifname, g.vlan), inSet(F.ether.type, tagged), counter(), drop()], 'no VLAN-tagged frames');
}
