/**
 * The bridge-family table of bridged mode (docs/dataplane.md, "Port identity"): it tags each frame with its
 * bridge port in the skb mark — the source port in prerouting, the destination port in forward (plus the
 * bridge-forwarded flag, the highest bit of markMask) — so that the inet chains, reached through br_netfilter
 * where iif/oif are the bridge, know the port and whether the bridge (not the host's routing) forwarded it. L2 anti-spoofing
 * lives here too: a port sends only from its own MACs, ARP only with its own sender (MAC, IP), and only IPv4,
 * IPv6 and ARP frames (as Neutron's ebtables rules).
 */
import { F, and, drop, inSet, mapOf, notInSet, or, set } from '../nft/match.js';
import { ElementSink, clip } from './layout-ports.js';
import type { PolicyIR } from './ir.js';
import { markBits } from './policy.js';
import { BRIDGE } from './names.js';
import { TableBuilder } from './tables.js';

/** EtherTypes a filtered bridged port may send: IPv4, ARP, IPv6. */
const L2_TYPES = [0x0800, 0x0806, 0x86dd];

/** The desired `bridge` table. */
export function bridgeTable(ir: PolicyIR): TableBuilder {
  const t = new TableBuilder('bridge', ir.config.tables.bridge);
  const mask = ir.config.markMask >>> 0;
  const { flag } = markBits(mask);
  const ports = ir.ports.filter((p) => p.mode === 'bridged');
  const filtered = ports.filter((p) => p.filtered);

  const portTag = t.set(BRIDGE.portTag, ['ifname'], { data: 'mark', comment: 'tag of each bridged port' });
  t.fill(BRIDGE.portTag, ports.map((p) => ({ key: [p.device], data: p.tag!, comment: clip(p.portId) })));
  const l2Ports = t.set(BRIDGE.l2Ports, ['ifname'], { comment: 'filtered bridged ports' });
  t.fill(BRIDGE.l2Ports, filtered.map((p) => ({ key: [p.device], comment: clip(p.portId) })));
  const l2Types = t.set('l2_types', ['ether_type'], { comment: 'EtherTypes a filtered port may send' });
  t.fill('l2_types', L2_TYPES.map((e) => ({ key: [e] })));

  const sink = new ElementSink();
  for (const p of filtered) {
    for (const s of p.spoof) {
      sink.add(BRIDGE.macOk, ['ifname', 'ether_addr'], [p.device, s.mac], p.portId);
      if (s.family === 4) sink.add(BRIDGE.arpOk, ['ifname', 'ether_addr', 'ipv4_addr'], [p.device, s.mac, s.prefix], p.portId);
    }
  }
  const macOk = t.set(BRIDGE.macOk, ['ifname', 'ether_addr'], { comment: 'source MACs per port' });
  const arpOk = t.set(BRIDGE.arpOk, ['ifname', 'ether_addr', 'ipv4_addr'], { interval: true, comment: 'ARP sender MAC and IP per port' });
  t.fill(BRIDGE.macOk, sink.elements(BRIDGE.macOk));
  t.fill(BRIDGE.arpOk, sink.elements(BRIDGE.arpOk));

  // Tag bits (and the flag) are cleared first, so a frame from a non-port (an uplink) never carries a stale or forged tag;
  // a port's frame then gets its tag (the map's mark replaces the whole mark: nft cannot OR a map value in).
  const clear = set(F.meta.mark, and(F.meta.mark, (~mask) >>> 0));
  const from = t.chain(BRIDGE.fromPort, { hook: 'prerouting', priority: -300 });
  t.rule(from, [clear], 'clear the port tag bits');
  t.rule(from, [set(F.meta.mark, mapOf(F.meta.iifname, portTag))], 'tag frames from ports');
  t.rule(from, [inSet(F.meta.iifname, l2Ports), notInSet(F.ether.type, l2Types), drop()], 'only IPv4, ARP and IPv6 from ports');
  t.rule(from, [inSet(F.meta.iifname, l2Ports), notInSet([F.meta.iifname, F.ether.saddr], macOk), drop()], 'MAC anti-spoof');
  t.rule(from, [inSet(F.meta.iifname, l2Ports), notInSet([F.meta.iifname, F.arp.saddrEther, F.arp.saddrIp], arpOk), drop()], 'ARP anti-spoof');
  const to = t.chain(BRIDGE.toPort, { hook: 'forward', priority: -200 });
  t.rule(to, [clear], 'clear the source port tag');
  t.rule(to, [set(F.meta.mark, mapOf(F.meta.oifname, portTag))], 'tag frames to ports');
  // The flag tells inet forward a bridge-forwarded frame (tagged here) from one the host routes back out of
  // the bridge it came from (iif = oif = the bridge too, but still the source's tag): set on every frame.
  t.rule(to, [set(F.meta.mark, or(F.meta.mark, flag))], 'bridge-forwarded');
  return t;
}
