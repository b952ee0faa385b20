/**
 * The validated, normalised model the compiler consumes (produced by `./validate.ts` from a state file).
 * Everything is canonical: prefixes have no host bits and always carry a length (`192.0.2.14/32`), MACs are
 * lowercase, protocols are numbers, defaults are filled in — so two spellings of one rule are one rule.
 */

export type IpFamily = 4 | 6;

/** A canonical prefix, e.g. `198.51.100.0/24`, `2001:db8::1/128`, `0.0.0.0/0`. */
export type Prefix = string;

export interface Network {
  id: string;
  zone: number;
  mode: 'bridged' | 'routed';
  /** Bridged networks: the bridge device. */
  bridge?: string;
  /** Canonical host prefixes (/32, /128). */
  dhcpServers: Prefix[];
  routers: Prefix[];
  /** Set for CloudStack semantics (absent: Neutron's); see {@link NetworkFlavor}. */
  flavor?: NetworkFlavor;
  /** Bridged networks with at least one guard on: the layer-2 guards of their filtered ports. */
  l2Guards?: L2Guards;
  /** Drops of the network's ports logged (NFLOG), at most this many packets per second per policy step. */
  logDrops?: number;
  /** New connections the network's ports allow logged (NFLOG), at most this many per second and direction. */
  logAccepts?: number;
}

/**
 * Whose security-group semantics a network's ports follow. `cloudstack`: with no egress rule in any of a
 * port's groups, egress is allowed (Neutron: denied); DNS from the port is always allowed; layer-2 guards
 * default to on.
 */
export type NetworkFlavor = 'neutron' | 'cloudstack';

/**
 * The id under which a CloudStack-flavour port's built-in rules (DNS, the open egress) join its rule profile:
 * reserved, no security group may take it.
 */
export const CLOUDSTACK_GROUP = '@cloudstack';

/** Layer-2 guards of a bridged port (docs/dataplane.md, "Layer-2 guards"). */
export interface L2Guards {
  /** ARP only as request or reply. */
  arp: boolean;
  /** No DHCP server messages from the port, no DHCP client messages to it. */
  dhcpSnooping: boolean;
  /** IPv4 broadcast and multicast dropped, DHCP excepted. */
  broadcast: boolean;
  dropIpv6: boolean;
  dropVlan: boolean;
}

export interface SgRule {
  id: string;
  /** The group the rule belongs to. */
  groupId: string;
  direction: 'ingress' | 'egress';
  family: IpFamily;
  /** IP protocol number; undefined = any protocol. ICMPv6 is 58, ICMP 1. */
  protocol?: number;
  /** tcp/udp/sctp/udplite/dccp: inclusive destination port range; undefined = all ports. */
  ports?: { min: number; max: number };
  /** icmp/icmpv6: type and (optional) code; undefined type = any ICMP. */
  icmp?: { type: number; code?: number };
  /** Exactly one of remotePrefix / remoteGroupId, or neither (= any). remotePrefix is canonical. */
  remotePrefix?: Prefix;
  remoteGroupId?: string;
}

export interface SecurityGroup {
  id: string;
  stateful: boolean;
  rules: SgRule[];
}

export interface AddressPair {
  /** Canonical prefix (a host address becomes /32 or /128). */
  prefix: Prefix;
  family: IpFamily;
  /** Lowercase MAC; the port's MAC when the pair had none. */
  mac: string;
}

export interface Port {
  id: string;
  networkId: string;
  device: string;
  mac: string;
  /** Canonical host prefixes of the fixed IPs, in file order. */
  fixedIps: Prefix[];
  groupIds: string[];
  portSecurity: boolean;
  kind: 'user' | 'system';
  addressPairs: AddressPair[];
  /** Index in the state file's `ports` array (for error messages and stable ordering). */
  index: number;
}

/** A floating IP (1:1 NAT), validated: addresses as canonical host prefixes. */
export interface FloatingIp {
  id: string;
  /** The public address, e.g. `203.0.113.50/32`. */
  floatingIp: Prefix;
  family: IpFamily;
  /** Absent: not associated with a port (nothing to program). */
  portId?: string;
  /** The port's fixed IP it maps to (same family). */
  fixedIp?: Prefix;
  /** Index in the state file's `floatingips` array. */
  index: number;
}

/** Default SNAT and the metadata redirect (nova-network's options), validated. */
export interface Nat {
  /** Canonical prefixes of the fixed addresses. */
  fixedRange: Prefix[];
  /** The host address default SNAT translates to (a host prefix). */
  routingSourceIp: Prefix;
  dmzCidr: Prefix[];
  /** Where 169.254.169.254:80 goes (an IPv4 host prefix); absent: no redirect. */
  metadataHost?: Prefix;
  metadataPort: number;
}

/** A validated desired state. Maps keep file order. */
export interface Model {
  networks: Map<string, Network>;
  groups: Map<string, SecurityGroup>;
  ports: Map<string, Port>;
  /** Floating IPs by id (absent in models built before NAT existed: none). */
  floatingIps?: Map<string, FloatingIp>;
  /** Absent: no default SNAT and no metadata redirect. */
  nat?: Nat;
}

/** Agent/library configuration that is not part of the state file. */
export interface PortwallConfig {
  /**
   * nftables table names (families inet and bridge; `nat` is the `ip` table of floating IPs and SNAT). The
   * inet name also names `<inet>_raw`, the inet table of the raw chains (conntrack zones, untracking).
   */
  tables: { inet: string; bridge: string; nat: string };
  /** Bridged mode: skb mark bits portwall uses to tag bridge ports (low 16 bits by default). */
  markMask: number;
  /** Network zones must lie in this range, so they never collide with another agent's. */
  zoneRange: { min: number; max: number };
  /** Also publish remote-group memberships as ipsets (for iptables consumers). */
  publishIpsets: boolean;
  /** The NFLOG group of the drop log (networks' `log_drops`; docs/dataplane.md, "Drop log"). */
  logGroup: number;
}

export const DEFAULT_CONFIG: PortwallConfig = {
  tables: { inet: 'portwall', bridge: 'portwall', nat: 'portwall_nat' },
  markMask: 0xffff,
  zoneRange: { min: 1, max: 65535 },
  publishIpsets: false,
  logGroup: 28791,
};
