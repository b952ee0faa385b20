/**
 * Packet fields that rules match on, and the protocol headers they belong to.
 *
 * A field says where its bytes come from (a payload location, a meta key or a conntrack key), how many bytes
 * it loads, in which byte order and with which datatype. Protocol descriptors say how nft proves that a header
 * is present before it reads from it (the dependency match that `nft` inserts, e.g. `meta l4proto tcp` before
 * `tcp dport`). Offsets are those of the on-wire headers (checked against `nft --debug=netlink`).
 */
import type { ByteOrder } from './datatypes.js';
import type { CtKey, DataTypeName, MetaKey, PayloadBase, Value } from './types.js';

/** A protocol header (or one of nft's pseudo headers used for dependencies). */
export type Proto =
  | 'ether' | 'inet' | 'netdev' | 'ip' | 'ip6' | 'arp' | 'inet_service'
  | 'tcp' | 'udp' | 'udplite' | 'sctp' | 'dccp' | 'icmp' | 'icmpv6' | 'igmp' | 'esp' | 'ah' | 'th' | 'unknown';

/** Where a field's bytes are loaded from. */
export type Load =
  | { kind: 'payload'; base: PayloadBase; offset: number }
  | { kind: 'meta'; key: MetaKey }
  | { kind: 'ct'; key: CtKey; dir?: 'original' | 'reply' };

/** A matchable packet field. */
export interface Field {
  /** nft syntax of the field, e.g. `ip saddr`, `meta l4proto`, `ct state`. */
  readonly name: string;
  readonly type: DataTypeName;
  /** Bytes loaded into the register. */
  readonly len: number;
  readonly order: ByteOrder;
  readonly load: Load;
  /** Payload fields: the header they are in (its presence is a dependency). */
  readonly proto?: Proto;
  /** The field names the next header's protocol (nft's EXPR_F_PROTOCOL). */
  readonly protocolKey?: boolean;
}

/**
 * A field under a bit mask: `meta mark and 0xff00`. With `or` (set statements only), bits set after the mask:
 * `meta mark or 0x8000` is `{ mask: 0xffff7fff, or: 0x8000 }` (nft's bitwise `(x & mask) ^ or`).
 */
export interface Masked {
  field: Field;
  mask: Value;
  or?: Value;
}

/** What a match or a set key reads: a field, or a masked field. */
export type Operand = Field | Masked;

/** Whether an operand is masked. */
export function isMasked(o: Operand): o is Masked {
  return 'field' in o;
}

/** The field an operand reads. */
export function fieldOf(o: Operand): Field {
  return isMasked(o) ? o.field : o;
}

const payload = (proto: Proto, base: PayloadBase, name: string, offset: number, len: number, type: DataTypeName,
  protocolKey = false): Field => ({
  name: `${proto} ${name}`, type, len, order: 'big', load: { kind: 'payload', base, offset }, proto,
  ...(protocolKey ? { protocolKey } : {}),
});
const meta = (name: string, key: MetaKey, type: DataTypeName, len: number, order: ByteOrder, protocolKey = false): Field =>
  ({ name, type, len, order, load: { kind: 'meta', key }, ...(protocolKey ? { protocolKey } : {}) });
const ct = (key: CtKey, type: DataTypeName, len: number, dir?: 'original' | 'reply'): Field =>
  ({ name: dir ? `ct ${dir} ${key}` : `ct ${key}`, type, len, order: 'host', load: dir ? { kind: 'ct', key, dir } : { kind: 'ct', key } });
const ports = (proto: Proto) => ({
  sport: payload(proto, 'transport', 'sport', 0, 2, 'inet_service'),
  dport: payload(proto, 'transport', 'dport', 2, 2, 'inet_service'),
});

/** The field table: `F.ip.saddr`, `F.tcp.dport`, `F.meta.l4proto`, `F.ct.state`, … */
export const F = {
  ether: {
    daddr: payload('ether', 'll', 'daddr', 0, 6, 'ether_addr'),
    saddr: payload('ether', 'll', 'saddr', 6, 6, 'ether_addr'),
    type: payload('ether', 'll', 'type', 12, 2, 'ether_type', true),
  },
  ip: {
    protocol: payload('ip', 'network', 'protocol', 9, 1, 'inet_proto', true),
    saddr: payload('ip', 'network', 'saddr', 12, 4, 'ipv4_addr'),
    daddr: payload('ip', 'network', 'daddr', 16, 4, 'ipv4_addr'),
  },
  ip6: {
    nexthdr: payload('ip6', 'network', 'nexthdr', 6, 1, 'inet_proto', true),
    saddr: payload('ip6', 'network', 'saddr', 8, 16, 'ipv6_addr'),
    daddr: payload('ip6', 'network', 'daddr', 24, 16, 'ipv6_addr'),
  },
  // ARP over Ethernet/IPv4, the only layout nft knows (fixed offsets).
  arp: {
    htype: payload('arp', 'network', 'htype', 0, 2, 'integer'),
    ptype: payload('arp', 'network', 'ptype', 2, 2, 'ether_type'),
    operation: payload('arp', 'network', 'operation', 6, 2, 'arp_op'),
    saddrEther: payload('arp', 'network', 'saddr ether', 8, 6, 'ether_addr'),
    saddrIp: payload('arp', 'network', 'saddr ip', 14, 4, 'ipv4_addr'),
    daddrEther: payload('arp', 'network', 'daddr ether', 18, 6, 'ether_addr'),
    daddrIp: payload('arp', 'network', 'daddr ip', 24, 4, 'ipv4_addr'),
  },
  tcp: ports('tcp'),
  udp: ports('udp'),
  udplite: ports('udplite'),
  sctp: ports('sctp'),
  /** Ports of whatever transport header is there (`th`): nft adds no dependency. */
  th: ports('th'),
  icmp: {
    type: payload('icmp', 'transport', 'type', 0, 1, 'icmp_type', true),
    code: payload('icmp', 'transport', 'code', 1, 1, 'icmp_code'),
  },
  icmpv6: {
    type: payload('icmpv6', 'transport', 'type', 0, 1, 'icmpv6_type', true),
    code: payload('icmpv6', 'transport', 'code', 1, 1, 'icmpv6_code'),
  },
  meta: {
    iifname: meta('iifname', 'iifname', 'ifname', 16, 'big'),
    oifname: meta('oifname', 'oifname', 'ifname', 16, 'big'),
    l4proto: meta('meta l4proto', 'l4proto', 'inet_proto', 1, 'host', true),
    nfproto: meta('meta nfproto', 'nfproto', 'nf_proto', 1, 'host', true),
    protocol: meta('meta protocol', 'protocol', 'ether_type', 2, 'big', true),
    iiftype: meta('meta iiftype', 'iiftype', 'integer', 2, 'host', true),
    mark: meta('meta mark', 'mark', 'mark', 4, 'host'),
  },
  ct: {
    state: ct('state', 'ct_state', 4),
    mark: ct('mark', 'mark', 4),
    zone: ct('zone', 'integer', 2),
    /** The zone of the original direction only (`ct original zone set`): replies are looked up in zone 0. */
    originalZone: ct('zone', 'integer', 2, 'original'),
    /** IPS_* status bits; match one with `eq(and(F.ct.status, CT_STATUS_DNAT), 0)` (not DNATed). */
    status: ct('status', 'integer', 4),
  },
} as const;

/** Every field of {@link F}, for lookups by location (printing dumps). */
export const ALL_FIELDS: readonly Field[] = Object.values(F).flatMap((group) => Object.values(group) as Field[]);

/** How nft proves a header: the protocol-key match of the header below, and which values lead where. */
export interface ProtoDesc {
  readonly layer: PayloadBase;
  /** The field matched to select the next protocol (absent for headers nothing is stacked on). */
  readonly key?: Field;
  readonly uppers: Partial<Record<Proto, number>>;
}

const L4 = { esp: 50, ah: 51, udp: 17, udplite: 136, tcp: 6, dccp: 33, sctp: 132, icmp: 1, igmp: 2, icmpv6: 58 };
const ETHERTYPES = { ip: 0x0800, arp: 0x0806, ip6: 0x86dd };

/** Protocol descriptors, after nft's proto.c (the dummy `inet`/`netdev` headers stand for the hook's family). */
export const PROTOS: Readonly<Partial<Record<Proto, ProtoDesc>>> = {
  ether: { layer: 'll', key: F.ether.type, uppers: ETHERTYPES },
  inet: { layer: 'll', key: F.meta.nfproto, uppers: { ip: 2, ip6: 10 } },
  netdev: { layer: 'll', key: F.meta.protocol, uppers: ETHERTYPES },
  ip: { layer: 'network', key: F.meta.l4proto, uppers: L4 },
  ip6: { layer: 'network', key: F.meta.l4proto, uppers: L4 },
  arp: { layer: 'network', uppers: {} },
  inet_service: { layer: 'transport', key: F.meta.l4proto, uppers: L4 },
};

/** The layer a header sits in (th and the transport protocols: transport). */
export function layerOf(p: Proto): PayloadBase {
  return PROTOS[p]?.layer ?? 'transport';
}
