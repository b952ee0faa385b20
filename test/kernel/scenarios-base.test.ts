// Acceptance scenarios S3, S10 and S11 (docs/requirements.md): the base policy every filtered port gets, with real and
// hand-made packets. Each "dropped" is shown against a control that passes the same way: the same frame
// from an unfiltered port (port_security_enabled=false), or the same probe that is allowed.
//
// vm1: no group (DHCP/ND only) · vm2: egress anywhere, ingress tcp/80 · vm3: port_security_enabled=false ·
// vm4: ingress ICMPv6 only (IPv6 checks).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Portwall } from '../../src/apply/portwall.js';
import {
  type Bg, ComputeHost, EGRESS_ANY, type Frame, type FrameSpec, MODES, OUTSIDE, type Vm, group,
  openFirewall, pingCount, probe, sleep, state,
} from '../helpers/hosts.js';
import { isRoot } from '../helpers/netns.js';

describe.skipIf(!isRoot).each(MODES)('S3, S10, S11: base policy (%s)', (mode) => {
  let h: ComputeHost;
  let fw: Portwall;
  let vm1: Vm, vm2: Vm, vm3: Vm, vm4: Vm;

  beforeAll(async () => {
    h = new ComputeHost(mode, [{ id: 'net-a', zone: 101, bridge: 'br-a', macByte: 10 }]);
    vm1 = h.addVm('vm1', { n: 11 });
    vm2 = h.addVm('vm2', { n: 12 });
    vm3 = h.addVm('vm3', { n: 13 });
    vm4 = h.addVm('vm4', { n: 14 });
    await Promise.all([
      h.serve(h.outside, { tcp: [22], udp: [53] }, 120),
      ...[vm1, vm2, vm3].map((v) => h.serve(v.ns, { tcp: [80], udp: [53] }, 120)),
    ]);
    fw = openFirewall(h);
    const res = await fw.apply(
      state(
        [h.networkState('net-a')],
        [
          group('sg-eg', [...EGRESS_ANY, { direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 80, port_range_max: 80 }]),
          group('sg-v6', [{ direction: 'ingress', ethertype: 'IPv6', protocol: 'ipv6-icmp' }]),
        ],
        [
          h.port(vm1),
          h.port(vm2, { security_groups: ['sg-eg'] }),
          h.port(vm3, { port_security_enabled: false }),
          h.port(vm4, { security_groups: ['sg-v6'] }),
        ],
      ),
    );
    expect(res.changed).toBe(true);
  });
  afterAll(async () => {
    await fw?.close();
    h?.destroy();
  });

  /** Frames from `from` towards the outside (forwarded by the host, or bridged to the outside namespace). */
  const toOutside = (from: Vm, f: Partial<FrameSpec>): FrameSpec => ({
    smac: from.mac, dmac: from.gwMac, src: from.ip4, dst: OUTSIDE.a4, proto: 'udp', sport: 4000, dport: 9, ...f,
  });

  /** Sends the frames in order, one process for each run of frames from the same VM. */
  async function sendAll(sends: [Vm, FrameSpec][]): Promise<void> {
    for (let i = 0; i < sends.length;) {
      const vm = sends[i]![0];
      const frames: FrameSpec[] = [];
      for (; i < sends.length && sends[i]![0] === vm; i++) frames.push(sends[i]![1]);
      await h.sendFrame(vm.ns, 'eth0', ...frames);
    }
  }

  /** Sends frames and returns what the sniffer in `at` saw arrive on `dev`. */
  async function sendAndSniff(at: { ns: Vm['ns']; dev: string }, sends: [Vm, FrameSpec][]): Promise<Frame[]> {
    // A python3 start per VM (0.3-0.5 s on a loaded 2-core machine): the sniffer's window covers them all,
    // however slow, and finish() ends it once they are sent and everything that arrived is read.
    const sniff = await h.sniff(at.ns, at.dev, 3 + 2 * sends.length);
    await sniff.during(() => sendAll(sends));
    return sniff.records<Frame>();
  }
  const outsideEnd = () => ({ ns: h.outside, dev: h.outsideDev });

  /**
   * Sends frames addressed to the host itself or to the link, and returns the datagrams the receiving stack
   * accepted: in routed mode a UDP socket in the host (after portwall's input hook), in bridged mode the
   * outside namespace's device (beyond the bridge).
   */
  async function sendToLink(port: number, family: 4 | 6, sends: [Vm, FrameSpec][]): Promise<{ src: string; sport: number }[]> {
    if (mode === 'bridged') {
      return (await sendAndSniff(outsideEnd(), sends)).filter((f) => f.dport === port).map((f) => ({ src: f.src!, sport: f.sport! }));
    }
    const rx = await h.netprobe(h.host, ['listen-udp', '--port', String(port), '--family', String(family), '--seconds', String(3 + 2 * sends.length)]);
    await rx.during(() => sendAll(sends));
    return rx.records<{ src: string; sport: number }>().map((r) => ({ src: r.src.split('%')[0]!, sport: r.sport }));
  }

  async function dhcpExchange(client: Vm, family: 4 | 6, server: { ns: Vm['ns']; dev: string; addr: string }): Promise<{ served: Bg; got: string[] }> {
    const served = await h.netprobe(server.ns, ['dhcp-server', '--dev', server.dev, '--addr', server.addr, '--seconds', '3']);
    try {
      const c = await h.netprobe(client.ns, ['dhcp-client', '--dev', 'eth0', '--family', String(family), '--wait', '1.5'], false);
      await c.done;
      return { served, got: c.records<{ src: string }>().map((r) => r.src.split('%')[0]!) };
    } finally {
      served.stop();
    }
  }

  // ---- S3 ----

  it('S3: a port with no group gets a DHCP exchange with its network\'s server and nothing else', async () => {
    const srv = h.dhcpServer(vm1, 4);
    const { served, got } = await dhcpExchange(vm1, 4, srv);
    console.log(`[${mode}] S3 DHCP from 0.0.0.0: server saw ${served.records().length} request(s), client got replies from ${got.join(',')}`);
    expect(served.records<{ src: string }>().map((r) => r.src)).toContain('0.0.0.0');
    expect(got).toEqual([srv.addr]);

    const [out1, out3, in1, in3, ping1, ping3, vmToVm] = await Promise.all([
      probe(vm1.ns, [{ proto: 'tcp', host: OUTSIDE.a4, port: 22 }, { proto: 'udp', host: OUTSIDE.a4, port: 53 }]),
      probe(vm3.ns, [{ proto: 'tcp', host: OUTSIDE.a4, port: 22 }, { proto: 'udp', host: OUTSIDE.a4, port: 53 }]),
      probe(h.outside, [{ proto: 'tcp', host: vm1.ip4, port: 80 }, { proto: 'udp', host: vm1.ip4, port: 53 }, { proto: 'tcp', host: vm1.ip6, port: 80 }]),
      probe(h.outside, [{ proto: 'tcp', host: vm3.ip4, port: 80 }, { proto: 'udp', host: vm3.ip4, port: 53 }, { proto: 'tcp', host: vm3.ip6, port: 80 }]),
      pingCount(vm1.ns, OUTSIDE.a4),
      pingCount(vm3.ns, OUTSIDE.a4),
      pingCount(vm2.ns, vm1.ip4),
    ]);
    expect(out1).toEqual(['timeout', 'timeout']);
    expect(in1).toEqual(['timeout', 'timeout', 'timeout']);
    expect([ping1, vmToVm]).toEqual([0, 0]);
    // control: the same traffic to and from the unfiltered port
    expect(out3).toEqual(['open', 'open']);
    expect(in3).toEqual(['open', 'open', 'open']);
    expect(ping3).toBeGreaterThan(0);
  });

  it('S3: DHCP replies from an address that is not the network\'s DHCP server are dropped', async () => {
    const filtered = await dhcpExchange(vm1, 4, h.rogueDhcpServer(vm1, 4));
    const control = await dhcpExchange(vm3, 4, h.rogueDhcpServer(vm3, 4));
    console.log(`[${mode}] S3 rogue DHCP server: filtered port got ${filtered.got.length} replies, unfiltered port ${control.got.length}`);
    expect(filtered.served.records().length).toBeGreaterThan(0); // the request went out; only the reply is refused
    expect(filtered.got).toEqual([]);
    expect(control.got).toEqual([h.rogueDhcpServer(vm3, 4).addr]);
  });

  it('S3: spoofed source IP or source MAC from a port is dropped', async () => {
    const seen = await sendAndSniff(outsideEnd(), [
      [vm2, toOutside(vm2, { sport: 4100 })], // genuine
      [vm2, toOutside(vm2, { sport: 4101, src: '192.0.2.99' })], // foreign source IP
      [vm2, toOutside(vm2, { sport: 4102, src: vm1.ip4 })], // another port's IP
      [vm2, toOutside(vm2, { sport: 4103, smac: 'fa:16:3e:99:99:99' })], // foreign source MAC
      [vm2, toOutside(vm2, { sport: 4104, smac: vm1.mac })], // another port's MAC
      [vm2, toOutside(vm2, { sport: 4105, src: vm2.ip6, dst: OUTSIDE.a6 })], // genuine IPv6
      [vm2, toOutside(vm2, { sport: 4106, src: '2001:db8:a::99', dst: OUTSIDE.a6 })], // foreign IPv6 source
      [vm3, toOutside(vm3, { sport: 4107, src: '192.0.2.99' })], // control: unfiltered port
      [vm3, toOutside(vm3, { sport: 4108, smac: 'fa:16:3e:99:99:98' })],
    ]);
    const sports = [...new Set(seen.filter((f) => f.dport === 9).map((f) => f.sport))].sort();
    console.log(`[${mode}] S3 anti-spoof: frames that arrived outside (by source port): ${sports.join(',')}`);
    expect(sports).toEqual([4100, 4105, 4107, 4108]);

    // the same with the VM's own stack: an address added inside the VM is not usable. One after the other:
    // in bridged mode the VM's ARP from the foreign address is refused too, which would stall a parallel probe.
    vm2.ns.exec('ip', ['addr', 'add', '192.0.2.99/32', 'dev', 'eth0']);
    try {
      expect(await probe(vm2.ns, [{ proto: 'udp', host: OUTSIDE.a4, port: 53, src: vm2.ip4 }])).toEqual(['open']);
      expect(await probe(vm2.ns, [{ proto: 'udp', host: OUTSIDE.a4, port: 53, src: '192.0.2.99' }])).toEqual(['timeout']);
    } finally {
      vm2.ns.exec('ip', ['addr', 'del', '192.0.2.99/32', 'dev', 'eth0']);
    }
  });

  it('S3: DHCP server replies from a port are dropped', async () => {
    const offer = (vm: Vm, sport: number): [Vm, FrameSpec] =>
      [vm, { smac: vm.mac, dmac: 'ff:ff:ff:ff:ff:ff', src: vm.ip4, dst: '255.255.255.255', proto: 'udp', sport, dport: 68, payload: `offer-${vm.name}` }];
    const got = await sendToLink(68, 4, [offer(vm2, 67), offer(vm3, 67)]);
    console.log(`[${mode}] S3 DHCP server traffic from ports: received from ${got.map((g) => g.src).join(',') || 'none'}`);
    expect(got.map((g) => g.src).sort()).toEqual([vm3.ip4]);
  });

  it('S3: INVALID packets are dropped, from a port and to a port', async () => {
    const tcp = (vm: Vm, sport: number, flags: string) => toOutside(vm, { proto: 'tcp', dport: 22, sport, flags });
    const seen = await sendAndSniff(outsideEnd(), [
      [vm2, tcp(vm2, 4200, 'S')], // a valid new connection: allowed by egress-any
      [vm2, tcp(vm2, 4201, 'SF')], // SYN+FIN: conntrack marks it INVALID
      [vm2, tcp(vm2, 4202, '')], // no flags at all: INVALID
      [vm3, tcp(vm3, 4203, 'SF')], // control: unfiltered port
    ]);
    const out = [...new Set(seen.filter((f) => f.proto === 'tcp' && f.dport === 22).map((f) => f.sport))].sort();
    // towards vm2, whose group admits tcp/80
    const eth = h.outsideFrameTo(vm2);
    const toVm = (sport: number, flags: string): [Vm, FrameSpec] => [vm2, { ...eth, src: OUTSIDE.a4, dst: vm2.ip4, proto: 'tcp', sport, dport: 80, flags }];
    const sniffVm = await h.sniff(vm2.ns, 'eth0', 5);
    await sniffVm.during(() => h.sendFrame(h.outside, h.outsideDev, ...[toVm(4300, 'S'), toVm(4301, 'SF'), toVm(4302, 'FPU')].map(([, f]) => f)));
    const inn = [...new Set(sniffVm.records<Frame>().filter((f) => f.proto === 'tcp' && f.dport === 80).map((f) => f.sport))].sort();
    console.log(`[${mode}] S3 INVALID: arrived outside ${out.join(',')}; arrived at the port ${inn.join(',')}`);
    expect(out).toEqual([4200, 4203]);
    expect(inn).toEqual([4300]);
  });

  // ---- S10 ----

  it('S10: port_security_enabled=false passes everything, spoofed and invalid included', async () => {
    const [inn, out, ping4, ping6] = await Promise.all([
      probe(h.outside, [
        { proto: 'tcp', host: vm3.ip4, port: 80, src: OUTSIDE.b4 },
        { proto: 'udp', host: vm3.ip4, port: 53, src: OUTSIDE.c4 },
        { proto: 'tcp', host: vm3.ip4, port: 8080 }, // nothing listens: refused means it arrived
        { proto: 'tcp', host: vm3.ip6, port: 80 },
      ]),
      probe(vm3.ns, [{ proto: 'tcp', host: OUTSIDE.a4, port: 22 }, { proto: 'udp', host: OUTSIDE.b4, port: 53, sport: 67 }]),
      pingCount(h.outside, vm3.ip4),
      pingCount(h.outside, vm3.ip6),
    ]);
    expect(inn).toEqual(['open', 'open', 'refused', 'open']);
    expect(out).toEqual(['open', 'open']);
    expect([ping4 > 0, ping6 > 0]).toEqual([true, true]);
    const seen = await sendAndSniff(outsideEnd(), [
      [vm3, toOutside(vm3, { sport: 4400, src: '203.0.113.77' })],
      [vm3, toOutside(vm3, { sport: 4401, smac: '02:00:00:00:00:01', src: '192.0.2.250' })],
      [vm3, toOutside(vm3, { sport: 4402, src: '2001:db8:a::9999', dst: OUTSIDE.a6 })],
      [vm3, toOutside(vm3, { sport: 4403, proto: 'tcp', dport: 22, flags: '' })],
    ]);
    const sports = [...new Set(seen.map((f) => f.sport).filter((p) => p !== undefined))].sort();
    console.log(`[${mode}] S10 unfiltered port: spoofed/invalid frames that arrived: ${sports.join(',')}`);
    expect(sports).toEqual(expect.arrayContaining([4400, 4401, 4402, 4403]));
  });

  // ---- S11 ----

  it('S11: router advertisements pass only from the network\'s routers', async () => {
    const ra = (smac: string, src: string): FrameSpec => ({ smac, dmac: '33:33:00:00:00:01', src, dst: 'ff02::1', proto: 'icmpv6', icmp: 'ra', ttl: 255 });
    // into a port: from the router, and from another link-local address on the port's link
    const rogue = h.rogueLinkLocal(vm4);
    const sniffVm = await h.sniff(vm4.ns, 'eth0', 5);
    const sent: string[] = [];
    await sniffVm.during(async () => sent.push(await h.sendRa(vm4), await h.sendRa(vm4, rogue)));
    expect(sent[0]).toBe('sent'); // the router's RA is not refused on its way out of the host (routed)
    const inVm = sniffVm.records<Frame>().filter((f) => f.icmpType === 134).map((f) => f.src);
    // out of ports: vm2 (filtered) and vm3 (unfiltered control) both claim to be routers
    let fromPorts: string[];
    if (mode === 'bridged') {
      fromPorts = (await sendAndSniff(outsideEnd(), [[vm2, ra(vm2.mac, vm2.ll6)], [vm3, ra(vm3.mac, vm3.ll6)]]))
        .filter((f) => f.icmpType === 134).map((f) => f.src!);
    } else {
      const rx = await h.netprobe(h.host, ['listen-icmp6', '--seconds', '5']);
      await rx.during(() => sendAll([[vm2, ra(vm2.mac, vm2.ll6)], [vm3, ra(vm3.mac, vm3.ll6)]]));
      fromPorts = rx.records<{ src: string; icmpType: number }>().filter((f) => f.icmpType === 134).map((f) => f.src.split('%')[0]!);
    }
    console.log(`[${mode}] S11 RAs reaching vm4 from: ${[...new Set(inVm)].join(',')} (sent from fe80::1 and ${rogue}: ${sent.join('/')}); ` +
      `RAs leaving ports from: ${[...new Set(fromPorts)].join(',')} (sent by vm2 ${vm2.ll6} and unfiltered vm3 ${vm3.ll6})`);
    expect([...new Set(inVm)]).toEqual([h.router6(vm4).addr]);
    expect([...new Set(fromPorts)]).toEqual([vm3.ll6]);
  });

  it('S11: neighbour discovery works for a port without egress rules (ping6 from its router, caches flushed)', async () => {
    const r = h.router6(vm4);
    vm4.ns.exec('ip', ['-6', 'neigh', 'flush', 'dev', 'eth0']);
    r.ns.exec('ip', ['-6', 'neigh', 'flush', 'dev', r.dev]);
    const [global, linkLocal, fromOutside] = await Promise.all([
      pingCount(r.ns, vm4.ip6),
      pingCount(r.ns, `${vm4.ll6}%${r.dev}`),
      pingCount(h.outside, vm4.ip6, { src: OUTSIDE.a6 }),
    ]);
    const neigh = vm4.ns.exec('ip', ['-6', 'neigh', 'show', 'dev', 'eth0']);
    console.log(`[${mode}] S11 ND: replies global ${global}, link-local ${linkLocal}, from outside ${fromOutside}; vm4 neighbours: ${neigh.trim().replace(/\n/g, ' | ')}`);
    expect(global).toBeGreaterThan(0);
    expect(linkLocal).toBeGreaterThan(0);
    expect(fromOutside).toBeGreaterThan(0);
    expect(neigh).toMatch(/fe80::1 .*lladdr/);
    // the port itself may not start anything: its group has no egress rule
    expect(await pingCount(vm4.ns, OUTSIDE.a6)).toBe(0);
  });

  it('S11: MLD reports (behind a hop-by-hop header) leave a port that has no egress rule', async () => {
    const join = (vm: Vm) => h.netprobe(vm.ns, ['listen-udp', '--family', '6', '--port', '9', '--dev', 'eth0', '--join', 'ff02::1:3', '--seconds', '0.3']);
    let reports: Frame[];
    if (mode === 'bridged') {
      const sniff = await h.sniff(h.outside, h.outsideDev, 3);
      await sniff.during(async () => {
        await Promise.all([join(vm4), join(vm3)]);
        await sleep(300);
      });
      reports = sniff.records<Frame>();
    } else {
      // The host hears MLDv2 reports (sent to ff02::16) only while it is a member of that group on the tap.
      const members = await Promise.all([vm3, vm4].map((v) =>
        h.netprobe(h.host, ['listen-udp', '--family', '6', '--port', '10', '--dev', v.device, '--join', 'ff02::16', '--seconds', '3'])));
      const rx = await h.netprobe(h.host, ['listen-icmp6', '--seconds', '3']);
      try {
        await rx.during(async () => {
          await Promise.all([join(vm4), join(vm3)]);
          await sleep(300);
        });
      } finally {
        members.forEach((m) => m.stop());
      }
      reports = rx.records<Frame>().map((f) => ({ ...f, src: f.src!.split('%')[0] }));
    }
    const from = [...new Set(reports.filter((f) => f.icmpType === 143).map((f) => f.src))].sort();
    console.log(`[${mode}] S11 MLDv2 reports received from: ${from.join(',')}`);
    expect(from).toEqual(expect.arrayContaining([vm3.ll6, vm4.ll6]));
  });

  it('S11: DHCPv6 with the network\'s server passes; DHCPv6 server messages from ports are dropped', async () => {
    const srv = h.dhcpServer(vm4, 6);
    const ok = await dhcpExchange(vm4, 6, srv);
    console.log(`[${mode}] S11 DHCPv6: server saw ${ok.served.records().length} solicit(s), client got replies from ${ok.got.join(',')}`);
    expect(ok.served.records<{ src: string }>().map((r) => r.src.split('%')[0])).toContain(vm4.ll6);
    expect(ok.got).toEqual([srv.addr]);
    const filtered = await dhcpExchange(vm4, 6, h.rogueDhcpServer(vm4, 6));
    const control = await dhcpExchange(vm3, 6, h.rogueDhcpServer(vm3, 6));
    console.log(`[${mode}] S11 rogue DHCPv6 server: filtered port got ${filtered.got.length} replies, unfiltered port ${control.got.length}`);
    expect(filtered.served.records().length).toBeGreaterThan(0);
    expect(filtered.got).toEqual([]);
    expect(control.got).toEqual([h.rogueDhcpServer(vm3, 6).addr]);
    const advertise = (vm: Vm): [Vm, FrameSpec] =>
      [vm, { smac: vm.mac, dmac: '33:33:00:00:00:01', src: vm.ll6, dst: 'ff02::1', proto: 'udp', sport: 547, dport: 546, payload: 'advertise' }];
    const got = await sendToLink(546, 6, [advertise(vm2), advertise(vm3)]);
    expect([...new Set(got.map((g) => g.src))]).toEqual([vm3.ll6]);
  });

  it('S11: link-local traffic passes; a link-local source not derived from the port MAC is dropped', async () => {
    const peer = mode === 'bridged' ? `${vm4.ll6}%eth0` : 'fe80::1%eth0';
    expect(await pingCount(vm2.ns, peer)).toBeGreaterThan(0);
    const dmac = vm2.gwMac;
    const udp = (src: string, sport: number): [Vm, FrameSpec] => [vm2, { smac: vm2.mac, dmac, src, dst: 'fe80::1', proto: 'udp', sport, dport: 9 }];
    const got = await sendToLink(9, 6, [udp(vm2.ll6, 4500), udp('fe80::99', 4501), udp(vm3.ll6, 4502) /* another port's */]);
    console.log(`[${mode}] S11 link-local from vm2: received source ports ${got.map((g) => g.sport).join(',')}`);
    expect(got.map((g) => g.sport)).toEqual([4500]);
  });
});
