/**
 * Conntrack cleanup on the fake nftables binding and an in-memory conntrack table (no root): which ports
 * are affected by a batch, and which entries go — only those the new policy refuses, only in their zones.
 */
import { describe, expect, test } from 'vitest';

import { affectedPorts, mayShrink, viewOf, type ConntrackLike } from '../../src/apply/cleanup.js';
import { Portwall } from '../../src/apply/portwall.js';
import { prefixContains } from '../../src/compile/addr.js';
import { STATUS, type ConntrackEntry, type ConntrackFilter } from '../../src/conntrack.js';
import { FakeNft } from '../../src/nft/fake.js';
import { network, port, state, webGroup } from '../helpers/states.js';

/** An in-memory conntrack table with the client's filter semantics (every given field matches). */
class FakeConntrack implements ConntrackLike {
  entries: ConntrackEntry[] = [];
  lists = 0;
  #id = 1;

  /** Fails the next `failLists` list calls (a conntrack socket error, say). */
  failLists = 0;

  add(zone: number, protocol: number, src: string, dst: string, dport?: number, icmpType = 8): void {
    const family = src.includes(':') ? 'ipv6' : 'ipv4';
    const ports = dport === undefined ? {} : { sport: 40000 + this.#id, dport };
    const icmp = protocol === 1 ? { icmp: { type: icmpType, code: 0, id: this.#id } } : {};
    const reply = dport === undefined ? {} : { sport: dport, dport: 40000 + this.#id };
    this.entries.push({ family, protocol, zone, mark: 0, status: 6, timeout: 100, id: this.#id++, orig: { src, dst, ...ports }, reply: { src: dst, dst: src, ...reply }, ...icmp });
  }

  #match(e: ConntrackEntry, f: ConntrackFilter): boolean {
    const port = (v: number | undefined, m: ConntrackFilter['sport']) =>
      m === undefined || (v !== undefined && (typeof m === 'number' ? v === m : v >= m[0] && v <= m[1]));
    return (f.zone === undefined || f.zone === e.zone) && (f.family === undefined || f.family === e.family) &&
      (f.protocol === undefined || f.protocol === e.protocol) && (f.src === undefined || prefixContains(f.src, e.orig.src)) &&
      (f.dst === undefined || prefixContains(f.dst, e.orig.dst)) && port(e.orig.sport, f.sport) && port(e.orig.dport, f.dport);
  }

  async list(filters?: ConntrackFilter | readonly ConntrackFilter[]): Promise<ConntrackEntry[]> {
    this.lists++;
    if (this.failLists > 0 && this.failLists--) throw new Error('conntrack dump failed');
    const fs = filters === undefined ? [{}] : Array.isArray(filters) ? filters : [filters as ConntrackFilter];
    return this.entries.filter((e) => fs.some((f) => this.#match(e, f)));
  }

  async delete(filters: ConntrackFilter | readonly ConntrackFilter[]): Promise<number> {
    const fs = Array.isArray(filters) ? filters : [filters as ConntrackFilter];
    const before = this.entries.length;
    this.entries = this.entries.filter((e) => !fs.some((f) => this.#match(e, f)));
    return before - this.entries.length;
  }

  /** By identity, as the kernel does: zone, original tuple (ports or ICMP type and id) and id. */
  async deleteEntries(entries: readonly ConntrackEntry[]): Promise<number> {
    const same = (a: ConntrackEntry, b: ConntrackEntry) => a.id === b.id && a.zone === b.zone && a.protocol === b.protocol &&
      a.orig.src === b.orig.src && a.orig.dst === b.orig.dst && a.orig.sport === b.orig.sport && a.orig.dport === b.orig.dport &&
      a.icmp?.id === b.icmp?.id && a.icmp?.type === b.icmp?.type;
    const before = this.entries.length;
    this.entries = this.entries.filter((e) => !entries.some((d) => same(e, d)));
    return before - this.entries.length;
  }

  has(src: string, dst: string, dport?: number, zone = 101): boolean {
    return this.entries.some((e) => e.zone === zone && e.orig.src === src && e.orig.dst === dst && e.orig.dport === dport);
  }
}

function open() {
  const ct = new FakeConntrack();
  return { ct, pw: Portwall.open({ binding: new FakeNft(), conntrack: ct }) };
}

const two = () => state('routed', [webGroup()], [port(1, ['sg-web']), port(2, ['sg-web'])]);
const FIP = '203.0.113.50';

describe('conntrack cleanup', () => {
  test('a removed rule cuts only the flows it allowed, in the port\'s zone only', async () => {
    const { ct, pw } = open();
    await pw.apply(two());
    ct.add(101, 6, '198.51.100.7', '192.0.2.2', 80); // allowed by sg-web-http: goes
    ct.add(101, 6, '192.0.2.3', '192.0.2.2', 22); // ssh from a member: stays
    ct.add(101, 1, '203.0.113.5', '192.0.2.2'); // ping: stays
    ct.add(102, 6, '198.51.100.7', '192.0.2.2', 80); // the same tuple in another zone: never touched
    const g = webGroup();
    g.security_group_rules = g.security_group_rules!.filter((r) => r.id !== 'sg-web-http');
    const r = await pw.apply({ ...two(), security_groups: [g] });
    expect(r.cleanup).toMatchObject({ deleted: 1 });
    expect(ct.has('198.51.100.7', '192.0.2.2', 80)).toBe(false);
    expect(ct.entries).toHaveLength(3);
    expect(ct.has('198.51.100.7', '192.0.2.2', 80, 102)).toBe(true);
  });

  test('a rule removed from a group of 70 ports: nothing tracked, nothing sorted or listed; a flow tracked, only the flows it allowed go', async () => {
    const ct = Object.assign(new FakeConntrack(), { count: async () => ct.entries.length });
    const pw = Portwall.open({ binding: new FakeNft(), conntrack: ct });
    const ports = Array.from({ length: 70 }, (_, i) => port(i + 1, ['sg-web']));
    const doc = state('routed', [webGroup()], ports);
    const g = webGroup();
    g.security_group_rules = g.security_group_rules!.filter((r) => r.id !== 'sg-web-http');
    await pw.apply(doc);
    // More changed ports than are sorted out up front: with nothing tracked they are only counted.
    const quiet = await pw.upsertGroup(g);
    expect(quiet.cleanup).toEqual({ deleted: 0, examined: 0, ports: 70 });
    expect(ct.lists).toBe(0);
    await pw.upsertGroup(webGroup());
    const target = ports[64]!.fixed_ips![0]!.ip_address;
    ct.add(101, 6, '198.51.100.7', target, 80); // allowed by sg-web-http only: goes
    ct.add(101, 6, ports[3]!.fixed_ips![0]!.ip_address, target, 22); // ssh from a member: stays
    const r = await pw.upsertGroup(g);
    expect(r.cleanup).toMatchObject({ deleted: 1 });
    expect(ct.has('198.51.100.7', target, 80)).toBe(false);
    expect(ct.entries).toHaveLength(1);
  });

  test('a member leaving a remote group cuts its flows to the ports that use the group', async () => {
    const { ct, pw } = open();
    const doc = state('routed', [webGroup()], [port(1, ['sg-web']), port(2, ['sg-web']), port(3, ['sg-web'])]);
    await pw.apply(doc);
    ct.add(101, 6, '192.0.2.3', '192.0.2.2', 22);
    ct.add(101, 6, '192.0.2.4', '192.0.2.2', 22);
    const left = { ...doc, ports: doc.ports!.map((p) => (p.id === 'port-00002' ? { ...p, security_groups: [] } : p)) };
    const r = await pw.apply(left);
    expect(r.cleanup.deleted).toBe(1);
    expect(ct.has('192.0.2.3', '192.0.2.2', 22)).toBe(false);
    expect(ct.has('192.0.2.4', '192.0.2.2', 22)).toBe(true);
  });

  test('a member leaving a remote group with nothing tracked: its peers are never listed (only the member is counted)', async () => {
    const ct = Object.assign(new FakeConntrack(), { count: async () => ct.entries.length });
    const pw = Portwall.open({ binding: new FakeNft(), conntrack: ct });
    const doc = state('routed', [webGroup()], [port(1, ['sg-web']), port(2, ['sg-web']), port(3, ['sg-web'])]);
    await pw.apply(doc);
    const left = { ...doc, ports: doc.ports!.map((p) => (p.id === 'port-00002' ? { ...p, security_groups: [] } : p)) };
    const r = await pw.apply(left);
    // Ports 1 and 3 name sg-web as a remote group: they are the member's peers, judged only when flows exist.
    expect(r.cleanup).toEqual({ deleted: 0, examined: 0, ports: 1 });
    expect(ct.lists).toBe(0);
    // With a flow tracked, the peers are listed and judged: the member's ssh to port 1 goes.
    await pw.apply(doc);
    ct.add(101, 6, '192.0.2.3', '192.0.2.2', 22);
    const again = await pw.apply(left);
    expect(again.cleanup).toMatchObject({ deleted: 1, ports: 3 });
  });

  test('a removed port loses all its flows; a removed address pair its flows from that address', async () => {
    const { ct, pw } = open();
    const withPair = state('routed', [webGroup()], [port(1, ['sg-web'], { allowed_address_pairs: [{ ip_address: '192.0.2.100' }] }), port(2, ['sg-web'])]);
    await pw.apply(withPair);
    ct.add(101, 6, '192.0.2.100', '203.0.113.9', 443); // from the pair: egress allowed now
    ct.add(101, 6, '192.0.2.2', '203.0.113.9', 443); // from the fixed IP: stays
    ct.add(101, 6, '198.51.100.7', '192.0.2.3', 80); // to port 2: goes with port 2
    const r = await pw.apply(state('routed', [webGroup()], [port(1, ['sg-web'])]));
    expect(r.cleanup.deleted).toBe(2);
    expect(ct.entries.map((e) => e.orig.src)).toEqual(['192.0.2.2']);
  });

  test('port security switched on: flows admitted while unfiltered are judged', async () => {
    const { ct, pw } = open();
    const off = state('routed', [webGroup()], [port(1, [], { port_security_enabled: false })]);
    await pw.apply(off);
    ct.add(101, 6, '203.0.113.9', '192.0.2.2', 25);
    ct.add(101, 6, '198.51.100.9', '192.0.2.2', 80);
    const r = await pw.apply(state('routed', [webGroup()], [port(1, ['sg-web'])]));
    expect(r.cleanup.deleted).toBe(1);
    expect(ct.has('198.51.100.9', '192.0.2.2', 80)).toBe(true);
  });

  test('nothing changed, nothing listed; cleanup: false skips it', async () => {
    const { ct, pw } = open();
    await pw.apply(two());
    const lists = ct.lists;
    await pw.apply(two());
    expect(ct.lists).toBe(lists);
    ct.add(101, 6, '198.51.100.7', '192.0.2.2', 80);
    const g = webGroup();
    g.security_group_rules = g.security_group_rules!.filter((r) => r.id !== 'sg-web-http');
    const r = await pw.apply({ ...two(), security_groups: [g] }, { cleanup: false });
    expect(r.cleanup.deleted).toBe(0);
    expect(ct.entries).toHaveLength(1);
  });

  test('a flow to a floating IP is judged after DNAT: as the port behind it, with its fixed address', async () => {
    const { ct, pw } = open();
    const withFip = <T extends object>(doc: T) => ({ ...doc, floatingips: [{ id: 'fip-1', floating_ip_address: FIP, fixed_ip_address: '192.0.2.2', port_id: 'port-00001' }] });
    await pw.apply(withFip(two()));
    // As the kernel tracks them: original destination the floating IP, reply source the fixed IP.
    const natted = (src: string, extra: Partial<ConntrackEntry>) => ct.entries.push({
      family: 'ipv4', protocol: 6, zone: 101, mark: 0, status: 6 | STATUS.DST_NAT, timeout: 100, id: 900 + ct.entries.length,
      orig: { src, dst: FIP, sport: 41000, dport: 80 }, reply: { src: '192.0.2.2', dst: src, sport: 80, dport: 41000 }, ...extra,
    });
    natted('198.51.100.7', {}); // http, allowed by sg-web-http only: goes with it
    natted('203.0.113.5', { protocol: 1, orig: { src: '203.0.113.5', dst: FIP }, reply: { src: '192.0.2.2', dst: '203.0.113.5' }, icmp: { type: 8, code: 0, id: 7 } }); // ping: stays
    const r = await pw.apply(withFip(withoutHttp()));
    expect(r.cleanup.deleted).toBe(1);
    expect(ct.entries.map((e) => e.orig.src)).toEqual(['203.0.113.5']);
  });

  test('affectedPorts: every changed port with its zones and its addresses before and after', async () => {
    const { pw } = open();
    const doc = two();
    await pw.apply(doc);
    const ir = pw.policy()!;
    const [p1, p2] = ir.ports;
    const moved = { ...p2!, fixedIps: ['192.0.2.77/32'], spoof: [{ mac: p2!.mac, prefix: '192.0.2.77/32', family: 4 as const }] };
    const a = affectedPorts(viewOf(ir), [{ now: p1! }, { old: p2!, now: moved }]);
    expect(a.map((x) => x.portId)).toEqual([p1!.portId, p2!.portId]);
    expect(a[1]).toMatchObject({ zones: [101], old: p2, port: moved });
    expect(a[1]!.addresses).toEqual(expect.arrayContaining(['192.0.2.77/32', ...p2!.fixedIps]));
    // A removed port keeps its old zone and addresses.
    expect(affectedPorts(viewOf(ir), [{ old: p1! }])[0]).toMatchObject({ portId: p1!.portId, zones: [101], addresses: expect.arrayContaining(p1!.fixedIps) });
  });

  test('mayShrink: widening changes are not judged, anything that takes permission away is', async () => {
    const { pw } = open();
    await pw.apply(two());
    const [p] = pw.policy()!.ports;
    const base = p!;
    expect(mayShrink(undefined, base)).toBe(false); // a port new to the handle
    expect(mayShrink(base, undefined)).toBe(true); // removed
    expect(mayShrink(base, base)).toBe(false);
    const extraIp = { ...base, fixedIps: [...base.fixedIps, '192.0.2.99/32'], spoof: [...base.spoof, { mac: base.mac, prefix: '192.0.2.99/32', family: 4 as const }] };
    expect(mayShrink(base, extraIp)).toBe(false);
    expect(mayShrink(extraIp, base)).toBe(true);
    const moreRules = { ...base, rules: [...base.rules, { ...base.rules[0]!, ruleId: 'x', ports: { min: 1, max: 2 } }] };
    expect(mayShrink(base, moreRules)).toBe(false);
    expect(mayShrink(moreRules, base)).toBe(true);
    expect(mayShrink(base, { ...base, rules: base.rules.map((r) => ({ ...r, ruleId: `renamed-${r.ruleId}` })) })).toBe(false);
    expect(mayShrink({ ...base, filtered: false }, base)).toBe(true); // port security switched on
    expect(mayShrink(base, { ...base, filtered: false })).toBe(false);
    expect(mayShrink(base, { ...base, zone: 102 })).toBe(true);
  });

  test('an empty conntrack table (count 0) is not dumped', async () => {
    const ct = Object.assign(new FakeConntrack(), { count: async () => 0 });
    const pw = Portwall.open({ binding: new FakeNft(), conntrack: ct });
    await pw.apply(two());
    await pw.apply(withoutHttp());
    expect(ct.lists).toBe(0);
    const counted = Object.assign(new FakeConntrack(), { count: async () => 1 });
    const pw2 = Portwall.open({ binding: new FakeNft(), conntrack: counted });
    await pw2.apply(two());
    expect(counted.lists).toBe(1); // the first change: a full pass
  });
});

type Group = ReturnType<typeof webGroup>;
const tcpIn = (id: string, dport: number) => ({ id, direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: dport, port_range_max: dport }) as const;
const egressAny = (id: string) => ({ id, direction: 'egress', ethertype: 'IPv4' }) as const;
const group = (id: string, rules: Group['security_group_rules']): Group => ({ id, stateful: true, security_group_rules: rules });
const withoutHttp = () => {
  const g = webGroup();
  g.security_group_rules = g.security_group_rules!.filter((r) => r.id !== 'sg-web-http');
  return { ...two(), security_groups: [g] };
};

describe('conntrack cleanup: attribution, identity, retries', () => {
  test('seed 000: the same address in another tenant\'s zone is never judged (routed networks in zones 101, 102)', async () => {
    const { ct, pw } = open();
    const doc = (bRules: Group['security_group_rules']) => ({
      networks: [network('routed', 'net-a', 101), network('routed', 'net-b', 102)],
      security_groups: [group('sg-a', [tcpIn('a-http', 80)]), group('sg-b', bRules)],
      ports: [
        port(9, ['sg-a'], { id: 'port-a', device: 'tapa', mac_address: 'fa:16:3e:00:00:0a' }, 'net-a'),
        port(9, ['sg-b'], { id: 'port-b', device: 'tapb', mac_address: 'fa:16:3e:00:00:0b' }, 'net-b'),
      ],
    });
    await pw.apply(doc([tcpIn('b-http', 80)]));
    ct.add(101, 6, '203.0.113.2', '192.0.2.10', 80); // tenant A's flow: still allowed
    ct.add(102, 6, '203.0.113.2', '192.0.2.10', 80); // tenant B's identical flow: loses its rule
    const r = await pw.apply(doc([]));
    expect(r.cleanup.deleted).toBe(1);
    expect(ct.has('203.0.113.2', '192.0.2.10', 80, 101)).toBe(true);
    expect(ct.has('203.0.113.2', '192.0.2.10', 80, 102)).toBe(false);
  });

  test("a lower zone's wide address pair does not take another network's host address from its port", async () => {
    const { ct, pw } = open();
    const doc = (bRules: Group['security_group_rules']) => ({
      networks: [network('routed', 'net-a', 101), network('routed', 'net-b', 102)],
      security_groups: [group('sg-a', [egressAny('a-out')]), group('sg-b', bRules)],
      // Port 1 (192.0.2.2) also answers for 192.0.2.0/24; port 5 of net-b is 192.0.2.6.
      ports: [port(1, ['sg-a'], { allowed_address_pairs: [{ ip_address: '192.0.2.0/24' }] }, 'net-a'), port(5, ['sg-b'], {}, 'net-b')],
    });
    await pw.apply(doc([tcpIn('b-http', 80)]));
    ct.add(101, 6, '192.0.2.2', '192.0.2.6', 80); // port 1 → port 5 (the host route wins): in the lower zone
    ct.add(101, 6, '192.0.2.2', '192.0.2.7', 80); // port 1 → behind its own pair: not port 5's, stays
    const r = await pw.apply(doc([]));
    expect(r.cleanup.deleted).toBe(1);
    expect(ct.has('192.0.2.2', '192.0.2.6', 80)).toBe(false);
    expect(ct.has('192.0.2.2', '192.0.2.7', 80)).toBe(true);
  });

  test('a routed flow between two networks, tracked in the lower zone, is still cut', async () => {
    const { ct, pw } = open();
    const doc = (bRules: Group['security_group_rules']) => ({
      networks: [network('routed', 'net-a', 101), network('routed', 'net-b', 102)],
      security_groups: [group('sg-a', [egressAny('a-out')]), group('sg-b', bRules)],
      ports: [port(4, ['sg-a'], {}, 'net-a'), port(254, ['sg-b'], {}, 'net-b')], // 192.0.2.5, 198.51.100.5
    });
    await pw.apply(doc([tcpIn('b-http', 80)]));
    ct.add(101, 6, '192.0.2.5', '198.51.100.5', 80); // port 4 → port 254: lives in zone 101
    ct.add(101, 6, '192.0.2.5', '198.51.100.5', 443); // allowed by the rule that replaces it: stays
    const r = await pw.apply(doc([tcpIn('b-https', 443)]));
    expect(r.cleanup.deleted).toBe(1);
    expect(ct.has('192.0.2.5', '198.51.100.5', 80)).toBe(false);
    expect(ct.has('192.0.2.5', '198.51.100.5', 443)).toBe(true);
  });

  test('a flow between a routed port and a bridged port, tracked in the bridged zone, is cut for the routed port', async () => {
    const { ct, pw } = open();
    const doc = (bRules: Group['security_group_rules']) => ({
      networks: [network('bridged', 'net-a', 101), network('routed', 'net-b', 102)],
      security_groups: [group('sg-a', [egressAny('a-out')]), group('sg-b', bRules)],
      ports: [port(4, ['sg-a'], {}, 'net-a'), port(254, ['sg-b'], {}, 'net-b')], // 192.0.2.5 bridged, 198.51.100.5 routed
    });
    await pw.apply(doc([tcpIn('b-http', 80)]));
    ct.add(101, 6, '192.0.2.5', '198.51.100.5', 80);
    ct.add(102, 6, '203.0.113.9', '192.0.2.5', 80); // another network's zone, another port's address: not judged
    const r = await pw.apply(doc([]));
    expect(r.cleanup.deleted).toBe(1);
    expect(ct.has('192.0.2.5', '198.51.100.5', 80)).toBe(false);
    expect(ct.has('203.0.113.9', '192.0.2.5', 80, 102)).toBe(true);
  });

  test('an address-pair prefix never claims another port\'s more specific address', async () => {
    const { ct, pw } = open();
    const doc = (aRules: Group['security_group_rules']) => state('routed', [group('sg-a', aRules), group('sg-d', [tcpIn('d-http', 80), egressAny('d-out')])], [
      port(4, ['sg-a'], { allowed_address_pairs: [{ ip_address: '192.0.2.0/24' }] }), // 192.0.2.5 and the whole /24
      port(19, ['sg-d']), // 192.0.2.20
    ]);
    await pw.apply(doc([tcpIn('a-ssh', 22)]));
    ct.add(101, 6, '203.0.113.2', '192.0.2.20', 80); // D's: stays
    ct.add(101, 6, '192.0.2.20', '203.0.113.2', 443); // D's: stays
    ct.add(101, 6, '203.0.113.2', '192.0.2.30', 22); // A's, by its pair: goes
    ct.add(101, 6, '203.0.113.2', '192.0.2.5', 22); // A's: goes
    const r = await pw.apply(doc([]));
    expect(r.cleanup.deleted).toBe(2);
    expect(ct.entries.map((e) => e.orig.src === '203.0.113.2' ? e.orig.dst : e.orig.src).sort()).toEqual(['192.0.2.20', '192.0.2.20']);
  });

  test('ICMP: the refused entry goes by identity, other ICMP flows between the same addresses stay', async () => {
    const { ct, pw } = open();
    const icmpIn = (id: string, type: number) => ({ id, direction: 'ingress', ethertype: 'IPv4', protocol: 'icmp', port_range_min: type }) as const;
    const doc = (timestamp: boolean) => state('routed', [group('sg-i', [icmpIn('echo', 8), ...(timestamp ? [icmpIn('ts', 13)] : [])])], [port(1, ['sg-i'])]);
    await pw.apply(doc(true));
    ct.add(101, 1, '203.0.113.5', '192.0.2.2', undefined, 8); // a ping: still allowed
    ct.add(101, 1, '203.0.113.5', '192.0.2.2', undefined, 13); // a timestamp request: refused now
    const r = await pw.apply(doc(false));
    expect(r.cleanup.deleted).toBe(1);
    expect(ct.entries.map((e) => e.icmp?.type)).toEqual([8]);
  });

  test('a cleanup that throws is retried by the next apply, even when nothing is left to commit', async () => {
    const { ct, pw } = open();
    await pw.apply(two());
    ct.add(101, 6, '198.51.100.7', '192.0.2.2', 80);
    ct.failLists = 1;
    await expect(pw.apply(withoutHttp())).rejects.toThrow(/conntrack dump failed/);
    expect(ct.entries).toHaveLength(1);
    const r = await pw.apply(withoutHttp());
    expect(r).toMatchObject({ changed: false, operations: 0, cleanup: { deleted: 1 } });
    expect(ct.entries).toHaveLength(0);
    const lists = ct.lists;
    await pw.apply(withoutHttp()); // done: nothing to judge again
    expect(ct.lists).toBe(lists);
  });

  test('a port removed by a batch whose cleanup threw still loses its flows on the retry', async () => {
    const { ct, pw } = open();
    await pw.apply(two());
    ct.add(101, 6, '198.51.100.7', '192.0.2.3', 80); // to port 2
    ct.failLists = 1;
    await expect(pw.apply(state('routed', [webGroup()], [port(1, ['sg-web'])]))).rejects.toThrow();
    const r = await pw.apply(state('routed', [webGroup()], [port(1, ['sg-web'])]));
    expect(r.cleanup.deleted).toBe(1);
    expect(ct.entries).toHaveLength(0);
  });

  test('a failing ipset publish does not skip the cleanup', async () => {
    const ct = new FakeConntrack();
    let broken = false;
    const ipsets = {
      list: async () => {
        if (broken) throw new Error('ipset down');
        return [];
      },
      create: async () => undefined, replace: async () => undefined, destroy: async () => undefined,
    };
    const pw = Portwall.open({ binding: new FakeNft(), conntrack: ct, config: { publishIpsets: true }, ipsets: ipsets as never });
    await pw.apply(two());
    ct.add(101, 6, '198.51.100.7', '192.0.2.2', 80);
    broken = true;
    await expect(pw.apply(withoutHttp())).rejects.toThrow(/ipset down/);
    expect(ct.entries).toHaveLength(0);
  });

  test('a cleanup that throws still lets the ipsets follow the commit, then reports its error', async () => {
    const ct = new FakeConntrack();
    const replaced: string[][] = [];
    const ipsets = {
      list: async () => [], create: async () => undefined, destroy: async () => undefined,
      replace: async (_name: string, members: string[]) => void replaced.push(members),
    };
    const pw = Portwall.open({ binding: new FakeNft(), conntrack: ct, config: { publishIpsets: true }, ipsets: ipsets as never });
    await pw.apply(two());
    ct.failLists = 1;
    const left = { ...two(), ports: two().ports!.map((p) => (p.id === 'port-00002' ? { ...p, security_groups: [] } : p)) };
    await expect(pw.apply(left)).rejects.toThrow(/conntrack dump failed/);
    expect(replaced.at(-1)).toEqual(['192.0.2.2']);
  });

  test('a new handle (a restart between a commit and its cleanup) judges every port once', async () => {
    const ct = new FakeConntrack();
    const nft = new FakeNft();
    const before = Portwall.open({ binding: nft, conntrack: ct });
    await before.apply(two());
    ct.add(101, 6, '198.51.100.7', '192.0.2.2', 80);
    ct.add(101, 6, '192.0.2.3', '192.0.2.2', 22); // still allowed
    await before.apply(withoutHttp(), { cleanup: false }); // the process "dies" before its cleanup
    const after = Portwall.open({ binding: nft, conntrack: ct });
    const r = await after.apply(withoutHttp());
    // The policy was already there (nothing to commit); the flow it no longer allows goes now.
    expect(r).toMatchObject({ changed: false, cleanup: { deleted: 1 } });
    expect(ct.has('192.0.2.3', '192.0.2.2', 22)).toBe(true);
    const lists = ct.lists;
    await after.apply(withoutHttp());
    expect(ct.lists).toBe(lists);
  });
});

describe('conntrack cleanup: the full pass and remote-group members', () => {
  test('a full pass over many ports dumps whole zones, a one-port change its addresses; both judge alike', async () => {
    const ct = new FakeConntrack();
    const seen: (readonly ConntrackFilter[])[] = [];
    const spy: ConntrackLike = {
      list: (f) => (seen.push(Array.isArray(f) ? f : [f as ConntrackFilter]), ct.list(f)),
      deleteEntries: (e) => ct.deleteEntries(e),
    };
    // 130 ports of two addresses each: 520 (zone, address, direction) filters, more than a dump should carry.
    const ports = Array.from({ length: 130 }, (_, i) => port(i + 1, ['sg-web']));
    ct.add(101, 6, '198.51.100.7', '192.0.2.3', 80); // to port 2, http from 198.51.100.0/24: admitted
    ct.add(101, 6, '203.0.113.9', '192.0.2.4', 80); // to port 3 from outside that prefix: refused
    ct.add(102, 6, '203.0.113.9', '192.0.2.4', 80); // another zone: never looked at
    const pw = Portwall.open({ binding: new FakeNft(), conntrack: spy });
    const first = await pw.apply(state('routed', [webGroup()], ports)); // adopted: the full pass
    expect(seen[0]).toEqual([{ zone: 101 }]);
    expect(first.cleanup).toMatchObject({ examined: 2, deleted: 1 });
    expect(ct.entries.map((e) => `${e.zone} ${e.orig.dst}:${e.orig.dport}`)).toEqual(['101 192.0.2.3:80', '102 192.0.2.4:80']);
    // One port's http rule gone: its addresses only (both ways), and its flow goes.
    ct.add(101, 6, '198.51.100.7', '192.0.2.4', 80);
    const g = webGroup('sg-other');
    await pw.apply(state('routed', [webGroup(), g], [...ports.slice(0, 2), port(3, ['sg-other']), ...ports.slice(3)]));
    const noHttp = { ...g, security_group_rules: g.security_group_rules!.filter((r) => !r.id.endsWith('-http')) };
    const r = await pw.apply(state('routed', [webGroup(), noHttp], [...ports.slice(0, 2), port(3, ['sg-other']), ...ports.slice(3)]));
    const own = ['192.0.2.4/32', '2001:db8:1::3/128', 'fe80::f816:3eff:fe00:3/128']; // its link-local address too
    expect(seen.at(-1)!.map((f) => `${f.zone} ${f.src ?? '-'} ${f.dst ?? '-'}`).sort()).toEqual(own.flatMap((a) => [`101 ${a} -`, `101 - ${a}`]).sort());
    expect(r.cleanup).toMatchObject({ examined: 1, deleted: 1 });
    expect(ct.has('198.51.100.7', '192.0.2.3', 80)).toBe(true);
    expect(ct.has('198.51.100.7', '192.0.2.4', 80)).toBe(false);
  });

  test('a remote group admits its members\' host addresses and what their address-pair prefixes cover, nothing else', async () => {
    const { ct, pw } = open();
    const ssh = { id: 'a-ssh', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 22, port_range_max: 22, remote_group_id: 'sg-m' } as const;
    const doc = (rules: Group['security_group_rules']) => state('routed', [group('sg-a', rules), group('sg-m', [egressAny('m-out')])], [
      port(1, ['sg-a']),
      port(2, ['sg-m']), // 192.0.2.3
      port(3, ['sg-m'], { allowed_address_pairs: [{ ip_address: '198.51.100.64/28' }] }),
    ]);
    await pw.apply(doc([ssh, tcpIn('a-web', 80)]));
    ct.add(101, 6, '192.0.2.3', '192.0.2.2', 22); // a member's host address: stays
    ct.add(101, 6, '198.51.100.70', '192.0.2.2', 22); // inside a member's pair prefix: stays
    ct.add(101, 6, '198.51.100.80', '192.0.2.2', 22); // outside it: goes
    ct.add(101, 6, '203.0.113.5', '192.0.2.2', 22); // no member: goes
    // The web rule goes: port 1's flows are judged, by the ssh rule now.
    const r = await pw.apply(doc([ssh]));
    expect(r.cleanup.deleted).toBe(2);
    expect(ct.entries.filter((e) => e.orig.dport === 22).map((e) => e.orig.src).sort()).toEqual(['192.0.2.3', '198.51.100.70']);
  });
});
