/**
 * The security-group benchmark's workload: a deterministic (seeded) Neutron-shaped state document.
 *
 * - Tenants of 50 ports, each its own network and conntrack zone (routed by default, or bridged).
 * - Per tenant Neutron's `default` group (ingress from its own members, egress anywhere, v4 and v6) and three
 *   app groups of 9 rules: tcp/udp ports and ranges, ICMP and ICMPv6 types, IPv4 and IPv6 prefixes, and
 *   remote-group rules (another app group, the default group).
 * - User port i has `default`, app i%3 and a third group: the global `sg-ops` for the first `sharedUsers`
 *   ports (the "group used by 1000 ports" of the group-rule case), else app (i+1)%3 for three ports in four,
 *   else none — 22 or 13 rules, ~20 on average.
 * - With `extraRules` (the memory case's "10k ports × 50 rules"), each tenant also has a `bulk` group of that many
 *   rules (tcp/udp ports from prefixes, v4 and v6) that every user port of the tenant carries.
 * - `sg-ops` admits tcp 8443 from members of `sg-clients` (v4 and v6): the "10k-member remote group
 *   referenced by 1000 ports". Its members are `members` extra ports (groups `sg-egress` + `sg-clients`) in
 *   tenants of their own; membership changes are those ports joining and leaving `sg-clients`.
 *
 * Every port is generated from (seed, kind, index) alone, so workload(100)'s ports are workload(1000)'s
 * first 100, and the ports the one-port cases add (`extraPort`) never collide with the loaded ones.
 * Addresses: ports and members in 198.18.0.0/15 (the documentation ranges hold only ~750 IPv4 hosts),
 * 2001:db8::/32 for IPv6, rule prefixes from 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32.
 */
import { mulberry32 } from '../test/helpers/prng.js';
import type { NetworkInput, PortInput, RuleInput, SecurityGroupInput, StateInput } from '../src/model/schema.js';

export type Mode = 'routed' | 'bridged';

export interface WorkloadOptions {
  /** User ports (~20 rules each). */
  ports: number;
  mode?: Mode;
  seed?: number;
  portsPerTenant?: number;
  /** The first `sharedUsers` ports carry `sg-ops` (default min(1000, ports)). */
  sharedUsers?: number;
  /** Member ports of `sg-clients` (default 0). */
  members?: number;
  /** Rules of a per-tenant `bulk` group every user port carries besides its others (default 0: no such group). */
  extraRules?: number;
}

export interface Workload {
  readonly opts: Required<WorkloadOptions>;
  readonly state: StateInput;
  /** Tenants of user ports (extra ports go into these networks). */
  readonly tenants: number;
  /** Average security-group rules per user port (counted over its groups). */
  readonly rulesPerPort: number;
  /** A port that is not in the state, for the one-port cases (r-th; distinct device, MAC and addresses). */
  extraPort(r: number, groups?: 'a' | 'b'): PortInput;
  /** `port` with a fresh IPv4 fixed IP (the r-th change). */
  withNewIp(port: PortInput, r: number): PortInput;
  /** The r-th member port (in the state) with (true) or without (false) `sg-clients`. */
  member(j: number, joined: boolean): PortInput;
  /** `sg-ops` with one extra rule (the r-th), or as loaded. */
  opsGroup(extraRule?: number): SecurityGroupInput;
  /** The state with `ports` replaced/added by id and ids in `without` removed; groups replaced by id. */
  with(change: { ports?: PortInput[]; without?: string[]; groups?: SecurityGroupInput[] }): StateInput;
}

export const OPS_GROUP = 'sg-ops';
export const CLIENTS_GROUP = 'sg-clients';
export const EGRESS_GROUP = 'sg-egress';
/** The tcp port every app group 0 admits from 198.51.100.0/24 (the datapath's client side). */
export const DATAPATH_TCP_PORT = 80;
export const DATAPATH_CLIENT_PREFIX = '198.51.100.0/24';

// Regions of 198.18.0.0/15 (offsets from 198.18.0.0): user and extra ports, members, changed IPs, VIPs,
// DHCP servers. Each region's size bounds its index (checked in workload()).
const REGION = { user: 0x1, member: 0x10001, changed: 0x18001, vip: 0x1e000, dhcp: 0x1f000 } as const;
const MAX_USER_SLOTS = 0xfff0;
const MAX_MEMBERS = 0x7ff0;

export function workload(options: WorkloadOptions): Workload {
  const opts: Required<WorkloadOptions> = {
    mode: 'routed', seed: 1, portsPerTenant: 50, sharedUsers: Math.min(1000, options.ports), members: 0, extraRules: 0, ...options,
  };
  if (opts.ports + 1000 > MAX_USER_SLOTS) throw new Error(`at most ${MAX_USER_SLOTS - 1000} ports`);
  if (opts.members > MAX_MEMBERS) throw new Error(`at most ${MAX_MEMBERS} members`);
  const per = opts.portsPerTenant;
  const tenants = Math.max(1, Math.ceil(opts.ports / per));
  const memberTenants = Math.ceil(opts.members / per);
  const seedOf = (kind: string, i: number) => fnv1a(`${opts.seed}/${kind}/${i}`);

  const networks: NetworkInput[] = [];
  for (let t = 0; t < tenants; t++) networks.push(network(opts.mode, netId('t', t), 1000 + t, t));
  for (let t = 0; t < memberTenants; t++) networks.push(network(opts.mode, netId('m', t), 20_000 + t, 0x800 + t));

  const groups: SecurityGroupInput[] = [];
  for (let t = 0; t < tenants; t++) {
    groups.push(defaultGroup(t));
    for (let k = 0; k < 3; k++) groups.push(appGroup(t, k, rng(seedOf('group', t * 3 + k))));
    if (opts.extraRules > 0) groups.push(bulkGroup(t, opts.extraRules, rng(seedOf('bulk', t))));
  }
  const ops = opsGroup(rng(seedOf('ops', 0)));
  groups.push(ops, { id: CLIENTS_GROUP, stateful: true, security_group_rules: [] }, egressGroup());

  const userPort = (slot: number, tenant: number, groupIds: string[]): PortInput => {
    const r = rng(seedOf('port', slot));
    const id = uuid(r);
    const p: PortInput = {
      id, network_id: netId('t', tenant), device: `tap${id.slice(0, 11)}`, mac_address: mac(slot),
      fixed_ips: [{ ip_address: v4(REGION.user + slot) }, { ip_address: `2001:db8:1:${tenant.toString(16)}::${(slot + 1).toString(16)}` }],
      security_groups: groupIds, port_security_enabled: true,
    };
    // A VIP (keepalived-style address pair) on every 20th port.
    if (slot % 20 === 7) p.allowed_address_pairs = [{ ip_address: v4(REGION.vip + Math.floor(slot / 20)) }];
    return p;
  };
  const groupsOf = (i: number, t: number): string[] => {
    const g = [groupId(t, 'default'), groupId(t, `app${i % 3}`)];
    if (i < opts.sharedUsers) g.push(OPS_GROUP);
    else if (i % 4 !== 3) g.push(groupId(t, `app${(i + 1) % 3}`));
    if (opts.extraRules > 0) g.push(groupId(t, 'bulk'));
    return g;
  };
  const memberPort = (j: number, joined: boolean): PortInput => {
    const r = rng(seedOf('member', j));
    const id = uuid(r);
    const t = Math.floor(j / per);
    return {
      id, network_id: netId('m', t), device: `tap${id.slice(0, 11)}`, mac_address: mac(0x800000 + j),
      fixed_ips: [{ ip_address: v4(REGION.member + j) }, { ip_address: `2001:db8:2:${t.toString(16)}::${(j + 1).toString(16)}` }],
      security_groups: joined ? [EGRESS_GROUP, CLIENTS_GROUP] : [EGRESS_GROUP], port_security_enabled: true,
    };
  };

  const ports: PortInput[] = [];
  for (let i = 0; i < opts.ports; i++) ports.push(userPort(i, Math.floor(i / per), groupsOf(i, Math.floor(i / per))));
  for (let j = 0; j < opts.members; j++) ports.push(memberPort(j, true));
  assertUnique(ports);

  const ruleCount = new Map(groups.map((g) => [g.id, g.security_group_rules?.length ?? 0]));
  const userPorts = ports.slice(0, opts.ports);
  const rulesPerPort = userPorts.reduce((n, p) => n + (p.security_groups ?? []).reduce((m, g) => m + (ruleCount.get(g) ?? 0), 0), 0) / Math.max(1, userPorts.length);
  const state: StateInput = { networks, security_groups: groups, ports };

  return {
    opts, state, tenants, rulesPerPort,
    extraPort(r, which = 'a') {
      if (r < 0 || r >= 1000) throw new Error('extra ports are numbered 0-999');
      const t = r % tenants;
      // 'a': a typical three-group port; 'b': its groups changed (one app group swapped, one dropped).
      const g = which === 'a' ? [groupId(t, 'default'), groupId(t, 'app0'), groupId(t, 'app1')] : [groupId(t, 'default'), groupId(t, 'app2')];
      return userPort(opts.ports + r, t, g);
    },
    withNewIp(port, r) {
      if (r < 0 || r >= 0x6000) throw new Error('changed IPs are numbered 0-24575');
      const [, ...rest] = port.fixed_ips ?? [];
      return { ...port, fixed_ips: [{ ip_address: v4(REGION.changed + r) }, ...rest] };
    },
    member(j, joined) {
      if (j < 0 || j >= opts.members) throw new Error(`member ${j} of ${opts.members}`);
      return memberPort(j, joined);
    },
    opsGroup(extra) {
      if (extra === undefined) return ops;
      const rule: RuleInput = {
        id: `${OPS_GROUP}-extra-${extra}`, direction: 'ingress', ethertype: extra % 2 ? 'IPv6' : 'IPv4', protocol: 'tcp',
        port_range_min: 10_000 + extra, port_range_max: 10_000 + extra,
        remote_ip_prefix: extra % 2 ? '2001:db8:fe::/48' : '203.0.113.128/25',
      };
      return { ...ops, security_group_rules: [...(ops.security_group_rules ?? []), rule] };
    },
    with(change) {
      const drop = new Set([...(change.without ?? []), ...(change.ports ?? []).map((p) => p.id)]);
      const replaced = new Map((change.groups ?? []).map((g) => [g.id, g]));
      const kept = ports.map((p) => (drop.has(p.id) ? (change.ports ?? []).find((q) => q.id === p.id) : p)).filter((p) => p !== undefined);
      const added = (change.ports ?? []).filter((p) => !ports.some((q) => q.id === p.id));
      return { networks, security_groups: groups.map((g) => replaced.get(g.id) ?? g), ports: [...kept, ...added] };
    },
  };
}

function network(mode: Mode, id: string, zone: number, n: number): NetworkInput {
  return {
    id, zone, mode, ...(mode === 'bridged' ? { bridge: `brq${id.slice(0, 11)}` } : {}),
    dhcp_servers: [v4(REGION.dhcp + n)], routers: ['fe80::1'],
  };
}

const netId = (kind: 't' | 'm', t: number) => `net-${kind}${String(t).padStart(4, '0')}`;
const groupId = (t: number, name: string) => `t${String(t).padStart(4, '0')}-${name}`;

function defaultGroup(t: number): SecurityGroupInput {
  const id = groupId(t, 'default');
  const rules: RuleInput[] = [
    { id: `${id}-in4`, direction: 'ingress', ethertype: 'IPv4', remote_group_id: id },
    { id: `${id}-in6`, direction: 'ingress', ethertype: 'IPv6', remote_group_id: id },
    { id: `${id}-out4`, direction: 'egress', ethertype: 'IPv4' },
    { id: `${id}-out6`, direction: 'egress', ethertype: 'IPv6' },
  ];
  return { id, stateful: true, security_group_rules: rules };
}

/** Nine rules of the usual shapes; rule 0 of app0 admits the datapath's client (tcp 80 from 198.51.100.0/24). */
function appGroup(t: number, k: number, r: Rng): SecurityGroupInput {
  const id = groupId(t, `app${k}`);
  const lo = 1024 + r.int(60_000);
  const ulo = 1024 + r.int(60_000);
  const rules: Omit<RuleInput, 'id'>[] = [
    { direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: [DATAPATH_TCP_PORT, 443, 8080][k], port_range_max: [DATAPATH_TCP_PORT, 443, 8080][k], remote_ip_prefix: DATAPATH_CLIENT_PREFIX },
    { direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: lo, port_range_max: lo + r.int(100), remote_ip_prefix: prefix4(r) },
    { direction: 'ingress', ethertype: 'IPv4', protocol: 'udp', port_range_min: ulo, port_range_max: ulo + r.int(20), remote_ip_prefix: prefix4(r) },
    { direction: 'ingress', ethertype: 'IPv4', protocol: 'icmp', port_range_min: 8, ...(r.int(2) ? { remote_ip_prefix: prefix4(r) } : {}) },
    { direction: 'ingress', ethertype: 'IPv6', protocol: 'tcp', port_range_min: 22, port_range_max: 22, remote_ip_prefix: prefix6(r) },
    { direction: 'ingress', ethertype: 'IPv6', protocol: 'ipv6-icmp', port_range_min: 128 },
    { direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 5432 + k, port_range_max: 5432 + k, remote_group_id: groupId(t, `app${(k + 1) % 3}`) },
    { direction: 'egress', ethertype: 'IPv4', protocol: 'udp', port_range_min: 53, port_range_max: 53, remote_ip_prefix: prefix4(r) },
    { direction: 'ingress', ethertype: 'IPv6', protocol: 'udp', port_range_min: 4789, port_range_max: 4799, remote_group_id: groupId(t, 'default') },
  ];
  return { id, stateful: true, security_group_rules: rules.map((rule, n) => ({ ...rule, id: `${id}-r${n}` })) };
}

/** `n` ingress/egress port rules from prefixes (the memory case's wide rule sets), a tenant's own. */
function bulkGroup(t: number, n: number, r: Rng): SecurityGroupInput {
  const id = groupId(t, 'bulk');
  const rules: RuleInput[] = [];
  for (let k = 0; k < n; k++) {
    const v6 = k % 4 === 3;
    const lo = 1024 + r.int(60_000);
    rules.push({
      id: `${id}-r${k}`, direction: k % 5 === 4 ? 'egress' : 'ingress', ethertype: v6 ? 'IPv6' : 'IPv4', protocol: k % 3 === 2 ? 'udp' : 'tcp',
      port_range_min: lo, port_range_max: lo + r.int(4), remote_ip_prefix: v6 ? prefix6(r) : prefix4(r),
    });
  }
  return { id, stateful: true, security_group_rules: rules };
}

/** Operations access shared by many ports: ssh/monitoring from admin prefixes, tcp 8443 from `sg-clients`. */
function opsGroup(r: Rng): SecurityGroupInput {
  const rules: Omit<RuleInput, 'id'>[] = [
    { direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 22, port_range_max: 22, remote_ip_prefix: '192.0.2.0/26' },
    { direction: 'ingress', ethertype: 'IPv6', protocol: 'tcp', port_range_min: 22, port_range_max: 22, remote_ip_prefix: '2001:db8:ad::/48' },
    { direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 9100, port_range_max: 9110, remote_ip_prefix: prefix4(r) },
    { direction: 'ingress', ethertype: 'IPv4', protocol: 'udp', port_range_min: 161, port_range_max: 162, remote_ip_prefix: prefix4(r) },
    { direction: 'ingress', ethertype: 'IPv4', protocol: 'icmp', remote_ip_prefix: '192.0.2.0/26' },
    { direction: 'ingress', ethertype: 'IPv6', protocol: 'ipv6-icmp', remote_ip_prefix: '2001:db8:ad::/48' },
    { direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 8443, port_range_max: 8443, remote_group_id: CLIENTS_GROUP },
    { direction: 'ingress', ethertype: 'IPv6', protocol: 'tcp', port_range_min: 8443, port_range_max: 8443, remote_group_id: CLIENTS_GROUP },
    { direction: 'egress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 443, port_range_max: 443 },
  ];
  return { id: OPS_GROUP, stateful: true, security_group_rules: rules.map((rule, n) => ({ ...rule, id: `${OPS_GROUP}-r${n}` })) };
}

function egressGroup(): SecurityGroupInput {
  return {
    id: EGRESS_GROUP, stateful: true, security_group_rules: [
      { id: `${EGRESS_GROUP}-out4`, direction: 'egress', ethertype: 'IPv4' },
      { id: `${EGRESS_GROUP}-out6`, direction: 'egress', ethertype: 'IPv6' },
    ],
  };
}

/** The n-th address of 198.18.0.0/15. */
function v4(n: number): string {
  return `198.${18 + (n >> 16)}.${(n >> 8) & 0xff}.${n & 0xff}`;
}

/** A canonical IPv4 prefix (/24-/32) inside one of the three documentation /24s. */
function prefix4(r: Rng): string {
  const base = ['192.0.2', '198.51.100', '203.0.113'][r.int(3)]!;
  const len = 24 + r.int(9);
  const host = r.int(256) & (0xff << (32 - len)) & 0xff;
  return `${base}.${host}/${len}`;
}

/** A canonical /48 or /64 inside 2001:db8::/32. */
function prefix6(r: Rng): string {
  const a = r.int(0x10000).toString(16);
  return r.int(2) ? `2001:db8:${a}::/48` : `2001:db8:${a}:${r.int(0x10000).toString(16)}::/64`;
}

function mac(n: number): string {
  return `fa:16:3e:${[(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;
}

/** A version-4-shaped UUID from the port's own generator (Neutron port ids are UUIDs; devices take 11 chars). */
function uuid(r: Rng): string {
  const hex = (n: number) => Array.from({ length: n }, () => r.int(16).toString(16)).join('');
  return `${hex(8)}-${hex(4)}-4${hex(3)}-${'89ab'[r.int(4)]}${hex(3)}-${hex(12)}`;
}

/** Devices and ids come from 40 random bits each: a clash is unlikely, but it would make the state invalid. */
function assertUnique(ports: PortInput[]): void {
  const seen = new Set<string>();
  for (const p of ports) {
    for (const key of [`id ${p.id}`, `dev ${p.device}`]) {
      if (seen.has(key)) throw new Error(`workload: duplicate ${key}; choose another --seed`);
      seen.add(key);
    }
  }
}

interface Rng { int(n: number): number }

/** A seeded generator of integers below n. */
function rng(seed: number): Rng {
  const next = mulberry32(seed);
  return { int: (n) => Math.floor(next() * n) };
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
