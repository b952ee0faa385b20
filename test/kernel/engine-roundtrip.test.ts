// Every object kind, in every family, committed through the addon into a fresh namespace, listed back over
// netlink and compared field by field; `nft -j list ruleset` is the independent oracle.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { FakeNft } from '../../src/nft/fake.js';
import { Nft, openNft } from '../../src/nft/client.js';
import {
  F, accept, counter, drop, eq, goto, inSet, jump, limit, log, notrack, rule, set, snat, dnat, vmap,
} from '../../src/nft/match.js';
import type { Chain, Elements, Expr, Family, NftSet, Rule, Table } from '../../src/nft/types.js';
import { comparable, json, listingFacts, nftFacts } from '../helpers/compare.js';
import { EVERY_EXPR } from '../helpers/every-expr.js';
import { Netns, isRoot } from '../helpers/netns.js';

const table = (family: Family): Table => ({ kind: 'table', family, name: 'pw' });
const chain = (family: Family, name: string, base?: Partial<Chain>): Chain =>
  ({ kind: 'chain', family, table: 'pw', name, ...base });
const ruleIn = (family: Family, chainName: string, exprs: Expr[], comment?: string): Rule =>
  ({ kind: 'rule', family, table: 'pw', chain: chainName, exprs, ...(comment ? { comment } : {}) });
const els = (family: Family, setName: string, elements: Elements['elements']): Elements =>
  ({ kind: 'elements', family, table: 'pw', set: setName, elements });

// Sets of every shape portwall uses: interval, concatenated interval with counters and timeouts, verdict
// map, data map, concatenated hash.
const members: NftSet = { kind: 'set', family: 'inet', table: 'pw', name: 'members4', key: ['ipv4_addr'], flags: ['interval'], comment: 'remote group sg-web' };
const refs: NftSet = {
  kind: 'set', family: 'inet', table: 'pw', name: 'allow4', key: ['ifname', 'inet_proto', 'inet_service', 'ipv4_addr'],
  flags: ['interval', 'timeout'], counter: true, timeout: 3_600_000,
};
const ports: NftSet = { kind: 'set', family: 'inet', table: 'pw', name: 'port-in', key: ['ifname'], data: 'verdict', comment: 'dispatch' };
const zones: NftSet = { kind: 'set', family: 'inet', table: 'pw', name: 'zones', key: ['ifname'], data: 'integer' as const, size: 4096 };
const pairs6: NftSet = { kind: 'set', family: 'inet', table: 'pw', name: 'pairs6', key: ['ether_addr', 'ipv6_addr'] };

function everyKind(): (Table | Chain | NftSet | Elements | Rule)[] {
  return [
    table('inet'),
    chain('inet', 'ingress', { hook: 'forward', priority: 0, type: 'filter', policy: 'drop', comment: 'port dispatch' }),
    chain('inet', 'raw', { hook: 'prerouting', priority: -300, type: 'filter' }),
    chain('inet', 'port-a'),
    chain('inet', 'port-b'),
    members, refs, ports, pairs6,
    els('inet', 'members4', [{ key: ['192.0.2.0/28'], comment: 'member a' }, { key: ['198.51.100.7'] }, { key: ['203.0.113.10-203.0.113.20'] }]),
    els('inet', 'allow4', [
      { key: ['tap0', 'tcp', 80, '198.51.100.0/24'], comment: 'sg-rule r1' },
      { key: ['tap0', 'udp', '5000-5100', '0.0.0.0/0'], timeout: 60_000 },
    ]),
    els('inet', 'port-in', [
      { key: ['tap0'], verdict: { code: 'jump', chain: 'port-a' } },
      { key: ['tap1'], verdict: { code: 'goto', chain: 'port-b' } },
      { key: ['tap2'], verdict: { code: 'drop' } },
    ]),
    els('inet', 'pairs6', [{ key: ['fa:16:3e:00:00:01', '2001:db8::1'] }]),
    ruleIn('inet', 'raw', rule('inet', eq(F.meta.iifname, 'tap0'), set(F.ct.zone, 101))),
    ruleIn('inet', 'raw', rule('inet', eq(F.meta.iifname, 'lo'), notrack())),
    ruleIn('inet', 'ingress', rule('inet', eq(F.ct.state, 'invalid'), drop())),
    ruleIn('inet', 'ingress', rule('inet', eq(F.ct.state, 'established,related'), accept())),
    ruleIn('inet', 'ingress', rule('inet', vmap(F.meta.oifname, ports))),
    ruleIn('inet', 'port-a', rule('inet', inSet([F.meta.oifname, F.meta.l4proto, F.th.dport, F.ip.saddr], refs), counter(), accept()), 'sg-rule r1'),
    ruleIn('inet', 'port-a', rule('inet', inSet(F.ip.saddr, members), eq(F.tcp.dport, 22), accept()), 'remote group'),
    ruleIn('inet', 'port-a', rule('inet', inSet([F.ether.saddr, F.ip6.saddr], pairs6), accept())),
    ruleIn('inet', 'port-a', rule('inet', eq(F.icmpv6.type, 'nd-neighbor-solicit'), accept())),
    ruleIn('inet', 'port-a', rule('inet', eq(F.udp.sport, 68), eq(F.udp.dport, 67), limit({ rate: 10, per: 'second' }), accept())),
    ruleIn('inet', 'port-a', rule('inet', log({ prefix: 'pw drop: ' }), counter(), drop())),
    ruleIn('inet', 'port-b', rule('inet', eq(F.meta.mark, 0x10), jump('port-a'))),
    ruleIn('inet', 'port-b', rule('inet', eq(F.ip6.saddr, '2001:db8::/32'), goto('port-a'))),
    table('ip'),
    chain('ip', 'pre', { hook: 'prerouting', priority: -100, type: 'nat' }),
    chain('ip', 'post', { hook: 'postrouting', priority: 100, type: 'nat' }),
    ruleIn('ip', 'pre', rule('ip', eq(F.ip.daddr, '203.0.113.50'), dnat('192.0.2.50')), 'floating ip'),
    ruleIn('ip', 'post', rule('ip', eq(F.ip.saddr, '192.0.2.50'), snat('203.0.113.50'))),
    table('ip6'),
    chain('ip6', 'fwd', { hook: 'forward', priority: 0, type: 'filter', policy: 'accept' }),
    ruleIn('ip6', 'fwd', rule('ip6', eq(F.ip6.daddr, '2001:db8:1::/48'), eq(F.tcp.dport, 443), counter(), accept())),
    table('bridge'),
    chain('bridge', 'fwd', { hook: 'forward', priority: -200, type: 'filter' }),
    ruleIn('bridge', 'fwd', rule('bridge', eq(F.meta.iifname, 'tap0'), eq(F.ether.saddr, 'fa:16:3e:00:00:01'), set(F.meta.mark, 0x100))),
    table('arp'),
    chain('arp', 'in', { hook: 'input', priority: 0, type: 'filter' }),
    ruleIn('arp', 'in', rule('arp', eq(F.arp.operation, 'request'), eq(F.arp.saddrIp, '192.0.2.1'), accept())),
    table('netdev'),
    chain('netdev', 'ingress', { hook: 'ingress', priority: 0, type: 'filter', device: 'pwd0' }),
    ruleIn('netdev', 'ingress', rule('netdev', eq(F.ether.type, 'arp'), counter())),
  ];
}

// NAT expressions only load in nat chains: source NAT after routing, destination NAT before.
function natChain(e: Expr): string | undefined {
  if (e.type === 'masq' || (e.type === 'nat' && e.nat === 'snat')) return 'post';
  if (e.type === 'redir' || e.type === 'nat') return 'pre';
  return undefined;
}

describe.skipIf(!isRoot)('engine round trip against the kernel', () => {
  let ns: Netns;
  let nft: Nft;
  beforeAll(() => {
    ns = new Netns('roundtrip');
    ns.exec('ip', ['link', 'add', 'pwd0', 'type', 'veth', 'peer', 'name', 'pwd1']);
    nft = openNft({ netns: ns.name });
  });
  afterAll(() => ns?.destroy());

  test('every object kind in every family: committed, listed back equal, and nft -j agrees', async () => {
    const tx = nft.transaction();
    for (const o of everyKind()) tx.add(o);
    expect(tx.error).toBeUndefined();
    await tx.commit();

    const listing = await nft.list();
    expect(comparable(listing.objects)).toEqual(comparable(tx.operations.map((op) => op.object)));
    expect(listingFacts(listing.objects)).toEqual(nftFacts(ns.nftJson() as never));
    // Comments and set types read back by nft itself.
    const text = ns.nftText();
    for (const c of ['"sg-rule r1"', '"remote group sg-web"', '"member a"', '"floating ip"', '"port dispatch"']) expect(text).toContain(c);
    expect(text).toContain('type ifname . inet_proto . inet_service . ipv4_addr');
  });

  test('every expression type is accepted and listed back equal', async () => {
    const t = 'pwx';
    const load16: Expr = { type: 'payload', base: 'network', offset: 0, len: 16, dreg: 1 };
    const setup = nft.transaction()
      .add({ kind: 'table', family: 'inet', name: t })
      .add({ kind: 'chain', family: 'inet', table: t, name: 'c' })
      .add({ kind: 'chain', family: 'inet', table: t, name: 'other' })
      .add({ kind: 'chain', family: 'inet', table: t, name: 'pre', hook: 'prerouting', priority: -100, type: 'nat' })
      .add({ kind: 'chain', family: 'inet', table: t, name: 'post', hook: 'postrouting', priority: 100, type: 'nat' })
      .add({ kind: 'set', family: 'inet', table: t, name: 'allow4', key: ['ipv4_addr'], flags: ['interval'] })
      .add({ kind: 'set', family: 'inet', table: t, name: 'vm', key: ['ipv4_addr'], data: 'verdict' })
      .add({ kind: 'set', family: 'inet', table: t, name: 'dm', key: ['mark'], data: 'mark' });
    await setup.commit();
    const natTypes = new Set(['nat', 'masq', 'redir']);
    const sent: Rule[] = [];
    for (const e of EVERY_EXPR) {
      // Each expression after a load that initialises the registers it reads; NAT ones in the nat chain.
      const needsInit = !natTypes.has(e.type) && !(e.type === 'payload' && e.sreg) && !(e.type === 'meta' && e.sreg) && !(e.type === 'ct' && e.sreg);
      const addr = e.type === 'nat' && e.family === 'ip6' ? new Uint8Array(16).fill(0x20) : Uint8Array.of(192, 0, 2, 1);
      const exprs: Expr[] = needsInit ? [load16, e] : natTypes.has(e.type) ? [
        { type: 'immediate', dreg: 1, data: addr },
        { type: 'immediate', dreg: 2, data: e.type === 'nat' ? addr : Uint8Array.of(0, 80) },
        e,
      ] : [{ type: 'immediate', dreg: 8, data: Uint8Array.of(0, 0, 0, 0) }, { type: 'immediate', dreg: 9, data: Uint8Array.of(0, 0, 0, 0) },
        { type: 'immediate', dreg: 10, data: Uint8Array.of(0, 0, 0, 0) }, { type: 'immediate', dreg: 11, data: Uint8Array.of(0, 0, 0, 0) }, e];
      const r: Rule = { kind: 'rule', family: 'inet', table: t, chain: natChain(e) ?? 'c', comment: `e${sent.length}`, exprs };
      const tx = nft.transaction().add(r);
      await tx.commit().catch((err) => {
        throw new Error(`kernel refused ${json(exprs)}: ${err.message}`);
      });
      sent.push(tx.operations[0]!.object as Rule);
    }
    const listed = (await nft.list({ family: 'inet', table: t })).objects.filter((o): o is Rule => o.kind === 'rule');
    expect(listed).toHaveLength(EVERY_EXPR.length);
    expect(comparable(listed)).toEqual(comparable(sent));
  });

  test('insert, position, replace, delete, flush, destroy: the kernel and the fake agree step by step', async () => {
    const script = async (client: Nft): Promise<unknown[]> => {
      const t = 'pwv';
      const other: Chain = { kind: 'chain', family: 'inet', table: t, name: 'other' };
      const svc: NftSet = { kind: 'set', family: 'inet', table: t, name: 'svc', key: ['inet_service'], flags: ['interval'] };
      const r = (n: number): Rule => ({ kind: 'rule', family: 'inet', table: t, chain: 'other', comment: `r${n}`, exprs: [{ type: 'counter' }] });
      const el = (elements: Elements['elements']): Elements => ({ kind: 'elements', family: 'inet', table: t, set: 'svc', elements });
      const snapshots: unknown[] = [];
      const snap = async () => snapshots.push(comparable((await client.list({ family: 'inet', table: t })).objects));
      const handleOf = async (c: string) =>
        ((await client.list({ family: 'inet', table: t })).objects.find((o) => o.kind === 'rule' && o.comment === c) as Rule).handle!;
      await client.transaction().add({ kind: 'table', family: 'inet', name: t }).add(other).add(svc)
        .add(el([{ key: [22] }, { key: ['1000-2000'] }, { key: ['2001-3000'] }])).add(r(1)).add(r(2)).commit();
      const h1 = await handleOf('r1');
      await client.transaction().insert(r(0)).add({ ...r(15), position: h1 }).insert({ ...r(14), position: h1 }).commit();
      await snap();
      await client.transaction().replace({ ...r(20), handle: await handleOf('r2') }).commit();
      await client.transaction().delete({ ...r(0), handle: await handleOf('r0') }).commit();
      await client.transaction().delete(el([{ key: ['2001-3000'] }])).commit();
      await snap();
      await client.transaction().flush(svc).flush(other).commit();
      await snap();
      await client.transaction().add(el([{ key: [80] }])).add(r(9)).commit();
      await client.transaction().flush({ kind: 'table', family: 'inet', name: t }).commit();
      await snap();
      await client.transaction().destroy({ kind: 'table', family: 'inet', name: t }).destroy({ kind: 'table', family: 'inet', name: t }).commit();
      await snap();
      return snapshots;
    };
    const kernel = await script(nft);
    expect(kernel[0]).toMatchObject([{ kind: 'table' }, { kind: 'chain' }, { kind: 'set' }, { kind: 'elements' },
      { comment: 'r0' }, { comment: 'r14' }, { comment: 'r1' }, { comment: 'r15' }, { comment: 'r2' }]);
    expect(await script(new Nft({ binding: new FakeNft() }))).toEqual(kernel);
  });
});
