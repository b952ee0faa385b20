/**
 * Small state documents for compiler, layout, diff and apply tests, in the state file's own (Neutron) shape.
 * Addresses come from the documentation ranges only.
 */
import type { StateInput } from '../../src/model/schema.js';
import type { Operation } from '../../src/nft/types.js';

export type Mode = 'bridged' | 'routed';

type Rule = NonNullable<NonNullable<StateInput['security_groups']>[number]['security_group_rules']>[number];
type Port = NonNullable<StateInput['ports']>[number];

/** A network `net-a` (zone 101) in the given mode; bridged networks use bridge `br-a`. */
export function network(mode: Mode, id = 'net-a', zone = 101, bridge = 'br-a'): StateInput['networks'][number] {
  return {
    id, zone, mode, ...(mode === 'bridged' ? { bridge } : {}),
    dhcp_servers: ['192.0.2.254'], routers: ['fe80::1'],
  };
}

/** A MAC derived from a number (fa:16:3e:xx:xx:xx). */
export function mac(n: number): string {
  const b = [(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff].map((x) => x.toString(16).padStart(2, '0'));
  return `fa:16:3e:${b.join(':')}`;
}

/**
 * The IPv4 address of port n: 192.0.2.1-250, then 198.51.100.1-250, then 203.0.113.1-250; undefined beyond
 * (the documentation ranges hold no more distinct hosts; such ports are IPv6-only).
 */
export function ip4(n: number): string | undefined {
  const ranges = ['192.0.2', '198.51.100', '203.0.113'];
  const r = ranges[Math.floor(n / 250)];
  return r === undefined ? undefined : `${r}.${(n % 250) + 1}`;
}

/** IPv6 address of port n in 2001:db8::/32 (unique for any n). */
export function ip6(n: number): string {
  return `2001:db8:1::${n.toString(16)}`;
}

/** Port number n on `net`: device `tapN`, MAC and addresses derived from n. */
export function port(n: number, groups: string[], extra: Partial<Port> = {}, net = 'net-a'): Port {
  return {
    id: `port-${String(n).padStart(5, '0')}`,
    network_id: net,
    device: `tap${n}`,
    mac_address: mac(n),
    fixed_ips: [...(ip4(n) ? [{ ip_address: ip4(n)! }] : []), { ip_address: ip6(n) }],
    security_groups: groups,
    ...extra,
  };
}

/** Neutron's classic web group: tcp 80 from 198.51.100.0/24, ssh from members, ping from anywhere, egress any. */
export function webGroup(id = 'sg-web'): NonNullable<StateInput['security_groups']>[number] {
  const rules: Rule[] = [
    { id: `${id}-http`, direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 80, port_range_max: 80, remote_ip_prefix: '198.51.100.0/24' },
    { id: `${id}-ssh`, direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 22, port_range_max: 22, remote_group_id: id },
    { id: `${id}-ping`, direction: 'ingress', ethertype: 'IPv4', protocol: 'icmp', port_range_min: 8 },
    { id: `${id}-ping6`, direction: 'ingress', ethertype: 'IPv6', protocol: 'ipv6-icmp', port_range_min: 128 },
    { id: `${id}-out4`, direction: 'egress', ethertype: 'IPv4' },
    { id: `${id}-out6`, direction: 'egress', ethertype: 'IPv6' },
  ];
  return { id, stateful: true, security_group_rules: rules };
}

/**
 * A group with `n` rules of varied shapes (ports, ranges, protocols, ICMP, remote prefixes and a remote
 * group), like the benchmark's Neutron-shaped rule sets.
 */
export function busyGroup(id: string, n: number, remoteGroup?: string): NonNullable<StateInput['security_groups']>[number] {
  const rules: Rule[] = [];
  for (let i = 0; i < n; i++) {
    const rid = `${id}-r${i}`;
    switch (i % 5) {
      case 0:
        rules.push({ id: rid, direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 1000 + i, port_range_max: 1000 + i, remote_ip_prefix: `198.51.100.${i % 256}/32` });
        break;
      case 1:
        rules.push({ id: rid, direction: 'ingress', ethertype: 'IPv4', protocol: 'udp', port_range_min: 2000 + i, port_range_max: 2010 + i, remote_ip_prefix: '203.0.113.0/24' });
        break;
      case 2:
        rules.push({ id: rid, direction: 'ingress', ethertype: 'IPv6', protocol: 'tcp', port_range_min: 3000 + i, port_range_max: 3000 + i, ...(remoteGroup ? { remote_group_id: remoteGroup } : { remote_ip_prefix: '2001:db8:ff::/48' }) });
        break;
      case 3:
        rules.push({ id: rid, direction: 'ingress', ethertype: 'IPv4', protocol: 'icmp', port_range_min: 8, port_range_max: 0, remote_ip_prefix: `203.0.113.${i % 256}/32` });
        break;
      default:
        rules.push({ id: rid, direction: 'egress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 4000 + i, port_range_max: 4000 + i, remote_ip_prefix: '192.0.2.0/24' });
    }
  }
  return { id, stateful: true, security_group_rules: rules };
}

/** A state with one network. */
export function state(mode: Mode, groups: NonNullable<StateInput['security_groups']>, ports: Port[]): StateInput {
  return { networks: [network(mode)], security_groups: groups, ports };
}

/** The layout promise for one-port changes: only element adds/deletes, none carrying a verdict. */
export function elementOnly(ops: readonly Operation[]): boolean {
  return ops.every((op) => op.object.kind === 'elements' && (op.verb === 'add' || op.verb === 'delete') && op.object.elements.every((e) => !e.verdict));
}
