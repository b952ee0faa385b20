// Conntrack cleanup against the kernel's own table: synthetic entries (ConntrackClient.create) in the zones
// portwall gives two routed networks, judged and deleted by Portwall.apply in a namespace of the test's own.
// The flows that keep their permission keep their entry (same conntrack id), other zones are never touched.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Portwall } from '../../src/apply/portwall.js';
import { ConntrackClient, type ConntrackEntrySpec } from '../../src/conntrack.js';
import type { StateInput } from '../../src/model/schema.js';
import { Netns, isRoot } from '../helpers/netns.js';
import { network, port } from '../helpers/states.js';

type Group = NonNullable<StateInput['security_groups']>[number];
const tcpIn = (id: string, dport: number) => ({ id, direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: dport, port_range_max: dport }) as const;
const icmpIn = (id: string, type: number) => ({ id, direction: 'ingress', ethertype: 'IPv4', protocol: 'icmp', port_range_min: type }) as const;
const egressAny = (id: string) => ({ id, direction: 'egress', ethertype: 'IPv4' }) as const;
const group = (id: string, rules: Group['security_group_rules']): Group => ({ id, stateful: true, security_group_rules: rules });
const tcp = (zone: number, src: string, dst: string, dport: number, sport = 40000): ConntrackEntrySpec => ({ zone, protocol: 'tcp', src, dst, sport, dport });

describe.skipIf(!isRoot)('conntrack cleanup on synthetic entries (routed networks in zones 101 and 102)', () => {
  let ns: Netns;
  let ct: ConntrackClient;
  beforeAll(() => {
    ns = new Netns('ctclean');
    ct = new ConntrackClient({ netns: ns.name });
  });
  afterAll(() => ns?.destroy());

  /** `zone/proto/src>dst:port-or-icmp` of every entry, with its id. */
  const table = async () =>
    new Map((await ct.list()).map((e) => [`${e.zone}/${e.protocol}/${e.orig.src}>${e.orig.dst}:${e.icmp ? `${e.icmp.type}#${e.icmp.id}` : e.orig.dport}`, e.id]));

  const reset = async (pw: Portwall, entries: ConntrackEntrySpec[]) => {
    for (const z of [101, 102]) await ct.flushZone(z);
    await ct.create(entries);
    return { pw, before: await table() };
  };

  it('seed 000: removing tenant B\'s rule deletes B\'s flow and leaves tenant A\'s identical flow in zone 101', async () => {
    const pw = Portwall.open({ netns: ns.name });
    const doc = (bRules: Group['security_group_rules']): StateInput => ({
      networks: [network('routed', 'net-a', 101), network('routed', 'net-b', 102)],
      security_groups: [group('sg-a', [tcpIn('a-http', 80)]), group('sg-b', bRules)],
      ports: [
        port(9, ['sg-a'], { id: 'port-a', device: 'pwta', mac_address: 'fa:16:3e:00:00:0a' }, 'net-a'), // 192.0.2.10
        port(9, ['sg-b'], { id: 'port-b', device: 'pwtb', mac_address: 'fa:16:3e:00:00:0b' }, 'net-b'), // 192.0.2.10
      ],
    });
    await pw.apply(doc([tcpIn('b-http', 80)]));
    const { before } = await reset(pw, [tcp(101, '203.0.113.2', '192.0.2.10', 80), tcp(102, '203.0.113.2', '192.0.2.10', 80)]);
    const r = await pw.apply(doc([]));
    expect(r.cleanup.deleted).toBe(1);
    const after = await table();
    expect([...after.keys()]).toEqual(['101/6/203.0.113.2>192.0.2.10:80']);
    expect(after.get('101/6/203.0.113.2>192.0.2.10:80')).toBe(before.get('101/6/203.0.113.2>192.0.2.10:80'));
    await pw.close();
  });

  it('an address pair 192.0.2.0/24 on one port never claims the flows of a port with 192.0.2.20', async () => {
    const pw = Portwall.open({ netns: ns.name });
    const doc = (aRules: Group['security_group_rules']): StateInput => ({
      networks: [network('routed', 'net-a', 101)],
      security_groups: [group('sg-a', aRules), group('sg-d', [tcpIn('d-http', 80), egressAny('d-out')])],
      ports: [port(4, ['sg-a'], { allowed_address_pairs: [{ ip_address: '192.0.2.0/24' }] }), port(19, ['sg-d'])], // .5 (+ the /24), .20
    });
    await pw.apply(doc([tcpIn('a-ssh', 22)]));
    const { before } = await reset(pw, [
      tcp(101, '203.0.113.2', '192.0.2.20', 80), tcp(101, '192.0.2.20', '203.0.113.2', 443), // D's: stay
      tcp(101, '203.0.113.2', '192.0.2.30', 22), tcp(101, '203.0.113.2', '192.0.2.5', 22), // A's: go
    ]);
    const r = await pw.apply(doc([]));
    expect(r.cleanup.deleted).toBe(2);
    const after = await table();
    expect([...after.keys()].sort()).toEqual(['101/6/192.0.2.20>203.0.113.2:443', '101/6/203.0.113.2>192.0.2.20:80']);
    for (const [k, id] of after) expect(id).toBe(before.get(k));
    await pw.close();
  });

  it('ICMP: only the refused ICMP flow goes, not every ICMP flow between the same two addresses', async () => {
    const pw = Portwall.open({ netns: ns.name });
    const doc = (timestamp: boolean): StateInput => ({
      networks: [network('routed', 'net-a', 101)],
      security_groups: [group('sg-i', [icmpIn('echo', 8), ...(timestamp ? [icmpIn('ts', 13)] : [])])],
      ports: [port(1, ['sg-i'])], // 192.0.2.2
    });
    await pw.apply(doc(true));
    const icmp = (type: number, id: number): ConntrackEntrySpec => ({ zone: 101, protocol: 'icmp', src: '203.0.113.5', dst: '192.0.2.2', icmp: { type, id } });
    const { before } = await reset(pw, [icmp(8, 1), icmp(8, 2), icmp(13, 3)]);
    const r = await pw.apply(doc(false));
    expect(r.cleanup.deleted).toBe(1);
    const after = await table();
    expect([...after.keys()].sort()).toEqual(['101/1/203.0.113.5>192.0.2.2:8#1', '101/1/203.0.113.5>192.0.2.2:8#2']);
    for (const [k, id] of after) expect(id).toBe(before.get(k));
    await pw.close();
  });

  it('a new handle judges every port once: flows a dead process left behind go, allowed ones stay', async () => {
    const doc = (http: boolean): StateInput => ({
      networks: [network('routed', 'net-a', 101)],
      security_groups: [group('sg-w', [...(http ? [tcpIn('http', 80)] : []), tcpIn('ssh', 22)])],
      ports: [port(1, ['sg-w'])],
    });
    const first = Portwall.open({ netns: ns.name });
    await first.apply(doc(true));
    await reset(first, [tcp(101, '203.0.113.2', '192.0.2.2', 80), tcp(101, '203.0.113.2', '192.0.2.2', 22)]);
    await first.apply(doc(false), { cleanup: false }); // committed, then "died" before its cleanup
    expect((await table()).size).toBe(2);
    const second = Portwall.open({ netns: ns.name });
    const r = await second.apply(doc(false));
    // The policy was there already (nothing to commit); the flow it no longer allows goes now.
    expect(r).toMatchObject({ changed: false, cleanup: { deleted: 1 } });
    expect([...(await table()).keys()]).toEqual(['101/6/203.0.113.2>192.0.2.2:22']);
    expect((await second.apply(doc(false))).cleanup).toEqual({ deleted: 0, examined: 0, ports: 0 });
  });
});
