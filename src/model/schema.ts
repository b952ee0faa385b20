/**
 * The state file (docs/requirements.md, "Model"): one JSON document in the Neutron API's own shapes and field names, plus
 * portwall's extensions (networks: zone, mode, bridge, dhcp_servers, routers, flavor, l2_guards; ports: device, kind; groups:
 * stateful). This TypeBox schema is the single source of the TypeScript types below and of the JSON Schema
 * shipped as `schema/state.schema.json`.
 *
 * Unknown fields are allowed and ignored, each reported as a warning (`./unknown-keys.ts`) except Neutron's
 * attributes portwall does not read (tenant_id, revision_number, binding:host_id, …); every field portwall
 * reads is checked here or, where JSON Schema cannot say it (a prefix, a duplicate id, a reference), by
 * `./validate.ts`.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';

const Id = Type.String({ minLength: 1, maxLength: 255, description: 'Neutron-style identifier (any non-empty string)' });
const Nullable = <T extends TSchema>(t: T) => Type.Optional(Type.Union([t, Type.Null()]));

const guard = (description: string) => Type.Optional(Type.Boolean({ description }));

/** Layer-2 guards of a bridged network's filtered ports (docs/dataplane.md, "Layer-2 guards"); a field left out takes the flavour's default. */
export const L2GuardsSchema = Type.Object({
  arp: guard('ARP from a port only as request or reply (its sender MAC and IPv4 address are always checked)'),
  dhcp_snooping: guard('a port sends no DHCP server message (udp source port 67, destination port 68) and receives no DHCP client message (udp destination port 67)'),
  broadcast: guard('IPv4 broadcast and multicast (group MAC, 255.255.255.255, 224.0.0.0/4) to or from a port dropped, DHCP (udp 67/68) excepted'),
  drop_ipv6: guard('IPv6 frames to or from a port dropped'),
  drop_vlan: guard('802.1Q / 802.1ad tagged frames to or from a port dropped'),
}, { additionalProperties: false, description: 'layer-2 guards on the ports of a bridged network; defaults: all true for flavor cloudstack, all false for neutron' });

export const NetworkSchema = Type.Object({
  id: Id,
  zone: Type.Integer({ minimum: 1, maximum: 65535, description: 'conntrack zone of the network (unique per network)' }),
  mode: Type.Union([Type.Literal('bridged'), Type.Literal('routed')], { description: 'how ports attach' }),
  bridge: Type.Optional(Type.String({ description: 'bridge device of a bridged network' })),
  dhcp_servers: Type.Optional(Type.Array(Type.String(), { description: 'DHCP/DHCPv6 server addresses allowed to answer ports' })),
  routers: Type.Optional(Type.Array(Type.String(), { description: 'IPv6 routers allowed to send router advertisements' })),
  flavor: Type.Optional(Type.Union([Type.Literal('neutron'), Type.Literal('cloudstack')], {
    default: 'neutron',
    description: "whose security-group semantics the network's ports follow: neutron (no egress rule: egress denied) or cloudstack (no egress rule in any of the port's groups: egress allowed; DNS from the port always allowed; layer-2 guards on by default)",
  })),
  l2_guards: Type.Optional(L2GuardsSchema),
  log_drops: Type.Optional(Type.Integer({
    minimum: 0,
    maximum: 10000,
    default: 0,
    description: "packets per second the network's ports may log when their policy drops them (NFLOG, read by portwall and written as JSON lines); 0: no logging",
  })),
  log_accepts: Type.Optional(Type.Integer({
    minimum: 0,
    maximum: 10000,
    default: 0,
    description: "new connections per second and direction the network's ports may log when their policy allows them (NFLOG, the drop log's group, written as JSON lines with verdict accept); 0: no logging",
  })),
});

export const RuleSchema = Type.Object({
  id: Id,
  direction: Type.Union([Type.Literal('ingress'), Type.Literal('egress')]),
  ethertype: Type.Union([Type.Literal('IPv4'), Type.Literal('IPv6')]),
  protocol: Nullable(Type.Union([Type.String(), Type.Integer()])),
  port_range_min: Nullable(Type.Integer()),
  port_range_max: Nullable(Type.Integer()),
  remote_ip_prefix: Nullable(Type.String()),
  remote_group_id: Nullable(Type.String()),
  description: Nullable(Type.String()),
});

export const SecurityGroupSchema = Type.Object({
  id: Id,
  name: Nullable(Type.String()),
  stateful: Type.Optional(Type.Boolean({ default: true })),
  security_group_rules: Type.Optional(Type.Array(RuleSchema)),
});

export const FixedIpSchema = Type.Object({
  ip_address: Type.String(),
  subnet_id: Nullable(Type.String()),
});

export const AddressPairSchema = Type.Object({
  ip_address: Type.String({ description: 'an address or prefix' }),
  mac_address: Nullable(Type.String({ description: "defaults to the port's MAC" })),
});

export const PortSchema = Type.Object({
  id: Id,
  network_id: Type.String(),
  device: Type.String({ description: 'tap/veth device name (1–15 bytes)' }),
  mac_address: Type.String(),
  fixed_ips: Type.Optional(Type.Array(FixedIpSchema)),
  security_groups: Type.Optional(Type.Array(Type.String())),
  port_security_enabled: Type.Optional(Type.Boolean({ default: true })),
  allowed_address_pairs: Type.Optional(Type.Array(AddressPairSchema)),
  kind: Type.Optional(Type.Union([Type.Literal('user'), Type.Literal('system')], { default: 'user' })),
});

/** A floating IP in Neutron's shape: 1:1 NAT of `floating_ip_address` to `fixed_ip_address` of `port_id`. */
export const FloatingIpSchema = Type.Object({
  id: Id,
  floating_ip_address: Type.String({ description: 'the public address, unique on the host' }),
  fixed_ip_address: Nullable(Type.String({ description: "a fixed IP of port_id (may be left out when the port has one of the floating IP's family)" })),
  port_id: Nullable(Type.String({ description: 'the associated port; null or absent: not associated (nothing is programmed)' })),
});

/** nova-network's NAT options (its option names): default SNAT, its exemptions, the metadata redirect. */
export const NatSchema = Type.Object({
  fixed_range: Type.Array(Type.String(), { description: 'prefixes of the fixed (port) addresses, SNATed by default' }),
  routing_source_ip: Type.String({ description: 'the host address default SNAT translates to' }),
  dmz_cidr: Type.Optional(Type.Array(Type.String(), { description: 'destinations that fixed addresses reach without SNAT' })),
  metadata_host: Nullable(Type.String({ description: 'where 169.254.169.254:80 from a port is redirected (IPv4)' })),
  metadata_port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, default: 8775, description: 'port of metadata_host' })),
});

export const StateSchema = Type.Object(
  {
    networks: Type.Array(NetworkSchema),
    security_groups: Type.Optional(Type.Array(SecurityGroupSchema)),
    ports: Type.Optional(Type.Array(PortSchema)),
    floatingips: Type.Optional(Type.Array(FloatingIpSchema)),
    nat: Type.Optional(NatSchema),
  },
  { $id: 'https://portwall.invalid/state.schema.json', title: 'portwall desired state' },
);

export type NetworkInput = Static<typeof NetworkSchema>;
export type L2GuardsInput = Static<typeof L2GuardsSchema>;
export type RuleInput = Static<typeof RuleSchema>;
export type SecurityGroupInput = Static<typeof SecurityGroupSchema>;
export type PortInput = Static<typeof PortSchema>;
export type StateInput = Static<typeof StateSchema>;
export type FloatingIpInput = Static<typeof FloatingIpSchema>;
export type NatInput = Static<typeof NatSchema>;
