/**
 * S8 (docs/requirements.md, "Acceptance scenarios"): NAT with real traffic. The compute host routes between its
 * VMs and an uplink, as nova-network's host does; a "wan" namespace sits on the uplink (198.51.100.2 and
 * 203.0.113.2, the DMZ host and a remote host; 203.0.113.200 is the metadata host) and the host holds
 * routing_source_ip 203.0.113.1 there. Floating IP 203.0.113.50 starts on vm1; the wan reaches it through a
 * route to the host, as the network agent that binds it would arrange.
 *
 * - routed: the wan is the outside namespace of test/helpers/hosts.ts (it has all three addresses);
 * - bridged: the VMs sit on a bridge whose gateway is the host (192.0.2.2 on the bridge, nova-network's
 *   layout), and the wan is a separate namespace on its own uplink.
 *
 * Every server reports the source address of each connection: that is what NAT changes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Portwall } from '../../src/apply/portwall.js';
import type { StateInput } from '../../src/model/schema.js';
import { Netns, isRoot, veth } from '../helpers/netns.js';
import {
  ComputeHost, EGRESS_ANY, MODES, group, openFirewall, probe, sleep, state, type Bg, type Mode, type RuleSpec, type Vm,
} from '../helpers/hosts.js';

const FIP = '203.0.113.50';
const RSI = '203.0.113.1';
const DMZ_HOST = '198.51.100.2';
const REMOTE = '203.0.113.2';
const METADATA = '203.0.113.200';
/** Ingress TCP to ports min–max from anywhere. */
const tcpIn = (min: number, max: number): RuleSpec =>
  ({ direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: min, port_range_max: max });

describe.skipIf(!isRoot).each(MODES)('S8: floating IPs, metadata redirect, default SNAT with exemptions (%s)', (mode: Mode) => {
  let h: ComputeHost;
  let vm1: Vm, vm2: Vm;
  let fw: Portwall;
  /** Where the remote, DMZ and metadata hosts live. */
  let wan: Netns;
  let ownWan: Netns | undefined;
  const servers: Bg[] = [];

  const s8 = (fipOn: Vm | null): StateInput => ({
    ...state(
      [h.networkState('net-a')],
      [group('sg', [tcpIn(7000, 7100), ...EGRESS_ANY])],
      [h.port(vm1, { security_groups: ['sg'] }), h.port(vm2, { security_groups: ['sg'] })],
    ),
    floatingips: [{ id: 'fip-1', floating_ip_address: FIP, fixed_ip_address: fipOn?.ip4 ?? null, port_id: fipOn ? `port-${fipOn.name}` : null }],
    nat: { fixed_range: ['192.0.2.0/24'], routing_source_ip: RSI, dmz_cidr: ['198.51.100.0/24'], metadata_host: METADATA, metadata_port: 8775 },
  });

  /** The source address the server on `port` saw for its latest connection. */
  const lastSource = async (srv: Bg, port: number, before: number): Promise<string> => {
    const line = await srv.waitFor((l) => l.startsWith('{') && JSON.parse(l).port === port && srv.lines.indexOf(l) >= before, 3000);
    return (JSON.parse(line) as { src: string }).src;
  };

  /** Connects from `from` to host:port and returns the source address the server (on `srvPort`) saw. */
  const seenFrom = async (from: Vm | Netns, srv: Bg, host: string, port: number, srvPort = port): Promise<string> => {
    const before = srv.lines.length;
    const ns = 'ns' in from ? from.ns : from;
    const [r] = await probe(ns, [{ proto: 'tcp', host, port }], 2);
    expect(r, `tcp ${host}:${port}`).toBe('open');
    return lastSource(srv, srvPort, before);
  };
  const element = (key: string, data: string) => new RegExp(`${key.replaceAll('.', '\\.')} (comment "[^"]*" )?: ${data.replaceAll('.', '\\.')}`);

  beforeAll(async () => {
    h = new ComputeHost(mode, [{ id: 'net-a', zone: 101, bridge: 'br-s8', macByte: 1 }]);
    vm1 = h.addVm('n8a', { n: 10 });
    vm2 = h.addVm('n8b', { n: 11 });
    if (mode === 'routed') {
      wan = h.outside;
    } else {
      h.host.exec('ip', ['addr', 'add', '192.0.2.2/24', 'dev', 'br-s8']);
      for (const vm of [vm1, vm2]) vm.ns.exec('ip', ['route', 'replace', 'default', 'via', '192.0.2.2']);
      wan = ownWan = new Netns('wan8');
      veth(h.host, 'wan0', wan, 'eth0', { a: ['198.51.100.1/24', `${RSI}/24`], b: [`${DMZ_HOST}/24`, `${REMOTE}/24`, `${METADATA}/24`] });
      wan.exec('ip', ['route', 'add', '192.0.2.0/24', 'via', '198.51.100.1']);
    }
    wan.exec('ip', ['route', 'add', `${FIP}/32`, 'via', RSI]);
    fw = openFirewall(h);
    await fw.apply(s8(vm1));
    servers.push(await h.serve(vm1.ns, { tcp: [7001] }, 90), await h.serve(vm2.ns, { tcp: [7001] }, 90));
    servers.push(await h.serve(wan, { tcp: [7002, 8775] }, 90));
  }, 60_000);

  afterAll(async () => {
    await fw?.close();
    h?.destroy();
    ownWan?.destroy();
  });

  it('the wan reaches vm1 by its floating IP (DNAT), and vm1 sees the wan address', async () => {
    expect(await seenFrom(wan, servers[0]!, FIP, 7001)).toBe(REMOTE);
  });

  it("the host's own processes reach vm1 by its floating IP (DNAT in output)", async () => {
    const before = servers[0]!.lines.length;
    const [r] = await probe(h.host, [{ proto: 'tcp', host: FIP, port: 7001 }], 2);
    expect(r).toBe('open');
    await lastSource(servers[0]!, 7001, before);
  });

  it("vm1's outbound connection arrives from its floating IP; vm2's from routing_source_ip", async () => {
    expect(await seenFrom(vm1, servers[2]!, REMOTE, 7002)).toBe(FIP);
    expect(await seenFrom(vm2, servers[2]!, REMOTE, 7002)).toBe(RSI);
  });

  it('traffic to dmz_cidr and VM-to-VM traffic keep their source', async () => {
    expect(await seenFrom(vm1, servers[2]!, DMZ_HOST, 7002)).toBe(vm1.ip4);
    expect(await seenFrom(vm2, servers[2]!, DMZ_HOST, 7002)).toBe(vm2.ip4);
    expect(await seenFrom(vm2, servers[0]!, vm1.ip4, 7001)).toBe(vm2.ip4);
    expect(await seenFrom(vm1, servers[1]!, vm2.ip4, 7001)).toBe(vm1.ip4);
  });

  it('the metadata redirect reaches metadata_host:metadata_port, which sees the fixed IP', async () => {
    expect(await seenFrom(vm2, servers[2]!, '169.254.169.254', 80, 8775)).toBe(vm2.ip4);
    expect(await seenFrom(vm1, servers[2]!, '169.254.169.254', 80, 8775)).toBe(vm1.ip4);
  });

  it('the NAT lives in its own table, with the floating IP as map elements (nft as the oracle)', () => {
    const text = h.host.exec('nft', ['list', 'table', 'ip', 'portwall_nat']);
    expect(text).toMatch(/dnat (ip )?to ip daddr map @fip_dnat/);
    expect(text).toMatch(/snat (ip )?to ip saddr map @fip_snat/);
    expect(text).toMatch(element(FIP, vm1.ip4));
    expect(text).toMatch(element(vm1.ip4, FIP));
  });

  it('a new handle adopting the same state changes nothing: the NAT rules list back equal', async () => {
    const other = openFirewall(h);
    try {
      const r = await other.apply(s8(vm1));
      expect(r.changed, r.plan).toBe(false);
    } finally {
      await other.close();
    }
  });

  it("moving the floating IP to vm2 is element-only and cuts vm1's sessions through it, both ways", async () => {
    const echo = await h.serveEcho(vm1.ns, [7010], 60);
    const echoOut = await h.serveEcho(wan, [7020], 60);
    const inbound = h.longTcp(wan, FIP, 7010, 20);
    const outbound = h.longTcp(vm1.ns, REMOTE, 7020, 20);
    try {
      await Promise.all([inbound.waitReplies(5), outbound.waitReplies(5)]);
      const r = await fw.apply(s8(vm2));
      expect(r.plan).not.toMatch(/rule|chain/);
      expect(r.cleanup.deleted).toBeGreaterThanOrEqual(2);
      const t0 = Date.now();
      await sleep(1500);
      expect(inbound.repliesAfter(t0 + 300)).toEqual([]);
      expect(outbound.repliesAfter(t0 + 300)).toEqual([]);
      // The floating IP now leads to vm2, and vm2 leaves from it; vm1 from routing_source_ip.
      expect(await seenFrom(wan, servers[1]!, FIP, 7001)).toBe(REMOTE);
      expect(await seenFrom(vm2, servers[2]!, REMOTE, 7002)).toBe(FIP);
      expect(await seenFrom(vm1, servers[2]!, REMOTE, 7002)).toBe(RSI);
    } finally {
      inbound.stop();
      outbound.stop();
      echo.stop();
      echoOut.stop();
    }
  });

  it("without the NAT cleanup, vm1's outbound session keeps leaving from the moved floating IP (what the cleanup is for)", async () => {
    await fw.apply(s8(vm1));
    const echoOut = await h.serveEcho(wan, [7021], 60);
    const outbound = h.longTcp(vm1.ns, REMOTE, 7021, 20);
    try {
      await outbound.waitReplies(5);
      await fw.apply(s8(vm2), { cleanup: false });
      const t0 = Date.now();
      await sleep(1500);
      expect(outbound.repliesAfter(t0 + 300).length).toBeGreaterThan(3);
    } finally {
      outbound.stop();
      echoOut.stop();
    }
  });

  it('disassociating the floating IP removes its elements and the NAT to it', async () => {
    await fw.apply(s8(null));
    const text = h.host.exec('nft', ['list', 'table', 'ip', 'portwall_nat']);
    expect(text).not.toContain(FIP);
    const [r] = await probe(wan, [{ proto: 'tcp', host: FIP, port: 7001 }], 1);
    expect(r).not.toBe('open');
    expect(await seenFrom(vm1, servers[2]!, REMOTE, 7002)).toBe(RSI);
  });

  it("removing vm2's egress ends its default-SNAT session, tracked in vm2's zone for the original direction only", async () => {
    const echoOut = await h.serveEcho(wan, [7022], 60);
    const outbound = h.longTcp(vm2.ns, REMOTE, 7022, 20);
    try {
      await outbound.waitReplies(5);
      // The oracle: the original direction in zone 101, the reply (to routing_source_ip) in zone 0.
      const flow = () => h.host.exec('conntrack', ['-L', '-p', 'tcp', '--dport', '7022']).split('\n').filter((l) => l.includes('src='));
      expect(flow()).toEqual([expect.stringMatching(/zone-orig=101/)]);
      const noEgress = s8(null);
      noEgress.security_groups!.push(group('sg-in', [tcpIn(7000, 7100)]));
      noEgress.ports = noEgress.ports!.map((p) => (p.id === `port-${vm2.name}` ? { ...p, security_groups: ['sg-in'] } : p));
      const r = await fw.apply(noEgress);
      expect(r.cleanup.deleted).toBeGreaterThanOrEqual(1);
      const t0 = Date.now();
      await sleep(1500);
      expect(outbound.repliesAfter(t0 + 300)).toEqual([]);
      expect(flow()).toEqual([]);
    } finally {
      outbound.stop();
      echoOut.stop();
    }
  });

  it("narrowing vm1's ingress ends the wan's session to it through its floating IP (judged after DNAT)", async () => {
    await fw.apply(s8(vm1));
    const echo = await h.serveEcho(vm1.ns, [7012], 60);
    const inbound = h.longTcp(wan, FIP, 7012, 20);
    try {
      await inbound.waitReplies(5);
      const narrowed = s8(vm1);
      narrowed.security_groups = [group('sg', [tcpIn(7050, 7100), ...EGRESS_ANY])];
      const r = await fw.apply(narrowed);
      expect(r.cleanup.deleted).toBeGreaterThanOrEqual(1);
      const t0 = Date.now();
      await sleep(1500);
      expect(inbound.repliesAfter(t0 + 300)).toEqual([]);
    } finally {
      inbound.stop();
      echo.stop();
    }
  });
});

/**
 * A VM of another network reaching a VM by its floating IP: between routed ports the flow takes the lower of
 * the two zones (docs/dataplane.md, "Zones and conntrack"), so with the peer's network in the lower zone the NATed
 * flow is not in the floating IP's port's zone. Moving the floating IP must end it all the same.
 */
describe.skipIf(!isRoot)('S8: a floating IP reached from a lower-zone network (routed)', () => {
  let h: ComputeHost;
  let vm1: Vm, vm2: Vm, peer: Vm;
  let fw: Portwall;

  /** The peer's own egress rules, when given: its group `peer-sg` instead of `sg`. */
  const st = (fipOn: Vm, peerEgress?: RuleSpec[]): StateInput => ({
    ...state(
      [h.networkState('net-a'), h.networkState('net-low')],
      [
        group('sg', [tcpIn(7000, 7100), ...EGRESS_ANY]),
        ...(peerEgress ? [group('peer-sg', peerEgress)] : []),
      ],
      [
        h.port(vm1, { security_groups: ['sg'] }), h.port(vm2, { security_groups: ['sg'] }),
        h.port(peer, { security_groups: [peerEgress ? 'peer-sg' : 'sg'] }),
      ],
    ),
    floatingips: [{ id: 'fip-1', floating_ip_address: FIP, fixed_ip_address: fipOn.ip4, port_id: `port-${fipOn.name}` }],
  });

  beforeAll(async () => {
    h = new ComputeHost('routed', [{ id: 'net-a', zone: 101, macByte: 1 }, { id: 'net-low', zone: 100, macByte: 2 }]);
    vm1 = h.addVm('n8x', { n: 10 });
    vm2 = h.addVm('n8y', { n: 11 });
    peer = h.addVm('n8z', { network: 'net-low', n: 12 });
    fw = openFirewall(h);
    await fw.apply(st(vm1));
  }, 60_000);

  afterAll(async () => {
    await fw?.close();
    h?.destroy();
  });

  it("moving the floating IP ends the peer's session through it, which lives in the peer's (lower) zone", async () => {
    const echo = await h.serveEcho(vm1.ns, [7010], 60);
    const session = h.longTcp(peer.ns, FIP, 7010, 20);
    try {
      await session.waitReplies(5);
      // The oracle: the DNATed flow is in zone 100, none in the floating IP's port's zone 101.
      const natted = (zone: number) => h.conntrackLines(zone, ['-d', FIP]).filter((l) => l.includes(`src=${vm1.ip4}`));
      expect(natted(100)).toHaveLength(1);
      expect(natted(101)).toEqual([]);
      // The same addresses in another tenant's zone, not NATed (their replies keep the addresses): they stay.
      const other = { zone: 300, protocol: 'udp' as const, dport: 53, timeout: 600 };
      await h.conntrack.create([{ ...other, src: vm1.ip4, dst: FIP, sport: 40000 }, { ...other, src: vm1.ip4, dst: REMOTE, sport: 40001 }]);
      const r = await fw.apply(st(vm2));
      expect(r.cleanup.deleted).toBe(1);
      const t0 = Date.now();
      await sleep(1500);
      expect(session.repliesAfter(t0 + 300)).toEqual([]);
      expect(natted(100)).toEqual([]);
      expect(h.conntrackLines(300)).toHaveLength(2);
    } finally {
      session.stop();
      echo.stop();
    }
  });

  it("the peer's session to the floating IP is judged by the port behind it: kept while the peer's rules admit it, ended after", async () => {
    const toSg: RuleSpec = { direction: 'egress', ethertype: 'IPv4', protocol: 'tcp', remote_group_id: 'sg' };
    const dns: RuleSpec = { direction: 'egress', ethertype: 'IPv4', protocol: 'udp', port_range_min: 53, port_range_max: 53 };
    await fw.apply(st(vm1, [toSg, dns]));
    const echo = await h.serveEcho(vm1.ns, [7013], 60);
    const session = h.longTcp(peer.ns, FIP, 7013, 20);
    try {
      await session.waitReplies(5);
      // An unrelated rule goes: the peer's flows are judged, and vm1 (behind the floating IP) is still in sg.
      const kept = await fw.apply(st(vm1, [toSg]));
      expect(kept.cleanup.examined).toBeGreaterThanOrEqual(1);
      expect(kept.cleanup.deleted).toBe(0);
      const t0 = Date.now();
      await sleep(1000);
      expect(session.repliesAfter(t0 + 200).length).toBeGreaterThan(2);
      // Now no rule admits vm1: the session ends.
      const ended = await fw.apply(st(vm1, [dns]));
      expect(ended.cleanup.deleted).toBe(1);
      const t1 = Date.now();
      await sleep(1500);
      expect(session.repliesAfter(t1 + 300)).toEqual([]);
    } finally {
      session.stop();
      echo.stop();
    }
  });
});
