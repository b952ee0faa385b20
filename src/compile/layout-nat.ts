/**
 * NAT (docs/dataplane.md, "NAT"): floating IPs, the metadata redirect and default SNAT, in portwall's own
 * `ip` table, plus the few conntrack-zone rules of the inet table that keep NATed replies in their flow's zone.
 *
 * Floating IPs are elements of two maps (floating → fixed for DNAT in prerouting and output, fixed → floating
 * for SNAT in postrouting), so adding, moving or removing one is an element-only batch. The `nat` options are
 * rules and a few constant sets: they change rarely and rebuild the skeleton when they do.
 */
import { F, accept, and, dnat, eq, inSet, mapOf, natFrom, notInSet, set, snat, type SetRef } from '../nft/match.js';
import type { Element } from '../nft/types.js';
import type { FloatingIp, Nat, Prefix } from '../model/types.js';
import { hostAddress, mergeRanges, prefixRange, rangeValue } from './addr.js';
import { own, type Claim } from './claims.js';
import type { PortPolicy } from './ir.js';
import { INET, NAT, zoneSetName } from './names.js';
import { clip } from './layout-ports.js';
import { TableBuilder } from './tables.js';

/** Where the metadata service is asked for (nova's and every cloud image's). */
export const METADATA_IP = '169.254.169.254';
/** IPS_DST_NAT: the flow was DNATed (a floating IP, the metadata redirect). */
const CT_STATUS_DNAT = 0x20;

/** What the NAT part of the layout depends on. */
export interface NatInput {
  nat: Nat | undefined;
  /** Whether any floating IP is associated (the NAT table exists with `nat` or with a floating IP). */
  floating: boolean;
}

/** Whether the layout has a NAT table. */
export function hasNat(input: NatInput): boolean {
  return input.nat !== undefined || input.floating;
}

const prefixValues = (prefixes: readonly Prefix[]): Element[] =>
  mergeRanges(prefixes.map((p) => ({ ...prefixRange(p), label: p }))).map((r) => ({ key: [rangeValue(4, r.lo, r.hi)] }));

/**
 * The NAT table: DNAT of floating IPs in prerouting and output (the host's own processes reach a VM by its
 * floating IP), the metadata redirect; in postrouting the exemptions (metadata host, DMZ, fixed-to-fixed not
 * DNATed), then a floating IP's SNAT, then default SNAT of the fixed ranges to `routing_source_ip`.
 */
export function natTable(tableName: string, input: NatInput): TableBuilder {
  const { nat } = input;
  const t = new TableBuilder('ip', tableName);
  const pre = t.chain(NAT.pre, { hook: 'prerouting', priority: -100, type: 'nat' });
  const out = t.chain(NAT.out, { hook: 'output', priority: -100, type: 'nat' });
  const post = t.chain(NAT.post, { hook: 'postrouting', priority: 100, type: 'nat' });
  const toFixed = t.set(NAT.dnat, ['ipv4_addr'], { data: 'ipv4_addr', order: 'first', comment: 'floating IP to fixed IP' });
  const toFloating = t.set(NAT.snat, ['ipv4_addr'], { data: 'ipv4_addr', order: 'first', comment: 'fixed IP to floating IP' });
  let fixed: SetRef | undefined;
  if (nat) {
    fixed = t.set(NAT.fixed, ['ipv4_addr'], { interval: true, comment: 'fixed_range' });
    t.fill(NAT.fixed, prefixValues(nat.fixedRange));
    if (nat.metadataHost !== undefined) {
      t.rule(pre, [inSet(F.ip.saddr, fixed), eq(F.ip.daddr, METADATA_IP), eq(F.tcp.dport, 80), dnat(hostAddress(nat.metadataHost), { port: nat.metadataPort })], 'metadata');
    }
  }
  t.rule(pre, [natFrom('dnat', 'ip', mapOf(F.ip.daddr, toFixed))], 'floating IPs');
  t.rule(out, [natFrom('dnat', 'ip', mapOf(F.ip.daddr, toFixed))], 'floating IPs, from the host');
  if (nat && fixed) {
    if (nat.metadataHost !== undefined) t.rule(post, [inSet(F.ip.saddr, fixed), eq(F.ip.daddr, hostAddress(nat.metadataHost)), accept()], 'to the metadata host: not NATed');
    if (nat.dmzCidr.length > 0) {
      const dmz = t.set(NAT.dmz, ['ipv4_addr'], { interval: true, comment: 'dmz_cidr' });
      t.fill(NAT.dmz, prefixValues(nat.dmzCidr));
      t.rule(post, [inSet(F.ip.saddr, fixed), inSet(F.ip.daddr, dmz), accept()], 'to dmz_cidr: not NATed');
    }
    t.rule(post, [inSet(F.ip.saddr, fixed), inSet(F.ip.daddr, fixed), eq(and(F.ct.status, CT_STATUS_DNAT), 0), accept()], 'fixed to fixed, not DNATed: not NATed');
  }
  t.rule(post, [natFrom('snat', 'ip', mapOf(F.ip.saddr, toFloating))], 'floating IPs');
  if (nat && fixed) t.rule(post, [inSet(F.ip.saddr, fixed), snat(hostAddress(nat.routingSourceIp))], 'default SNAT to routing_source_ip');
  return t;
}

/**
 * The inet table's part (with `nat` only), run first among the zone rules of raw_pre: a port's packet that
 * default SNAT will translate gets its zone for the original direction only (`ct original zone set`), so the
 * reply — addressed to the shared `routing_source_ip`, which says nothing about the zone — is found in zone
 * 0. Everything else (floating IPs included: their address names the zone) keeps a zone for both directions.
 */
export function natZoneRules(t: TableBuilder, rawPre: string, nat: Nat, zoneMaps: { dev?: SetRef; bridge?: SetRef }): void {
  const fixed = t.set(INET.natFixed, ['ipv4_addr'], { interval: true, comment: 'nat fixed_range' });
  t.fill(INET.natFixed, prefixValues(nat.fixedRange));
  const keep = t.set(INET.natKeep, ['ipv4_addr'], { interval: true, comment: 'destinations of the fixed ranges that default SNAT leaves alone' });
  const kept = [...nat.fixedRange, ...nat.dmzCidr, `${METADATA_IP}/32` as Prefix];
  if (nat.metadataHost !== undefined) kept.push(nat.metadataHost);
  t.fill(INET.natKeep, prefixValues(kept));
  const fipSrc = t.set(INET.natFipSrc, ['ifname', 'ipv4_addr'], { order: 'first', comment: 'ports with a floating IP: device or bridge, fixed IP' });
  for (const map of [zoneMaps.bridge, zoneMaps.dev]) {
    if (!map) continue;
    t.rule(rawPre, [
      inSet(F.ip.saddr, fixed), notInSet(F.ip.daddr, keep), notInSet([F.meta.iifname, F.ip.saddr], fipSrc),
      set(F.ct.originalZone, mapOf(F.meta.iifname, map)),
    ], 'default SNAT: zone of the original direction only');
  }
}

/** The zone-map element of a floating IP: its address is in its port's zone, like the port's own addresses. */
export function fipClaims(fip: FloatingIp, port: PortPolicy | undefined, hasNatZones: boolean): Claim[] {
  if (!port || fip.fixedIp === undefined || fip.family !== 4) return [];
  const floating = hostAddress(fip.floatingIp);
  const fixed = hostAddress(fip.fixedIp);
  const comment = clip(fip.id);
  const out: Claim[] = [
    own(`ip:${NAT.dnat}`, { key: [floating], data: fixed, comment }),
    own(`ip:${NAT.snat}`, { key: [fixed], data: floating, comment }),
    // Ports win an address they own (a floating IP is validated to be no port's address).
    {
      slot: `own4|${floating}`,
      rank: `~${fip.id}`,
      items: [
        { setId: `inet:${INET.zoneAddr(port.mode, 4, 'host')}`, element: { key: [floating], data: port.zone, comment } },
        // Between routed ports (zone_cross): a VM reaching another by its floating IP.
        ...(port.mode === 'routed' ? [{ setId: `inet:${zoneSetName(port.networkId, 'ip4')}`, element: { key: [floating], comment } }] : []),
      ],
    },
  ];
  if (hasNatZones) out.push(own(`inet:${INET.natFipSrc}`, { key: [port.mode === 'bridged' ? port.bridge! : port.device, fixed], comment }));
  return out;
}
