// The fake binding behind the real client: kernel errors, atomicity, listings and the set registry.
import { beforeEach, describe, expect, test } from 'vitest';

import { Nft } from '../../src/nft/client.js';
import { FakeNft } from '../../src/nft/fake.js';
import type { Chain, Elements, NftObject, NftSet, Rule, Table } from '../../src/nft/types.js';

const table: Table = { kind: 'table', family: 'inet', name: 'pw' };
const base: Chain = { kind: 'chain', family: 'inet', table: 'pw', name: 'in', hook: 'input', priority: 0, type: 'filter' };
const other: Chain = { kind: 'chain', family: 'inet', table: 'pw', name: 'other' };
const members: NftSet = { kind: 'set', family: 'inet', table: 'pw', name: 'members', key: ['ipv4_addr'], flags: ['interval'], comment: 'group 1' };
const ports: NftSet = { kind: 'set', family: 'inet', table: 'pw', name: 'ports', key: ['inet_service'], counter: true };
const vm: NftSet = { kind: 'set', family: 'inet', table: 'pw', name: 'vm', key: ['ipv4_addr'], data: 'verdict' };
const refs: NftSet = { kind: 'set', family: 'inet', table: 'pw', name: 'refs', key: ['ifname', 'inet_service', 'ipv4_addr'], flags: ['interval'] };
const elements = (set: string, els: Elements['elements']): Elements => ({ kind: 'elements', family: 'inet', table: 'pw', set, elements: els });
const lookupRule: Rule = {
  kind: 'rule', family: 'inet', table: 'pw', chain: 'in', comment: 'remote group',
  exprs: [
    { type: 'payload', base: 'network', offset: 12, len: 4, dreg: 1 },
    { type: 'lookup', sreg: 1, set: 'members' },
    { type: 'counter' },
    { type: 'immediate', dreg: 0, verdict: { code: 'jump', chain: 'other' } },
  ],
};

const RANK = { table: 0, chain: 1, set: 2, elements: 3, rule: 4 } as const;

// Kernel-assigned fields differ between what was sent and what is listed; a dump interleaves each set with
// its elements, a transaction here lists sets first.
function strip(objects: readonly NftObject[]): unknown[] {
  return [...objects].sort((a, b) => RANK[a.kind] - RANK[b.kind]).map((o) => {
    const { handle: _h, ...rest } = o as NftObject & { handle?: bigint };
    if (rest.kind === 'elements') return { ...rest, elements: rest.elements.map(({ counter: _c, ...e }) => e) };
    if (rest.kind === 'chain' && rest.hook !== undefined) return { policy: 'accept', ...rest };
    return rest;
  });
}

let fake: FakeNft;
let nft: Nft;
beforeEach(() => {
  fake = new FakeNft();
  nft = new Nft({ binding: fake });
});

const skeleton = () =>
  nft.transaction().add(table).add(base).add(other).add(members).add(ports).add(vm).add(refs)
    .add(elements('members', [{ key: ['192.0.2.0/24'], comment: 'port a' }, { key: ['198.51.100.7'] }, { key: ['203.0.113.0-203.0.113.99'] }]))
    .add(elements('ports', [{ key: [22] }, { key: [443] }]))
    .add(elements('vm', [{ key: ['192.0.2.1'], verdict: { code: 'goto', chain: 'other' } }]))
    .add(elements('refs', [{ key: ['tap0', '1000-2000', '203.0.113.0/24'] }]))
    .add(lookupRule);

describe('fake nftables', () => {
  test('what is committed lists back equal (apart from handles, counters and default policies)', async () => {
    const tx = skeleton();
    const { genid } = await tx.commit();
    const listing = await nft.list();
    expect(listing.genid).toBe(genid);
    const sent = tx.operations.map((o) => o.object);
    expect(strip(listing.objects)).toEqual(strip(sent));
    const listedPorts = listing.objects.find((o) => o.kind === 'elements' && o.set === 'ports') as Elements;
    expect(listedPorts.elements[0]).toEqual({ key: [22], counter: { packets: 0n, bytes: 0n } });
    expect(listing.objects.every((o) => o.kind === 'elements' || typeof (o as { handle?: bigint }).handle === 'bigint')).toBe(true);
  });

  test('a failing batch changes nothing (all or nothing) and keeps the generation', async () => {
    await skeleton().commit();
    const before = await nft.list();
    const tx = nft.transaction()
      .add(elements('ports', [{ key: [8080] }]))
      .delete({ kind: 'chain', family: 'inet', table: 'pw', name: 'other' }) // jumped to: EBUSY
      .add({ kind: 'table', family: 'ip', name: 'never' });
    await expect(tx.commit()).rejects.toMatchObject({ code: 'ERR_KERNEL', errnoName: 'EBUSY', opIndex: 1 });
    expect(await nft.list()).toEqual(before);
  });

  test.each([
    ['create of an existing table', (n: Nft) => n.transaction().create(table), 'EEXIST', 0],
    ['create of an existing element', (n: Nft) => n.transaction().create(elements('ports', [{ key: [22] }])), 'EEXIST', 0],
    ['an element with other data', (n: Nft) => n.transaction().add(elements('vm', [{ key: ['192.0.2.1'], verdict: { code: 'drop' } }])), 'EEXIST', 0],
    ['deleting a set a rule looks up', (n: Nft) => n.transaction().delete(members), 'EBUSY', 0],
    ['deleting a missing element', (n: Nft) => n.transaction().delete(elements('ports', [{ key: [1] }])), 'ENOENT', 0],
    ['a chain in a missing table', (n: Nft) => n.transaction().add({ ...other, table: 'nope' }), 'ENOENT', 0],
    ['a jump to a missing chain', (n: Nft) => n.transaction().add({ ...lookupRule, exprs: [{ type: 'immediate', dreg: 0, verdict: { code: 'jump', chain: 'nope' } }] }), 'ENOENT', 0],
    ['a jump to a base chain', (n: Nft) => n.transaction().add({ ...lookupRule, chain: 'other', exprs: [{ type: 'immediate', dreg: 0, verdict: { code: 'goto', chain: 'in' } }] }), 'EOPNOTSUPP', 0],
    ['replacing a missing rule', (n: Nft) => n.transaction().add(table).replace({ ...lookupRule, handle: 999n }), 'ENOENT', 1],
    ['a set redefined with another key', (n: Nft) => n.transaction().add({ ...ports, key: ['ipv4_addr'] }), 'EEXIST', 0],
    ['create of an existing set (its elements would go by batch id)', (n: Nft) => n.transaction().create(ports).add(elements('ports', [{ key: [8] }])), 'EEXIST', 0],
    ['a base chain re-added with another hook', (n: Nft) => n.transaction().add({ ...base, hook: 'output' }), 'EOPNOTSUPP', 0],
    ['a regular chain re-added as a base chain', (n: Nft) => n.transaction().add({ ...base, name: 'other' }), 'EEXIST', 0],
  ] as const)('kernel errors: %s → %s', async (_name, build, errnoName, opIndex) => {
    await skeleton().commit();
    await expect(build(nft).commit()).rejects.toMatchObject({ code: 'ERR_KERNEL', errnoName, opIndex });
  });

  test('add of an existing object is a no-op; destroy of a missing one too', async () => {
    await skeleton().commit();
    const before = (await nft.list()).objects;
    await nft.transaction().add(table).add(members).add(elements('ports', [{ key: [22] }]))
      .destroy({ kind: 'table', family: 'ip', name: 'nope' })
      .destroy(elements('ports', [{ key: [9] }]))
      .commit();
    expect((await nft.list()).objects).toEqual(before);
  });

  test('elements of a set the batch creates reach it by batch id, as in the kernel', async () => {
    await skeleton().commit();
    const fresh: NftSet = { ...ports, name: 'fresh' };
    await nft.transaction().create(fresh).add(elements('fresh', [{ key: [7] }])).add(elements('ports', [{ key: [8] }])).commit();
    const listed = (await nft.list()).objects.filter((o) => o.kind === 'elements' && (o.set === 'fresh' || o.set === 'ports')) as Elements[];
    expect(listed.map((e) => [e.set, e.elements.map((x) => x.key[0])])).toEqual([['ports', [22, 443, 8]], ['fresh', [7]]]);
  });

  test('deleting a table removes everything in it', async () => {
    await skeleton().commit();
    await nft.transaction().delete(table).commit();
    expect((await nft.list()).objects).toEqual([]);
  });

  test('rule placement: append, insert, after/before a handle, replace, delete by handle', async () => {
    await nft.transaction().add(table).add(other).commit();
    const r = (n: number): Rule => ({ kind: 'rule', family: 'inet', table: 'pw', chain: 'other', comment: `r${n}`, exprs: [{ type: 'counter' }] });
    await nft.transaction().add(r(1)).add(r(2)).commit();
    const handleOf = async (c: string) =>
      ((await nft.list()).objects.find((o) => o.kind === 'rule' && o.comment === c) as Rule).handle!;
    const h1 = await handleOf('r1');
    await nft.transaction().insert(r(0)).add({ ...r(15), position: h1 }).insert({ ...r(14), position: h1 }).commit();
    await nft.transaction().replace({ ...r(20), handle: await handleOf('r2') }).commit();
    await nft.transaction().delete({ ...r(0), handle: await handleOf('r0') }).commit();
    const rules = (await nft.list()).objects.filter((o): o is Rule => o.kind === 'rule');
    expect(rules.map((x) => x.comment)).toEqual(['r14', 'r1', 'r15', 'r20']);
  });

  test('flush: a chain\'s rules, a set\'s elements', async () => {
    await skeleton().commit();
    await nft.transaction().flush({ kind: 'chain', family: 'inet', table: 'pw', name: 'in' }).flush(ports).commit();
    const objects = (await nft.list()).objects;
    expect(objects.some((o) => o.kind === 'rule')).toBe(false);
    expect(objects.some((o) => o.kind === 'elements' && o.set === 'ports')).toBe(false);
    expect(objects.some((o) => o.kind === 'elements' && o.set === 'members')).toBe(true);
  });

  test('interval elements: adjacent ranges and the maximum survive the rbtree encoding', async () => {
    const svc: NftSet = { kind: 'set', family: 'inet', table: 'pw', name: 'svc', key: ['inet_service'], flags: ['interval'] };
    const els = [{ key: [0] }, { key: ['1000-2000'] }, { key: ['2001-3000'], comment: 'next' }, { key: ['60000-65535'] }];
    await nft.transaction().add(table).add(svc).add(elements('svc', els)).commit();
    const listed = (await nft.list()).objects.find((o) => o.kind === 'elements') as Elements;
    expect(listed.elements).toEqual(els);
    await nft.transaction().delete(elements('svc', [{ key: ['2001-3000'] }, { key: ['60000-65535'] }])).commit();
    expect(((await nft.list()).objects.find((o) => o.kind === 'elements') as Elements).elements).toEqual(els.slice(0, 2));
  });

  test('the set registry: listed and committed sets resolve in later transactions', async () => {
    await skeleton().commit();
    const fresh = new Nft({ binding: fake });
    const add22 = () => fresh.transaction().add(elements('ports', [{ key: [2222] }]));
    expect(add22().error).toMatchObject({ code: 'ERR_UNKNOWN_SET', field: 'set' });
    await fresh.list({ family: 'inet', table: 'pw' });
    expect(fresh.knownSet('inet', 'pw', 'ports')).toEqual({ ...ports, handle: expect.any(BigInt) });
    await add22().commit();
    await fresh.transaction().delete(ports).commit();
    expect(fresh.knownSet('inet', 'pw', 'ports')).toBeUndefined();
    await fresh.transaction().add(ports).commit();
    expect(add22().error).toBeUndefined();
    await fresh.transaction().delete(table).commit();
    expect(fresh.knownSet('inet', 'pw', 'members')).toBeUndefined();
  });

  test('namespaces are separate rulesets; list filters by family and table', async () => {
    const ns = new Nft({ netns: 'pw-test', binding: fake });
    await ns.transaction().add(table).add({ kind: 'table', family: 'ip', name: 'nat' }).commit();
    expect((await nft.list()).objects).toEqual([]);
    expect((await ns.list({ family: 'ip' })).objects).toEqual([{ kind: 'table', family: 'ip', name: 'nat', handle: 2n }]);
    expect((await ns.list({ table: 'pw' })).objects.map((o) => o.family)).toEqual(['inet']);
    expect(await ns.genid()).toBe(2);
    expect(await nft.genid()).toBe(1);
  });
});

test('a prerouting (hook 0) base chain takes a policy update', async () => {
  const nft = new Nft({ binding: new FakeNft() });
  const pre: Chain = { kind: 'chain', family: 'ip', table: 'x', name: 'pre', hook: 'prerouting', priority: 0, type: 'filter' };
  await nft.transaction().add({ kind: 'table', family: 'ip', name: 'x' }).add(pre).commit();
  await nft.transaction().add({ ...pre, policy: 'drop' }).commit();
  expect((await nft.list()).objects[1]).toMatchObject({ name: 'pre', policy: 'drop' });
});
