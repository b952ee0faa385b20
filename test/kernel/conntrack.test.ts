import { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ConntrackClient, ConntrackEntrySpec, ConntrackEvent } from '../../src/conntrack.js';
import { PortwallError } from '../../src/errors.js';
import { Netns, Topology, isRoot, ping, startTcpServer, tcpConnect } from '../helpers/netns.js';

if (!isRoot) console.warn(`skipping conntrack kernel tests: ${!isRoot}`);

/** `conntrack -L` lines in `ns` (the oracle), optionally only of one zone. */
function oracle(ns: Netns, args: string[] = []): string[] {
  return ns.exec('conntrack', ['-L', ...args]).split('\n').filter((l) => l.includes('src='));
}

function tableCount(ns: Netns): number {
  return Number(ns.exec('cat', ['/proc/sys/net/netfilter/nf_conntrack_count']).trim());
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(PortwallError);
    return (e as PortwallError).code;
  }
  return undefined;
}

/** n UDP flows 198.51.100.x:port → 203.0.113.y:53 in `zone`. */
function udpFlows(n: number, zone: number, srcBase = 0): ConntrackEntrySpec[] {
  return Array.from({ length: n }, (_, i) => ({
    zone,
    protocol: 'udp' as const,
    src: `198.51.100.${(srcBase + i) % 256}`,
    dst: `203.0.113.${Math.floor((srcBase + i) / 256) % 256}`,
    sport: 1024 + ((srcBase + i) % 60000),
    dport: 53,
    timeout: 300,
  }));
}

describe.skipIf(!isRoot)('conntrack with real traffic', () => {
  let topo: Topology;
  let server: ChildProcess | undefined;
  let ct: ConntrackClient;

  beforeAll(async () => {
    topo = new Topology();
    ct = new ConntrackClient({ netns: topo.router.name });
    server = await startTcpServer(topo.server, topo.serverAddr, 8080);
  });
  afterAll(() => {
    server?.kill();
    topo?.remove();
  });

  it('sees the entries a ping and a TCP connection create, as conntrack -L does', async () => {
    expect(ping(topo.client, topo.serverAddr, { count: 2 })).toBe(true);
    expect(tcpConnect(topo.client, topo.serverAddr, 8080)).toBe(true);

    const icmp = await ct.list({ protocol: 'icmp', src: topo.clientAddr });
    expect(icmp.length).toBeGreaterThanOrEqual(1);
    expect(icmp[0]).toMatchObject({ family: 'ipv4', protocol: 1, zone: 0, orig: { src: topo.clientAddr, dst: topo.serverAddr } });
    expect(icmp[0]!.icmp?.type).toBe(8);

    const tcp = await ct.list({ protocol: 'tcp', dst: '203.0.113.0/24', dport: 8080 });
    expect(tcp).toHaveLength(1);
    expect(tcp[0]!.orig).toMatchObject({ src: topo.clientAddr, dst: topo.serverAddr, dport: 8080 });
    expect(tcp[0]!.reply).toMatchObject({ src: topo.serverAddr, dst: topo.clientAddr, sport: 8080 });
    const lines = oracle(topo.router, ['-p', 'tcp', '--dport', '8080']);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`sport=${tcp[0]!.orig.sport} dport=8080`);
    expect(oracle(topo.router, ['-p', 'icmp'])).toHaveLength(icmp.length);

    expect(await ct.delete({ protocol: 'tcp', dport: 8080 })).toBe(1);
    expect(oracle(topo.router, ['-p', 'tcp', '--dport', '8080'])).toHaveLength(0);
    expect(oracle(topo.router, ['-p', 'icmp']).length).toBe(icmp.length);
  });
});

describe.skipIf(!isRoot)('conntrack synthetic entries in a namespace', () => {
  let ns: Netns;
  let ct: ConntrackClient;

  beforeAll(() => {
    ns = new Netns('t');
    ct = new ConntrackClient({ netns: ns.name });
  });
  afterAll(() => ns.destroy());

  it('deletes exactly what a filter matches, in its zone only', async () => {
    // zone 10: 32 flows from 198.51.100.0/27 and 16 from 198.51.100.32/28; zone 11: the same 48 tuples.
    await ct.create([...udpFlows(48, 10), ...udpFlows(48, 11)]);
    await ct.create([{ zone: 10, protocol: 'tcp', src: '198.51.100.5', dst: '203.0.113.0', sport: 40000, dport: 53 }]);
    expect(oracle(ns, ['-w', '10'])).toHaveLength(49);

    const n = await ct.delete({ zone: 10, protocol: 'udp', src: '198.51.100.0/27', dport: 53 });
    expect(n).toBe(32);
    const left10 = oracle(ns, ['-w', '10']);
    expect(left10).toHaveLength(17);
    expect(left10.filter((l) => l.startsWith('tcp'))).toHaveLength(1);
    expect(oracle(ns, ['-w', '11'])).toHaveLength(48);

    await ct.flushZone(10);
    expect(oracle(ns, ['-w', '10'])).toHaveLength(0);
    expect(oracle(ns, ['-w', '11'])).toHaveLength(48);
    await ct.flushZone(11);
  });

  it('matches port ranges, marks, IPv6 and a union of filters', async () => {
    await ct.create([
      { zone: 3, protocol: 'tcp', src: '2001:db8::1', dst: '2001:db8::2', sport: 5000, dport: 80, mark: 0x101 },
      { zone: 3, protocol: 'tcp', src: '2001:db8::1', dst: '2001:db8::2', sport: 5001, dport: 443, mark: 0x201 },
      { zone: 3, protocol: 'udp', src: '192.0.2.1', dst: '192.0.2.2', sport: 5000, dport: 8000 },
      { zone: 3, protocol: 'icmpv6', src: '2001:db8::1', dst: '2001:db8::2', icmp: { id: 7 } },
    ]);
    expect(await ct.count({ zone: 3, dport: [80, 443] })).toBe(2);
    expect(await ct.count({ zone: 3, family: 'ipv6' })).toBe(3);
    expect(await ct.count({ zone: 3, mark: 0x1, markMask: 0xff })).toBe(2);
    expect(await ct.count({ zone: 3, mark: 0x200, markMask: 0xf00 })).toBe(1);
    expect(await ct.count([{ zone: 3, protocol: 'icmpv6' }, { zone: 3, src: '192.0.2.0/24' }])).toBe(2);
    // exact hosts and ports are filtered by the kernel (CTA_FILTER); the results must not change
    expect(await ct.count({ zone: 3, protocol: 'tcp', src: '2001:db8::1', dst: '2001:db8::2', dport: 443 })).toBe(1);
    expect(await ct.count({ zone: 3, protocol: 'udp', src: '192.0.2.1', dst: '192.0.2.2', sport: 5000, dport: 8000 })).toBe(1);
    expect(await ct.count({ zone: 3, protocol: 'udp', src: '192.0.2.1', sport: 5001 })).toBe(0);
    expect(await ct.count({ zone: 3, src: '2001:db8::2' })).toBe(0);
    expect(await ct.count({ zone: 3, dst: '2001:db8::2' })).toBe(3);
    const [icmp] = await ct.list({ zone: 3, protocol: 'icmpv6' });
    expect(icmp).toMatchObject({ family: 'ipv6', icmp: { type: 128, code: 0, id: 7 }, orig: { src: '2001:db8::1' } });
    await ct.flushZone(3);
    expect(await ct.count({ zone: 3 })).toBe(0);
  });

  it('inserts 100k entries and deletes 1k of them by filter', async () => {
    const before = tableCount(ns);
    const entries = udpFlows(99_000, 20).concat(udpFlows(1000, 21));
    const t0 = performance.now();
    expect(await ct.create(entries)).toBe(100_000);
    const created = performance.now() - t0;
    expect(tableCount(ns)).toBe(before + 100_000);
    const t1 = performance.now();
    expect(await ct.delete({ zone: 21, protocol: 'udp', dst: '203.0.113.0/24' })).toBe(1000);
    const deleted = performance.now() - t1;
    expect(tableCount(ns)).toBe(before + 99_000);
    expect(oracle(ns, ['-w', '21'])).toHaveLength(0);
    console.log(`100k created in ${created.toFixed(0)} ms; 1k of 100k deleted in ${deleted.toFixed(1)} ms`);
    await ct.flushZone(20);
    expect(tableCount(ns)).toBe(before);
  });

  it('delivers new and destroy events in batches until closed', async () => {
    const events: ConntrackEvent[] = [];
    const sub = await ct.subscribe((batch) => events.push(...batch));
    await ct.create(udpFlows(50, 30));
    await ct.flushZone(30);
    const deadline = Date.now() + 3000;
    while (events.length < 100 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await sub.close();
    await sub.close();
    expect(events.filter((e) => e.type === 'new' && e.zone === 30)).toHaveLength(50);
    expect(events.filter((e) => e.type === 'destroy' && e.zone === 30)).toHaveLength(50);
    const seen = events.length;
    await ct.create(udpFlows(5, 31));
    await new Promise((r) => setTimeout(r, 100));
    expect(events).toHaveLength(seen);
    await ct.flushZone(31);
  });

  it('deletes listed entries by identity: one ICMP flow of several between two addresses, never a newer entry', async () => {
    const icmp = (id: number, type = 8): ConntrackEntrySpec => ({ zone: 50, protocol: 'icmp', src: '203.0.113.5', dst: '192.0.2.2', icmp: { type, id } });
    await ct.create([icmp(1), icmp(2), icmp(3, 13), { ...icmp(1), zone: 51 }]);
    await ct.create([{ zone: 50, protocol: 'tcp', src: '203.0.113.5', dst: '192.0.2.2', sport: 40000, dport: 22 }]);
    const listed = await ct.list({ zone: 50, src: '203.0.113.5' });
    expect(listed).toHaveLength(4);
    // the tcp entry is named with an id that is not its own (as if replaced meanwhile): it must stay
    const tcp = listed.find((e) => e.protocol === 6)!;
    const victims = [...listed.filter((e) => e.icmp?.id === 2 || e.icmp?.type === 13), { ...tcp, id: (tcp.id ^ 1) >>> 0 }];
    expect(await ct.deleteEntries(victims)).toBe(2);
    const left = await ct.list({ src: '203.0.113.5' });
    expect(left.map((e) => `${e.zone}/${e.protocol}/${e.icmp?.type ?? e.orig.dport}/${e.icmp?.id ?? ''}`).sort()).toEqual(['50/1/8/1', '50/6/22/', '51/1/8/1']);
    expect(oracle(ns, ['-w', '50', '-p', 'icmp'])).toHaveLength(1);
    expect(await codeOf(ct.deleteEntries([{ ...tcp, zone: 70000 }]))).toBe('ERR_INVALID_VALUE');
    await ct.flushZone(50);
    await ct.flushZone(51);
  });

  it('rejects bad input with a code and changes nothing', async () => {
    await ct.create(udpFlows(3, 40));
    const before = oracle(ns).sort();
    expect(await codeOf(ct.delete({ zone: 70000 }))).toBe('ERR_INVALID_VALUE');
    expect(await codeOf(ct.delete({ zone: 40, src: '198.51.100.0/33' }))).toBe('ERR_INVALID_VALUE');
    expect(await codeOf(ct.delete({ zone: 40, family: 'ipv6', src: '198.51.100.0/24' }))).toBe('ERR_FAMILY_MISMATCH');
    expect(await codeOf(ct.delete({ zone: 40, protocol: 'icmp', dport: 80 }))).toBe('ERR_INVALID_VALUE');
    expect(await codeOf(ct.flushZone(-1))).toBe('ERR_INVALID_VALUE');
    expect(await codeOf(ct.create([...udpFlows(2, 41), { protocol: 'udp', src: '192.0.2.1', dst: '2001:db8::1', sport: 1, dport: 2 }]))).toBe('ERR_FAMILY_MISMATCH');
    // The kernel refuses a duplicate: the entries of the call created before it are undone.
    const dup = await ct.create([...udpFlows(2, 41, 100), udpFlows(1, 40)[0]!]).catch((e: PortwallError) => e);
    expect(dup).toMatchObject({ code: 'ERR_KERNEL', errnoName: 'EEXIST', opIndex: 2, field: 'entries[2]' });
    expect(oracle(ns).sort()).toEqual(before);
    expect(await codeOf(new ConntrackClient({ netns: 'pw-no-such-netns' }).count())).toBe('ERR_NETNS');
    await ct.flushZone(40);
  });
});
