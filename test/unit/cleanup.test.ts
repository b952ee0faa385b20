/**
 * Conntrack cleanup on the fake nftables binding and an in-memory conntrack table (no root): which ports
 * are affected by a batch, and which entries go — only those the new policy refuses, only in their zones.
 */
import { describe, expect, test } from 'vitest';

import { affectedPorts, type ConntrackLike } from '../../src/apply/cleanup.js';
import { Portwall } from '../../src/apply/portwall.js';
import { prefixContains } from '../../src/compile/addr.js';
import type { ConntrackEntry, ConntrackFilter } from '../../src/conntrack.js';
import { FakeNft } from '../../src/nft/fake.js';
import { port, state, webGroup } from '../helpers/states.js';

/** An in-memory conntrack table with the client's filter semantics (every given field matches). */
class FakeConntrack implements ConntrackLike {
  entries: ConntrackEntry[] = [];
  lists = 0;
  #id = 1;

  add(zone: number, protocol: number, src: string, dst: string, dport?: number): void {
    const family = src.includes(':') ? 'ipv6' : 'ipv4';
    const ports = dport === undefined ? {} : { sport: 40000 + this.#id, dport };
    const icmp = protocol === 1 ? { icmp: { type: 8, code: 0, id: this.#id } } : {};
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
    const fs = filters === undefined ? [{}] : Array.isArray(filters) ? filters : [filters as ConntrackFilter];
    return this.entries.filter((e) => fs.some((f) => this.#match(e, f)));
  }

  async delete(filters: ConntrackFilter | readonly ConntrackFilter[]): Promise<number> {
    const fs = Array.isArray(filters) ? filters : [filters as ConntrackFilter];
    const before = this.entries.length;
    this.entries = this.entries.filter((e) => !fs.some((f) => this.#match(e, f)));
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

  test('affectedPorts reads removed elements back to ports', async () => {
    const { pw } = open();
    const doc = two();
    await pw.apply(doc);
    const ir = (await pw.plan(doc)).ir;
    expect(affectedPorts(ir, [], [])).toEqual(
      ir.ports.map((p) => expect.objectContaining({ key: `dev:${p.device}`, zones: [101] })),
    ); // nothing was filtered before (empty kernel): both ports are judged
  });
});
