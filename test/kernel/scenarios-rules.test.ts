// Acceptance scenarios S4 and S6 (docs/requirements.md): the seven example rules of seed 001 §3.3.3, each shown
// admitting its traffic while its neighbours (another port number, source, protocol, family or VM port) are
// refused; and LVS direct routing (seed 002), which needs allowed-address pairs on both sides.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Portwall } from '../../src/apply/portwall.js';
import {
  ComputeHost, EGRESS_ANY, MODES, OUTSIDE, type Probe, type Vm, applyDuringFlow, group, openFirewall, pingCount, probe, state,
} from '../helpers/hosts.js';
import { isRoot } from '../helpers/netns.js';

/**
 * Seed 001 §3.3.3, addresses translated to documentation ranges: 15.5.0.0/16 → 198.51.100.0/24 and
 * 100.1.100.0/24 → 203.0.113.0/25 (so that 203.0.113.200 is a near miss).
 */
const SEVEN = group('sg-seven', [
  { id: 'r1-ping-out', direction: 'egress', ethertype: 'IPv4', protocol: 'icmp' },
  { id: 'r2-ping-in', direction: 'ingress', ethertype: 'IPv4', protocol: 'icmp' },
  { id: 'r3-ssh-out', direction: 'egress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 22, port_range_max: 22 },
  { id: 'r4-http-in', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 80, port_range_max: 80 },
  { id: 'r5-http-out', direction: 'egress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 80, port_range_max: 80 },
  { id: 'r6-pop3-in', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 110, port_range_max: 110, remote_ip_prefix: '198.51.100.0/24' },
  { id: 'r7-dns-in', direction: 'ingress', ethertype: 'IPv4', protocol: 'udp', port_range_min: 53, port_range_max: 53, remote_ip_prefix: '203.0.113.0/25' },
]);

describe.skipIf(!isRoot).each(MODES)('S4: the seven example rules of seed 001 (%s)', (mode) => {
  let h: ComputeHost;
  let fw: Portwall;
  let vm1: Vm, vm2: Vm;

  beforeAll(async () => {
    h = new ComputeHost(mode, [{ id: 'net-a', zone: 101, bridge: 'br-a', macByte: 10 }]);
    vm1 = h.addVm('vm1', { n: 11 });
    vm2 = h.addVm('vm2', { n: 12 });
    await Promise.all([
      h.serve(h.outside, { tcp: [22, 23, 80, 81], udp: [53, 80] }, 60),
      h.serve(vm1.ns, { tcp: [53, 80, 81, 110, 111], udp: [53, 54, 80] }, 60),
      h.serve(vm2.ns, { tcp: [80] }, 60),
    ]);
    fw = openFirewall(h);
    await fw.apply(state([h.networkState('net-a')], [SEVEN, group('sg-other', EGRESS_ANY)], [
      h.port(vm1, { security_groups: ['sg-seven'] }),
      h.port(vm2, { security_groups: ['sg-other'] }),
    ]));
  });
  afterAll(async () => {
    await fw?.close();
    h?.destroy();
  });

  /** Every probe of the scenario with what it found and what the seven rules should let it find. */
  async function measure(): Promise<{ rule: string; dir: string; what: string; expected: string; got: string | undefined }[]> {
    const tcp = (host: string, port: number, src?: string): Probe => ({ proto: 'tcp', host, port, src });
    const udp = (host: string, port: number, src?: string): Probe => ({ proto: 'udp', host, port, src });
    // [rule, what, probe, expected]
    const inbound: [string, string, Probe, 'open' | 'timeout'][] = [
      ['r4', 'tcp/80 from anywhere', tcp(vm1.ip4, 80, OUTSIDE.a4), 'open'],
      ['r4', 'tcp/80 from anywhere (2nd source)', tcp(vm1.ip4, 80, OUTSIDE.c4), 'open'],
      ['r4', 'neighbour port tcp/81', tcp(vm1.ip4, 81, OUTSIDE.a4), 'timeout'],
      ['r4', 'neighbour protocol udp/80', udp(vm1.ip4, 80, OUTSIDE.a4), 'timeout'],
      ['r4', 'neighbour family: tcp/80 over IPv6', tcp(vm1.ip6, 80, OUTSIDE.a6), 'timeout'],
      ['r4', 'neighbour VM port without the group', tcp(vm2.ip4, 80, OUTSIDE.a4), 'timeout'],
      ['r6', 'tcp/110 from 198.51.100.0/24', tcp(vm1.ip4, 110, OUTSIDE.a4), 'open'],
      ['r6', 'neighbour source 203.0.113.2', tcp(vm1.ip4, 110, OUTSIDE.b4), 'timeout'],
      ['r6', 'neighbour port tcp/111', tcp(vm1.ip4, 111, OUTSIDE.a4), 'timeout'],
      ['r7', 'udp/53 from 203.0.113.0/25', udp(vm1.ip4, 53, OUTSIDE.b4), 'open'],
      ['r7', 'neighbour source 203.0.113.200 (outside the /25)', udp(vm1.ip4, 53, OUTSIDE.c4), 'timeout'],
      ['r7', 'neighbour source 198.51.100.2', udp(vm1.ip4, 53, OUTSIDE.a4), 'timeout'],
      ['r7', 'neighbour protocol tcp/53', tcp(vm1.ip4, 53, OUTSIDE.b4), 'timeout'],
      ['r7', 'neighbour port udp/54', udp(vm1.ip4, 54, OUTSIDE.b4), 'timeout'],
    ];
    const outbound: [string, string, Probe, 'open' | 'timeout'][] = [
      ['r3', 'tcp/22 out', tcp(OUTSIDE.a4, 22), 'open'],
      ['r3', 'neighbour port tcp/23', tcp(OUTSIDE.a4, 23), 'timeout'],
      ['r3', 'neighbour family: tcp/22 over IPv6', tcp(OUTSIDE.a6, 22), 'timeout'],
      ['r5', 'tcp/80 out', tcp(OUTSIDE.b4, 80), 'open'],
      ['r5', 'neighbour port tcp/81', tcp(OUTSIDE.b4, 81), 'timeout'],
      ['r5', 'neighbour protocol udp/80', udp(OUTSIDE.b4, 80), 'timeout'],
      ['r1', 'neighbour protocol udp/53', udp(OUTSIDE.a4, 53), 'timeout'],
    ];
    const [inRes, outRes, pingIn, pingIn2, pingOut, pingIn6, pingOut6, pingOther] = await Promise.all([
      probe(h.outside, inbound.map((c) => c[2])),
      probe(vm1.ns, outbound.map((c) => c[2])),
      pingCount(h.outside, vm1.ip4, { src: OUTSIDE.a4 }),
      pingCount(h.outside, vm1.ip4, { src: OUTSIDE.c4 }),
      pingCount(vm1.ns, OUTSIDE.a4),
      pingCount(h.outside, vm1.ip6, { src: OUTSIDE.a6 }),
      pingCount(vm1.ns, OUTSIDE.a6),
      pingCount(h.outside, vm2.ip4, { src: OUTSIDE.a4 }),
    ]);
    const table = [
      ...inbound.map((c, i) => ({ rule: c[0], dir: 'in', what: c[1], expected: c[3], got: inRes[i] })),
      ...outbound.map((c, i) => ({ rule: c[0], dir: 'out', what: c[1], expected: c[3], got: outRes[i] })),
      { rule: 'r2', dir: 'in', what: 'ping from anywhere', expected: 'open', got: pingIn > 0 && pingIn2 > 0 ? 'open' : 'timeout' },
      { rule: 'r2', dir: 'in', what: 'neighbour family: ping6', expected: 'timeout', got: pingIn6 > 0 ? 'open' : 'timeout' },
      { rule: 'r2', dir: 'in', what: 'neighbour VM port: ping vm2', expected: 'timeout', got: pingOther > 0 ? 'open' : 'timeout' },
      { rule: 'r1', dir: 'out', what: 'ping out', expected: 'open', got: pingOut > 0 ? 'open' : 'timeout' },
      { rule: 'r1', dir: 'out', what: 'neighbour family: ping6 out', expected: 'timeout', got: pingOut6 > 0 ? 'open' : 'timeout' },
    ];
    return table;
  }

  it('each rule admits its traffic and refuses its neighbours', async () => {
    const table = await measure();
    console.log(`[${mode}] S4:\n${table.map((t) => `  ${t.rule} ${t.dir.padEnd(3)} ${t.what.padEnd(52)} ${String(t.got).padEnd(8)}${t.got === t.expected ? '' : `  <-- expected ${t.expected}`}`).join('\n')}`);
    expect(table.filter((t) => t.got !== t.expected)).toEqual([]);
  });

  it('control: with port security off on both ports, every one of those probes gets through', async () => {
    await fw.apply(state([h.networkState('net-a')], [SEVEN], [
      h.port(vm1, { security_groups: [], port_security_enabled: false }),
      h.port(vm2, { security_groups: [], port_security_enabled: false }),
    ]));
    const table = await measure();
    expect(table.filter((t) => t.got !== 'open').map((t) => `${t.rule} ${t.what}: ${t.got}`)).toEqual([]);
  });
});

const VIP = '192.0.2.100';

describe.skipIf(!isRoot).each(MODES)('S6: LVS direct routing through portwall (%s)', (mode) => {
  let h: ComputeHost;
  let fw: Portwall;
  let dir: Vm, rs: Vm;

  beforeAll(async () => {
    h = new ComputeHost(mode, [{ id: 'net-a', zone: 101, bridge: 'br-a', macByte: 10 }]);
    dir = h.addVm('dir', { n: 21 });
    rs = h.addVm('rs', { n: 22 });
    // Real server: the VIP on loopback, never announced or answered by ARP (the usual LVS-DR set-up).
    rs.ns.exec('ip', ['addr', 'add', `${VIP}/32`, 'dev', 'lo']);
    rs.ns.exec('sysctl', ['-qw', 'net.ipv4.conf.all.arp_ignore=1', 'net.ipv4.conf.all.arp_announce=2', 'net.ipv4.conf.eth0.arp_ignore=1', 'net.ipv4.conf.eth0.arp_announce=2']);
    // Director: forwards VIP traffic unchanged at L3 to the real server (what IPVS-DR does: only the
    // destination MAC changes; the source stays the client's address).
    dir.ns.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv4.conf.all.send_redirects=0', 'net.ipv4.conf.eth0.send_redirects=0',
      'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.eth0.rp_filter=0']);
    if (mode === 'bridged') {
      dir.ns.exec('ip', ['route', 'add', `${VIP}/32`, 'via', rs.ip4]);
      h.outside.exec('ip', ['neigh', 'replace', VIP, 'lladdr', dir.mac, 'dev', h.outsideDev, 'nud', 'permanent']);
    } else {
      // The host sends the VIP to the director, and what comes back from the director to the real server.
      h.host.exec('ip', ['route', 'add', `${VIP}/32`, 'dev', dir.device]);
      h.host.exec('ip', ['neigh', 'replace', VIP, 'lladdr', dir.mac, 'dev', dir.device, 'nud', 'permanent']);
      h.host.exec('ip', ['rule', 'add', 'pref', '100', 'iif', dir.device, 'to', `${VIP}/32`, 'lookup', '100']);
      h.host.exec('ip', ['route', 'add', `${VIP}/32`, 'dev', rs.device, 'table', '100']);
      h.host.exec('ip', ['neigh', 'replace', VIP, 'lladdr', rs.mac, 'dev', rs.device, 'nud', 'permanent']);
    }
    fw = openFirewall(h);
  });
  afterAll(async () => {
    await fw?.close();
    h?.destroy();
  });

  const st = (dirPair: boolean, rsPair: boolean) =>
    state(
      [h.networkState('net-a')],
      [group('sg-lvs', [
        { direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 80, port_range_max: 80 },
        // members only: the director's 0.0.0.0/0 pair must not make everyone a member (LP 1867119)
        { direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 22, port_range_max: 22, remote_group_id: 'sg-lvs' },
        ...EGRESS_ANY,
      ])],
      [
        h.port(dir, { security_groups: ['sg-lvs'], allowed_address_pairs: dirPair ? [{ ip_address: '0.0.0.0/0' }] : [] }),
        h.port(rs, { security_groups: ['sg-lvs'], allowed_address_pairs: rsPair ? [{ ip_address: VIP }] : [] }),
      ],
    );

  it('the VIP answers only with a 0.0.0.0/0 pair on the director and the VIP pair on the real server', async () => {
    const server = await h.serve(rs.ns, { tcp: [80, 22] }, 30);
    const results: Record<string, string[]> = {};
    for (const [name, d, r] of [['no pairs', false, false], ['director pair only', true, false], ['real-server pair only', false, true], ['both pairs', true, true]] as const) {
      await fw.apply(st(d, r));
      results[name] = await probe(h.outside, [
        { proto: 'tcp', host: VIP, port: 80, src: OUTSIDE.a4 },
        { proto: 'tcp', host: rs.ip4, port: 80, src: OUTSIDE.a4 }, // control: the real server itself
      ]);
    }
    const [fromOutside, fromDirector] = await Promise.all([
      probe(h.outside, [{ proto: 'tcp', host: rs.ip4, port: 22, src: OUTSIDE.a4 }]),
      probe(dir.ns, [{ proto: 'tcp', host: rs.ip4, port: 22 }]),
    ]);
    server.stop();
    const seenAtRs = server.records<{ src: string; port: number }>().filter((r) => r.port === 80).map((r) => r.src);
    console.log(`[${mode}] S6 remote group sg-lvs (director has a 0.0.0.0/0 pair): tcp/22 on the real server from outside ${fromOutside}, from the director ${fromDirector}`);
    expect([fromOutside, fromDirector]).toEqual([['timeout'], ['open']]);
    console.log(`[${mode}] S6 VIP / real server reachability: ${JSON.stringify(results)}; real server saw clients ${[...new Set(seenAtRs)].join(',')}`);
    expect(results).toEqual({
      'no pairs': ['timeout', 'open'],
      'director pair only': ['timeout', 'open'],
      'real-server pair only': ['timeout', 'open'],
      'both pairs': ['open', 'open'],
    });
    // the director forwarded the client's packets unchanged at L3: the real server saw the client's address
    expect(seenAtRs.every((s) => s === OUTSIDE.a4)).toBe(true);
  });

  it('removing the real server\'s VIP pair cuts a live connection to the VIP, with a conntrack cleanup', async () => {
    await fw.apply(st(true, true));
    const echo = await h.serveEcho(rs.ns, [80], 30);
    const tcp = h.longTcp(h.outside, VIP, 80);
    try {
      await tcp.waitReplies(5);
      const cut = await applyDuringFlow(fw, st(true, false), tcp);
      console.log(`[${mode}] S6 VIP pair removed: last echo ${cut.lastReplyMs} ms after the apply started, ${cut.lateReplies} later than 1 s ` +
        `(apply ${cut.applyMs} ms, ${cut.deleted} entries deleted)`);
      expect(cut.lateReplies).toBe(0);
      // No check that no entry is left: the client's retransmissions re-create the entry after the cleanup, and
      // the real server's refused answers still mark it as replied (conntrack runs before the filter drops them).
      expect(cut.deleted).toBeGreaterThanOrEqual(1);
    } finally {
      tcp.stop();
      echo.stop();
    }
  });
});
