/**
 * Scenario topologies for the acceptance tests (docs/requirements.md, "Acceptance scenarios"): one "compute host" namespace where portwall runs,
 * VM namespaces attached to it by veth pairs whose host ends are the ports' devices, and an "outside" client.
 *
 * - routed (Calico-like): each VM has its /32 and /128 on eth0 and a default route via 169.254.1.1 / fe80::1,
 *   which the host answers on every tap (169.254.1.1 lives on the host's loopback, fe80::1 on each tap); the host
 *   routes each VM address to its tap and the outside client sits on an uplink; forwarding is on.
 * - bridged (Neutron linuxbridge-like): one bridge per network, each VM's tap is a bridge port; the outside
 *   namespace is also a bridge port and plays the network's router (192.0.2.1, fe80::1) and DHCP server
 *   (192.0.2.254, fe80::fe), with the remote client addresses on its loopback; br_netfilter hooks are on.
 *
 * Addresses come only from the documentation ranges and link-local space (docs/requirements.md, "Testing rules"). Every process a helper
 * starts is bounded in time and killed by `destroy()`; every namespace is removed by it.
 */
import { spawn } from 'node:child_process';

import { Portwall } from '../../src/apply/portwall.js';
import { ConntrackClient } from '../../src/conntrack.js';
import type { NetworkInput, PortInput, RuleInput, SecurityGroupInput, StateInput } from '../../src/model/schema.js';
import { Netns, veth } from './netns.js';
import { Bg, LongPing, LongTcp, NETPROBE, execIn, sleep, type ArpFrameSpec, type FrameSpec, type LiveFlow } from './probes.js';

export * from './probes.js';

export type Mode = 'routed' | 'bridged';
export const MODES: readonly Mode[] = ['routed', 'bridged'];

/** Remote client addresses of the outside namespace (rule 6/7 of seed 001 need several sources). */
export const OUTSIDE = {
  a4: '198.51.100.2',
  b4: '203.0.113.2',
  c4: '203.0.113.200',
  a6: '2001:db8:ff::2',
} as const;

/** Host answer addresses in routed mode (Calico's trick: one gateway address on every tap). */
const ROUTED_GW4 = '169.254.1.1';
const GW6 = 'fe80::1';
const BRIDGED_GW4 = '192.0.2.1';
const BRIDGED_DHCP4 = '192.0.2.254';
const BRIDGED_DHCP6 = 'fe80::fe';

export interface NetSpec {
  id: string;
  zone: number;
  /** Bridged mode: the bridge device (≤ 15 bytes). */
  bridge?: string;
  /** Second octet group of the network's MACs (keeps MACs unique across networks). */
  macByte: number;
}

export interface Vm {
  name: string;
  ns: Netns;
  /** The port device (host end of the veth). */
  device: string;
  mac: string;
  ip4: string;
  ip6: string;
  /** The EUI-64 link-local address the kernel derives from `mac`. */
  ll6: string;
  network: NetSpec;
  /** The MAC the VM's off-link traffic goes to (routed: the host's tap; bridged: the outside's router). */
  gwMac: string;
}

/** The IPv6 link-local address (EUI-64) of a MAC. */
export function linkLocalOf(mac: string): string {
  const b = mac.split(':').map((x) => parseInt(x, 16));
  b[0] = b[0]! ^ 0x02;
  const words = [(b[0]! << 8) | b[1]!, (b[2]! << 8) | 0xff, (0xfe << 8) | b[3]!, (b[4]! << 8) | b[5]!];
  return `fe80::${words.map((w) => w.toString(16)).join(':')}`;
}

// ---- processes ----

// ---- the compute host ----

export class ComputeHost {
  readonly host: Netns;
  readonly outside: Netns;
  readonly vms = new Map<string, Vm>();
  readonly networks = new Map<string, NetSpec>();
  readonly conntrack: ConntrackClient;
  private readonly procs = new Set<Bg>();
  private readonly extraNs: Netns[] = [];
  /** The outside namespace's interface and the MAC VMs see for it (bridged: it is on the bridge). */
  readonly outsideDev = 'eth0';

  /**
   * @param networks the first one is the network the outside namespace serves. Routed mode ignores
   *   `bridge`; bridged mode creates one bridge per network.
   */
  constructor(readonly mode: Mode, networks: NetSpec[]) {
    this.host = new Netns(`host-${mode[0]}`);
    try {
      this.outside = new Netns(`out-${mode[0]}`);
    } catch (e) {
      this.host.destroy();
      throw e;
    }
    this.conntrack = new ConntrackClient({ netns: this.host.name });
    try {
      for (const ns of [this.host, this.outside]) quietV6(ns);
      const h = this.host;
      h.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1', 'net.ipv4.conf.all.rp_filter=0',
        'net.ipv4.conf.default.rp_filter=0', 'net.ipv4.conf.all.send_redirects=0', 'net.ipv4.conf.default.send_redirects=0']);
      for (const n of networks) this.networks.set(n.id, n);
      if (mode === 'routed') this.buildRouted();
      else this.buildBridged(networks);
    } catch (e) {
      this.destroy();
      throw e;
    }
  }

  private buildRouted(): void {
    const h = this.host, o = this.outside;
    h.exec('ip', ['addr', 'add', `${ROUTED_GW4}/32`, 'dev', 'lo']);
    veth(h, 'uplink', o, 'eth0', {
      a: ['198.51.100.1/24', '203.0.113.1/24', '2001:db8:ff::1/64'],
      b: [`${OUTSIDE.a4}/24`, `${OUTSIDE.b4}/24`, `${OUTSIDE.c4}/24`, `${OUTSIDE.a6}/64`],
    });
    // The uplink is not under test: static neighbours keep its resolution out of the measurements.
    const hostMac = ComputeHost.macOf(h, 'uplink'), outMac = ComputeHost.macOf(o, 'eth0');
    for (const a of ['198.51.100.1', '203.0.113.1', '2001:db8:ff::1']) o.exec('ip', ['neigh', 'replace', a, 'lladdr', hostMac, 'dev', 'eth0', 'nud', 'permanent']);
    for (const a of [OUTSIDE.a4, OUTSIDE.b4, OUTSIDE.c4, OUTSIDE.a6]) h.exec('ip', ['neigh', 'replace', a, 'lladdr', outMac, 'dev', 'uplink', 'nud', 'permanent']);
    o.exec('ip', ['route', 'add', '192.0.2.0/24', 'via', '198.51.100.1']);
    o.exec('ip', ['-6', 'route', 'add', '2001:db8::/32', 'via', '2001:db8:ff::1']);
  }

  private buildBridged(networks: NetSpec[]): void {
    const h = this.host, o = this.outside;
    h.exec('sysctl', ['-qw', 'net.bridge.bridge-nf-call-iptables=1', 'net.bridge.bridge-nf-call-ip6tables=1', 'net.bridge.bridge-nf-call-arptables=0']);
    for (const n of networks) {
      if (!n.bridge) throw new Error(`bridged network ${n.id} needs a bridge`);
      h.exec('ip', ['link', 'add', n.bridge, 'type', 'bridge', 'mcast_snooping', '0', 'stp_state', '0']);
      h.exec('sysctl', ['-qw', `net.ipv6.conf.${n.bridge}.disable_ipv6=1`]);
      h.exec('ip', ['link', 'set', n.bridge, 'up']);
    }
    const first = networks[0]!;
    veth(h, 'ext-a', o, 'eth0', {
      b: [`${BRIDGED_GW4}/24`, `${BRIDGED_DHCP4}/24`, '2001:db8:a::1/64'],
    });
    h.exec('sysctl', ['-qw', 'net.ipv6.conf.ext-a.disable_ipv6=1']);
    h.exec('ip', ['link', 'set', 'ext-a', 'master', first.bridge!]);
    o.exec('ip', ['addr', 'add', `${GW6}/64`, 'dev', 'eth0', 'nodad']);
    o.exec('ip', ['addr', 'add', `${BRIDGED_DHCP6}/64`, 'dev', 'eth0', 'nodad']);
    for (const a of [OUTSIDE.a4, OUTSIDE.b4, OUTSIDE.c4]) o.exec('ip', ['addr', 'add', `${a}/32`, 'dev', 'lo']);
    o.exec('ip', ['addr', 'add', `${OUTSIDE.a6}/128`, 'dev', 'lo']);
    o.exec('sysctl', ['-qw', 'net.ipv4.conf.all.send_redirects=0', 'net.ipv4.conf.eth0.send_redirects=0']);
  }

  /** MAC of a device in a namespace. */
  static macOf(ns: Netns, dev: string): string {
    return ns.exec('cat', [`/sys/class/net/${dev}/address`]).trim();
  }

  /** Attaches a VM with host number `n` (192.0.2.n, 2001:db8:a::n) to a network. */
  addVm(name: string, opts: { network?: string; n: number; mac?: string }): Vm {
    const net = this.networks.get(opts.network ?? [...this.networks.keys()][0]!)!;
    const hex = opts.n.toString(16);
    const mac = opts.mac ?? `fa:16:3e:00:${net.macByte.toString(16).padStart(2, '0')}:${hex.padStart(2, '0')}`;
    const device = `tap${name}`.slice(0, 15);
    const ns = new Netns(name);
    this.extraNs.push(ns);
    quietV6(ns);
    const h = this.host;
    h.exec('ip', ['link', 'add', device, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.name]);
    ns.exec('ip', ['link', 'set', 'eth0', 'address', mac]);
    const ip4 = `192.0.2.${opts.n}`;
    const ip6 = `2001:db8:a::${hex}`;
    let gwMac: string;
    if (this.mode === 'routed') {
      h.exec('ip', ['link', 'set', device, 'up']);
      h.exec('ip', ['addr', 'add', `${GW6}/64`, 'dev', device, 'nodad']);
      h.exec('ip', ['route', 'add', `${ip4}/32`, 'dev', device]);
      h.exec('ip', ['-6', 'route', 'add', `${ip6}/128`, 'dev', device]);
      ns.exec('ip', ['addr', 'add', `${ip4}/32`, 'dev', 'eth0']);
      ns.exec('ip', ['-6', 'addr', 'add', `${ip6}/128`, 'dev', 'eth0', 'nodad']);
      ns.exec('ip', ['link', 'set', 'eth0', 'up']);
      ns.exec('ip', ['route', 'add', ROUTED_GW4, 'dev', 'eth0', 'scope', 'link']);
      ns.exec('ip', ['route', 'add', 'default', 'via', ROUTED_GW4, 'dev', 'eth0']);
      gwMac = ComputeHost.macOf(h, device);
    } else {
      h.exec('sysctl', ['-qw', `net.ipv6.conf.${device}.disable_ipv6=1`]);
      h.exec('ip', ['link', 'set', device, 'master', net.bridge!, 'up']);
      ns.exec('ip', ['addr', 'add', `${ip4}/24`, 'dev', 'eth0']);
      ns.exec('ip', ['-6', 'addr', 'add', `${ip6}/64`, 'dev', 'eth0', 'nodad']);
      ns.exec('ip', ['link', 'set', 'eth0', 'up']);
      ns.exec('ip', ['route', 'add', 'default', 'via', BRIDGED_GW4]);
      gwMac = ComputeHost.macOf(this.outside, this.outsideDev);
    }
    ns.exec('ip', ['-6', 'route', 'add', 'default', 'via', GW6, 'dev', 'eth0']);
    const vm: Vm = { name, ns, device, mac, ip4, ip6, ll6: linkLocalOf(mac), network: net, gwMac };
    this.vms.set(name, vm);
    return vm;
  }

  /** The network as a state-file object. */
  networkState(id: string): NetworkInput {
    const n = this.networks.get(id)!;
    if (this.mode === 'routed') {
      return { id, zone: n.zone, mode: 'routed', dhcp_servers: [ROUTED_GW4, GW6], routers: [GW6] };
    }
    return { id, zone: n.zone, mode: 'bridged', bridge: n.bridge, dhcp_servers: [BRIDGED_DHCP4, BRIDGED_DHCP6], routers: [GW6] };
  }

  /** The VM's port as a state-file object (Neutron shape); `extra` overrides fields. */
  port(vm: Vm, extra: Partial<PortInput> = {}): PortInput {
    return {
      id: `port-${vm.name}`,
      network_id: vm.network.id,
      device: vm.device,
      mac_address: vm.mac,
      fixed_ips: [{ ip_address: vm.ip4 }, { ip_address: vm.ip6 }],
      security_groups: [],
      port_security_enabled: true,
      ...extra,
    };
  }

  /** The DHCP server of a VM's network: where it runs, which device it answers on, from which address. */
  dhcpServer(vm: Vm, family: 4 | 6): { ns: Netns; dev: string; addr: string } {
    if (this.mode === 'routed') return { ns: this.host, dev: vm.device, addr: family === 4 ? ROUTED_GW4 : GW6 };
    return { ns: this.outside, dev: this.outsideDev, addr: family === 4 ? BRIDGED_DHCP4 : BRIDGED_DHCP6 };
  }

  /** A DHCP server on the VM's link whose address is not one of the network's DHCP servers. */
  rogueDhcpServer(vm: Vm, family: 4 | 6): { ns: Netns; dev: string; addr: string } {
    if (this.mode === 'routed') return { ns: this.host, dev: vm.device, addr: family === 4 ? '198.51.100.1' : linkLocalOf(vm.gwMac) };
    return { ns: this.outside, dev: this.outsideDev, addr: family === 4 ? BRIDGED_GW4 : GW6 };
  }

  /** The network's IPv6 router as seen from a VM: namespace, device and address (routed: the host, per tap). */
  router6(vm: Vm): { ns: Netns; dev: string; addr: string } {
    if (this.mode === 'routed') return { ns: this.host, dev: vm.device, addr: GW6 };
    return { ns: this.outside, dev: this.outsideDev, addr: GW6 };
  }

  /** A link-local address on the VM's link (of the host or the outside) that is not a router of the network. */
  rogueLinkLocal(vm: Vm): string {
    return this.mode === 'routed' ? linkLocalOf(vm.gwMac) : 'fe80::99';
  }

  /**
   * Sends a router advertisement onto the VM's link from the router's side, from `src` (default: the router).
   * Routed: a raw ICMPv6 socket in the host, so it passes the host's output hook as a real RA would.
   * Bridged: a frame from the outside namespace, which the bridge forwards to the port.
   */
  async sendRa(vm: Vm, src: string = GW6): Promise<'sent' | 'refused'> {
    if (this.mode === 'routed') {
      const r = await execIn(this.host, 'python3', [NETPROBE, 'ra', '--dev', vm.device, '--src', src]);
      if (r.status !== 0) throw new Error(`ra failed: ${r.out}`);
      // EPERM: the host's own output hook refused it (an nftables drop on output reports that to the sender)
      return r.out.includes('"sent": true') ? 'sent' : 'refused';
    }
    const smac = ComputeHost.macOf(this.outside, this.outsideDev);
    await this.sendFrame(this.outside, this.outsideDev, { smac, dmac: '33:33:00:00:00:01', src, dst: 'ff02::1', proto: 'icmpv6', icmp: 'ra', ttl: 255 });
    return 'sent';
  }

  /** Ethernet addresses for a frame the outside namespace sends towards `vm`. */
  outsideFrameTo(vm: Vm): { smac: string; dmac: string } {
    const smac = ComputeHost.macOf(this.outside, this.outsideDev);
    return { smac, dmac: this.mode === 'routed' ? ComputeHost.macOf(this.host, 'uplink') : vm.mac };
  }

  // ---- processes ----

  /** Starts a bounded netprobe.py mode in `ns`; waits for "ready" when the mode prints it. */
  async netprobe(ns: Netns, args: string[], waitReady = true): Promise<Bg> {
    const bg = new Bg(spawn('ip', ['netns', 'exec', ns.name, 'python3', NETPROBE, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
    this.procs.add(bg);
    if (waitReady) await bg.waitFor((l) => l === 'ready', 5000);
    return bg;
  }

  /** TCP servers (answer "ok") and UDP echo servers on the given ports, dual-stack, for `seconds`. */
  serve(ns: Netns, ports: { tcp?: number[]; udp?: number[] }, seconds = 60): Promise<Bg> {
    return this.netprobe(ns, ['serve', '--tcp', (ports.tcp ?? []).join(','), '--udp', (ports.udp ?? []).join(','), '--seconds', String(seconds)]);
  }

  /** Sniffs frames arriving at `dev` in `ns` for `seconds`. */
  sniff(ns: Netns, dev: string, seconds = 3): Promise<Bg> {
    return this.netprobe(ns, ['sniff', '--dev', dev, '--seconds', String(seconds)]);
  }

  /** Sends hand-made frames out of `dev` in `ns`, in order (one process for them all). */
  async sendFrame(ns: Netns, dev: string, ...frames: (FrameSpec | ArpFrameSpec)[]): Promise<void> {
    const r = await execIn(ns, 'python3', [NETPROBE, 'frame', '--dev', dev, '--json', JSON.stringify(frames)]);
    if (r.status !== 0) throw new Error(`frame failed: ${r.out}`);
  }

  longPing(ns: Netns, to: string, opts: { intervalS?: number; count?: number; src?: string } = {}): LongPing {
    const p = new LongPing(ns, to, opts);
    this.procs.add(p.bg);
    return p;
  }

  longTcp(ns: Netns, host: string, port: number, seconds = 15): LongTcp {
    const t = new LongTcp(ns, host, port, seconds);
    this.procs.add(t.bg);
    return t;
  }

  /** TCP echo servers that keep connections open (for {@link LongTcp}). */
  serveEcho(ns: Netns, ports: number[], seconds = 60): Promise<Bg> {
    return this.netprobe(ns, ['serve', '--echo', ports.join(','), '--seconds', String(seconds)]);
  }

  stopAll(): void {
    for (const p of this.procs) p.stop();
    this.procs.clear();
  }

  /** `conntrack -L` lines of one zone (the oracle). */
  conntrackLines(zone: number, args: string[] = []): string[] {
    return this.host.exec('conntrack', ['-L', '-w', String(zone), ...args]).split('\n').filter((l) => l.includes('src='));
  }

  destroy(): void {
    this.stopAll();
    for (const ns of [...this.extraNs, this.outside, this.host]) ns?.destroy();
  }
}

/** No DAD delays, no router solicitations from test namespaces. */
function quietV6(ns: Netns): void {
  ns.exec('sysctl', ['-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0',
    'net.ipv6.conf.all.router_solicitations=0', 'net.ipv6.conf.default.router_solicitations=0']);
}

// ---- state-file builders (Neutron shapes) ----

export type RuleSpec = Omit<RuleInput, 'id'> & { id?: string };

/** A security group; rule ids default to `<group>-r<i>`. */
export function group(id: string, rules: RuleSpec[], stateful = true): SecurityGroupInput {
  return { id, stateful, security_group_rules: rules.map((r, i) => ({ ...r, id: r.id ?? `${id}-r${i}` })) };
}

/** Egress to anywhere, both families (Neutron's default egress rules). */
export const EGRESS_ANY: RuleSpec[] = [
  { direction: 'egress', ethertype: 'IPv4', protocol: null },
  { direction: 'egress', ethertype: 'IPv6', protocol: null },
];

export function state(networks: NetworkInput[], groups: SecurityGroupInput[], ports: PortInput[]): StateInput {
  return { networks, security_groups: groups, ports };
}

// ---- the library under test ----

/** Portwall on the compute host (its namespace only). */
export function openFirewall(h: ComputeHost): Portwall {
  return Portwall.open({ netns: h.host.name });
}

/** What happened to a running flow (ping, TCP) around one apply. */
export interface FlowChange {
  /** When the apply started (ms since the epoch). */
  t0: number;
  /** How long `apply` took. */
  applyMs: number;
  /** Conntrack entries the apply deleted. */
  deleted: number;
  /** Last reply relative to the start of the apply (negative: before it started). */
  lastReplyMs: number | undefined;
  /** Replies later than `settleMs` after the start of the apply. */
  lateReplies: number;
  /** First reply after the start of the apply, relative to it. */
  firstReplyMs: number | undefined;
}

/** Applies `s` while `flow` runs and watches it for `watchMs` (replies after `settleMs` count as late). */
export async function applyDuringFlow(
  fw: Portwall,
  s: StateInput,
  flow: LiveFlow,
  opts: { cleanup?: boolean; watchMs?: number; settleMs?: number } = {},
): Promise<FlowChange> {
  const t0 = Date.now();
  const res = await fw.apply(s, opts.cleanup === undefined ? {} : { cleanup: opts.cleanup });
  const applyMs = Date.now() - t0;
  await sleep(opts.watchMs ?? 1500);
  const all = flow.replies();
  const before = all.filter((r) => r <= t0);
  const after = all.filter((r) => r > t0);
  const last = after.length ? after[after.length - 1]! : before[before.length - 1];
  return {
    t0,
    applyMs,
    deleted: res.cleanup.deleted,
    lastReplyMs: last === undefined ? undefined : last - t0,
    lateReplies: after.filter((r) => r > t0 + (opts.settleMs ?? 1000)).length,
    firstReplyMs: after[0] === undefined ? undefined : after[0] - t0,
  };
}
