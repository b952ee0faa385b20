// Transactions against the kernel: all-or-nothing with the failing operation named, one generation per
// batch (50k rules included), no effect outside the target namespace, and toString() as valid `nft -f` input.
import { readdirSync, readlinkSync } from 'node:fs';

import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { PortwallError } from '../../src/errors.js';
import { Nft, openNft } from '../../src/nft/client.js';
import { F, accept, counter, eq, rule } from '../../src/nft/match.js';
import { readRecords } from '../../src/nft/wire-records.js';
import type { Elements, NftObject, NftSet, Rule } from '../../src/nft/types.js';
import { neutronShape } from '../../bench/ruleset.js';
import { comparable } from '../helpers/compare.js';
import { Netns, isRoot, run } from '../helpers/netns.js';

const family = 'inet' as const;

describe.skipIf(!isRoot)('transactions against the kernel', () => {
  let ns: Netns;
  let nft: Nft;
  beforeAll(() => {
    ns = new Netns('batch');
    nft = openNft({ netns: ns.name });
  });
  afterAll(() => ns?.destroy());

  test('a batch whose 10th of 20 operations fails changes nothing and names operation 10', async () => {
    await nft.transaction().add({ kind: 'table', family, name: 'pw' })
      .add({ kind: 'chain', family, table: 'pw', name: 'keep' })
      .add({ kind: 'set', family, table: 'pw', name: 'm', key: ['ipv4_addr'] })
      .add({ kind: 'elements', family, table: 'pw', set: 'm', elements: [{ key: ['192.0.2.1'] }] })
      .add({ kind: 'rule', family, table: 'pw', chain: 'keep', exprs: rule(family, counter()) })
      .commit();
    const beforeText = ns.nftText();
    const before = await nft.list();

    const tx = nft.transaction();
    for (let i = 0; i < 20; i++) {
      if (i === 9) tx.add({ kind: 'rule', family, table: 'pw', chain: 'missing', exprs: rule(family, accept()) });
      else if (i % 3 === 0) tx.add({ kind: 'chain', family, table: 'pw', name: `c${i}` });
      else if (i % 3 === 1) tx.add({ kind: 'elements', family, table: 'pw', set: 'm', elements: [{ key: [`198.51.100.${i}`] }] });
      else tx.add({ kind: 'rule', family, table: 'pw', chain: 'keep', exprs: rule(family, eq(F.tcp.dport, i), accept()) });
    }
    expect(tx.size).toBe(20);
    const ops = tx.operations;
    const failing = 9;
    const err = await tx.commit().then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(PortwallError);
    expect(err).toMatchObject({ code: 'ERR_KERNEL', errnoName: 'ENOENT', opIndex: failing });
    expect((err as PortwallError).object).toBe(ops[failing]!.object);
    expect((err as PortwallError).message).toContain(`operation ${failing + 1} of ${ops.length}`);

    expect(ns.nftText()).toBe(beforeText);
    const after = await nft.list();
    expect(after.genid).toBe(before.genid);
    expect(comparable(after.objects)).toEqual(comparable(before.objects));
    await nft.transaction().delete({ kind: 'table', family, name: 'pw' }).commit();
  });

  test('work in a named namespace never touches the host namespace or the calling threads', async () => {
    const host = openNft();
    const hostBefore = await host.list();
    const hostText = run('nft', ['list', 'ruleset']);
    const ownNs = readlinkSync('/proc/self/ns/net');

    await nft.transaction().add({ kind: 'table', family, name: 'isolated' })
      .add({ kind: 'chain', family, table: 'isolated', name: 'c', hook: 'input', priority: 0, type: 'filter' })
      .add({ kind: 'rule', family, table: 'isolated', chain: 'c', exprs: rule(family, counter()) })
      .commit();
    await Promise.all(Array.from({ length: 8 }, () => nft.list({ table: 'isolated' })));

    expect(ns.nftText()).toContain('table inet isolated');
    expect(run('nft', ['list', 'ruleset'])).toBe(hostText);
    const hostAfter = await host.list();
    expect(hostAfter.genid).toBe(hostBefore.genid);
    expect(hostAfter.objects.some((o) => o.kind === 'table' && o.name === 'isolated')).toBe(false);
    // Every thread of this process (the libuv pool included) is back in the original namespace.
    for (const tid of readdirSync('/proc/self/task')) {
      expect(readlinkSync(`/proc/self/task/${tid}/ns/net`)).toBe(ownNs);
    }
    await nft.transaction().delete({ kind: 'table', family, name: 'isolated' }).commit();
  });

  test('a missing namespace is a coded error', async () => {
    await expect(openNft({ netns: `${ns.name}-absent` }).genid()).rejects.toMatchObject({ code: 'ERR_NETNS' });
  });

  test('one 50k-rule batch commits as one transaction (one generation)', async () => {
    const tx = nft.transaction().add({ kind: 'table', family, name: 'big' })
      .add({ kind: 'chain', family, table: 'big', name: 'c' });
    for (let i = 0; i < 50_000; i++) {
      const r: Rule = {
        kind: 'rule', family, table: 'big', chain: 'c',
        exprs: rule(family, eq(F.ip.saddr, `198.51.100.${i % 256}`), eq(F.tcp.dport, 1 + (i % 65535)), counter(), accept()),
      };
      tx.add(r);
    }
    const genBefore = await nft.genid();
    const result = await tx.commit();
    expect(result.genid).toBe(genBefore + 1);
    expect(result.messages).toBe(50_002 + 2);
    const listed = await nft.list({ family, table: 'big' });
    expect(listed.objects.filter((o) => o.kind === 'rule')).toHaveLength(50_000);
    expect(listed.genid).toBe(genBefore + 1);
    await nft.transaction().delete({ kind: 'table', family, name: 'big' }).commit();
  });

  test('elements of a set the batch creates name it by batch id alone, and the kernel fills that set', async () => {
    const set = (name: string): NftSet => ({ kind: 'set', family, table: 'ids', name, key: ['ipv4_addr'] });
    const els = (name: string, ...hosts: number[]): Elements => ({ kind: 'elements', family, table: 'ids', set: name, elements: hosts.map((h) => ({ key: [`192.0.2.${h}`] })) });
    const members = (name: string) => ns.exec('nft', ['-j', 'list', 'set', 'inet', 'ids', name]).match(/192\.0\.2\.\d+/g)?.sort() ?? [];
    // Two created sets, the first filled after the second was created (the kernel walks back to it by id).
    const tx = nft.transaction().add({ kind: 'table', family, name: 'ids' })
      .create(set('a')).create(set('b')).add(els('b', 2)).add(els('a', 1, 3));
    const records = readRecords(tx.encode()).filter((r) => r.kind === 'elements');
    expect(records.map((r) => [r.kind === 'elements' && r.set, r.kind === 'elements' && r.setId])).toEqual([[undefined, 2], [undefined, 1]]);
    await tx.commit();
    expect([members('a'), members('b')]).toEqual([['192.0.2.1', '192.0.2.3'], ['192.0.2.2']]);
    // A set only added (it may exist: here it does) is named: the kernel finds it by name.
    const again = nft.transaction().add(set('a')).add(els('a', 4));
    expect(readRecords(again.encode()).find((r) => r.kind === 'elements')).toMatchObject({ set: 'a' });
    await again.commit();
    expect(members('a')).toEqual(['192.0.2.1', '192.0.2.3', '192.0.2.4']);
    // Created again, it exists: the batch fails whole, so an element list can never miss its set.
    const before = ns.nftText();
    await expect(nft.transaction().create(set('a')).add(els('a', 5)).commit()).rejects.toMatchObject({ code: 'ERR_KERNEL', errnoName: 'EEXIST', opIndex: 0 });
    expect(ns.nftText()).toBe(before);
    await nft.transaction().delete({ kind: 'table', family, name: 'ids' }).commit();
  });

  test('toString() loads with nft -f and lists the same as the native commit', async () => {
    const other = new Netns('nftf');
    try {
      const objs = [
        ...neutronShape({ table: 'shape', ports: 40, sgRules: 30 }),
        { kind: 'set', family, table: 'shape', name: 'refs', key: ['ifname', 'inet_proto', 'inet_service', 'ipv4_addr'], flags: ['interval'], counter: true, comment: 'sg refs' },
        { kind: 'elements', family, table: 'shape', set: 'refs', elements: [
          { key: ['tap0', 'tcp', 80, '198.51.100.0/24'], comment: 'sg-rule r1' },
          { key: ['tap1', 'udp', '53-54', '192.0.2.7'] },
        ] },
      ] as NftObject[];
      const tx = nft.transaction();
      for (const o of objs) tx.add(o);
      const text = tx.toString();
      await tx.commit();
      other.nftLoad(text);
      expect(other.nftText()).toBe(ns.nftText());
      const viaNft = await openNft({ netns: other.name }).list({ table: 'shape' });
      const native = await nft.list({ table: 'shape' });
      expect(comparable(viaNft.objects)).toEqual(comparable(native.objects));
      await nft.transaction().delete({ kind: 'table', family, name: 'shape' }).commit();
    } finally {
      other.destroy();
    }
  });
});
