// Controls for the scenario tests: with no firewall loaded, every probe the scenarios use to show "blocked"
// does get through. Without this, a scenario's "dropped" could be a broken topology or a broken probe.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ComputeHost, MODES, OUTSIDE, type Vm, pingCount, probe, sleep } from '../helpers/hosts.js';
import { isRoot } from '../helpers/netns.js';

describe.skipIf(!isRoot).each(MODES)('scenario topology without a firewall (%s)', (mode) => {
  let h: ComputeHost;
  let vm1: Vm;
  let vm2: Vm;

  beforeAll(async () => {
    h = new ComputeHost(mode, [{ id: 'net-a', zone: 101, bridge: 'br-a', macByte: 10 }]);
    vm1 = h.addVm('vm1', { n: 11 });
    vm2 = h.addVm('vm2', { n: 12 });
    await h.serve(vm1.ns, { tcp: [80], udp: [53] }, 30);
    await h.serve(h.outside, { tcp: [22], udp: [53] }, 30);
  });
  afterAll(() => h?.destroy());

  it('passes ping, TCP and UDP both ways, IPv4 and IPv6, from every outside source', async () => {
    const [a, b, c, d, e] = await Promise.all([
      pingCount(vm2.ns, vm1.ip4),
      pingCount(h.outside, vm1.ip4, { src: OUTSIDE.c4 }),
      pingCount(vm1.ns, OUTSIDE.a6),
      // link-local between VMs exists only on a shared link
      mode === 'bridged' ? pingCount(vm1.ns, vm2.ll6, { dev: 'eth0' }) : Promise.resolve(2),
      pingCount(vm1.ns, 'fe80::1', { dev: 'eth0' }),
    ]);
    expect([a, b, c, d, e]).toEqual([2, 2, 2, 2, 2]);
    expect(await probe(h.outside, [
      { proto: 'tcp', host: vm1.ip4, port: 80, src: OUTSIDE.a4 },
      { proto: 'udp', host: vm1.ip4, port: 53, src: OUTSIDE.b4 },
      { proto: 'tcp', host: vm1.ip6, port: 80, src: OUTSIDE.a6 },
      { proto: 'tcp', host: vm1.ip4, port: 81, src: OUTSIDE.a4 },
    ])).toEqual(['open', 'open', 'open', 'refused']);
    expect(await probe(vm1.ns, [{ proto: 'tcp', host: OUTSIDE.a4, port: 22 }, { proto: 'udp', host: OUTSIDE.b4, port: 53, sport: 40000 }]))
      .toEqual(['open', 'open']);
  });

  it('delivers hand-made frames: spoofed source IP and MAC, TCP with invalid flags', async () => {
    const sniff = await h.sniff(h.outside, h.outsideDev, 5);
    const base = { dmac: vm1.gwMac, dst: OUTSIDE.a4, proto: 'udp' as const, sport: 4000, dport: 9 };
    await sniff.during(() => h.sendFrame(vm1.ns, 'eth0',
      { ...base, smac: vm1.mac, src: '192.0.2.99' },
      { ...base, smac: 'fa:16:3e:99:99:99', src: vm1.ip4, sport: 4001 },
      { ...base, smac: vm1.mac, src: vm1.ip4, proto: 'tcp', flags: 'SF', dport: 22 }));
    const seen = sniff.records<{ src?: string; sport?: number; flags?: string }>();
    expect(seen.some((f) => f.src === '192.0.2.99')).toBe(true);
    expect(seen.some((f) => f.sport === 4001)).toBe(true);
    expect(seen.some((f) => f.flags === 'FS')).toBe(true);
  });

  it('lets DHCP and DHCPv6 exchanges and router advertisements through', async () => {
    for (const fam of [4, 6] as const) {
      const srv = h.dhcpServer(vm1, fam);
      const server = await h.netprobe(srv.ns, ['dhcp-server', '--dev', srv.dev, '--addr', srv.addr, '--seconds', '4']);
      const client = await h.netprobe(vm1.ns, ['dhcp-client', '--dev', 'eth0', '--family', String(fam), '--wait', '2'], false);
      expect(await client.done).toBe(0);
      server.stop();
      expect(client.records<{ src: string }>()[0]!.src.split('%')[0]).toBe(srv.addr);
    }
    const sniff = await h.sniff(vm1.ns, 'eth0', 5);
    await sniff.during(async () => {
      await h.sendRa(vm1);
      await h.sendRa(vm1, h.rogueLinkLocal(vm1));
    });
    const ras = sniff.records<{ icmpType?: number; src?: string }>().filter((f) => f.icmpType === 134).map((f) => f.src);
    expect(new Set(ras)).toEqual(new Set(['fe80::1', h.rogueLinkLocal(vm1)]));
    // rogue DHCP servers answer too, when nothing filters
    for (const fam of [4, 6] as const) {
      const srv = h.rogueDhcpServer(vm1, fam);
      const server = await h.netprobe(srv.ns, ['dhcp-server', '--dev', srv.dev, '--addr', srv.addr, '--seconds', '4']);
      const client = await h.netprobe(vm1.ns, ['dhcp-client', '--dev', 'eth0', '--family', String(fam), '--wait', '2'], false);
      expect(await client.done).toBe(0);
      server.stop();
    }
  });
});
