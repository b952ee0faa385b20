/**
 * diff() and Portwall.apply against the fake nftables binding (no root): idempotence, element-only port
 * changes, repair of edits, set rebuilds, and other tables left alone.
 */
import { describe, expect, test } from 'vitest';

import { diff } from '../../src/apply/diff.js';
import { Portwall } from '../../src/apply/portwall.js';
import { openNft } from '../../src/nft/client.js';
import { FakeNft } from '../../src/nft/fake.js';
import { F, accept, eq, rule } from '../../src/nft/match.js';
import type { NftBinding } from '../../src/native.js';
import { groupChainName, groupSetName, idHash } from '../../src/compile/names.js';
import { IN_PLACE_MAX_LOST, IN_PLACE_MAX_SET } from '../../src/apply/engine.js';
import { busyGroup, elementOnly, network, port, state, webGroup, type Mode } from '../helpers/states.js';

function open(fake = new FakeNft()) {
  return { fake, pw: Portwall.open({ binding: fake, conntrack: null }), nft: openNft({ binding: fake }) };
}

const ports = (n: number, groups: string[]) => Array.from({ length: n }, (_, i) => port(i + 1, groups));

describe.each<Mode>(['routed', 'bridged'])('apply on the fake, %s', (mode) => {
  const groups = [webGroup(), busyGroup('sg-busy', 20, 'sg-web')];
  const base = state(mode, groups, ports(20, ['sg-web', 'sg-busy']));

  test('apply twice: the second diff is empty and nothing is committed', async () => {
    const { fake, pw } = open();
    const first = await pw.apply(base);
    expect(first.changed).toBe(true);
    const commits = fake.commits;
    const second = await pw.apply(base);
    expect(second).toMatchObject({ changed: false, operations: 0 });
    expect(fake.commits).toBe(commits);
    expect((await pw.plan(base)).operations).toEqual([]);
  });

  test('adding, changing and removing one port are element-only batches', async () => {
    const { pw } = open();
    await pw.apply(base);
    const added = { ...base, ports: [...base.ports!, port(99, ['sg-web', 'sg-busy'])] };
    const addPlan = await pw.plan(added);
    expect(addPlan.operations.length).toBeGreaterThan(0);
    expect(elementOnly(addPlan.operations)).toBe(true);
    await pw.apply(added);

    // A combination of groups no port had: the new profile's elements only — one per direction in the map of
    // its one group slot (a jump to the group's chain) and its `profiles` entry; no chain, nothing of any group.
    const moved = { ...added, ports: added.ports!.map((p) => (p.id === 'port-00099' ? { ...p, security_groups: ['sg-web'], fixed_ips: [...p.fixed_ips!, { ip_address: '203.0.113.200' }] } : p)) };
    const changePlan = await pw.plan(moved);
    expect(changePlan.operations.filter((op) => op.object.kind !== 'elements')).toEqual([]);
    expect(changePlan.summary).toContain('add element inet portwall prof_in (1)');
    expect(changePlan.summary).toContain('add element inet portwall profiles (1)');
    expect(changePlan.operations.some((op) => op.verb === 'delete')).toBe(true);
    await pw.apply(moved);

    // A plan is a fresh compile: it would drop the profile no port uses any more with the port (its elements).
    const removePlan = await pw.plan(base);
    expect(removePlan.operations.every((op) => op.object.kind === 'elements' && op.verb === 'delete')).toBe(true);
    await pw.apply(base);
    // The port's rule profile (sg-web alone) is unused now: it goes when collected (a port may want it back).
    expect(pw.unusedProfiles).toBe(1);
    const gc = await pw.plan(base);
    expect(gc.summary.split('\n').sort()).toEqual([
      'delete element inet portwall prof_in (1)', 'delete element inet portwall prof_out (1)', 'delete element inet portwall profiles (1)',
    ]);
    expect(await pw.collectProfiles()).toBe(1);
    expect((await pw.plan(base)).operations).toEqual([]);
  });

  test('a changed rule changes its group\'s sets only: its element replaced in place in a small set', async () => {
    const { pw } = open();
    await pw.apply(base);
    const g = webGroup();
    g.security_group_rules![0] = { ...g.security_group_rules![0]!, port_range_min: 8080, port_range_max: 8080 };
    const p = await pw.plan({ ...base, security_groups: [g, groups[1]!] });
    // One element out, one in, in the same (2-element) set: no set or chain changes, nothing outside sg-web.
    expect(p.summary.split('\n').sort()).toEqual([
      `add element inet portwall ${groupSetName('sg-web', 'in', 4, 'l4', 0)} (1)`,
      `delete element inet portwall ${groupSetName('sg-web', 'in', 4, 'l4', 0)} (1)`,
    ]);
  });

  test(`a group set of more than ${IN_PLACE_MAX_SET} elements, or more than ${IN_PLACE_MAX_LOST} elements lost, takes a new version (sets added, chain refilled, old sets deleted whole)`, async () => {
    const many = (id: string, n: number, from = 0): NonNullable<typeof base.security_groups>[number] => ({
      id, stateful: true,
      security_group_rules: Array.from({ length: n }, (_, i) => ({
        id: `${id}-r${i}`, direction: 'ingress' as const, ethertype: 'IPv4' as const, protocol: 'tcp', port_range_min: 1000 + from + i, port_range_max: 1000 + from + i,
      })),
    });
    for (const [what, before, after] of [
      ['a big set loses one element', many('sg-web', IN_PLACE_MAX_SET + 1), many('sg-web', IN_PLACE_MAX_SET)],
      ['a small set loses more than the limit', many('sg-web', 10), many('sg-web', 10, IN_PLACE_MAX_LOST + 1)],
    ] as const) {
      const { pw } = open();
      await pw.apply({ ...base, security_groups: [before, groups[1]!] });
      const p = await pw.plan({ ...base, security_groups: [after, groups[1]!] });
      // No element is deleted from a set that stays; nothing outside sg-web's chains and sets changes.
      expect(p.operations.some((op) => op.verb === 'delete' && op.object.kind === 'elements'), what).toBe(false);
      const touched = new Set(p.operations.map((op) => ('chain' in op.object ? op.object.chain : 'set' in op.object ? op.object.set : op.object.name)));
      for (const name of touched) expect(String(name), what).toMatch(new RegExp(`_${idHash('sg-web')}$`));
      expect(p.summary, what).toContain(`flush chain inet portwall ${groupChainName('sg-web', 'in')}`);
      expect(p.summary, what).toContain(`delete set inet portwall ${groupSetName('sg-web', 'in', 4, 'l4', 0)}`);
      expect(p.summary, what).toContain(`add element inet portwall ${groupSetName('sg-web', 'in', 4, 'l4', 1)} (${after.security_group_rules!.length})`);
    }
  });

  test('a whole-state apply that also adds a network (a rebuild in memory) decides a group\'s version the same way', async () => {
    const { pw } = open();
    await pw.apply(base);
    // One rule changed: in place.
    const g = webGroup();
    g.security_group_rules![0] = { ...g.security_group_rules![0]!, port_range_min: 8080, port_range_max: 8080 };
    const withNet = (n: number, sg: typeof g) => ({ ...base, networks: [...base.networks!, network('routed', `net-x${n}`, 70 + n)], security_groups: [sg, groups[1]!] });
    const r = await pw.apply(withNet(1, g));
    expect(r.plan).toContain(`delete element inet portwall ${groupSetName('sg-web', 'in', 4, 'l4', 0)} (1)`);
    expect(r.plan).not.toContain('delete set');
    // More rules than the limit replaced at once: a new version, no element deleted.
    const ports = (from: number) => ({ ...g, security_group_rules: [...g.security_group_rules!, ...Array.from({ length: IN_PLACE_MAX_LOST + 1 }, (_, i) => (
      { id: `sg-web-p${from + i}`, direction: 'ingress' as const, ethertype: 'IPv4' as const, protocol: 'tcp', port_range_min: from + i, port_range_max: from + i }))] });
    await pw.apply(withNet(2, ports(6000)));
    const r2 = await pw.apply(withNet(3, ports(7000)));
    expect(r2.plan).toContain(`delete set inet portwall ${groupSetName('sg-web', 'in', 4, 'l4', 0)}`);
    expect(r2.plan).not.toMatch(/delete element inet portwall [io][46][ta]/);
  });

  test('a rule added to a group only adds its elements', async () => {
    const { pw } = open();
    await pw.apply(base);
    const g = webGroup();
    g.security_group_rules!.push({ ...g.security_group_rules![0]!, id: 'sg-web-https', port_range_min: 443, port_range_max: 443 });
    const p = await pw.plan({ ...base, security_groups: [g, groups[1]!] });
    expect(p.summary).toBe(`add element inet portwall ${groupSetName('sg-web', 'in', 4, 'l4', 0)} (1)`);
  });
});

describe('diff repairs and adopts', () => {
  const doc = state('routed', [webGroup()], ports(3, ['sg-web']));

  test('an edited chain is flushed and refilled; a stray set and chain are removed; other tables untouched', async () => {
    const { pw, nft } = open();
    await pw.apply(doc);
    await nft.transaction()
      .add({ kind: 'table', family: 'inet', name: 'other' })
      .add({ kind: 'chain', family: 'inet', table: 'other', name: 'c' })
      .add({ kind: 'rule', family: 'inet', table: 'other', chain: 'c', exprs: rule('inet', eq(F.tcp.dport, 22), accept()) })
      .add({ kind: 'rule', family: 'inet', table: 'portwall', chain: 'ingress_dev', exprs: rule('inet', eq(F.tcp.dport, 22), accept()) })
      .add({ kind: 'set', family: 'inet', table: 'portwall', name: 'stray', key: ['ipv4_addr'] })
      .add({ kind: 'chain', family: 'inet', table: 'portwall', name: 'stray_chain' })
      .commit();
    const p = await pw.plan(doc);
    expect(p.summary.split('\n')).toEqual(expect.arrayContaining([
      'flush chain inet portwall ingress_dev', 'delete set inet portwall stray', 'delete chain inet portwall stray_chain',
    ]));
    expect(p.text).not.toContain(' other ');
    await pw.apply(doc);
    expect((await pw.plan(doc)).operations).toEqual([]);
    const listed = await nft.list({ family: 'inet', table: 'other' });
    expect(listed.objects.filter((o) => o.kind === 'rule')).toHaveLength(1);
  });

  test('a set whose definition changed is rebuilt after the chains using it are flushed, in one batch', async () => {
    const { pw, nft } = open();
    await pw.apply(doc);
    const { objects } = await nft.list({ family: 'inet', table: 'portwall' });
    const current = objects.map((o) => (o.kind === 'set' && o.name === 'ports_dev' ? { ...o, comment: 'edited' } : o));
    const desired = objects.filter((o) => o.kind !== 'elements' || o.elements.length > 0);
    const d = diff(desired, current);
    const lines = d.operations.map((op) => `${op.verb} ${op.object.kind} ${'name' in op.object ? op.object.name : 'set' in op.object ? op.object.set : op.object.chain}`);
    const flushFwd = lines.indexOf('flush chain fwd_filter');
    const del = lines.indexOf('delete set ports_dev');
    const add = lines.indexOf('create set ports_dev');
    expect(flushFwd).toBeGreaterThanOrEqual(0);
    expect(del).toBeGreaterThan(flushFwd);
    expect(add).toBeGreaterThan(del);
    // Created (it cannot exist once deleted) and filled at once, so the kernel finds it by its batch id.
    expect(lines[add + 1]).toBe('add elements ports_dev');
    expect(lines.lastIndexOf('add rule fwd_filter')).toBeGreaterThan(add);
    expect(d.removed.find((r) => r.set.name === 'ports_dev')!.elements).toHaveLength(3);
  });

  test('switching the only network from bridged to routed removes the bridge table', async () => {
    const { pw, nft } = open();
    await pw.apply(state('bridged', [webGroup()], ports(2, ['sg-web'])));
    expect((await nft.list({ family: 'bridge' })).objects.some((o) => o.kind === 'table')).toBe(true);
    const p = await pw.plan(doc);
    expect(p.summary).toContain('delete table bridge portwall');
    await pw.apply(doc);
    expect((await nft.list({ family: 'bridge' })).objects).toEqual([]);
    expect((await pw.plan(doc)).operations).toEqual([]);
  });

  test('status counts what is programmed', async () => {
    const { pw } = open();
    expect((await pw.status()).tables).toEqual([]);
    await pw.apply(doc);
    const s = await pw.status();
    expect(s.tables).toEqual([{ family: 'inet', name: 'portwall' }, { family: 'inet', name: 'portwall_raw' }]);
    expect(s.counts.rules).toBeGreaterThan(20);
    expect(s.counts.elements).toBeGreaterThan(10);
  });

  test('a commit landing between listing and commit is refused (generation in the batch) and apply diffs again', async () => {
    const fake = new FakeNft();
    const other = openNft({ binding: fake });
    let raced = false;
    // Someone else's batch lands right before portwall's first commit: the kernel refuses portwall's batch.
    const racing: NftBinding = {
      nftCommit: async (target, batch, genid) => {
        if (!raced) {
          raced = true;
          await other.list({ family: 'inet', table: 'portwall' });
          await other.transaction().add({ kind: 'elements', family: 'inet', table: 'portwall', set: 'ports_dev', elements: [{ key: ['intruder0'] }] }).commit();
        }
        return fake.nftCommit(target, batch, genid);
      },
      nftList: (target, family, table) => fake.nftList(target, family, table),
      nftEncode: (batch) => fake.nftEncode(batch),
      nftSendEncoded: (target, netlink) => fake.nftSendEncoded(target, netlink),
      nftGenid: (target) => fake.nftGenid(target),
    };
    const pw = Portwall.open({ binding: racing, conntrack: null });
    await Portwall.open({ binding: fake, conntrack: null }).apply(state('routed', [webGroup()], ports(1, ['sg-web'])));
    const r = await pw.apply(doc);
    expect(r.changed).toBe(true);
    expect(raced).toBe(true);
    // The second diff saw the intruder and removed it: the kernel matches the state.
    expect((await pw.plan(doc)).operations).toEqual([]);
  });

  test('a handle notices another writer before a whole-state apply, and repairs what it changed', async () => {
    const { pw, nft } = open();
    await pw.apply(doc);
    await nft.list({ family: 'inet', table: 'portwall' });
    await nft.transaction().add({ kind: 'elements', family: 'inet', table: 'portwall', set: 'ports_dev', elements: [{ key: ['intruder0'] }] }).commit();
    const r = await pw.apply(doc);
    expect(r).toMatchObject({ changed: true, adopted: true });
    expect((await pw.plan(doc)).operations).toEqual([]);
  });

  test('an invalid state throws before anything is sent', async () => {
    const { fake, pw } = open();
    const bad = { ...doc, ports: [{ ...doc.ports![0]!, device: 'a-device-name-far-too-long' }] };
    await expect(pw.apply(bad)).rejects.toMatchObject({ code: 'ERR_INVALID_STATE', message: expect.stringContaining('ports[0]') });
    expect(fake.commits).toBe(0);
  });
});
