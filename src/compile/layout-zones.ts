/**
 * The raw (before conntrack) part of the inet layout — conntrack zones and the untracking of stateless ports —
 * and the address → port lookups of traffic that reaches a port by routing rather than from a port device or a
 * bridge port (docs/dataplane.md, "Zones and conntrack"). Addresses that several ports claim (a fixed IP inside
 * another port's address-pair prefix, in the same network or another) are resolved as the host's routing table
 * resolves them: the longest prefix wins, so every address belongs to exactly one port.
 */
import { F, accept, eq, inSet, notInSet, notrack, set, type Operand, type SetRef } from '../nft/match.js';
import type { Element } from '../nft/types.js';
import { prefixRange, rangeValue } from './addr.js';
import type { PolicyIR, PortPolicy } from './ir.js';
import { clip, portAddresses } from './layout-ports.js';
import { INET, zoneSetName } from './names.js';
import type { TableBuilder } from './tables.js';

/** One address range and the port it belongs to. */
export interface Owned {
  lo: bigint;
  hi: bigint;
  port: PortPolicy;
}

/**
 * Longest-prefix ownership of the given ports' addresses of one family: disjoint ranges, each owned by the
 * port with the most specific prefix covering it (CIDR prefixes nest or are disjoint). Equal prefixes of two
 * ports: a stateful port before a stateless one, then the lower port id. Adjacent ranges of one port merge.
 */
export function longestPrefix(ports: PortPolicy[], family: 4 | 6): Owned[] {
  const items = ports.flatMap((port) => portAddresses(port, family).map((prefix) => ({ ...prefixRange(prefix), port })));
  const rank = (p: PortPolicy): string => `${p.stateful ? 0 : 1}${p.portId}`;
  items.sort((a, b) => (a.lo !== b.lo ? (a.lo < b.lo ? -1 : 1) : a.hi !== b.hi ? (a.hi > b.hi ? -1 : 1) : rank(a.port) < rank(b.port) ? -1 : 1));
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

const addrType = (f: 4 | 6) => (f === 4 ? 'ipv4_addr' as const : 'ipv6_addr' as const);
const daddrOf = (f: 4 | 6) => (f === 4 ? F.ip.daddr : F.ip6.daddr);
const FAMILIES = [4, 6] as const;

/**
 * The `oifname . ip daddr → tag` elements of bridged ports (per bridge, longest prefix): how traffic the host
 * routes into a bridged network, or sends there itself, finds its destination port.
 */
export function routedTagElements(ir: PolicyIR, family: 4 | 6): Element[] {
  const out: Element[] = [];
  const bridges = [...new Set(ir.ports.filter((p) => p.mode === 'bridged' && p.bridge !== undefined).map((p) => p.bridge!))].sort();
  for (const b of bridges) {
    const ports = ir.ports.filter((p) => p.mode === 'bridged' && p.bridge === b && p.filtered);
    for (const o of longestPrefix(ports, family)) out.push({ key: [b, rangeValue(family, o.lo, o.hi)], data: o.port.tag!, comment: clip(o.port.portId) });
  }
  return out;
}

/**
 * Conntrack zones, set before conntrack (priority -300). The first `ct zone set` a packet meets wins (the
 * kernel ignores later ones), so the rules go in this order:
 * 1. bridged networks by bridge (`iifname "br-x"`): a frame from a bridge is in the bridge's network whatever its
 *    addresses say, so tenants with identical addresses never share a zone;
 * 2. bridged networks by destination address, for packets not from a bridge (routed in from an uplink or a
 *    routed port): the same zone as the port's replies, which come from the bridge;
 * 3. routed networks, lowest zone first, by device and (not from a bridge) by destination address, so a flow
 *    between two local routed ports of different networks gets the lower zone both ways.
 * Address sets hold the ranges each network owns by longest prefix over all ports, so no network's pair prefix
 * claims another network's more specific address.
 */
export function zones(ir: PolicyIR, t: TableBuilder, rawPre: string, rawOut: string, bridges: SetRef | undefined): void {
  const nets = [...ir.networks].sort((a, b) => a.zone - b.zone);
  const owned = { 4: longestPrefix(ir.ports, 4), 6: longestPrefix(ir.ports, 6) };
  const notFromBridge = bridges ? [notInSet(F.meta.iifname, bridges)] : [];
  const addrSets = new Map<string, { 4: SetRef; 6: SetRef }>();
  for (const n of nets) {
    // Set comments start with the zone: conntrack cleanup reads a removed port's zone back from the kernel.
    const about = clip(`zone ${n.zone} of network ${n.id}`);
    const ports = ir.ports.filter((p) => p.networkId === n.id);
    if (n.mode === 'bridged') {
      // Not looked up by any rule: it records which network (zone) each bridged port is in.
      const tags = t.set(zoneSetName(n.id, 'tag'), ['mark'], { comment: about });
      t.fill(tags.name, ports.map((p) => ({ key: [p.tag!], comment: clip(p.portId) })));
    } else {
      const dev = t.set(zoneSetName(n.id, 'dev'), ['ifname'], { comment: about });
      t.fill(dev.name, ports.map((p) => ({ key: [p.device], comment: clip(p.portId) })));
    }
    const sets = { 4: undefined as unknown as SetRef, 6: undefined as unknown as SetRef };
    for (const f of FAMILIES) {
      sets[f] = t.set(zoneSetName(n.id, f === 4 ? 'ip4' : 'ip6'), [addrType(f)], { interval: true, comment: about });
      t.fill(sets[f].name, owned[f].filter((o) => o.port.networkId === n.id).map((o) => ({ key: [rangeValue(f, o.lo, o.hi)], comment: clip(o.port.portId) })));
    }
    addrSets.set(n.id, sets);
  }
  const why = (n: { id: string }) => clip(`zone of network ${n.id}`);
  const bridged = nets.filter((n) => n.mode === 'bridged' && n.bridge !== undefined);
  for (const n of bridged) {
    t.rule(rawPre, [eq(F.meta.iifname, n.bridge!), set(F.ct.zone, n.zone)], why(n));
    t.rule(rawOut, [eq(F.meta.oifname, n.bridge!), set(F.ct.zone, n.zone)], why(n));
  }
  for (const n of bridged) {
    for (const f of FAMILIES) t.rule(rawPre, [...notFromBridge, inSet(daddrOf(f), addrSets.get(n.id)![f]), set(F.ct.zone, n.zone)], why(n));
  }
  for (const n of nets.filter((x) => x.mode === 'routed')) {
    const dev: SetRef = { name: zoneSetName(n.id, 'dev') };
    t.rule(rawPre, [inSet(F.meta.iifname, dev), set(F.ct.zone, n.zone)], why(n));
    t.rule(rawOut, [inSet(F.meta.oifname, dev), set(F.ct.zone, n.zone)], why(n));
    for (const f of FAMILIES) t.rule(rawPre, [...notFromBridge, inSet(daddrOf(f), addrSets.get(n.id)![f]), set(F.ct.zone, n.zone)], why(n));
  }
}

/**
 * Ports of stateless groups: their traffic skips conntrack, both ways. From a port: by its key (routed device,
 * bridged tag). To a port: by the host's output device (routed), by bridge and address (bridged, the port's
 * own network only), and for packets not from a bridge by destination address — only the ranges a stateless
 * port owns by longest prefix over all ports, so a stateless port's pair prefix never untracks another port.
 */
export function stateless(ir: PolicyIR, t: TableBuilder, rawPre: string, rawOut: string, tagKey: Operand, bridges: SetRef | undefined): void {
  const ports = ir.ports.filter((p) => !p.stateful);
  const why = 'stateless security groups';
  const hasRouted = ir.networks.some((n) => n.mode === 'routed');
  if (hasRouted) {
    const dev = t.set(INET.statelessDev, ['ifname'], { comment: 'routed ports of stateless groups' });
    t.fill(dev.name, ports.filter((p) => p.mode === 'routed').map((p) => ({ key: [p.device], comment: clip(p.portId) })));
    t.rule(rawPre, [inSet(F.meta.iifname, dev), notrack(), accept()], why);
    t.rule(rawOut, [inSet(F.meta.oifname, dev), notrack(), accept()], why);
  }
  if (bridges) {
    const tag = t.set(INET.statelessTag, ['mark'], { comment: 'bridged ports of stateless groups' });
    t.fill(tag.name, ports.filter((p) => p.mode === 'bridged').map((p) => ({ key: [p.tag!], comment: clip(p.portId) })));
    t.rule(rawPre, [inSet(tagKey, tag), notrack(), accept()], why);
  }
  for (const f of FAMILIES) {
    const s = t.set(INET.stateless(f), [addrType(f)], { interval: true, comment: 'addresses stateless ports own (longest prefix)' });
    t.fill(s.name, longestPrefix(ir.ports, f).filter((o) => !o.port.stateful).map((o) => ({ key: [rangeValue(f, o.lo, o.hi)], comment: clip(o.port.portId) })));
    t.rule(rawPre, [...(bridges ? [notInSet(F.meta.iifname, bridges)] : []), inSet(daddrOf(f), s), notrack(), accept()], why);
  }
  if (!bridges) return;
  for (const f of FAMILIES) {
    const name = INET.statelessBr(f);
    const s = t.set(name, ['ifname', addrType(f)], { interval: true, comment: 'bridge and address of bridged stateless ports' });
    const els: Element[] = [];
    for (const b of [...new Set(ir.ports.filter((p) => p.mode === 'bridged' && p.bridge !== undefined).map((p) => p.bridge!))].sort()) {
      const owned = longestPrefix(ir.ports.filter((p) => p.mode === 'bridged' && p.bridge === b), f);
      for (const o of owned) if (!o.port.stateful) els.push({ key: [b, rangeValue(f, o.lo, o.hi)], comment: clip(o.port.portId) });
    }
    t.fill(name, els);
    t.rule(rawPre, [inSet([F.meta.iifname, daddrOf(f)], s), notrack(), accept()], why);
    t.rule(rawOut, [inSet([F.meta.oifname, daddrOf(f)], s), notrack(), accept()], why);
  }
}
