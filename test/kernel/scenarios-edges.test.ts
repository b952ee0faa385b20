// Edges of the layout found in review (docs/dataplane.md), with real packets:
// - traffic the host ROUTES into a bridged network (from an uplink; from the host itself) meets the destination
//   port's ingress rules and is tracked in one zone both ways (allowed traffic works, the rest is dropped);
// - traffic the host routes from a bridge back out of the SAME bridge (hairpin: VM1 → host MAC → VM2) meets
//   VM2's ingress rules, not VM1's (it never meets the bridge forward hook, so it has no destination tag);
// - a routed port that is not an Ethernet device (tun) cannot bypass anti-spoof;
// - 0.0.0.0 passes anti-spoof for DHCP discover only.
import { spawn } from 'node:child_process';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Portwall } from '../../src/apply/portwall.js';
import {
  Bg, ComputeHost, EGRESS_ANY, type Frame, NETPROBE, OUTSIDE, type Vm, group, openFirewall, probe, sleep, state,
} from '../helpers/hosts.js';
import { Netns, isRoot, veth } from '../helpers/netns.js';

const TUNSEND = path.join(path.dirname(NETPROBE), 'tunsend.py');
const WEB = group('sg-web', [...EGRESS_ANY, { direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 80, port_range_max: 80 }]);

describe.skipIf(!isRoot)('traffic the host routes into a bridged network (bridged)', () => {
  let h: ComputeHost;
  let fw: Portwall;
  let client: Netns;
  let vm1: Vm;
  const HOST_ON_BRIDGE = '192.0.2.2';
  const CLIENT = '203.0.113.66';

  beforeAll(async () => {
    h = new ComputeHost('bridged', [{ id: 'net-a', zone: 101, bridge: 'br-a', macByte: 10 }]);
    client = new Netns('cl');
    vm1 = h.addVm('vm1', { n: 11 });
    // The host is a router of the bridged network: an address on the bridge, an uplink to a client network.
    h.host.exec('ip', ['addr', 'add', `${HOST_ON_BRIDGE}/24`, 'dev', 'br-a']);
    veth(h.host, 'upl', client, 'eth0', { a: ['203.0.113.65/26'], b: [`${CLIENT}/26`] });
    client.exec('ip', ['route', 'add', '192.0.2.0/24', 'via', '203.0.113.65']);
    vm1.ns.exec('ip', ['route', 'add', '203.0.113.64/26', 'via', HOST_ON_BRIDGE]);
    await h.serve(vm1.ns, { tcp: [80] }, 90);
    fw = openFirewall(h);
    await fw.apply(state([h.networkState('net-a')], [WEB], [h.port(vm1, { security_groups: ['sg-web'] })]));
  });
  afterAll(async () => {
    await fw?.close();
    h?.destroy();
    client?.destroy();
  });

  it('control: bridged traffic from the outside meets the ingress rules', async () => {
    expect(await probe(h.outside, [{ proto: 'tcp', host: vm1.ip4, port: 80, src: OUTSIDE.a4 }, { proto: 'tcp', host: vm1.ip4, port: 81, src: OUTSIDE.a4 }]))
      .toEqual(['open', 'timeout']);
  });

  it('routed in from an uplink: the allowed port answers (one zone both ways), another port is dropped', async () => {
    expect(await probe(client, [{ proto: 'tcp', host: vm1.ip4, port: 80 }, { proto: 'tcp', host: vm1.ip4, port: 81 }]))
      .toEqual(['open', 'timeout']);
    const lines = h.conntrackLines(101, ['-p', 'tcp', '--dport', '80', '-s', CLIENT]);
    expect(lines.length).toBeGreaterThanOrEqual(1);
    expect(h.host.exec('conntrack', ['-L', '-w', '0', '-s', CLIENT]).split('\n').filter((l) => l.includes('src='))).toEqual([]);
  });

  it('from the host itself (its address on the bridge): the same ingress rules', async () => {
    expect(await probe(h.host, [{ proto: 'tcp', host: vm1.ip4, port: 80 }, { proto: 'tcp', host: vm1.ip4, port: 81 }]))
      .toEqual(['open', 'timeout']);
  });
});

describe.skipIf(!isRoot)('anti-spoof on a routed port that is a tun device (routed)', () => {
  let h: ComputeHost;
  let fw: Portwall;
  let tun: Bg;
  const DEV = 'tunt';
  const OWN = '192.0.2.50';

  const st = (portSecurity: boolean) => state([h.networkState('net-r')], [group('sg-out', EGRESS_ANY)], [{
    id: 'port-tun', network_id: 'net-r', device: DEV, mac_address: 'fa:16:3e:00:00:50', fixed_ips: [{ ip_address: OWN }],
    security_groups: portSecurity ? ['sg-out'] : [], port_security_enabled: portSecurity,
  }]);

  /** Writes packets from `srcs` into the tun; returns the sources the outside namespace received. */
  async function send(srcs: string[]): Promise<string[]> {
    const sniff = await h.sniff(h.outside, h.outsideDev, 5);
    await sniff.during(async () => {
      for (const s of srcs) tun.child.stdin!.write(`${s} ${OUTSIDE.a4} 9\n`);
      await sleep(400); // the tun writer takes its lines in its own time
    });
    return sniff.records<Frame>().filter((f) => f.dport === 9).map((f) => f.src!);
  }

  beforeAll(async () => {
    h = new ComputeHost('routed', [{ id: 'net-r', zone: 121, macByte: 30 }]);
    tun = new Bg(spawn('ip', ['netns', 'exec', h.host.name, 'python3', TUNSEND, '--dev', DEV, '--addr', OWN, '--seconds', '60'], { stdio: ['pipe', 'pipe', 'pipe'] }));
    await tun.waitFor((l) => l === 'ready', 5000);
    fw = openFirewall(h);
  });
  afterAll(async () => {
    tun?.stop();
    await fw?.close();
    h?.destroy();
  });

  it('control: with port security off, own and spoofed sources leave the tun', async () => {
    await fw.apply(st(false));
    expect(new Set(await send([OWN, '192.0.2.99', '192.0.2.199']))).toEqual(new Set([OWN, '192.0.2.99', '192.0.2.199']));
  });

  it('filtered: no spoofed source leaves a port that is not an Ethernet device', async () => {
    await fw.apply(st(true));
    const seen = await send([OWN, '192.0.2.99', '192.0.2.199']);
    expect(seen.filter((s) => s !== OWN)).toEqual([]);
  });
});

describe.skipIf(!isRoot)('0.0.0.0 passes anti-spoof only for DHCP discover (bridged)', () => {
  let h: ComputeHost;
  let fw: Portwall;
  let vm1: Vm;

  beforeAll(async () => {
    h = new ComputeHost('bridged', [{ id: 'net-a', zone: 101, bridge: 'br-a', macByte: 10 }]);
    vm1 = h.addVm('vm1', { n: 11 });
    fw = openFirewall(h);
    await fw.apply(state([h.networkState('net-a')], [group('sg-out', EGRESS_ANY)], [h.port(vm1, { security_groups: ['sg-out'] })]));
  });
  afterAll(async () => {
    await fw?.close();
    h?.destroy();
  });

  it('UDP and TCP from 0.0.0.0 to an allowed destination are dropped; the same from the port address pass', async () => {
    const sniff = await h.sniff(h.outside, h.outsideDev, 5);
    const base = { smac: vm1.mac, dmac: vm1.gwMac, dst: OUTSIDE.a4 };
    await sniff.during(() => h.sendFrame(vm1.ns, 'eth0',
      { ...base, src: '0.0.0.0', proto: 'udp', sport: 4000, dport: 9 },
      { ...base, src: '0.0.0.0', proto: 'tcp', flags: 'S', sport: 4001, dport: 22 },
      { ...base, src: vm1.ip4, proto: 'udp', sport: 4002, dport: 9 },
      { ...base, src: vm1.ip4, proto: 'tcp', flags: 'S', sport: 4003, dport: 22 }));
    const seen = sniff.records<Frame>().filter((f) => f.sport !== undefined && f.sport >= 4000 && f.sport <= 4003).map((f) => `${f.src}:${f.sport}`);
    expect(new Set(seen)).toEqual(new Set([`${vm1.ip4}:4002`, `${vm1.ip4}:4003`]));
  });
});

describe.skipIf(!isRoot)('hairpin routing: a VM sends to a VM of its own bridge via the host (bridged)', () => {
  // The host has an address on the bridge and forwards: VM1 routes VM2's address via the host, so the frame goes
  // to the host's MAC and the host routes it back out of the same bridge. It never meets the bridge forward hook
  // (no destination tag), yet iif = oif = the bridge: it must still meet VM2's ingress rules, not VM1's.
  let h: ComputeHost;
  let fw: Portwall;
  let vm1: Vm;
  let vm2: Vm;
  const HOST_ON_BRIDGE = '192.0.2.2';
  // VM1 itself accepts 81: judged by the source's ingress policy (the bug), 81 would pass.
  const OPEN = group('sg-open', [...EGRESS_ANY, { direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 80, port_range_max: 81 }]);

  beforeAll(async () => {
    h = new ComputeHost('bridged', [{ id: 'net-a', zone: 101, bridge: 'br-a', macByte: 10 }]);
    vm1 = h.addVm('vm1', { n: 11 });
    vm2 = h.addVm('vm2', { n: 12 });
    h.host.exec('ip', ['addr', 'add', `${HOST_ON_BRIDGE}/24`, 'dev', 'br-a']);
    await h.serve(vm2.ns, { tcp: [80, 81] }, 90);
    fw = openFirewall(h);
    await fw.apply(state([h.networkState('net-a')], [WEB, OPEN], [
      h.port(vm1, { security_groups: ['sg-open'] }), h.port(vm2, { security_groups: ['sg-web'] }),
    ]));
  });
  afterAll(async () => {
    await fw?.close();
    h?.destroy();
  });

  it('control: bridged VM1 → VM2 meets VM2\'s ingress rules', async () => {
    expect(await probe(vm1.ns, [{ proto: 'tcp', host: vm2.ip4, port: 80 }, { proto: 'tcp', host: vm2.ip4, port: 81 }]))
      .toEqual(['open', 'timeout']);
  });

  it('routed by the host back into the same bridge: still VM2\'s ingress rules', async () => {
    vm1.ns.exec('ip', ['route', 'add', `${vm2.ip4}/32`, 'via', HOST_ON_BRIDGE]);
    try {
      expect(await probe(vm1.ns, [{ proto: 'tcp', host: vm2.ip4, port: 80 }, { proto: 'tcp', host: vm2.ip4, port: 81 }]))
        .toEqual(['open', 'timeout']);
      // The frames did go through the host: its conntrack saw the flow to 80 in the bridge's zone.
      expect(h.conntrackLines(101, ['-p', 'tcp', '--dport', '80', '-s', vm1.ip4, '-d', vm2.ip4]).length).toBeGreaterThanOrEqual(1);
    } finally {
      vm1.ns.exec('ip', ['route', 'del', `${vm2.ip4}/32`, 'via', HOST_ON_BRIDGE]);
    }
  });
});
