// Acceptance scenario S9 (docs/requirements.md): a CloudStack-flavour bridged network — deny-all ingress,
// allow-all egress until a group has an egress rule, DNS always, system VMs allow-all — and its layer-2
// guards (docs/dataplane.md, "Layer-2 guards"), with real and hand-made traffic. Every "dropped" has a control
// that passes the same way (the system VM, which is unfiltered, or a frame the guard lets through), and each
// is chosen so that it would pass without the behaviour under test.
//
// csa: group sg-cs (ingress tcp/22 only) · csb: sg-cs and sg-udp (ingress udp from anywhere: a VM that would
// hear a DHCP DISCOVER or a broadcast if the guards let them through) · css: kind "system", the network's
// DHCP server. The outside namespace is the router (192.0.2.1) and the DNS server (198.51.100.2).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Portwall } from '../../src/apply/portwall.js';
import type { NetworkInput, SecurityGroupInput, StateInput } from '../../src/model/schema.js';
import {
  type ArpFrameSpec, type Bg, ComputeHost, type Frame, type FrameSpec, OUTSIDE, type Vm, group, openFirewall,
  pingCount, probe, sleep, state,
} from '../helpers/hosts.js';
import { isRoot } from '../helpers/netns.js';

const SG_CS = group('sg-cs', [{ direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 22, port_range_max: 22 }]);
const SG_UDP = group('sg-udp', [{ direction: 'ingress', ethertype: 'IPv4', protocol: 'udp' }]);
const HTTPS_OUT = { id: 'https-out', direction: 'egress' as const, ethertype: 'IPv4' as const, protocol: 'tcp', port_range_min: 443, port_range_max: 443 };
const ROUTER = '192.0.2.1';

describe.skipIf(!isRoot)('S9: CloudStack flavour (bridged)', () => {
  let h: ComputeHost;
  let fw: Portwall;
  let csa: Vm, csb: Vm, css: Vm;
  let outMac: string;
  let desired: StateInput;

  beforeAll(async () => {
    h = new ComputeHost('bridged', [{ id: 'net-cs', zone: 109, bridge: 'br-cs', macByte: 0x90 }]);
    csa = h.addVm('csa', { n: 21 });
    csb = h.addVm('csb', { n: 22 });
    css = h.addVm('css', { n: 23 });
    outMac = ComputeHost.macOf(h.outside, h.outsideDev);
    await Promise.all([
      h.serve(h.outside, { tcp: [22, 53, 80, 443], udp: [53, 9999] }, 240),
      ...[csa, csb, css].map((v) => h.serve(v.ns, { tcp: [22, 80] }, 240)),
    ]);
    const base = h.networkState('net-cs');
    const net: NetworkInput = { ...base, flavor: 'cloudstack', dhcp_servers: [...(base.dhcp_servers ?? []), css.ip4] };
    desired = state([net], [SG_CS, SG_UDP], [
      h.port(csa, { security_groups: ['sg-cs'] }),
      h.port(csb, { security_groups: ['sg-cs', 'sg-udp'] }),
      h.port(css, { kind: 'system' }),
    ]);
    fw = openFirewall(h);
    expect((await fw.apply(desired)).changed).toBe(true);
  });
  afterAll(async () => {
    await fw?.close();
    h?.destroy();
  });

  /** Frames `dev` in `ns` received while `send` ran (a bounded sniffer). */
  async function sniffDuring(at: { ns: Vm['ns']; dev: string }, send: () => Promise<unknown>): Promise<Frame[]> {
    // A generous window (finish() ends it once `send` is done and what arrived is read): each sendFrame is a
    // python3 start.
    const sniff = await h.sniff(at.ns, at.dev, 12);
    await sniff.during(send);
    return sniff.records<Frame>();
  }
  const outside = () => ({ ns: h.outside, dev: h.outsideDev });
  const udpFrame = (from: Vm, dst: string, dmac: string, dport: number, sport = 4000): FrameSpec =>
    ({ smac: from.mac, dmac, src: from.ip4, dst, proto: 'udp', sport, dport });

  it('S9: a new ingress connection is refused; with no egress rule, egress is open; the system VM passes everything', async () => {
    const [inA, inSys, outA, outSys, ping6Sys] = await Promise.all([
      probe(h.outside, [{ proto: 'tcp', host: csa.ip4, port: 80 }, { proto: 'tcp', host: csa.ip4, port: 22 }]),
      probe(h.outside, [{ proto: 'tcp', host: css.ip4, port: 80 }, { proto: 'tcp', host: css.ip4, port: 22 }]),
      probe(csa.ns, [{ proto: 'tcp', host: OUTSIDE.a4, port: 80 }, { proto: 'udp', host: OUTSIDE.a4, port: 9999 }, { proto: 'tcp', host: OUTSIDE.a4, port: 443 }]),
      probe(css.ns, [{ proto: 'tcp', host: OUTSIDE.a4, port: 80 }, { proto: 'udp', host: OUTSIDE.a4, port: 9999 }]),
      pingCount(css.ns, '2001:db8:a::1'),
    ]);
    console.log(`S9 ingress to csa ${inA}, to the system VM ${inSys}; egress from csa ${outA}, from the system VM ${outSys}`);
    expect(inA).toEqual(['timeout', 'open']); // only the ingress rule (tcp/22) admits
    expect(outA).toEqual(['open', 'open', 'open']); // Neutron would drop all three: no egress rule
    expect(inSys).toEqual(['open', 'open']);
    expect(outSys).toEqual(['open', 'open']);
    expect(ping6Sys).toBeGreaterThan(0);
  });

  it('S9: one egress rule restricts egress to the rules; DNS (udp and tcp 53) still passes', async () => {
    await fw.upsertGroup({ ...SG_CS, security_group_rules: [...SG_CS.security_group_rules!, HTTPS_OUT] } as SecurityGroupInput);
    try {
      const outA = await probe(csa.ns, [
        { proto: 'tcp', host: OUTSIDE.a4, port: 443 }, { proto: 'tcp', host: OUTSIDE.a4, port: 80 },
        { proto: 'udp', host: OUTSIDE.a4, port: 9999 }, { proto: 'udp', host: OUTSIDE.a4, port: 53 }, { proto: 'tcp', host: OUTSIDE.a4, port: 53 },
      ]);
      const outSys = await probe(css.ns, [{ proto: 'tcp', host: OUTSIDE.a4, port: 80 }]);
      console.log(`S9 with an egress rule (tcp/443): csa ${outA}; the system VM ${outSys}`);
      expect(outA).toEqual(['open', 'timeout', 'timeout', 'open', 'open']);
      expect(outSys).toEqual(['open']);
    } finally {
      await fw.upsertGroup(SG_CS);
    }
    expect(await probe(csa.ns, [{ proto: 'tcp', host: OUTSIDE.a4, port: 80 }])).toEqual(['open']);
  });

  async function dhcpExchange(client: Vm, server: Vm): Promise<{ served: Bg; got: string[] }> {
    const served = await h.netprobe(server.ns, ['dhcp-server', '--dev', 'eth0', '--addr', server.ip4, '--seconds', '3']);
    try {
      const c = await h.netprobe(client.ns, ['dhcp-client', '--dev', 'eth0', '--family', '4', '--wait', '1.5'], false);
      await c.done;
      return { served, got: c.records<{ src: string }>().map((r) => r.src) };
    } finally {
      served.stop();
    }
  }

  it('S9: DHCP snooping — a VM answering DHCP never hears a DISCOVER nor reaches a client; the system VM serves DHCP', async () => {
    const legit = await dhcpExchange(csa, css);
    const rogue = await dhcpExchange(csa, csb);
    // csb answers on its own as well: an offer from udp 67 to the broadcast address, which csa listens for.
    const offers = await sniffDuring({ ns: csa.ns, dev: 'eth0' }, () =>
      h.sendFrame(csb.ns, 'eth0', { ...udpFrame(csb, '255.255.255.255', 'ff:ff:ff:ff:ff:ff', 68, 67), payload: 'offer', count: 3 }));
    console.log(`S9 DHCP: system VM saw ${legit.served.records().length} request(s), client got ${legit.got}; rogue VM saw ${rogue.served.records().length}, client got ${rogue.got.length}; unsolicited offers seen by csa ${offers.filter((f) => f.sport === 67).length}`);
    expect(legit.served.records<{ src: string }>().map((r) => r.src)).toContain('0.0.0.0');
    expect(legit.got).toEqual([css.ip4]);
    // csb admits udp from anywhere by rule: only the guard keeps the DISCOVER (udp dport 67) from it.
    expect(rogue.served.records()).toEqual([]);
    expect(rogue.got).toEqual([]);
    expect(offers.filter((f) => f.sport === 67)).toEqual([]);
  });

  /** The outside namespace's neighbour entry for `ip` (the victim's view), or '' when it has none. */
  const neighbour = (ip: string): string => h.outside.exec('ip', ['neigh', 'show', ip, 'dev', h.outsideDev]).trim();
  const arp = (from: Vm, f: Omit<ArpFrameSpec, 'proto' | 'smac'>): ArpFrameSpec => ({ proto: 'arp', smac: from.mac, ...f });

  it('S9: ARP anti-spoof — a VM cannot claim another VM\'s address, nor announce a foreign one; the system VM can', async () => {
    // The victim (the router) learns senders from gratuitous ARP too, and takes every update at once.
    h.outside.exec('sysctl', ['-qw', `net.ipv4.conf.${h.outsideDev}.arp_accept=1`, `net.ipv4.neigh.${h.outsideDev}.locktime=0`]);
    h.outside.exec('ip', ['neigh', 'flush', 'dev', h.outsideDev]);
    const bcast = 'ff:ff:ff:ff:ff:ff';
    // A request to the router "from" csa's address with csb's MAC: the victim would map csa's IP to csb.
    await h.sendFrame(csb.ns, 'eth0', arp(csb, { dmac: outMac, op: 1, sip: csa.ip4, tip: ROUTER, count: 2 }));
    // A reply claiming csa's address, and gratuitous ARP for an address nobody on the network owns.
    await h.sendFrame(csb.ns, 'eth0', arp(csb, { dmac: outMac, op: 2, sip: csa.ip4, tha: outMac, tip: ROUTER, count: 2 }));
    await h.sendFrame(csb.ns, 'eth0', arp(csb, { dmac: bcast, op: 1, sip: '192.0.2.99', tip: '192.0.2.99', count: 2 }));
    // Controls: csb's own address, and the same gratuitous ARP from the system VM.
    await h.sendFrame(csb.ns, 'eth0', arp(csb, { dmac: outMac, op: 1, sip: csb.ip4, tip: ROUTER }));
    await h.sendFrame(css.ns, 'eth0', arp(css, { dmac: bcast, op: 1, sip: '192.0.2.98', tip: '192.0.2.98', count: 2 }));
    await sleep(300);
    const seen = { spoofed: neighbour(csa.ip4), foreign: neighbour('192.0.2.99'), own: neighbour(csb.ip4), system: neighbour('192.0.2.98') };
    console.log(`S9 ARP, the router's neighbour table: ${JSON.stringify(seen)}`);
    expect(seen.spoofed).not.toContain(csb.mac);
    expect(seen.foreign).toBe('');
    expect(seen.own).toContain(csb.mac);
    expect(seen.system).toContain(css.mac);
  });

  it('S9: ARP guard — a VM sends ARP only as request or reply, even with its own sender address', async () => {
    const seen = await sniffDuring(outside(), async () => {
      await h.sendFrame(csa.ns, 'eth0', arp(csa, { dmac: outMac, op: 8, sip: csa.ip4, tip: ROUTER, count: 2 })); // InARP request
      await h.sendFrame(csa.ns, 'eth0', arp(csa, { dmac: outMac, op: 3, sip: csa.ip4, tip: ROUTER, count: 2 })); // RARP request
      await h.sendFrame(csa.ns, 'eth0', arp(csa, { dmac: outMac, op: 1, sip: csa.ip4, tip: ROUTER })); // control
      await h.sendFrame(css.ns, 'eth0', arp(css, { dmac: outMac, op: 8, sip: css.ip4, tip: ROUTER })); // control
    });
    const ops = seen.filter((f) => f.type === 'arp').map((f) => `${f.sip} op ${f.op}`);
    console.log(`S9 ARP operations seen by the router: ${[...new Set(ops)].join(', ')}`);
    expect(ops).toContain(`${csa.ip4} op 1`);
    expect(ops).toContain(`${css.ip4} op 8`);
    expect(ops.filter((o) => o.startsWith(`${csa.ip4} `) && !o.endsWith('op 1') && !o.endsWith('op 2'))).toEqual([]);
  });

  it('S9: IPv4 broadcast and multicast other than DHCP are dropped, from a VM and to it', async () => {
    const fromVm = await sniffDuring(outside(), async () => {
      await h.sendFrame(csa.ns, 'eth0', udpFrame(csa, '255.255.255.255', 'ff:ff:ff:ff:ff:ff', 9999, 4101));
      await h.sendFrame(csa.ns, 'eth0', udpFrame(csa, '224.0.0.251', '01:00:5e:00:00:fb', 9999, 4102));
      await h.sendFrame(csa.ns, 'eth0', udpFrame(csa, '192.0.2.255', 'ff:ff:ff:ff:ff:ff', 9999, 4103)); // subnet broadcast: by MAC
      await h.sendFrame(csa.ns, 'eth0', udpFrame(csa, OUTSIDE.a4, outMac, 9999, 4104)); // control: unicast
      await h.sendFrame(css.ns, 'eth0', udpFrame(css, '255.255.255.255', 'ff:ff:ff:ff:ff:ff', 9999, 4105)); // control: system VM
    });
    const toVm = await sniffDuring({ ns: csb.ns, dev: 'eth0' }, async () => {
      await h.sendFrame(css.ns, 'eth0', udpFrame(css, '255.255.255.255', 'ff:ff:ff:ff:ff:ff', 9999, 4201));
      await h.sendFrame(css.ns, 'eth0', udpFrame(css, '224.0.0.251', '01:00:5e:00:00:fb', 9999, 4202));
      await h.sendFrame(css.ns, 'eth0', udpFrame(css, csb.ip4, csb.mac, 9999, 4203)); // control: unicast, which sg-udp admits
    });
    const ports = (frames: Frame[]) => [...new Set(frames.filter((f) => f.dport === 9999).map((f) => f.sport))].sort();
    console.log(`S9 broadcast: the router saw source ports ${ports(fromVm)}; csb saw ${ports(toVm)}`);
    expect(ports(fromVm)).toEqual([4104, 4105]);
    expect(ports(toVm)).toEqual([4203]);
  });

  it('S9: IPv6 and VLAN-tagged frames are dropped for user VMs, not for the system VM', async () => {
    const [v6User, v6Sys] = await Promise.all([pingCount(csa.ns, '2001:db8:a::1'), pingCount(css.ns, '2001:db8:a::1')]);
    // Tagged frames bypass br_netfilter's IP hooks entirely (bridge-nf-filter-vlan-tagged is 0), so only the
    // bridge table stands between them and a port. Hand-made (this kernel has no 8021q module for VLAN devices).
    const tagged = (to: Vm | undefined, sport: number): FrameSpec =>
      ({ ...udpFrame(css, to?.ip4 ?? OUTSIDE.a4, to?.mac ?? outMac, 9999, sport), vlan: 5 });
    const [atCsb, atRouter] = await Promise.all([
      sniffDuring({ ns: csb.ns, dev: 'eth0' }, () => h.sendFrame(css.ns, 'eth0', { ...tagged(csb, 4301), count: 2 })),
      sniffDuring(outside(), () => h.sendFrame(css.ns, 'eth0', { ...tagged(undefined, 4302), count: 2 })),
    ]);
    const fromSys = (frames: Frame[], sport: number) => frames.filter((f) => f.sport === sport);
    console.log(`S9 IPv6 ping replies: csa ${v6User}, system VM ${v6Sys}; tagged frames seen: csb ${fromSys(atCsb, 4301).length}, router ${fromSys(atRouter, 4302).length}`);
    expect(v6User).toBe(0); // egress is open on this network: only the guard drops it
    expect(v6Sys).toBeGreaterThan(0);
    expect(fromSys(atCsb, 4301)).toEqual([]);
    expect(fromSys(atRouter, 4302).length).toBeGreaterThan(0);
  });

  it('S9: the guards live in the bridge table as one element per port and guard; the system VM is in none', () => {
    const listing = h.host.exec('nft', ['list', 'table', 'bridge', 'portwall']);
    for (const set of ['guard_arp', 'guard_dhcp', 'guard_bcast', 'guard_ip6', 'guard_vlan']) {
      const body = new RegExp(`set ${set} \\{[^}]*\\}`, 's').exec(listing)?.[0] ?? '';
      expect(body).toContain(csa.device);
      expect(body).toContain(csb.device);
      expect(body).not.toContain(css.device);
    }
  });
});
