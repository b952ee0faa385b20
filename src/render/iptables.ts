/**
 * Neutron-style `iptables-restore` / `ip6tables-restore` / `ipset restore` input, rendered from the compiled
 * policy. portwall itself programs nftables; this text serves hosts whose tools still read iptables, a
 * migration away from Neutron's driver (docs/requirements.md, "Remote groups as ipsets"), and the benchmark, which loads it as the competitor.
 *
 * Layout per family (seed 001's anatomy, `portwall-` instead of `neutron-openvswi-`):
 * - `*raw`: `portwall-PREROUTING` / `portwall-OUTPUT` give every port's traffic its network's conntrack zone
 *   (`-j CT --zone N`) before conntrack sees it, and untrack ports of stateless groups (`-j CT --notrack`).
 * - `*filter`: `portwall-FORWARD` sends traffic to or from each filtered port to `portwall-sg-chain`, which
 *   jumps to the port's `portwall-i-<dev>` (to the port) and `portwall-o-<dev>` (from it); `portwall-INPUT`
 *   sends traffic from a port to the host through `-o-`. `-o-` jumps to `portwall-s-<dev>`, the anti-spoof
 *   pairs. An allowed packet RETURNs from the port chains and `sg-chain` ends in ACCEPT; everything else
 *   ends in `portwall-sg-fallback` (DROP). Host-originated traffic (OUTPUT) is trusted, as in Neutron.
 *
 * Output is a function of the policy alone: ports sorted by device, rules by id, no timestamps. It replaces
 * the raw and filter tables wholesale (restore without `--noflush`), so a port that is gone leaves no chain.
 *
 * @example
 * const { iptables, ip6tables, ipsets } = renderIptables(compilePolicy(model, config));
 * // ipset restore < ipsets; iptables-restore < iptables; ip6tables-restore < ip6tables
 */
import type { CompiledRule, PolicyIR, PortPolicy } from '../compile/ir.js';
import type { IpFamily, Network, Prefix } from '../model/types.js';
import { ND_DAD, ND_IN, ND_OUT } from '../compile/layout.js';
import { longestPrefix } from '../compile/layout-units.js';
import { rangeValue } from '../compile/addr.js';
import { PortwallError } from '../errors.js';
import { CHAIN_PREFIX, NameClaims, type PortChainKind, commentMatch, deviceArg, memberSetName, portChain } from './iptables-syntax.js';

/** The three restore inputs. Load `ipsets` first: the rules refer to its sets by name. */
export interface IptablesRender {
  /** `iptables-restore` input (tables raw and filter). */
  iptables: string;
  /** `ip6tables-restore` input (tables raw and filter). */
  ip6tables: string;
  /** `ipset restore` input: one hash:net set per remote group and family in use, with its members. */
  ipsets: string;
}

const SG_CHAIN = `${CHAIN_PREFIX}sg-chain`;
const FALLBACK = `${CHAIN_PREFIX}sg-fallback`;

/** Names iptables-save prints for these protocol numbers; others are rendered as numbers. */
const PROTOCOL_NAMES: Readonly<Record<number, string>> = {
  1: 'icmp', 6: 'tcp', 17: 'udp', 33: 'dccp', 58: 'ipv6-icmp', 132: 'sctp', 136: 'udplite',
};

/** The destination-port match of each port-carrying protocol; xtables has no udplite match, multiport reads it. */
const PORT_MATCH: Readonly<Record<number, string>> = {
  6: '-m tcp --dport', 17: '-m udp --dport', 33: '-m dccp --dport', 132: '-m sctp --dport', 136: '-m multiport --dports',
};

const FAMILY = {
  4: { icmpProtocol: 1, icmp: '-p icmp -m icmp --icmp-type', dhcpClient: 68, dhcpServer: 67, any: '0.0.0.0/0' },
  6: { icmpProtocol: 58, icmp: '-p ipv6-icmp -m icmp6 --icmpv6-type', dhcpClient: 546, dhcpServer: 547, any: '::/0' },
} as const;

/**
 * ICMPv6 a port may receive (ND_IN), send (ND_OUT: never an RA, that is dropped before) and send from `::`
 * during duplicate address detection (DAD_OUT, ahead of anti-spoof): the nft layout's own lists, so both
 * renderings say one policy.
 */
const DAD_OUT = ND_DAD;
const ROUTER_ADVERTISEMENT = 134;

/**
 * Renders the compiled policy as restore input for iptables, ip6tables and ipset.
 *
 * Throws ERR_RENDER (naming the port, network or rule) for what iptables cannot express exactly: a device
 * name longer than IFNAMSIZ or ending in `+`, a port range on a protocol without ports, an ICMP match on a
 * non-ICMP protocol, or two objects whose derived names would collide.
 */
export function renderIptables(ir: PolicyIR): IptablesRender {
  const names = new NameClaims();
  const ports = [...ir.ports].sort((a, b) => compare(a.device, b.device)).map((p) => portView(p, names));
  const networks = [...ir.networks].sort((a, b) => compare(a.id, b.id));
  const setOf = (groupId: string, family: IpFamily): string =>
    names.claim(memberSetName(groupId, family), `IPv${family} members of group ${groupId}`);
  const table = (family: IpFamily): string => renderRaw(ports, networks, family) + renderFilter(ports, family, setOf);
  return { iptables: table(4), ip6tables: table(6), ipsets: renderIpsets(ir, ports, setOf) };
}

/** A port with its quoted device argument and its three chain names. */
interface PortView {
  port: PortPolicy;
  dev: string;
  bridge?: string;
  i: string;
  o: string;
  s: string;
}

function portView(port: PortPolicy, names: NameClaims): PortView {
  const owner = `port ${port.portId}`;
  const chain = (kind: PortChainKind): string => names.claim(portChain(kind, port.device), owner);
  return {
    port,
    dev: deviceArg(port.device, `ports[${port.portId}].device`),
    ...(port.bridge === undefined ? {} : { bridge: deviceArg(port.bridge, `networks[${port.networkId}].bridge`) }),
    i: chain('i'),
    o: chain('o'),
    s: chain('s'),
  };
}

/**
 * Traffic entering the host from the port. `--physdev-is-bridged` only where the bridge decides (FORWARD):
 * in INPUT or PREROUTING the packet is not (yet) bridged, and the flag would make the rule never match.
 */
function fromPort(v: PortView, bridgedOnly: boolean): string {
  if (v.port.mode === 'routed') return `-i ${v.dev}`;
  return `-m physdev --physdev-in ${v.dev}${bridgedOnly ? ' --physdev-is-bridged' : ''}`;
}

/** Traffic forwarded to the port (FORWARD only: the bridge port is known after the bridging decision). */
function toPort(v: PortView): string {
  return v.port.mode === 'routed' ? `-o ${v.dev}` : `-m physdev --physdev-out ${v.dev} --physdev-is-bridged`;
}

/** One table of a restore file: chains in declaration order, each rule once. */
class Table {
  private readonly chains = new Map<string, Set<string>>();

  constructor(private readonly name: 'raw' | 'filter', private readonly builtins: readonly string[]) {
    for (const chain of builtins) this.declare(chain);
  }

  declare(chain: string): Set<string> {
    let rules = this.chains.get(chain);
    if (!rules) this.chains.set(chain, (rules = new Set()));
    return rules;
  }

  /** Appends `spec` to `chain`. A repeat is dropped: two groups granting the same rule id is one rule. */
  add(chain: string, spec: string): void {
    this.declare(chain).add(spec);
  }

  text(): string {
    const lines = [`*${this.name}`];
    for (const chain of this.chains.keys()) {
      lines.push(this.builtins.includes(chain) ? `:${chain} ACCEPT [0:0]` : `:${chain} - [0:0]`);
    }
    for (const [chain, rules] of this.chains) for (const spec of rules) lines.push(`-A ${chain} ${spec}`);
    lines.push('COMMIT', '');
    return lines.join('\n');
  }
}

/** Our chain hooked from builtin `builtin`, created in `table`. */
function hook(table: Table, builtin: string): string {
  const chain = `${CHAIN_PREFIX}${builtin}`;
  table.add(builtin, `-j ${chain}`);
  table.declare(chain);
  return chain;
}

function renderRaw(ports: PortView[], networks: Network[], family: IpFamily): string {
  const t = new Table('raw', ['PREROUTING', 'OUTPUT']);
  const pre = hook(t, 'PREROUTING');
  const out = hook(t, 'OUTPUT');
  // Untracking comes first: CT attaches one template per packet and later CT rules leave it be.
  for (const v of ports.filter((v) => v.port.filtered && !v.port.stateful)) {
    t.add(pre, `${fromPort(v, false)} -j CT --notrack`);
    // Traffic to a port is found by address (the bridge has not chosen the port yet), scoped to the port's
    // bridge when the network names one, so that another network's port with the same address stays tracked.
    const via = (dir: '-i' | '-o'): string => (v.bridge === undefined ? '' : ` ${dir} ${v.bridge}`);
    for (const a of portAddresses(v.port, family)) {
      t.add(pre, `-d ${a}${via('-i')} -j CT --notrack`);
      if (v.port.mode === 'bridged') t.add(out, `-d ${a}${via('-o')} -j CT --notrack`);
    }
    if (v.port.mode === 'routed') t.add(out, `-o ${v.dev} -j CT --notrack`);
  }
  // Zones, as the nft layout sets them (compile/layout-zones.ts). CT attaches one template per packet and
  // later CT rules leave it be, as later `ct zone set`s do in nft: the first match wins in both, so the rules
  // come in the layout's order with the layout's matches. Bridged networks by bridge, then by the addresses
  // their ports own; routed networks lowest zone first, by device and by owned address. An address belongs to
  // the port with the longest prefix covering it (the layout's ownership, over all ports), so one address is
  // in one network. The layout's "not from a bridge" guard on address rules is implicit here: a packet from
  // a bridge already took its zone from the bridge rules, which come first. Conntrack cleanup looks for a
  // flow in the zone the nft layout gives it.
  const nets = [...networks].sort((a, b) => a.zone - b.zone || compare(a.id, b.id));
  const owned = longestPrefix(ports.map((v) => v.port), family);
  const ownedBy = (n: Network): Prefix[] => owned.filter((o) => o.port.networkId === n.id).flatMap((o) => rangePrefixes(family, o.lo, o.hi));
  const bridged = nets.filter((n) => n.mode === 'bridged' && n.bridge !== undefined);
  for (const n of bridged) {
    const bridge = deviceArg(n.bridge!, `networks[${n.id}].bridge`);
    t.add(pre, `-i ${bridge} -j CT --zone ${n.zone}`);
    t.add(out, `-o ${bridge} -j CT --zone ${n.zone}`);
  }
  for (const n of bridged) for (const a of ownedBy(n)) t.add(pre, `-d ${a} -j CT --zone ${n.zone}`);
  for (const n of nets.filter((n) => n.mode === 'routed')) {
    const own = ports.filter((v) => v.port.networkId === n.id);
    for (const v of own) t.add(pre, `-i ${v.dev} -j CT --zone ${n.zone}`);
    for (const v of own) t.add(out, `-o ${v.dev} -j CT --zone ${n.zone}`);
    for (const a of ownedBy(n)) t.add(pre, `-d ${a} -j CT --zone ${n.zone}`);
  }
  return t.text();
}

function renderFilter(ports: PortView[], family: IpFamily, setOf: SetNamer): string {
  const t = new Table('filter', ['INPUT', 'FORWARD', 'OUTPUT']);
  const input = hook(t, 'INPUT');
  const forward = hook(t, 'FORWARD');
  t.declare(SG_CHAIN);
  t.declare(FALLBACK);
  for (const v of ports.filter((v) => v.port.filtered)) {
    t.add(forward, `${toPort(v)} -j ${SG_CHAIN}`);
    t.add(forward, `${fromPort(v, true)} -j ${SG_CHAIN}`);
    t.add(input, `${fromPort(v, false)} -j ${v.o}`);
    t.add(SG_CHAIN, `${toPort(v)} -j ${v.i}`);
    t.add(SG_CHAIN, `${fromPort(v, true)} -j ${v.o}`);
    ingressChain(t, v, family, setOf);
    egressChain(t, v, family, setOf);
    spoofChain(t, v, family);
  }
  // After every filtered port: sg-chain never returns, so a flow between an unfiltered and a filtered port
  // is still judged by the filtered port's chains before these accepts can see it.
  for (const v of ports.filter((v) => !v.port.filtered)) {
    const why = commentMatch('portwall: port security disabled');
    t.add(forward, `${toPort(v)} ${why} -j ACCEPT`);
    t.add(forward, `${fromPort(v, true)} ${why} -j ACCEPT`);
  }
  t.add(SG_CHAIN, '-j ACCEPT');
  t.add(FALLBACK, `${commentMatch('portwall: default drop')} -j DROP`);
  return t.text();
}

/** Conntrack verdicts, for ports of stateful groups only (a stateless port's packets are untracked). */
function stateRules(t: Table, chain: string, v: PortView): void {
  if (!v.port.stateful) return;
  t.add(chain, '-m state --state INVALID -j DROP');
  t.add(chain, '-m state --state RELATED,ESTABLISHED -j RETURN');
}

/**
 * To the port, in the nft layout's order: ND/MLD; RAs from the network's routers, then every other RA dropped;
 * conntrack verdicts; DHCP replies from the network's servers, then every other DHCP reply dropped; the SG
 * rules. The drops come before the SG rules, so a rule such as "any ICMPv6" or "any UDP" admits no rogue
 * router or DHCP server.
 */
function ingressChain(t: Table, v: PortView, family: IpFamily, setOf: SetNamer): void {
  const f = FAMILY[family];
  guardRules(t, v, 'ingress', family);
  if (family === 6) {
    for (const type of ND_IN) t.add(v.i, `${f.icmp} ${type} -j RETURN`);
    for (const router of ofFamily(v.port.routers, family)) {
      t.add(v.i, `-s ${router} ${f.icmp} ${ROUTER_ADVERTISEMENT} ${commentMatch('portwall: RA from router')} -j RETURN`);
    }
    t.add(v.i, `${f.icmp} ${ROUTER_ADVERTISEMENT} ${commentMatch('portwall: RA from anyone else')} -j DROP`);
  }
  stateRules(t, v.i, v);
  const dhcpReply = `-p udp -m udp --sport ${f.dhcpServer} --dport ${f.dhcpClient}`;
  for (const server of ofFamily(v.port.dhcpServers, family)) {
    t.add(v.i, `-s ${server} ${dhcpReply} ${commentMatch('portwall: DHCP reply')} -j RETURN`);
  }
  t.add(v.i, `${dhcpReply} ${commentMatch('portwall: DHCP reply from anyone else')} -j DROP`);
  securityGroupRules(t, v, 'ingress', family, setOf);
  t.add(v.i, `-j ${FALLBACK}`);
}

function egressChain(t: Table, v: PortView, family: IpFamily, setOf: SetNamer): void {
  const f = FAMILY[family];
  guardRules(t, v, 'egress', family);
  if (family === 6) {
    // Any destination, as in the nft layout (`ip6 saddr :: icmpv6 type @nd_dad return`): what DAD and MLD
    // from `::` may be sent to is left to the receivers (RFC 4861 §7.1.1 has them drop an NS from `::` not
    // sent to a solicited-node address), and both renderings must pass the same packets.
    for (const type of DAD_OUT) t.add(v.o, `-s ::/128 ${f.icmp} ${type} -j RETURN`);
  }
  t.add(v.o, `-j ${v.s}`);
  // DHCP only after anti-spoof (Neutron LP 1558658); DISCOVER from 0.0.0.0 passes as an anti-spoof pair.
  t.add(v.o, `-p udp -m udp --sport ${f.dhcpClient} --dport ${f.dhcpServer} ${commentMatch('portwall: DHCP client')} -j RETURN`);
  // As in the nft layout: the 0.0.0.0 anti-spoof pair exists for DHCP DISCOVER only.
  if (family === 4) t.add(v.o, `-s 0.0.0.0/32 ${commentMatch('portwall: 0.0.0.0 is for DHCP discover only')} -j DROP`);
  t.add(v.o, `-p udp -m udp --sport ${f.dhcpServer} --dport ${f.dhcpClient} ${commentMatch('portwall: no DHCP server on a port')} -j DROP`);
  if (family === 6) {
    t.add(v.o, `${f.icmp} ${ROUTER_ADVERTISEMENT} ${commentMatch('portwall: no RA from a port')} -j DROP`);
    for (const type of ND_OUT) t.add(v.o, `${f.icmp} ${type} -j RETURN`);
  }
  stateRules(t, v.o, v);
  securityGroupRules(t, v, 'egress', family, setOf);
  t.add(v.o, `-j ${FALLBACK}`);
}

/**
 * The layer-2 guards that an IP rule can state, first in the port's chains as the bridge table's drops come
 * before the inet chains (docs/dataplane.md, "Layer-2 guards"): DHCP snooping, IPv4 broadcast and multicast
 * by destination address (DHCP excepted), IPv6. ARP operations, VLAN tags and group MACs on unicast addresses
 * need ebtables/arptables, which this rendering does not produce.
 */
function guardRules(t: Table, v: PortView, direction: 'ingress' | 'egress', family: IpFamily): void {
  const g = v.port.l2Guards;
  if (!g) return;
  const chain = direction === 'ingress' ? v.i : v.o;
  if (family === 6) {
    if (g.dropIpv6) t.add(chain, `${commentMatch('portwall: l2 guard: no IPv6')} -j DROP`);
    return;
  }
  const { dhcpServer, dhcpClient } = FAMILY[4];
  if (g.dhcpSnooping) {
    const why = commentMatch('portwall: l2 guard: DHCP snooping');
    if (direction === 'egress') {
      t.add(chain, `-p udp -m udp --sport ${dhcpServer} ${why} -j DROP`);
      t.add(chain, `-p udp -m udp --dport ${dhcpClient} ${why} -j DROP`);
    } else t.add(chain, `-p udp -m udp --dport ${dhcpServer} ${why} -j DROP`);
  }
  if (g.broadcast) {
    const why = commentMatch('portwall: l2 guard: IPv4 broadcast and multicast');
    for (const dst of ['255.255.255.255/32', '224.0.0.0/4']) {
      t.add(chain, `-d ${dst} ! -p udp ${why} -j DROP`);
      t.add(chain, `-d ${dst} -p udp -m multiport ! --dports ${dhcpServer},${dhcpClient} ${why} -j DROP`);
    }
  }
}

/** Source address and MAC must form one of the port's pairs (fixed IPs, address pairs, link-local, DHCP). */
function spoofChain(t: Table, v: PortView, family: IpFamily): void {
  const pairs = v.port.spoof
    .filter((p) => p.family === family)
    .map((p) => `${p.prefix === FAMILY[family].any ? '' : `-s ${p.prefix} `}-m mac --mac-source ${p.mac} -j RETURN`)
    .sort(compare);
  t.declare(v.s);
  for (const spec of pairs) t.add(v.s, spec);
  t.add(v.s, `${commentMatch('portwall: not an address pair of the port')} -j DROP`);
}

type SetNamer = (groupId: string, family: IpFamily) => string;

function securityGroupRules(t: Table, v: PortView, direction: 'ingress' | 'egress', family: IpFamily, setOf: SetNamer): void {
  const chain = direction === 'ingress' ? v.i : v.o;
  // By id, then by text: one id compiled into several rules still comes out in one order.
  const specs = v.port.rules
    .filter((r) => r.direction === direction && r.family === family)
    .map((r) => ({ id: r.ruleId, spec: ruleSpec(r, family, setOf) }))
    .sort((a, b) => compare(a.id, b.id) || compare(a.spec, b.spec));
  for (const { spec } of specs) t.add(chain, spec);
}

/** One security-group rule as iptables-save would print it, ending in RETURN and carrying its id. */
function ruleSpec(r: CompiledRule, family: IpFamily, setOf: SetNamer): string {
  const field = (name: string): string => `security_group_rules[${r.ruleId}].${name}`;
  // The remote is the source of what comes in and the destination of what goes out.
  const [addr, dir] = r.direction === 'ingress' ? ['-s', 'src'] : ['-d', 'dst'];
  const parts: string[] = [];
  if (r.remote.kind === 'prefix' && r.remote.prefix !== FAMILY[family].any) parts.push(`${addr} ${r.remote.prefix}`);
  if (r.icmp !== undefined) {
    if (r.protocol !== FAMILY[family].icmpProtocol) throw refused(field('protocol'), r, 'an ICMP type/code needs the ICMP protocol of its family');
    const { type, code } = r.icmp;
    parts.push(`${FAMILY[family].icmp} ${type}${code === undefined ? '' : `/${code}`}`);
  } else if (r.protocol !== undefined) {
    parts.push(`-p ${PROTOCOL_NAMES[r.protocol] ?? r.protocol}`);
  }
  if (r.ports !== undefined) {
    const match = r.protocol === undefined ? undefined : PORT_MATCH[r.protocol];
    if (match === undefined) throw refused(field('port_range_min'), r, 'a port range needs tcp, udp, dccp, sctp or udplite');
    parts.push(`${match} ${r.ports.min === r.ports.max ? r.ports.min : `${r.ports.min}:${r.ports.max}`}`);
  }
  if (r.remote.kind === 'group') parts.push(`-m set --match-set ${setOf(r.remote.groupId, family)} ${dir}`);
  parts.push(commentMatch(r.ruleId), '-j RETURN');
  return parts.join(' ');
}

function refused(field: string, rule: CompiledRule, why: string): PortwallError {
  return new PortwallError('ERR_RENDER', `${field}: ${why}`, { field, object: rule });
}

/**
 * `ipset restore` input: every member set a rule refers to (empty ones too, or the rules would not load),
 * as hash:net (members may be address-pair prefixes), members in `ipset save` spelling.
 */
function renderIpsets(ir: PolicyIR, ports: PortView[], setOf: SetNamer): string {
  const sets = new Map<string, { family: IpFamily; members: Set<string> }>();
  const set = (groupId: string, family: IpFamily) => {
    const name = setOf(groupId, family);
    let s = sets.get(name);
    if (!s) sets.set(name, (s = { family, members: new Set() }));
    return s;
  };
  for (const g of ir.members) {
    const s = set(g.groupId, g.family);
    for (const p of g.prefixes) s.members.add(p.replace(g.family === 4 ? /\/32$/ : /\/128$/, ''));
  }
  for (const v of ports.filter((v) => v.port.filtered)) {
    for (const r of v.port.rules) if (r.remote.kind === 'group') set(r.remote.groupId, r.family);
  }
  const lines: string[] = [];
  for (const name of [...sets.keys()].sort(compare)) {
    const { family, members } = sets.get(name)!;
    // maxelem grows with the group so that a large one loads; 65536 is ipset's default.
    const maxelem = Math.max(65536, members.size);
    lines.push(`create ${name} hash:net family ${family === 4 ? 'inet' : 'inet6'} hashsize 1024 maxelem ${maxelem}`);
    for (const m of [...members].sort(compare)) lines.push(`add ${name} ${m}`);
  }
  return lines.length ? `${lines.join('\n')}\n` : '';
}

/**
 * Addresses traffic to the port is sent to: fixed IPs and anti-spoof prefixes (address pairs, link-local),
 * never /0 or 0.0.0.0 — the same list as the nft layout's zone and stateless sets (compile/layout-ports.ts).
 */
function portAddresses(port: PortPolicy, family: IpFamily): Prefix[] {
  const all = [...port.fixedIps, ...port.spoof.map((p) => p.prefix)].filter(
    (p) => familyOf(p) === family && !p.endsWith('/0') && p !== '0.0.0.0/32',
  );
  return [...new Set(all)].sort(compare);
}

/** The CIDR prefixes that exactly cover [lo, hi] (iptables' `-d` takes prefixes, the layout's sets ranges). */
function rangePrefixes(family: IpFamily, lo: bigint, hi: bigint): Prefix[] {
  const bits = family === 4 ? 32 : 128;
  const out: Prefix[] = [];
  while (lo <= hi) {
    // The largest aligned block starting at lo that ends within hi.
    let len = bits;
    while (len > 0) {
      const size = 1n << BigInt(bits - len + 1);
      if (lo % size !== 0n || lo + size - 1n > hi) break;
      len--;
    }
    out.push(`${rangeValue(family, lo, lo)}/${len}`);
    lo += 1n << BigInt(bits - len);
  }
  return out;
}

function ofFamily(prefixes: Prefix[], family: IpFamily): Prefix[] {
  return prefixes.filter((p) => familyOf(p) === family);
}

function familyOf(prefix: Prefix): IpFamily {
  return prefix.includes(':') ? 6 : 4;
}

/** Code-unit order: the same on every locale, so the output is too. */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
