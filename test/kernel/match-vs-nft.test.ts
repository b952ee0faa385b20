/**
 * match.ts, render.ts and datatypes.ts against `nft` and the kernel, in a fresh network namespace (root).
 *
 * For every case of ./cases.ts:
 *  1. `nft` compiles the hand-written statement; the NEWRULE it sends must equal `rule(family, …parts)` byte
 *     for byte (builder == nft);
 *  2. the builder's expressions are rendered with renderOperations, loaded with `nft -f` (renderer accepted),
 *     and nft must send the very same expressions again (render round trip);
 *  3. `nft --debug=netlink list` must show the kernel holding them (with the kernel's own dump additions).
 * Set definitions and elements rendered from typed objects must make nft send setKeyType's key type and
 * encodeKey's bytes, and decodeKey must read nft's bytes back to the canonical values.
 */
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { decodeKey, encodeKey, setKeyType } from '../../src/nft/datatypes.js';
import { F, counter, rule, vmap } from '../../src/nft/match.js';
import { renderOperations } from '../../src/nft/render.js';
import type { Chain, Element, Expr, Family, NftSet, Operation } from '../../src/nft/types.js';
import { CASES, SETS, type Case } from './cases.js';
import { Netns, isRoot, tryRun } from '../helpers/netns.js';
import { kernelEcho, listedRules, netlinkText, parseMnlDump, sentElements, sentRules, sentSets } from './nft-oracle.js';

const hex = (_k: string, v: unknown): unknown =>
  v instanceof Uint8Array ? Buffer.from(v).toString('hex') : typeof v === 'bigint' ? `${v}n` : v;
const json = (v: unknown): string => JSON.stringify(v, hex);

const HOOKS: Record<Family, Partial<Chain>> = {
  inet: { hook: 'input' },
  ip: { hook: 'input' },
  ip6: { hook: 'input' },
  bridge: { hook: 'forward' },
  arp: { hook: 'input' },
  netdev: { hook: 'ingress', device: 'lo' },
};

function skeleton(family: Family): Operation[] {
  const chain = (name: string, extra: Partial<Chain> = {}): Operation =>
    ({ verb: 'add', object: { kind: 'chain', family, table: 't', name, ...extra } });
  const ops: Operation[] = [
    { verb: 'add', object: { kind: 'table', family, name: 't' } },
    chain('c', { type: 'filter', priority: 0, policy: 'accept', comment: 'portwall test', ...HOOKS[family] }),
    chain('d'),
  ];
  if (family === 'inet') {
    ops.push(chain('n', { type: 'nat', hook: 'prerouting', priority: -100 }));
    ops.push(chain('p', { type: 'nat', hook: 'postrouting', priority: 100 }));
  }
  for (const s of SETS[family] ?? []) ops.push({ verb: 'add', object: s });
  return ops;
}

const haveNft = isRoot && tryRun('nft', ['--version']).status === 0;

describe.skipIf(!haveNft)('match.ts / render.ts / datatypes.ts against nft in a namespace', () => {
  let ns: Netns | undefined;
  let dir: string;
  const nft = (args: string[]): string => ns!.exec('nft', args);
  beforeAll(() => {
    ns = new Netns('match');
    dir = mkdtempSync(path.join(tmpdir(), 'pw-nft-'));
  });
  afterAll(() => {
    ns?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  const load = (name: string, text: string): ReturnType<typeof parseMnlDump> => {
    const file = path.join(dir, name);
    writeFileSync(file, `flush ruleset\n${text}`);
    return parseMnlDump(nft(['--debug=mnl', '-f', file]));
  };

  for (const [family, cases] of Object.entries(CASES) as [Family, Case[]][]) {
    const built = (): Expr[][] => cases.map((c) => rule(family, c.parts));

    test(`${family}: ${cases.length} statements build exactly what nft builds`, () => {
      const text = renderOperations(skeleton(family)) +
        cases.map((c) => `add rule ${family} t ${c.chain ?? 'c'} ${c.nft}\n`).join('');
      const sent = sentRules(load(`${family}-nft.nft`, text));
      const mine = built();
      cases.forEach((c, i) => expect(json(mine[i]), c.nft).toBe(json(sent[i])));
      expect(sent.length).toBe(cases.length);
    });

    test(`${family}: rendered rules load, rebuild the same and are what the kernel holds`, () => {
      const exprs = built();
      const ops = [
        ...skeleton(family),
        ...cases.map((c, i): Operation => ({
          verb: 'add',
          object: { kind: 'rule', family, table: 't', chain: c.chain ?? 'c', exprs: exprs[i]!, comment: `case ${i}` },
        })),
      ];
      const text = renderOperations(ops);
      const sent = sentRules(load(`${family}-rendered.nft`, text));
      cases.forEach((c, i) => expect(json(sent[i]), `${c.nft}\nrendered: ${text.split('\n')[ops.length - cases.length + i]}`).toBe(json(exprs[i])));

      const listed = listedRules(nft(['--debug=netlink', 'list', 'table', family, 't']));
      const byChain = new Map<string, string[][]>();
      cases.forEach((c, i) => {
        const chain = c.chain ?? 'c';
        byChain.set(chain, [...(byChain.get(chain) ?? []), kernelEcho(exprs[i]!).map(netlinkText)]);
      });
      for (const [chain, rules] of byChain) expect(listed.get(chain), `chain ${chain}`).toEqual(rules);
    });
  }

  test('every kind of operation renders to a script nft accepts (adds, then insert/replace/delete by handle)', () => {
    const T = { family: 'inet', table: 't' } as const;
    const adds: Operation[] = [
      { verb: 'add', object: { kind: 'table', family: 'inet', name: 't' } },
      { verb: 'add', object: { kind: 'table', family: 'ip', name: 'off', flags: 1 } },
      { verb: 'add', object: { kind: 'table', family: 'netdev', name: 'n' } },
      { verb: 'add', object: { kind: 'chain', ...T, name: 'in', type: 'filter', hook: 'input', priority: 0, policy: 'drop', comment: 'ports in' } },
      { verb: 'add', object: { kind: 'chain', family: 'netdev', table: 'n', name: 'ing', hook: 'ingress', device: 'lo', priority: -10 } },
      { verb: 'add', object: { kind: 'chain', ...T, name: 'sg-web.1' } },
      { verb: 'add', object: { kind: 'set', ...T, name: 'm', key: ['ifname', 'inet_proto'], data: 'verdict' } },
      { verb: 'create', object: { kind: 'set', ...T, name: 'z', key: ['ifname'], data: 'mark', flags: ['timeout'], timeout: 30000, size: 1024 } },
      { verb: 'add', object: { kind: 'set', ...T, name: 'st', key: ['ifname', 'inet_service'] } },
      { verb: 'add', object: { kind: 'elements', ...T, set: 'm', elements: [{ key: ['tap0', 6], verdict: { code: 'jump', chain: 'sg-web.1' }, comment: 'p1' }, { key: ['tap1', 'udp'], verdict: { code: 'drop' } }] } },
      { verb: 'add', object: { kind: 'elements', ...T, set: 'z', elements: [{ key: ['tap0'], data: 16, timeout: 1500, comment: 'z' }] } },
      { verb: 'add', object: { kind: 'elements', ...T, set: 'st', elements: [{ key: ['tap0', 22] }, { key: ['tap1', '443'] }] } },
      { verb: 'delete', object: { kind: 'elements', ...T, set: 'm', elements: [{ key: ['tap1', 'udp'] }] } },
      { verb: 'add', object: { kind: 'rule', ...T, chain: 'in', exprs: rule('inet', [vmapOf('m')]), comment: 'first' } },
      { verb: 'add', object: { kind: 'rule', ...T, chain: 'in', exprs: rule('inet', []).concat(counterExpr()) } },
    ];
    load('ops-1.nft', renderOperations(adds));
    const listing = nft(['-a', 'list', 'chain', 'inet', 't', 'in']).split('\n').filter((l) => !l.includes('chain '));
    const handles = listing.flatMap((l) => [.../# handle (\d+)/.exec(l)?.slice(1) ?? []]).map(BigInt);
    expect(handles.length).toBe(2);
    const more: Operation[] = [
      { verb: 'insert', object: { kind: 'rule', ...T, chain: 'in', position: handles[1], exprs: counterExpr() } },
      { verb: 'replace', object: { kind: 'rule', ...T, chain: 'in', handle: handles[0], exprs: counterExpr(), comment: 'replaced' } },
      { verb: 'delete', object: { kind: 'rule', ...T, chain: 'in', handle: handles[1], exprs: [] } },
      { verb: 'flush', object: { kind: 'elements', ...T, set: 'z', elements: [] } },
      { verb: 'flush', object: { kind: 'chain', ...T, name: 'in' } },
      { verb: 'delete', object: { kind: 'set', ...T, name: 'st', key: ['ifname', 'inet_service'] } },
      { verb: 'delete', object: { kind: 'table', family: 'ip', name: 'off' } },
    ];
    const file = path.join(dir, 'ops-2.nft');
    writeFileSync(file, renderOperations(more, adds.flatMap((o) => (o.object.kind === 'set' ? [o.object] : []))));
    nft(['-f', file]);
    expect(nft(['list', 'chain', 'inet', 't', 'in'])).not.toMatch(/counter|vmap/);
  });

  test('set key types and element keys are the ones nft sends, and decode back', () => {
    const set = (name: string, key: NftSet['key'], interval: boolean, elements: Element[]) => ({
      def: { kind: 'set', family: 'inet', table: 't', name, key, ...(interval ? { flags: ['interval'] } : {}) } as NftSet,
      elements,
    });
    const e = (...key: (string | number)[]): Element => ({ key });
    const cases = [
      set('a', ['ifname', 'inet_proto', 'inet_service', 'ipv4_addr'], true, [e('tap*', 6, 80, '192.0.2.0/24'), e('tap0', '6-17', '0-65535', '0.0.0.0/0'), e('tap1', 17, '1000-2000', '198.51.100.7')]),
      set('b', ['ifname', 'inet_proto', 'inet_service', 'ipv6_addr'], true, [e('tap0', 6, 443, '2001:db8::/32')]),
      set('c', ['mark', 'ipv4_addr'], true, [e(16, '192.0.2.1'), e('32-48', '192.0.2.0/25')]),
      set('d', ['mark', 'ipv4_addr'], false, [e(16, '192.0.2.1')]),
      set('f', ['ifname', 'ct_state'], true, [e('x', 'established,related')]),
      set('g', ['ipv6_addr', 'ether_addr'], true, [e('2001:db8::/48', '00:11:22:33:44:55')]),
      set('h', ['ifname', 'icmpv6_type', 'icmpv6_code', 'ipv6_addr'], true, [e('tap0', 'echo-request', 0, '2001:db8::1')]),
      set('i', ['ether_addr', 'ipv4_addr'], false, [e('fa:16:3e:00:00:01', '203.0.113.9')]),
      set('j', ['ipv4_addr'], false, [e('192.0.2.1')]),
      set('k', ['inet_service'], false, [e(22)]),
      set('l', ['ct_state'], false, [e('established')]),
      set('m', ['ifname', 'mark'], false, [e('tap0', 5)]),
    ];
    const ops: Operation[] = [{ verb: 'add', object: { kind: 'table', family: 'inet', name: 't' } }];
    for (const c of cases) {
      ops.push({ verb: 'add', object: c.def });
      ops.push({ verb: 'add', object: { kind: 'elements', family: 'inet', table: 't', set: c.def.name, elements: c.elements } });
    }
    const msgs = load('sets.nft', renderOperations(ops));
    const sets = sentSets(msgs);
    const elems = sentElements(msgs);
    for (const c of cases) {
      const interval = !!c.def.flags?.includes('interval');
      const want = setKeyType(c.def.key);
      const got = sets.get(c.def.name)!;
      expect([got.keyType, got.keyLen], c.def.name).toEqual([want.keyType, want.keyLen]);
      if (interval && c.def.key.length > 1) expect(got.fieldLens, c.def.name).toEqual(want.fieldLens);
      const sent = elems.get(c.def.name)!;
      c.elements.forEach((el, i) => {
        const mine = encodeKey(c.def.key, el.key, interval);
        expect(json({ key: sent[i]!.key, keyEnd: sent[i]!.keyEnd }), `${c.def.name}[${i}]`).toBe(json(mine));
        expect(decodeKey(c.def.key, sent[i]!.key, sent[i]!.keyEnd, interval), `${c.def.name}[${i}]`).toEqual(
          el.key.map((v) => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v)).map((v, j) => canon(c.def.key[j]!, v)),
        );
      });
    }
  });
});

function vmapOf(map: string) {
  return vmap([F.meta.iifname, F.meta.l4proto], map);
}
function counterExpr(): Expr[] {
  return rule('inet', [counter()]);
}

function canon(type: NftSet['key'][number], v: string | number): string | number {
  // The expected decode of the test's values: names become numbers, addresses stay as written (canonical here).
  const names: Record<string, number> = { 'established,related': 6, established: 2, 'echo-request': 128 };
  if (typeof v === 'string' && v in names && type !== 'ifname') return names[v]!;
  return v;
}
