/**
 * A table of invalid state files: each a small mutation of `examples/state.json` (the example state file) with the
 * exact path of the problem validation must report. Unit tests check the paths; kernel tests feed each `text`
 * to `portwall apply` and check that the kernel is unchanged.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { InvalidStateError } from '../../src/model/problems.js';

/** Loose JSON shapes, so mutations can break the schema on purpose. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };
export interface ExampleState {
  networks: JsonObject[];
  security_groups: (JsonObject & { security_group_rules: JsonObject[] })[];
  ports: (JsonObject & { allowed_address_pairs: JsonObject[]; fixed_ips: JsonObject[] })[];
}

export const EXAMPLE_STATE_FILE = path.resolve(import.meta.dirname, '../../examples/state.json');
const exampleText = readFileSync(EXAMPLE_STATE_FILE, 'utf8');

/** A fresh copy of the example state, safe to mutate. */
export function exampleState(): ExampleState {
  return JSON.parse(exampleText) as ExampleState;
}

/** The InvalidStateError that `run` throws (any other outcome fails the test). */
export function rejection(run: () => unknown): InvalidStateError {
  try {
    run();
  } catch (e) {
    if (e instanceof InvalidStateError) return e;
    throw e;
  }
  throw new Error('expected the state to be rejected');
}

/** One kind of mistake. */
export interface BadState {
  /** What is wrong, in words (unique across the table). */
  kind: string;
  /** The state file's text. */
  text: string;
  /** The paths of every problem validation reports, in order; the first is the error's `field`. */
  paths: string[];
  /** Matches the first problem's message. */
  message: RegExp;
}

const NET = 'networks[0] (net-a)';
const SG = 'security_groups[0] (sg-web)';
const R1 = `${SG}.security_group_rules[0] (r1)`;
const R2 = `${SG}.security_group_rules[1] (r2)`;
const PORT = 'ports[0] (tap6e3f2eda-32)';

const routedNet = (id: string, zone: number): JsonObject => ({ id, zone, mode: 'routed' });
/** A second port on net-a, distinct from the first in everything that must be unique. */
const port2 = (over: JsonObject = {}): ExampleState['ports'][number] => ({
  id: 'port-2', network_id: 'net-a', device: 'tap2', mac_address: 'fa:16:3e:00:00:02',
  fixed_ips: [{ ip_address: '192.0.2.15' }], security_groups: ['sg-web'], allowed_address_pairs: [], ...over,
});

/** A floating IP of the example's port (192.0.2.14) unless `over` says otherwise. */
const fip = (id: string, address: string, over: JsonObject = {}): JsonObject => ({
  id, floating_ip_address: address, port_id: '6e3f2eda-3230-45e8-9be5-f382af5b83ea', fixed_ip_address: '192.0.2.14', ...over,
});
const NAT: JsonObject = { fixed_range: ['192.0.2.0/24'], routing_source_ip: '203.0.113.1', dmz_cidr: ['198.51.100.0/24'], metadata_host: '192.0.2.250', metadata_port: 8775 };

function bad(kind: string, paths: string | string[], message: RegExp, mutate: (s: ExampleState) => unknown): BadState {
  const s = exampleState();
  const replaced = mutate(s);
  const doc = replaced === undefined ? s : replaced;
  return { kind, text: `${JSON.stringify(doc, null, 2)}\n`, paths: typeof paths === 'string' ? [paths] : paths, message };
}

const rule = (s: ExampleState, k: number): JsonObject => s.security_groups[0]!.security_group_rules[k]!;
const port = (s: ExampleState): ExampleState['ports'][number] => s.ports[0]!;

/** At least forty distinct kinds of mistake, each with the exact path validation must name. */
export const BAD_STATES: readonly BadState[] = [
  // The document
  { kind: 'not JSON at all', text: '{ "networks": [ }\n', paths: ['(root)'], message: /not valid JSON at line 1, column 17: unexpected "}", expected a value/ },
  bad('top level is an array', '(root)', /must be an object/, () => []),
  bad('networks missing', 'networks', /is required/, (s) => ({ ports: s.ports })),
  bad('security_groups not an array', 'security_groups', /must be an array/, () => ({ networks: [], security_groups: {} })),
  // Networks
  // The port's network_id no longer names a network: that is a second, true problem.
  bad('network id empty', ['networks[0].id', `${PORT}.network_id`], /must not be empty/, (s) => void (s.networks[0]!.id = '')),
  bad('zone a string', `${NET}.zone`, /must be an integer/, (s) => void (s.networks[0]!.zone = '101')),
  bad('zone 0', `${NET}.zone`, /at least 1/, (s) => void (s.networks[0]!.zone = 0)),
  bad('zone above 65535', `${NET}.zone`, /at most 65535/, (s) => void (s.networks[0]!.zone = 65536)),
  bad('unknown mode', `${NET}.mode`, /"bridged" or "routed"/, (s) => void (s.networks[0]!.mode = 'nat')),
  bad('duplicate network id', 'networks[1] (net-a).id', /duplicate network id/, (s) => void s.networks.push(routedNet('net-a', 102))),
  bad('two networks share a zone', 'networks[1] (net-b).zone', /also networks\[0\] \(net-a\)'s/, (s) =>
    void s.networks.push(routedNet('net-b', 101))),
  bad('bridged network without bridge', `${NET}.bridge`, /required for a bridged/, (s) => void delete s.networks[0]!.bridge),
  bad('routed network with a bridge', `${NET}.bridge`, /routed network has no bridge/, (s) => void (s.networks[0]!.mode = 'routed')),
  bad('bridge name over 15 bytes', `${NET}.bridge`, /at most 15/, (s) => void (s.networks[0]!.bridge = 'br-0123456789abc')),
  bad('bridge name with a slash', `${NET}.bridge`, /not a legal device name/, (s) => void (s.networks[0]!.bridge = 'br/a')),
  bad('bridge is the loopback device', `${NET}.bridge`, /loopback device/, (s) => void (s.networks[0]!.bridge = 'lo')),
  bad('two networks share a bridge', 'networks[1] (net-b).bridge', /one bridge is one network/, (s) =>
    void s.networks.push({ id: 'net-b', zone: 102, mode: 'bridged', bridge: 'br-a' })),
  bad('DHCP server not an address', `${NET}.dhcp_servers[0]`, /not an IP address/, (s) => void (s.networks[0]!.dhcp_servers = ['dhcp'])),
  bad('DHCP server given as a prefix', `${NET}.dhcp_servers[0]`, /not an IP address/, (s) =>
    void (s.networks[0]!.dhcp_servers = ['192.0.2.0/24'])),
  bad('IPv4 router', `${NET}.routers[0]`, /IPv6 router advertisements/, (s) => void (s.networks[0]!.routers = ['192.0.2.1'])),
  bad('multicast router', `${NET}.routers[0]`, /multicast/, (s) => void (s.networks[0]!.routers = ['ff02::1'])),
  bad('router that is not link-local', `${NET}.routers[0]`, /link-local/, (s) => void (s.networks[0]!.routers = ['2001:db8::1'])),
  bad('unknown flavour', `${NET}.flavor`, /"neutron" or "cloudstack"/, (s) => void (s.networks[0]!.flavor = 'openstack')),
  bad('l2 guard not a boolean', `${NET}.l2_guards.arp`, /boolean/, (s) => void (s.networks[0]!.l2_guards = { arp: 'yes' })),
  bad('misspelt l2 guard', `${NET}.l2_guards.dhcp_snoop`, /not a field of this object/, (s) =>
    void (s.networks[0]!.l2_guards = { dhcp_snoop: true })),
  bad('l2 guards on a routed network', 'networks[1] (net-b).l2_guards', /need a bridged network/, (s) =>
    void s.networks.push({ ...routedNet('net-b', 102), l2_guards: { arp: true } })),
  // Security groups and rules
  bad('group takes the reserved CloudStack id', 'security_groups[1] (@cloudstack).id', /reserved/, (s) =>
    void s.security_groups.push({ id: '@cloudstack', security_group_rules: [] })),
  bad('duplicate group id', 'security_groups[1] (sg-web).id', /duplicate security group id/, (s) =>
    void s.security_groups.push({ id: 'sg-web', security_group_rules: [] })),
  bad('duplicate rule id across groups', 'security_groups[1] (sg-db).security_group_rules[0] (r1).id', /duplicate rule id/, (s) =>
    void s.security_groups.push({ id: 'sg-db', security_group_rules: [{ id: 'r1', direction: 'egress', ethertype: 'IPv6' }] })),
  bad('unknown direction', `${R1}.direction`, /"ingress" or "egress"/, (s) => void (rule(s, 0).direction = 'in')),
  bad('ethertype in lowercase', `${R1}.ethertype`, /"IPv4" or "IPv6"/, (s) => void (rule(s, 0).ethertype = 'ipv4')),
  bad('unknown protocol name', `${R1}.protocol`, /unknown protocol "tcpp"/, (s) => void (rule(s, 0).protocol = 'tcpp')),
  bad('protocol number above 255', `${R1}.protocol`, /outside 0-255/, (s) => void (rule(s, 0).protocol = 256)),
  bad('protocol a fraction', `${R1}.protocol`, /a string, an integer or null/, (s) => void (rule(s, 0).protocol = 6.5)),
  bad('port range on a protocol without ports', `${R1}.port_range_min`, /has no ports/, (s) => void (rule(s, 0).protocol = 'gre')),
  bad('port range with any protocol', `${R1}.port_range_min`, /needs a protocol/, (s) => void (rule(s, 0).protocol = null)),
  bad('port range min above max', `${R1}.port_range_min`, /greater than port_range_max/, (s) => void (rule(s, 0).port_range_min = 90)),
  bad('port 0', `${R1}.port_range_min`, /outside 1-65535/, (s) => void (rule(s, 0).port_range_min = 0)),
  bad('port above 65535', `${R1}.port_range_max`, /outside 1-65535/, (s) => void (rule(s, 0).port_range_max = 65536)),
  bad('port range max without min', `${R1}.port_range_min`, /required when port_range_max/, (s) => void (rule(s, 0).port_range_min = null)),
  bad('port range a string', `${R1}.port_range_min`, /an integer or null/, (s) => void (rule(s, 0).port_range_min = '80')),
  bad('ICMP type above 255', `${R1}.port_range_min`, /ICMP type 256/, (s) =>
    void Object.assign(rule(s, 0), { protocol: 'icmp', port_range_min: 256, port_range_max: null })),
  bad('ICMP code without type', `${R1}.port_range_max`, /needs an ICMP type/, (s) =>
    void Object.assign(rule(s, 0), { protocol: 'icmp', port_range_min: null, port_range_max: 0 })),
  bad('ICMP code above 255', `${R1}.port_range_max`, /ICMP code 300/, (s) =>
    void Object.assign(rule(s, 0), { protocol: 'icmp', port_range_min: 3, port_range_max: 300 })),
  bad('ICMPv6 in an IPv4 rule', `${R1}.protocol`, /only in IPv6/, (s) =>
    void Object.assign(rule(s, 0), { protocol: 'ipv6-icmp', port_range_min: null, port_range_max: null })),
  bad('remote prefix and remote group both', `${R2}.remote_group_id`, /exclusive/, (s) =>
    void (rule(s, 1).remote_ip_prefix = '198.51.100.0/24')),
  bad('remote prefix length too long', `${R1}.remote_ip_prefix`, /not an IP prefix/, (s) =>
    void (rule(s, 0).remote_ip_prefix = '198.51.100.0/33')),
  bad('remote prefix truncated', `${R1}.remote_ip_prefix`, /not an IP prefix/, (s) => void (rule(s, 0).remote_ip_prefix = '198.51.100')),
  bad('remote prefix of the other family', `${R1}.remote_ip_prefix`, /is IPv6, but ethertype is IPv4/, (s) =>
    void (rule(s, 0).remote_ip_prefix = '2001:db8::/32')),
  bad('unknown remote group', `${R2}.remote_group_id`, /unknown security group "sg-nope"/, (s) =>
    void (rule(s, 1).remote_group_id = 'sg-nope')),
  bad('one rule twice in a group, spelt two ways', `${SG}.security_group_rules[2] (r3)`, /same rule as .*\(r1\)/, (s) =>
    void s.security_groups[0]!.security_group_rules.push({
      ...rule(s, 0), id: 'r3', protocol: '6', port_range_max: null, remote_ip_prefix: '198.51.100.77/24',
    })),
  bad('rule filed under another group', `${R1}.security_group_id`, /not the enclosing group/, (s) =>
    void (rule(s, 0).security_group_id = 'sg-other')),
  bad('remote address group', `${R1}.remote_address_group_id`, /not supported/, (s) =>
    void (rule(s, 0).remote_address_group_id = 'ag-1')),
  // Ports
  bad('duplicate port id', 'ports[1] (tap2).id', /duplicate port id/, (s) => void s.ports.push(port2({ id: port(s).id! }))),
  bad('duplicate device', 'ports[1] (tap6e3f2eda-32).device', /also ports\[0\]/, (s) =>
    void s.ports.push(port2({ device: 'tap6e3f2eda-32' }))),
  bad('device over 15 bytes (seed 001)', 'ports[0] (tap6e3f2eda-3230-45e8-9be5-f382af5b83ea).device', /39 bytes/, (s) =>
    void (port(s).device = 'tap6e3f2eda-3230-45e8-9be5-f382af5b83ea')),
  bad('device with a space', 'ports[0] ("tap 1").device', /not a legal device name/, (s) => void (port(s).device = 'tap 1')),
  bad('device with a colon', 'ports[0] (tap:1).device', /not a legal device name/, (s) => void (port(s).device = 'tap:1')),
  bad('device "."', 'ports[0] (.).device', /not a legal device name/, (s) => void (port(s).device = '.')),
  bad('device ending in + (an iptables wildcard)', 'ports[0] (tap+).device', /final "\+"/, (s) => void (port(s).device = 'tap+')),
  bad('device is the loopback device', 'ports[0] (lo).device', /loopback device/, (s) => void (port(s).device = 'lo')),
  bad('device is the bridge', 'ports[0] (br-a).device', /bridge of networks\[0\]/, (s) => void (port(s).device = 'br-a')),
  bad('device missing', 'ports[0].device', /is required/, (s) => void delete port(s).device),
  // Ids and names become element comments and device names (UTF-8, C strings): a NUL cuts them, a lone
  // surrogate comes back from the kernel as U+FFFD and never matches again.
  bad('port id with a NUL', `${PORT}.id`, /contains a NUL character/, (s) => void (port(s).id = 'port\u00001')),
  bad('port id with a lone surrogate', `${PORT}.id`, /not well-formed Unicode/, (s) => void (port(s).id = 'port-\ud800')),
  bad('device with a lone surrogate', 'ports[0] ("tap\\udfff").device', /not well-formed Unicode/, (s) => void (port(s).device = 'tap\udfff')),
  bad('rule id with a NUL', `${SG}.security_group_rules[0] ("r1\\u0000").id`, /contains a NUL character/, (s) => void (rule(s, 0).id = 'r1\u0000')),
  bad('network id with a lone surrogate', ['networks[0] ("net-\\udc00").id', `${PORT}.network_id`], /not well-formed Unicode/, (s) => void (s.networks[0]!.id = 'net-\udc00')),
  bad('unknown network', `${PORT}.network_id`, /unknown network "net-z"/, (s) => void (port(s).network_id = 'net-z')),
  bad('MAC too short', `${PORT}.mac_address`, /not a MAC address/, (s) => void (port(s).mac_address = 'fa:16:3e:f3:1e')),
  bad('multicast MAC', `${PORT}.mac_address`, /multicast/, (s) => void (port(s).mac_address = '01:00:5e:00:00:01')),
  bad('all-zero MAC', `${PORT}.mac_address`, /all-zero/, (s) => void (port(s).mac_address = '00:00:00:00:00:00')),
  bad('MAC used twice on a network', 'ports[1] (tap2).mac_address', /also ports\[0\]/, (s) =>
    void s.ports.push(port2({ mac_address: 'FA:16:3E:F3:1E:C0' }))),
  bad('fixed IP not an address', `${PORT}.fixed_ips[0].ip_address`, /not an IP address/, (s) =>
    void (port(s).fixed_ips = [{ ip_address: '192.0.2.300' }])),
  bad('fixed IP with a prefix length', `${PORT}.fixed_ips[0].ip_address`, /not an IP address/, (s) =>
    void (port(s).fixed_ips = [{ ip_address: '192.0.2.14/24' }])),
  bad('fixed IP with a zone id', `${PORT}.fixed_ips[0].ip_address`, /not an IP address/, (s) =>
    void (port(s).fixed_ips = [{ ip_address: 'fe80::1%eth0' }])),
  bad('fixed IP in IPv4 loopback', `${PORT}.fixed_ips[1].ip_address`, /"127\.1\.2\.3" is a loopback address/, (s) =>
    void port(s).fixed_ips.push({ ip_address: '127.1.2.3' })),
  bad('fixed IP the IPv6 loopback', `${PORT}.fixed_ips[0].ip_address`, /"::1" is a loopback address/, (s) =>
    void (port(s).fixed_ips = [{ ip_address: '::1' }])),
  bad('fixed IP of another port on the network', 'ports[1] (tap2).fixed_ips[0].ip_address', /also ports\[0\]/, (s) =>
    void s.ports.push(port2({ fixed_ips: [{ ip_address: '192.0.2.14' }] }))),
  bad('unknown security group', `${PORT}.security_groups[0]`, /unknown security group "sg-nope"/, (s) =>
    void (port(s).security_groups = ['sg-nope'])),
  bad('stateful and stateless groups on one port', `${PORT}.security_groups[1]`, /one port cannot mix/, (s) => {
    s.security_groups.push({ id: 'sg-raw', stateful: false, security_group_rules: [] });
    port(s).security_groups = ['sg-web', 'sg-raw'];
  }),
  bad('port security off with groups', `${PORT}.security_groups`, /port_security_enabled is false/, (s) =>
    void Object.assign(port(s), { port_security_enabled: false, allowed_address_pairs: [] })),
  bad('port security off with address pairs', `${PORT}.allowed_address_pairs`, /port_security_enabled is false/, (s) =>
    void Object.assign(port(s), { port_security_enabled: false, security_groups: [] })),
  bad('more than 10 address pairs', `${PORT}.allowed_address_pairs`, /at most 10/, (s) =>
    void (port(s).allowed_address_pairs = Array.from({ length: 11 }, (_, k) => ({ ip_address: `203.0.113.${k + 1}` })))),
  bad('address pair IP not a prefix', `${PORT}.allowed_address_pairs[0].ip_address`, /not an IP prefix/, (s) =>
    void (port(s).allowed_address_pairs[0]!.ip_address = '192.0.2.100/')),
  bad('address pair MAC malformed', `${PORT}.allowed_address_pairs[0].mac_address`, /not a MAC address/, (s) =>
    void (port(s).allowed_address_pairs[0]!.mac_address = 'fa:16:3e:00:00:0g')),
  bad('one address pair twice, spelt two ways', `${PORT}.allowed_address_pairs[1]`, /same pair as allowed_address_pairs\[0\]/, (s) =>
    void port(s).allowed_address_pairs.push({ ip_address: '192.0.2.100/32', mac_address: 'FA-16-3E-00-00-01' })),
  bad('unknown port kind', `${PORT}.kind`, /"user" or "system"/, (s) => void (port(s).kind = 'admin')),
  bad('port_security_enabled a string', `${PORT}.port_security_enabled`, /must be a boolean/, (s) =>
    void (port(s).port_security_enabled = 'yes')),
  bad('security_groups a string', `${PORT}.security_groups`, /must be an array/, (s) => void (port(s).security_groups = 'sg-web')),
  // Floating IPs and NAT
  bad('floating IP mapped to an address that is not the port\'s', 'floatingips[0] (fip-1).fixed_ip_address', /is not a fixed IP of port/, (s) =>
    ({ ...s, floatingips: [fip('fip-1', '203.0.113.50', { fixed_ip_address: '192.0.2.99' })] })),
  bad('floating IP id with a NUL', 'floatingips[0] ("fip\\u00001").id', /contains a NUL character/, (s) =>
    ({ ...s, floatingips: [fip('fip\u00001', '203.0.113.50')] })),
  bad('floating IP used twice', 'floatingips[1] (fip-2).floating_ip_address', /also floatingips\[0\] \(fip-1\)'s; a floating IP is unique/, (s) =>
    ({ ...s, ports: [...s.ports, port2()], floatingips: [fip('fip-1', '203.0.113.50'), fip('fip-2', '203.0.113.50', { port_id: 'port-2', fixed_ip_address: '192.0.2.15' })] })),
  bad('two floating IPs for one fixed IP', 'floatingips[1] (fip-2).fixed_ip_address', /already has floatingips\[0\]/, (s) =>
    ({ ...s, floatingips: [fip('fip-1', '203.0.113.50'), fip('fip-2', '203.0.113.51')] })),
  bad('two floating IPs for one fixed address, of ports in two networks', 'floatingips[1] (fip-2).fixed_ip_address',
    /"192\.0\.2\.14\/32" is also port "6e3f2eda-3230-45e8-9be5-f382af5b83ea"'s \(another network\), which has floatingips\[0\] \(fip-1\): the host's NAT maps a fixed IP to one floating IP/,
    (s) => {
      s.networks.push(routedNet('net-b', 102));
      return { ...s, ports: [...s.ports, port2({ network_id: 'net-b', fixed_ips: [{ ip_address: '192.0.2.14' }] })],
        floatingips: [fip('fip-1', '203.0.113.50'), fip('fip-2', '203.0.113.51', { port_id: 'port-2' })] };
    }),
  bad('floating IP of an unknown port', 'floatingips[0] (fip-1).port_id', /unknown port "port-9"/, (s) =>
    ({ ...s, floatingips: [fip('fip-1', '203.0.113.50', { port_id: 'port-9' })] })),
  bad('IPv4 floating IP to an IPv6 fixed IP', 'floatingips[0] (fip-1).fixed_ip_address', /no NAT between families/, (s) =>
    ({ ...s, floatingips: [fip('fip-1', '203.0.113.50', { fixed_ip_address: '2001:db8::14' })] })),
  bad('floating IP given as a prefix', 'floatingips[0] (fip-1).floating_ip_address', /not an IP address/, (s) =>
    ({ ...s, floatingips: [fip('fip-1', '203.0.113.0/24')] })),
  bad('IPv6 floating IP', 'floatingips[0] (fip-1).floating_ip_address', /is IPv6: floating IPs are IPv4/, (s) =>
    ({ ...s, floatingips: [fip('fip-1', '2001:db8::50', { fixed_ip_address: '2001:db8::14' })] })),
  bad('floating IP that is a fixed IP of a port', 'floatingips[0] (fip-1).floating_ip_address', /is a fixed IP of port "port-2"/, (s) =>
    ({ ...s, ports: [...s.ports, port2()], floatingips: [fip('fip-1', '192.0.2.15')] })),
  bad('NAT routing_source_ip IPv6', 'nat.routing_source_ip', /must be an IPv4 address/, (s) => ({ ...s, nat: { ...NAT, routing_source_ip: '2001:db8::1' } })),
  bad('NAT dmz_cidr IPv6', 'nat.dmz_cidr[0]', /is IPv6: NAT is IPv4 only/, (s) => ({ ...s, nat: { ...NAT, dmz_cidr: ['2001:db8::/64'] } })),
  bad('NAT fixed range not a prefix', 'nat.fixed_range[0]', /not an IP prefix/, (s) => ({ ...s, nat: { ...NAT, fixed_range: ['192.0.2.0/33'] } })),
  bad('NAT metadata host IPv6', 'nat.metadata_host', /must be an IPv4 address/, (s) => ({ ...s, nat: { ...NAT, metadata_host: '2001:db8::250' } })),
  bad('NAT metadata port out of range', 'nat.metadata_port', /at most 65535/, (s) => ({ ...s, nat: { ...NAT, metadata_port: 70000 } })),
];
