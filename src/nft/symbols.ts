/**
 * Symbolic names of integer datatypes, as `nft` reads and prints them (`nft describe <expr>` lists them).
 * The first name of a value is the one portwall prints; later ones are accepted aliases.
 */
import type { DataTypeName } from './types.js';

type Table = [string, bigint][];
const t = (entries: Record<string, number>): Table => Object.entries(entries).map(([k, v]) => [k, BigInt(v)]);

/** Name ↔ number tables by datatype. */
export const SYMBOLS: Partial<Record<DataTypeName, Table>> = {
  nf_proto: t({ ipv4: 2, ipv6: 10 }),
  // The names of netbase's /etc/protocols, which nft prints; `icmpv6` is nft's own alias.
  inet_proto: t({
    icmp: 1, igmp: 2, ipip: 4, tcp: 6, egp: 8, udp: 17, dccp: 33, ipv6: 41, rsvp: 46, gre: 47, esp: 50, ah: 51,
    'ipv6-icmp': 58, icmpv6: 58, ospf: 89, pim: 103, vrrp: 112, l2tp: 115, sctp: 132, udplite: 136,
  }),
  ether_type: t({ ip: 0x0800, arp: 0x0806, ip6: 0x86dd, '8021q': 0x8100, vlan: 0x8100, '8021ad': 0x88a8 }),
  arp_op: t({ request: 1, reply: 2, rrequest: 3, rreply: 4, inrequest: 8, inreply: 9, nak: 10 }),
  ct_state: t({ invalid: 1, new: 8, established: 2, related: 4, untracked: 64 }),
  icmp_type: t({
    'echo-reply': 0, 'destination-unreachable': 3, 'source-quench': 4, redirect: 5, 'echo-request': 8,
    'router-advertisement': 9, 'router-solicitation': 10, 'time-exceeded': 11, 'parameter-problem': 12,
    'timestamp-request': 13, 'timestamp-reply': 14, 'info-request': 15, 'info-reply': 16,
    'address-mask-request': 17, 'address-mask-reply': 18,
  }),
  icmp_code: t({
    'net-unreachable': 0, 'host-unreachable': 1, 'prot-unreachable': 2, 'port-unreachable': 3, 'frag-needed': 4,
    'net-prohibited': 9, 'host-prohibited': 10, 'admin-prohibited': 13,
  }),
  icmpv6_type: t({
    'destination-unreachable': 1, 'packet-too-big': 2, 'time-exceeded': 3, 'parameter-problem': 4,
    'echo-request': 128, 'echo-reply': 129, 'mld-listener-query': 130, 'mld-listener-report': 131,
    'mld-listener-done': 132, 'mld-listener-reduction': 132, 'nd-router-solicit': 133, 'nd-router-advert': 134,
    'nd-neighbor-solicit': 135, 'nd-neighbor-advert': 136, 'nd-redirect': 137, 'router-renumbering': 138,
    'ind-neighbor-solicit': 141, 'ind-neighbor-advert': 142, 'mld2-listener-report': 143,
  }),
  icmpv6_code: t({
    'no-route': 0, 'admin-prohibited': 1, 'addr-unreachable': 3, 'port-unreachable': 4, 'policy-fail': 5,
    'reject-route': 6,
  }),
};

/** The number of a symbolic name of `type`, or undefined. */
export function symbolValue(type: DataTypeName, name: string): bigint | undefined {
  return SYMBOLS[type]?.find(([n]) => n === name)?.[1];
}

/** The name portwall prints for a number of `type`, or undefined when nft has none. */
export function symbolName(type: DataTypeName, value: bigint): string | undefined {
  return SYMBOLS[type]?.find(([, v]) => v === value)?.[0];
}
