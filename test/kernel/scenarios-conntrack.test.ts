// Acceptance scenarios S1, S2 and S5 (docs/requirements.md) with real packets: a permission that goes away cuts the
// running flow at once (seed 000), tenants with identical addresses keep their conntrack state apart, and
// remote-group membership opens and closes access by member-set elements only.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Portwall } from '../../src/apply/portwall.js';
import {
  ComputeHost, EGRESS_ANY, MODES, type Vm, applyDuringFlow, group, openFirewall, pingCount, probe, state,
} from '../helpers/hosts.js';
import { isRoot } from '../helpers/netns.js';

const ICMP_IN = { direction: 'ingress', ethertype: 'IPv4', protocol: 'icmp' } as const;
const UDP_5000_IN = { id: 'r-udp', direction: 'ingress', ethertype: 'IPv4', protocol: 'udp', port_range_min: 5000, port_range_max: 5000 } as const;

/** Conntrack ids of the entries matching a filter, in the host namespace. */
async function entryIds(h: ComputeHost, f: Parameters<ComputeHost['conntrack']['list']>[0]): Promise<number[]> {
  return (await h.conntrack.list(f)).map((e) => e.id).sort();
}

describe.skipIf(!isRoot).each(MODES)('S1 and S5: cutting live flows (%s)', (mode) => {
  let h: ComputeHost;
  let fw: Portwall;
  let vm1: Vm, vm2: Vm, vm3: Vm;

  beforeAll(async () => {
    h = new ComputeHost(mode, [{ id: 'net-a', zone: 101, bridge: 'br-a', macByte: 10 }]);
    vm1 = h.addVm('vm1', { n: 11 });
    vm2 = h.addVm('vm2', { n: 12 });
    vm3 = h.addVm('vm3', { n: 13 });
    await Promise.all([h.serve(vm1.ns, { tcp: [22], udp: [5000] }, 120), h.serveEcho(vm1.ns, [2222], 120)]);
    fw = openFirewall(h);
  });
  afterAll(async () => {
    await fw?.close();
    h?.destroy();
  });

  /** S1 states: vm1 accepts ICMP from anywhere, or (without the rule) nothing. */
  const s1 = (withRule: boolean) =>
    state(
      [h.networkState('net-a')],
      [group('sg-srv', [...(withRule ? [{ ...ICMP_IN, id: 'r-icmp' }] : []), UDP_5000_IN, ...EGRESS_ANY]), group('sg-cli', EGRESS_ANY)],
      [h.port(vm1, { security_groups: ['sg-srv'] }), h.port(vm2, { security_groups: ['sg-cli'] })],
    );

  it('S1: removing an ingress rule stops a running ping within a second; re-adding restores it', async () => {
    await fw.apply(s1(true));
    // a flow the removal does not concern (udp/5000 stays allowed): its entry must survive the cleanup
    expect(await probe(vm2.ns, [{ proto: 'udp', host: vm1.ip4, port: 5000, sport: 40001 }])).toEqual(['open']);
    const udpFlow = { zone: 101, protocol: 'udp' as const, src: vm2.ip4, sport: 40001, dport: 5000 };
    const udpIds = await entryIds(h, udpFlow);
    expect(udpIds).toHaveLength(1);
    const ping = h.longPing(vm2.ns, vm1.ip4);
    try {
      await ping.waitReplies(5);
      const cut = await applyDuringFlow(fw, s1(false), ping);
      console.log(`[${mode}] S1 last ping reply ${cut.lastReplyMs} ms after the apply started, none later (apply ${cut.applyMs} ms, ` +
        `${cut.deleted} conntrack entries deleted, ${cut.lateReplies} replies later than 1 s)`);
      expect(cut.lateReplies).toBe(0);
      expect(cut.lastReplyMs!).toBeLessThan(1000);
      expect(cut.deleted).toBeGreaterThanOrEqual(1);
      expect(await entryIds(h, udpFlow)).toEqual(udpIds);
      // the flow's entry is gone (requests still arrive, but none is answered any more)
      const live = await h.conntrack.list({ zone: 101, protocol: 'icmp', src: vm2.ip4, dst: vm1.ip4 });
      expect(live.filter((e) => e.status & 2 /* SEEN_REPLY */)).toEqual([]);
      expect(await pingCount(vm2.ns, vm1.ip4)).toBe(0);

      const back = await applyDuringFlow(fw, s1(true), ping);
      console.log(`[${mode}] S1 ping restored ${back.firstReplyMs} ms after the apply started (apply ${back.applyMs} ms)`);
      expect(back.firstReplyMs!).toBeLessThan(1000);
      expect(back.lateReplies).toBeGreaterThan(3);
    } finally {
      ping.stop();
    }
  });

  it('S1 sensitivity: the same removal without the conntrack cleanup leaves the old ping running', async () => {
    await fw.apply(s1(true));
    const ping = h.longPing(vm2.ns, vm1.ip4);
    try {
      await ping.waitReplies(5);
      const cut = await applyDuringFlow(fw, s1(false), ping, { cleanup: false });
      console.log(`[${mode}] S1 without cleanup: ${cut.lateReplies} replies more than 1 s after the rule was removed`);
      expect(cut.lateReplies).toBeGreaterThan(3);
      // the rule removal itself did take effect: a new ping (a new ICMP id) is not admitted
      expect(await pingCount(vm2.ns, vm1.ip4)).toBe(0);
    } finally {
      ping.stop();
    }
  });

  /** S1 over TCP and IPv6: vm1 admits tcp/2222 and ICMPv6 (or, without them, only udp/5000). */
  const s1b = (withRules: boolean) =>
    state(
      [h.networkState('net-a')],
      [
        group('sg-srv', [
          ...(withRules
            ? [
                { id: 'r-tcp', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 2222, port_range_max: 2222 } as const,
                { id: 'r-icmp6', direction: 'ingress', ethertype: 'IPv6', protocol: 'ipv6-icmp' } as const,
              ]
            : []),
          UDP_5000_IN,
          ...EGRESS_ANY,
        ]),
        group('sg-cli', EGRESS_ANY),
      ],
      [h.port(vm1, { security_groups: ['sg-srv'] }), h.port(vm2, { security_groups: ['sg-cli'] })],
    );

  it('S1 over TCP and IPv6: a live TCP connection and a running ping6 stop too; without the cleanup they survive', async () => {
    for (const cleanup of [true, false]) {
      await fw.apply(s1b(true));
      const tcp = h.longTcp(vm2.ns, vm1.ip4, 2222);
      const ping6 = h.longPing(vm2.ns, vm1.ip6);
      try {
        await Promise.all([tcp.waitReplies(5), ping6.waitReplies(5)]);
        const cut = await applyDuringFlow(fw, s1b(false), tcp, { cleanup });
        const late6 = ping6.repliesAfter(cut.t0 + 1000).length;
        console.log(`[${mode}] S1 ${cleanup ? 'with' : 'WITHOUT'} cleanup: TCP connection's last echo ${cut.lastReplyMs} ms after the apply started, ` +
          `${cut.lateReplies} echoes and ${late6} ping6 replies later than 1 s (apply ${cut.applyMs} ms, ${cut.deleted} entries deleted)`);
        if (cleanup) {
          expect(cut.lateReplies).toBe(0);
          expect(late6).toBe(0);
        } else {
          expect(cut.lateReplies).toBeGreaterThan(3);
          expect(late6).toBeGreaterThan(3);
        }
      } finally {
        tcp.stop();
        ping6.stop();
      }
    }
  });

  /** S5 states: vm1 admits ICMP and tcp/22 from members of sg-web; vm3 is a member, vm2 only with `vm2Member`. */
  const s5 = (vm2Member: boolean) =>
    state(
      [h.networkState('net-a')],
      [
        group('sg-srv', [
          { ...ICMP_IN, id: 'r-icmp-web', remote_group_id: 'sg-web' },
          { direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 22, port_range_max: 22, remote_group_id: 'sg-web', id: 'r-ssh-web' },
          { direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 2222, port_range_max: 2222, remote_group_id: 'sg-web', id: 'r-echo-web' },
          ...EGRESS_ANY,
        ]),
        group('sg-web', []),
        group('sg-cli', EGRESS_ANY),
      ],
      [
        h.port(vm1, { security_groups: ['sg-srv'] }),
        h.port(vm2, { security_groups: vm2Member ? ['sg-cli', 'sg-web'] : ['sg-cli'] }),
        h.port(vm3, { security_groups: ['sg-cli', 'sg-web'] }),
      ],
    );

  it('S5: a port joining a remote group opens access with member-set elements only', async () => {
    await fw.apply(s5(false));
    const [fromMember, fromOther] = await Promise.all([probe(vm3.ns, [{ proto: 'tcp', host: vm1.ip4, port: 22 }]), probe(vm2.ns, [{ proto: 'tcp', host: vm1.ip4, port: 22 }])]);
    expect([fromMember, fromOther]).toEqual([['open'], ['timeout']]);
    expect(await pingCount(vm2.ns, vm1.ip4)).toBe(0);

    const t0 = Date.now();
    const r = await fw.apply(s5(true));
    console.log(`[${mode}] S5 batch for a member joining:\n${r.plan}`);
    // The member set gains the port; the port points at the rule profile of its new groups (one that vm3
    // already uses): no rule, no rule element.
    expect(memberOnly(r.plan)).toBe(true);
    const [tcp, icmp] = await Promise.all([probe(vm2.ns, [{ proto: 'tcp', host: vm1.ip4, port: 22 }]), pingCount(vm2.ns, vm1.ip4)]);
    console.log(`[${mode}] S5 access opened; first probe answered ${Date.now() - t0} ms after the apply started`);
    expect(tcp).toEqual(['open']);
    expect(icmp).toBeGreaterThan(0);
  });

  it('S5: a fixed IP added to a member port opens access for that address, by element operations only', async () => {
    await fw.apply(s5(false));
    const extra = '192.0.2.33';
    const withExtra = s5(false);
    const p3 = withExtra.ports!.find((p) => p.id === `port-${vm3.name}`)!;
    p3.fixed_ips = [...p3.fixed_ips!, { ip_address: extra }];
    vm3.ns.exec('ip', ['addr', 'add', `${extra}/32`, 'dev', 'eth0']);
    if (mode === 'routed') h.host.exec('ip', ['route', 'add', `${extra}/32`, 'dev', vm3.device]);
    try {
      expect(await probe(vm3.ns, [{ proto: 'tcp', host: vm1.ip4, port: 22, src: extra }])).toEqual(['timeout']);
      const plan = await fw.plan(withExtra);
      console.log(`[${mode}] S5 plan for a fixed IP added to a member:\n${plan.summary}`);
      expect(plan.operations.every((op) => op.object.kind === 'elements')).toBe(true);
      expect(plan.operations.some((op) => op.verb === 'add' && op.object.kind === 'elements' && /^m4_/.test(op.object.set))).toBe(true);
      await fw.apply(withExtra);
      expect(await probe(vm3.ns, [{ proto: 'tcp', host: vm1.ip4, port: 22, src: extra }])).toEqual(['open']);
    } finally {
      vm3.ns.exec('ip', ['addr', 'del', `${extra}/32`, 'dev', 'eth0']);
      if (mode === 'routed') h.host.exec('ip', ['route', 'del', `${extra}/32`, 'dev', vm3.device]);
    }
  });

  it('S5: a member leaving the group cuts its running ping; the other member\'s ping is not touched', async () => {
    await fw.apply(s5(true));
    const leaving = h.longPing(vm2.ns, vm1.ip4);
    const leavingTcp = h.longTcp(vm2.ns, vm1.ip4, 2222);
    const staying = h.longPing(vm3.ns, vm1.ip4);
    try {
      await Promise.all([leaving.waitReplies(5), leavingTcp.waitReplies(5), staying.waitReplies(5)]);
      const stayingFlow = { zone: 101, protocol: 'icmp' as const, src: vm3.ip4, dst: vm1.ip4 };
      const stayingIds = await entryIds(h, stayingFlow);
      const cut = await applyDuringFlow(fw, s5(false), leaving);
      const stayed = staying.repliesAfter(Date.now() - 1500).length;
      console.log(`[${mode}] S5 leaving member's last ping reply ${cut.lastReplyMs} ms after the apply started, none later ` +
        `(apply ${cut.applyMs} ms, ${cut.deleted} entries deleted); its TCP connection got ${leavingTcp.repliesAfter(cut.t0 + 1000).length} echoes ` +
        `later than 1 s; the remaining member's ping got ${stayed} replies meanwhile`);
      const lateTcp = leavingTcp.repliesAfter(cut.t0 + 1000).length;
      expect(cut.lateReplies).toBe(0);
      expect(cut.lastReplyMs!).toBeLessThan(1000);
      expect(lateTcp).toBe(0);
      expect(stayed).toBeGreaterThan(5);
      // not merely re-admitted: the remaining member's conntrack entry was never deleted
      expect(await entryIds(h, stayingFlow)).toEqual(expect.arrayContaining(stayingIds));
      expect(await probe(vm2.ns, [{ proto: 'tcp', host: vm1.ip4, port: 22 }])).toEqual(['timeout']);
    } finally {
      leaving.stop();
      leavingTcp.stop();
      staying.stop();
    }
  });

  it('S5: a member port removed from the state altogether loses its running flows to the group\'s ports', async () => {
    await fw.apply(s5(true));
    const gone = s5(true);
    gone.ports = gone.ports!.filter((p) => p.id !== `port-${vm2.name}`);
    const ping = h.longPing(vm2.ns, vm1.ip4);
    const tcp = h.longTcp(vm2.ns, vm1.ip4, 2222);
    try {
      await Promise.all([ping.waitReplies(5), tcp.waitReplies(5)]);
      const cut = await applyDuringFlow(fw, gone, ping);
      const lateTcp = tcp.repliesAfter(cut.t0 + 1000).length;
      console.log(`[${mode}] S5 member port removed: last ping reply ${cut.lastReplyMs} ms after the apply started, ` +
        `${cut.lateReplies} ping replies and ${lateTcp} TCP echoes later than 1 s (apply ${cut.applyMs} ms, ${cut.deleted} entries deleted)`);
      expect(cut.lateReplies).toBe(0);
      expect(lateTcp).toBe(0);
    } finally {
      ping.stop();
      tcp.stop();
    }
  });

  it('S5 sensitivity: without the cleanup the leaving member\'s ping survives', async () => {
    await fw.apply(s5(true));
    const ping = h.longPing(vm2.ns, vm1.ip4);
    try {
      await ping.waitReplies(5);
      const cut = await applyDuringFlow(fw, s5(false), ping, { cleanup: false });
      console.log(`[${mode}] S5 without cleanup: ${cut.lateReplies} replies more than 1 s after the member left`);
      expect(cut.lateReplies).toBeGreaterThan(3);
      expect(await pingCount(vm2.ns, vm1.ip4)).toBe(0);
    } finally {
      ping.stop();
    }
  });
});

describe.skipIf(!isRoot)('S2: two tenants with identical addresses on one host (bridged)', () => {
  let h: ComputeHost;
  let fw: Portwall;
  let a1: Vm, a2: Vm, b1: Vm, b2: Vm;

  const tenant = (g: string, icmp: boolean) =>
    group(g, [
      ...(icmp ? [{ ...ICMP_IN, id: `${g}-icmp` }] : []),
      { direction: 'ingress', ethertype: 'IPv4', protocol: 'udp', port_range_min: 5000, port_range_max: 5000, id: `${g}-udp` },
      ...EGRESS_ANY,
    ]);
  const st = (aIcmp: boolean) =>
    state(
      [h.networkState('net-a'), h.networkState('net-b')],
      [tenant('sg-a', aIcmp), tenant('sg-b', true)],
      [
        h.port(a1, { id: 'port-a1', security_groups: ['sg-a'] }),
        h.port(a2, { id: 'port-a2', security_groups: ['sg-a'] }),
        h.port(b1, { id: 'port-b1', security_groups: ['sg-b'] }),
        h.port(b2, { id: 'port-b2', security_groups: ['sg-b'] }),
      ],
    );

  beforeAll(async () => {
    h = new ComputeHost('bridged', [
      { id: 'net-a', zone: 101, bridge: 'br-a', macByte: 10 },
      { id: 'net-b', zone: 102, bridge: 'br-b', macByte: 11 },
    ]);
    a1 = h.addVm('a1', { network: 'net-a', n: 11 });
    a2 = h.addVm('a2', { network: 'net-a', n: 12 });
    b1 = h.addVm('b1', { network: 'net-b', n: 11 });
    b2 = h.addVm('b2', { network: 'net-b', n: 12 });
    await Promise.all([h.serve(a2.ns, { udp: [5000] }, 60), h.serve(b2.ns, { udp: [5000] }, 60)]);
    fw = openFirewall(h);
    await fw.apply(st(true));
  });
  afterAll(async () => {
    await fw?.close();
    h?.destroy();
  });

  it('the same 5-tuple in both tenants gets one conntrack entry per zone, none shared', async () => {
    expect(a1.ip4).toBe(b1.ip4);
    const flow = { proto: 'udp' as const, host: a2.ip4, port: 5000, sport: 40000 };
    const [ra, rb] = await Promise.all([probe(a1.ns, [flow]), probe(b1.ns, [flow])]);
    expect([ra, rb]).toEqual([['open'], ['open']]);
    const filter = { protocol: 'udp' as const, src: a1.ip4, dst: a2.ip4, sport: 40000, dport: 5000 };
    const [za, zb, z0] = await Promise.all([
      h.conntrack.list({ ...filter, zone: 101 }),
      h.conntrack.list({ ...filter, zone: 102 }),
      h.conntrack.list({ ...filter, zone: 0 }),
    ]);
    console.log(`[bridged] S2 entries for ${a1.ip4}:40000 -> ${a2.ip4}:5000: zone 101: ${za.length}, zone 102: ${zb.length}, zone 0: ${z0.length}`);
    expect(za).toHaveLength(1);
    expect(zb).toHaveLength(1);
    expect(z0).toHaveLength(0);
    expect(za[0]!.status & 2).toBe(2); // both saw their replies
    expect(zb[0]!.status & 2).toBe(2);
    expect(h.conntrackLines(101, ['-p', 'udp', '--dport', '5000'])).toHaveLength(1);
    expect(h.conntrackLines(102, ['-p', 'udp', '--dport', '5000'])).toHaveLength(1);
  });

  it('cutting one tenant\'s flow leaves the other tenant\'s identical flow running', async () => {
    await fw.apply(st(true));
    const pa = h.longPing(a1.ns, a2.ip4);
    const pb = h.longPing(b1.ns, b2.ip4);
    try {
      await Promise.all([pa.waitReplies(5), pb.waitReplies(5)]);
      const bFlow = { zone: 102, protocol: 'icmp' as const, src: b1.ip4, dst: b2.ip4 };
      const bIds = await entryIds(h, bFlow);
      expect(bIds.length).toBeGreaterThanOrEqual(1);
      const t0 = Date.now();
      const cut = await applyDuringFlow(fw, st(false), pa);
      const bAfter = pb.repliesAfter(t0 + 200).length;
      console.log(`[bridged] S2 tenant A's last ping reply ${cut.lastReplyMs} ms after the apply started, none later (${cut.deleted} deleted); ` +
        `tenant B's identical ping got ${bAfter} replies meanwhile`);
      expect(cut.lateReplies).toBe(0);
      expect(bAfter).toBeGreaterThan(8);
      // tenant B's entry is the same one: the cleanup never reached into zone 102
      expect(await entryIds(h, bFlow)).toEqual(expect.arrayContaining(bIds));
    } finally {
      pa.stop();
      pb.stop();
    }
  });
});

/** True when every operation of a plan adds or deletes elements of remote-group member sets only. */
function memberOnly(batch: string): boolean {
  const lines = batch.split('\n').filter(Boolean);
  return lines.some((l) => / m[46]_/.test(l)) && lines.every((l) => /^(add|delete) element inet portwall (m[46]_\S+|profile_(dev|tag)) /.test(l));
}

/**
 * Two routed networks: net-a (zone 101) holds a port that also answers for 192.0.2.0/24 (an address pair),
 * net-b (zone 102) a VM at 192.0.2.6 inside that prefix. Between routed ports a flow takes the lower zone, 101,
 * where the pair covers the peer's address; the peer's host route wins in the dataplane, and so must it when the
 * cleanup attributes the flow.
 */
describe.skipIf(!isRoot)("cutting a flow to another network's port whose address a lower zone's pair covers (routed)", () => {
  let h: ComputeHost;
  let fw: Portwall;
  let a: Vm, b: Vm;
  const st = (bIngress: boolean) =>
    state(
      [h.networkState('net-a'), h.networkState('net-b')],
      [group('sg-a', [...EGRESS_ANY]), group('sg-b', [...(bIngress ? [{ ...ICMP_IN, id: 'b-icmp' }] : []), ...EGRESS_ANY])],
      [h.port(a, { security_groups: ['sg-a'], allowed_address_pairs: [{ ip_address: '192.0.2.0/24' }] }), h.port(b, { security_groups: ['sg-b'] })],
    );

  beforeAll(async () => {
    h = new ComputeHost('routed', [{ id: 'net-a', zone: 101, macByte: 0x31 }, { id: 'net-b', zone: 102, macByte: 0x32 }]);
    a = h.addVm('cpa', { network: 'net-a', n: 2 });
    b = h.addVm('cpb', { network: 'net-b', n: 6 });
    fw = openFirewall(h);
    await fw.apply(st(true));
  }, 60_000);
  afterAll(async () => {
    await fw?.close();
    h?.destroy();
  });

  it("removing the peer's ingress stops the ping at once", async () => {
    const ping = h.longPing(a.ns, b.ip4, { intervalS: 0.1, count: 150 });
    try {
      await ping.waitReplies(5);
      // The oracle: the flow is in the lower zone.
      expect(h.conntrackLines(101, ['-p', 'icmp', '-d', b.ip4])).toHaveLength(1);
      const r = await fw.apply(st(false));
      expect(r.cleanup.deleted).toBe(1);
      const t0 = Date.now();
      await new Promise((res) => setTimeout(res, 1500));
      expect(ping.repliesAfter(t0 + 300)).toEqual([]);
    } finally {
      ping.stop();
    }
  });
});
