/**
 * The layout stage (PolicyIR → nftables objects): the desired content of portwall's own tables, as
 * docs/dataplane.md describes it. A small fixed skeleton of rules whose matches are set lookups; ports, rules,
 * members, address pairs and zones are verdict-free set elements, so a one-port change is an element-only
 * batch. The skeleton grows only when a new network, mode or remote group (per rule shape) appears.
 */
import {
  F, and, counter, drop, eq, goto, inSet, jump, mapOf, ne, notInSet, ret, set, type Operand, type SetRef,
} from '../nft/match.js';
import type { NftObject } from '../nft/types.js';
import { bridgeTable } from './layout-bridge.js';
import {
  ElementSink, KEY_TYPE, clip, portElements, rangeElements, ruleElements, ruleSetKey, type PortSetNames,
} from './layout-ports.js';
import { routedTagElements, stateless, zones } from './layout-zones.js';
import type { PolicyIR } from './ir.js';
import { markBits } from './policy.js';
import { INET, groupRefSetName, memberSetName, ruleSetName, type KeyKind, type Shape } from './names.js';
import { TableBuilder } from './tables.js';

// The same ICMPv6 allowances as the iptables renderer (src/render/iptables.ts), so both say one policy.
/** ICMPv6 a port may send without a rule: MLD, router solicitation, neighbour solicitation/advertisement. */
export const ND_OUT = [130, 131, 132, 133, 135, 136, 143];
/** ICMPv6 a port may receive without a rule: MLD, neighbour solicitation/advertisement (RAs: routers only). */
export const ND_IN = [130, 131, 132, 135, 136, 143];
/** ICMPv6 sent from `::` during duplicate address detection, before the port has an address: ahead of anti-spoof. */
export const ND_DAD = [131, 135, 143];
const SHAPES: Shape[] = ['ports', 'proto', 'icmp', 'any'];
const FAMILIES = [4, 6] as const;

/** The desired objects of portwall's tables (inet always, bridge when a network is bridged). */
export function layout(ir: PolicyIR): NftObject[] {
  const out = inetTable(ir).objects();
  if (ir.networks.some((n) => n.mode === 'bridged')) out.push(...bridgeTable(ir).objects());
  return out;
}

function inetTable(ir: PolicyIR): TableBuilder {
  const t = new TableBuilder('inet', ir.config.tables.inet);
  const modes: KeyKind[] = [];
  if (ir.networks.some((n) => n.mode === 'routed')) modes.push('dev');
  if (ir.networks.some((n) => n.mode === 'bridged')) modes.push('tag');
  const mask = ir.config.markMask >>> 0;
  // Port keys read the tag bits only: the mask's highest bit is the bridge-forwarded flag (layout-bridge.ts).
  const { tagMask, flag } = modes.includes('tag') ? markBits(mask) : { tagMask: mask, flag: 0 };
  const tagKey = and(F.meta.mark, tagMask);
  // Egress: the port is where the packet comes from; ingress: where it goes.
  const KEY: Record<KeyKind, { from: Operand; to: Operand }> = {
    dev: { from: F.meta.iifname, to: F.meta.oifname },
    tag: { from: tagKey, to: tagKey },
  };

  const rawPre = t.chain(INET.rawPre, { hook: 'prerouting', priority: -300 });
  const rawOut = t.chain(INET.rawOut, { hook: 'output', priority: -300 });
  const preFilter = t.chain(INET.preFilter, { hook: 'prerouting', priority: 0 });
  const fwdFilter = t.chain(INET.fwdFilter, { hook: 'forward', priority: 0 });
  const inFilter = t.chain(INET.inFilter, { hook: 'input', priority: 0 });
  const outFilter = t.chain(INET.outFilter, { hook: 'output', priority: 0 });
  if (modes.length === 0) return t;

  // Bridges of bridged networks: frames from them are in their bridge's zone (layout-zones.ts).
  let bridges: SetRef | undefined;
  if (modes.includes('tag')) {
    bridges = t.set(INET.bridges, ['ifname'], { comment: 'bridges of bridged networks' });
    const names = ir.networks.filter((n) => n.mode === 'bridged' && n.bridge !== undefined).map((n) => n.bridge!);
    t.fill(INET.bridges, [...new Set(names)].sort().map((b) => ({ key: [b] })));
  }
  // Untracking first: a `ct zone set` attaches a conntrack template, after which `notrack` does nothing.
  stateless(ir, t, rawPre, rawOut, tagKey, bridges);
  zones(ir, t, rawPre, rawOut, bridges);
  const ndOut = t.set(INET.ndOut, ['icmpv6_type'], { comment: 'ICMPv6 a port sends without a rule' });
  const ndIn = t.set(INET.ndIn, ['icmpv6_type'], { comment: 'ICMPv6 a port receives without a rule' });
  const ndDad = t.set(INET.ndDad, ['icmpv6_type'], { comment: 'ICMPv6 a port sends from :: (DAD)' });
  t.fill(INET.ndOut, ND_OUT.map((n) => ({ key: [n] })));
  t.fill(INET.ndIn, ND_IN.map((n) => ({ key: [n] })));
  t.fill(INET.ndDad, ND_DAD.map((n) => ({ key: [n] })));

  const sink = new ElementSink();
  ruleElements(ir, sink);
  for (const k of modes) {
    const names: PortSetNames = {
      ports: INET.ports(k), spoof4: INET.spoof(4, k), spoof6: INET.spoof(6, k),
      dhcp4: INET.dhcp(4, k), dhcp6: INET.dhcp(6, k), ra6: INET.ra6(k),
    };
    portElements(ir, k, names, sink);
    const kt = KEY_TYPE[k];
    const ports = t.set(names.ports, [kt], { comment: 'filtered ports' });
    const spoof = {
      4: t.set(names.spoof4, [kt, 'ether_addr', 'ipv4_addr'], { interval: true, comment: 'allowed source MAC and IPv4 per port' }),
      6: t.set(names.spoof6, [kt, 'ether_addr', 'ipv6_addr'], { interval: true, comment: 'allowed source MAC and IPv6 per port' }),
    };
    const dhcp = { 4: t.set(names.dhcp4, [kt, 'ipv4_addr'], { comment: 'DHCP servers per port' }), 6: t.set(names.dhcp6, [kt, 'ipv6_addr'], { comment: 'DHCPv6 servers per port' }) };
    const ra6 = t.set(names.ra6, [kt, 'ipv6_addr'], { comment: 'IPv6 routers per port' });
    const egress = t.chain(INET.egress(k));
    const ingress = t.chain(INET.ingress(k));
    const from = KEY[k].from;
    const to = KEY[k].to;

    // Dispatch: constant rules whose lookups are sets, so ports come and go as elements.
    if (k === 'dev') {
      t.rule(fwdFilter, [inSet(F.meta.iifname, ports), jump(egress)], 'from routed ports');
      t.rule(fwdFilter, [inSet(F.meta.oifname, ports), jump(ingress)], 'to routed ports');
      t.rule(inFilter, [inSet(F.meta.iifname, ports), jump(egress)], 'from routed ports to the host');
      t.rule(outFilter, [inSet(F.meta.oifname, ports), jump(ingress)], 'from the host to routed ports');
    } else {
      // br_netfilter shows bridged traffic to inet hooks with the bridge as iif/oif: the bridge table's tag says
      // which port. Egress is checked in prerouting (the source tag), ingress in forward (the destination tag)
      // for frames the bridge forwards (iif and oif the same bridge, and the bridge forward chain's flag set).
      // Traffic the host routes into a bridge (from elsewhere, or back out of the bridge it came from) or sends
      // there itself never meets the bridge's forward hook and carries a stale tag: chain to_bridge clears it
      // and finds the destination port from the address (longest prefix per bridge).
      const bridgeFwd = t.set(INET.bridgeFwd, ['ifname', 'ifname'], { comment: 'bridge-forwarded traffic' });
      const bridged = ir.networks.filter((n) => n.mode === 'bridged' && n.bridge !== undefined).map((n) => n.bridge!);
      t.fill(INET.bridgeFwd, [...new Set(bridged)].sort().map((b) => ({ key: [b, b] })));
      t.rule(preFilter, [inSet(F.meta.iifname, bridges!), inSet(tagKey, ports), jump(egress)], 'from bridged ports');
      const forwarded = eq(and(F.meta.mark, flag), flag);
      const routed = eq(and(F.meta.mark, flag), 0);
      t.rule(fwdFilter, [inSet([F.meta.iifname, F.meta.oifname], bridgeFwd), forwarded, inSet(tagKey, ports), jump(ingress)], 'to bridged ports');
      const toBridge = t.chain(INET.toBridge);
      const routeTag = {
        4: t.set(INET.routeTag(4), ['ifname', 'ipv4_addr'], { interval: true, data: 'mark', comment: 'bridged port tag by bridge and IPv4 address' }),
        6: t.set(INET.routeTag(6), ['ifname', 'ipv6_addr'], { interval: true, data: 'mark', comment: 'bridged port tag by bridge and IPv6 address' }),
      };
      t.fill(routeTag[4].name, routedTagElements(ir, 4));
      t.fill(routeTag[6].name, routedTagElements(ir, 6));
      t.rule(fwdFilter, [inSet(F.meta.oifname, bridges!), notInSet([F.meta.iifname, F.meta.oifname], bridgeFwd), jump(toBridge)], 'routed into a bridged network');
      t.rule(fwdFilter, [inSet([F.meta.iifname, F.meta.oifname], bridgeFwd), routed, jump(toBridge)], 'routed back out of its bridge (hairpin)');
      t.rule(outFilter, [inSet(F.meta.oifname, bridges!), jump(toBridge)], 'from the host into a bridged network');
      t.rule(toBridge, [set(F.meta.mark, and(F.meta.mark, (~mask) >>> 0))], 'clear the stale port tag');
      t.rule(toBridge, [set(F.meta.mark, mapOf([F.meta.oifname, F.ip.daddr], routeTag[4]))], 'the destination port by address');
      t.rule(toBridge, [set(F.meta.mark, mapOf([F.meta.oifname, F.ip6.daddr], routeTag[6]))], 'the destination port by address');
      t.rule(toBridge, [inSet(tagKey, ports), goto(ingress)], 'to bridged ports');
    }

    // Egress, in the order SPEC §2.8 asks: anti-spoof before the DHCP allowance. Anti-spoof reads `ether
    // saddr`, which a routed port that is not an Ethernet device (tun) lacks: such ports send nothing.
    if (k === 'dev') t.rule(egress, [ne(F.meta.iiftype, 1), drop()], 'routed ports must be Ethernet devices');
    t.rule(egress, [eq(F.ip6.saddr, '::'), inSet(F.icmpv6.type, ndDad), ret()], 'ND and MLD from :: (DAD)');
    t.rule(egress, [notInSet([from, F.ether.saddr, F.ip.saddr], spoof[4]), drop()], 'IPv4 anti-spoof');
    t.rule(egress, [notInSet([from, F.ether.saddr, F.ip6.saddr], spoof[6]), drop()], 'IPv6 anti-spoof');
    t.rule(egress, [eq(F.meta.nfproto, 'ipv4'), eq(F.udp.sport, 68), eq(F.udp.dport, 67), ret()], 'DHCP client');
    t.rule(egress, [eq(F.ip.saddr, '0.0.0.0'), drop()], '0.0.0.0 is for DHCP discover only');
    t.rule(egress, [eq(F.meta.nfproto, 'ipv6'), eq(F.udp.sport, 546), eq(F.udp.dport, 547), ret()], 'DHCPv6 client');
    t.rule(egress, [eq(F.meta.nfproto, 'ipv4'), eq(F.udp.sport, 67), eq(F.udp.dport, 68), drop()], 'DHCP server on a port');
    t.rule(egress, [eq(F.meta.nfproto, 'ipv6'), eq(F.udp.sport, 547), eq(F.udp.dport, 546), drop()], 'DHCPv6 server on a port');
    t.rule(egress, [eq(F.icmpv6.type, 'nd-router-advert'), drop()], 'router advertisement from a port');
    t.rule(egress, [inSet(F.icmpv6.type, ndOut), ret()], 'ND and MLD');
    t.rule(egress, [eq(F.ct.state, 'invalid'), drop()]);
    t.rule(egress, [eq(F.ct.state, 'established,related'), ret()]);

    // Ingress.
    t.rule(ingress, [inSet(F.icmpv6.type, ndIn), ret()], 'ND and MLD');
    t.rule(ingress, [inSet([to, F.ip6.saddr], ra6), eq(F.icmpv6.type, 'nd-router-advert'), ret()], 'RA from the network routers');
    t.rule(ingress, [eq(F.icmpv6.type, 'nd-router-advert'), drop()], 'RA from anyone else');
    t.rule(ingress, [eq(F.ct.state, 'invalid'), drop()]);
    t.rule(ingress, [eq(F.ct.state, 'established,related'), ret()]);
    t.rule(ingress, [inSet([to, F.ip.saddr], dhcp[4]), eq(F.udp.sport, 67), eq(F.udp.dport, 68), ret()], 'DHCP from the network servers');
    t.rule(ingress, [inSet([to, F.ip6.saddr], dhcp[6]), eq(F.udp.sport, 547), eq(F.udp.dport, 546), ret()], 'DHCPv6 from the network servers');
    t.rule(ingress, [eq(F.meta.nfproto, 'ipv4'), eq(F.udp.sport, 67), eq(F.udp.dport, 68), drop()], 'DHCP from anyone else');
    t.rule(ingress, [eq(F.meta.nfproto, 'ipv6'), eq(F.udp.sport, 547), eq(F.udp.dport, 546), drop()], 'DHCPv6 from anyone else');

    // Security-group rules: one constant rule per (direction, family, shape), the rules are elements.
    for (const [chain, dir, port] of [[egress, 'out', from], [ingress, 'in', to]] as const) {
      for (const f of FAMILIES) {
        const remote = remoteField(f, dir);
        for (const shape of SHAPES) {
          const name = ruleSetName(dir, f, shape, k);
          const ref = t.set(name, ruleSetKey(k, f, shape, true), { interval: true, counter: true, comment: `${dir === "in" ? "ingress" : "egress"} IPv${f} ${shape} rules` });
          t.rule(chain, [inSet([port, ...shapeFields(f, shape), remote], ref), ret()]);
        }
      }
      groupRules(ir, t, sink, k, chain, dir, port);
      t.rule(chain, [counter(), drop()], 'no rule allows it');
    }
  }
  for (const name of sink.names()) if (t.hasSet(name)) t.fill(name, sink.elements(name));
  return t;
}

function remoteField(f: 4 | 6, dir: 'in' | 'out'): Operand {
  const ip = f === 4 ? F.ip : F.ip6;
  return dir === 'in' ? ip.saddr : ip.daddr;
}

function shapeFields(f: 4 | 6, shape: Shape): Operand[] {
  const icmp = f === 4 ? F.icmp : F.icmpv6;
  return { ports: [F.meta.l4proto, F.th.dport], proto: [F.meta.l4proto], icmp: [icmp.type, icmp.code], any: [] }[shape];
}

/**
 * Remote groups: a member set per (group, family), and per (group, direction, family, shape) in use one rule
 * `REMOTE @members PORT . … @refs return` whose reference set holds the ports and rules that use the group.
 */
function groupRules(ir: PolicyIR, t: TableBuilder, sink: ElementSink, k: KeyKind, chain: string, dir: 'in' | 'out', port: Operand): void {
  const used = new Set(sink.names());
  for (const m of ir.members) {
    const refs = SHAPES.map((shape) => ({ shape, name: groupRefSetName(m.groupId, dir, m.family, shape, k) })).filter((r) => used.has(r.name));
    if (refs.length === 0) continue;
    const memberName = memberSetName(m.groupId, m.family);
    if (!t.hasSet(memberName)) {
      t.set(memberName, [m.family === 4 ? 'ipv4_addr' : 'ipv6_addr'], { interval: true, comment: clip(`members of ${m.groupId}`) });
      t.fill(memberName, rangeElements(m.family, m.prefixes.map((prefix) => ({ prefix }))));
    }
    const members: SetRef = { name: memberName, flags: ['interval'] };
    for (const { shape, name } of refs) {
      const ref = t.set(name, ruleSetKey(k, m.family, shape, false), { interval: shape === 'ports' || shape === 'icmp', counter: true, comment: clip(`${dir === "in" ? "ingress" : "egress"} IPv${m.family} ${shape} rules with remote group ${m.groupId}`) });
      t.rule(chain, [inSet(remoteField(m.family, dir), members), inSet([port, ...shapeFields(m.family, shape)], ref), ret()], clip(`remote group ${m.groupId}`));
    }
  }
}
