/**
 * The adopt record's parts (src/apply/adopt-record.ts): the digest of a layout does not depend on the order of
 * its objects or elements but changes with any field of any of them; the record's comment reads back; listings
 * lose the record's set and element and nothing else.
 */
import { describe, expect, test, vi } from 'vitest';

import { ADOPT_RECORD, digestOf, readRecord, recordComment, recordOperations, withoutRecord } from '../../src/apply/adopt-record.js';
import { layout } from '../../src/compile/layout.js';
import { compilePolicy } from '../../src/compile/policy.js';
import { validateState } from '../../src/model/validate.js';
import { DEFAULT_CONFIG } from '../../src/model/types.js';
import type { Element, NftObject } from '../../src/nft/types.js';
import { Portwall } from '../../src/apply/portwall.js';
import { Engine, IN_PLACE_MAX_SET } from '../../src/apply/engine.js';
import { FakeNft } from '../../src/nft/fake.js';
import { port, state, webGroup } from '../helpers/states.js';

const objects = (): NftObject[] =>
  layout(compilePolicy(validateState(state('routed', [webGroup()], [port(1, ['sg-web']), port(2, ['sg-web'])]), DEFAULT_CONFIG), DEFAULT_CONFIG));

/** The first elements object with at least two elements, and the first rule. */
function parts(os: NftObject[]): { els: NftObject & { kind: 'elements' }; rule: NftObject & { kind: 'rule' } } {
  const els = os.find((o): o is NftObject & { kind: 'elements' } => o.kind === 'elements' && o.elements.length > 1)!;
  const rule = os.find((o): o is NftObject & { kind: 'rule' } => o.kind === 'rule')!;
  return { els, rule };
}

/** The first field of a rule's expression whose value passes `test`: the expression and the field's name. */
function exprField(os: NftObject[], test: (v: unknown) => boolean): [Record<string, unknown>, string] {
  for (const o of os) {
    if (o.kind !== 'rule') continue;
    for (const e of o.exprs as unknown as Record<string, unknown>[]) {
      const k = Object.keys(e).find((f) => test(e[f]));
      if (k !== undefined) return [e, k];
    }
  }
  throw new Error('no such field in any rule');
}

describe('digestOf', () => {
  test('the same for the same objects in any order, elements included', () => {
    const a = objects();
    const b = structuredClone(a).reverse();
    const { els } = parts(b);
    els.elements.reverse();
    expect(digestOf(b)).toBe(digestOf(a));
    expect(digestOf(a)).toMatch(/^[0-9a-f]+-[0-9a-f]{16}$/);
  });

  test('different when any element field, a rule or a set changes, or an element goes', () => {
    const base = digestOf(objects());
    const changes: [string, (os: NftObject[]) => void][] = [
      ['an element key', (os) => { parts(os).els.elements[0]!.key = [...parts(os).els.elements[0]!.key.slice(0, -1), 'x']; }],
      ['an element comment', (os) => { parts(os).els.elements[0]!.comment = 'other'; }],
      ['an element gone', (os) => { parts(os).els.elements.pop(); }],
      ['an element added twice', (os) => { const e = parts(os).els; e.elements.push(e.elements[0] as Element); }],
      ['a rule comment', (os) => { parts(os).rule.comment = 'other'; }],
      ['a rule expression', (os) => { parts(os).rule.exprs.pop(); }],
      ['a number in a rule spelt as a string', (os) => { const [x, k] = exprField(os, (v) => typeof v === 'number'); x[k] = String(x[k]); }],
      ['a byte of a rule\'s data', (os) => { const [x, k] = exprField(os, (v) => v instanceof Uint8Array && v.length > 0); x[k] = (x[k] as Uint8Array).map((b, i) => (i === 0 ? b ^ 1 : b)); }],
      ['a set flag', (os) => { const s = os.find((o) => o.kind === 'set')!; if (s.kind === 'set') s.flags = [...(s.flags ?? []), 'timeout']; }],
      ['an object gone', (os) => { os.splice(os.findIndex((o) => o.kind === 'chain'), 1); }],
    ];
    for (const [what, change] of changes) {
      const os = structuredClone(objects());
      change(os);
      expect(digestOf(os), what).not.toBe(base);
    }
  });
});

describe('the record', () => {
  const r = { genid: 4294967295, instance: '0123456789abcdef', ports: 100000, groups: 100000, digest: '1ab2c-0123456789abcdef', clean: true };

  test('its comment fits nft\'s 128 bytes and reads back from the element the write operations carry', () => {
    expect(recordComment(r).length).toBeLessThanOrEqual(128);
    const ops = recordOperations(r, DEFAULT_CONFIG);
    expect(ops.map((o) => `${o.verb} ${o.object.kind}`)).toEqual(['add set', 'destroy elements', 'add elements']);
    expect(readRecord(ops.map((o) => o.object).slice(2), DEFAULT_CONFIG)).toEqual(r);
    // A writer that owed a cleanup says nothing; so does a record of a portwall before the word was written.
    const owing = { ...r, clean: false };
    expect(recordComment(owing)).not.toMatch(/clean/);
    expect(readRecord(recordOperations(owing, DEFAULT_CONFIG).map((o) => o.object).slice(2), DEFAULT_CONFIG)).toEqual(owing);
    // Malformed or foreign: no record.
    const bad = structuredClone(ops[2]!.object);
    if (bad.kind === 'elements') bad.elements[0]!.comment = 'gen x';
    expect(readRecord([bad], DEFAULT_CONFIG)).toBeUndefined();
    expect(readRecord(ops.map((o) => o.object).slice(2), { ...DEFAULT_CONFIG, tables: { ...DEFAULT_CONFIG.tables, inet: 'other' } })).toBeUndefined();
  });

  test('listings lose the record and nothing else', () => {
    const os = objects();
    const withRecord = [...os, ...recordOperations(r, DEFAULT_CONFIG).filter((o) => o.verb === 'add').map((o) => o.object)];
    const left = withoutRecord(withRecord, DEFAULT_CONFIG);
    expect(left).toEqual(os);
    expect(left.some((o) => (o.kind === 'set' && o.name === ADOPT_RECORD) || (o.kind === 'elements' && o.set === ADOPT_RECORD))).toBe(false);
  });
});

describe('with the fake binding', () => {
  test('a handle adopts from the record another left, with looks only; a different state lists in full', async () => {
    const fake = new FakeNft();
    const lists: string[] = [];
    const list = fake.nftList.bind(fake);
    fake.nftList = (target, family, table, elementsOf, namedSetsOnly) => {
      lists.push(elementsOf ? (namedSetsOnly ? 'peek' : 'look') : 'full');
      return list(target, family, table, elementsOf, namedSetsOnly);
    };
    const doc = state('bridged', [webGroup()], [port(1, ['sg-web']), port(2, ['sg-web'])]);
    const first = Portwall.open({ binding: fake, conntrack: null, profileGc: false });
    await first.apply(doc);
    await first.close();
    lists.length = 0;
    const second = Portwall.open({ binding: fake, conntrack: null, profileGc: false });
    expect(await second.apply(doc)).toMatchObject({ adoptedFrom: 'record', operations: 0 });
    expect(new Set(lists)).toEqual(new Set(['peek', 'look']));
    await second.close();
    lists.length = 0;
    const third = Portwall.open({ binding: fake, conntrack: null, profileGc: false });
    expect(await third.apply(state('bridged', [webGroup()], [port(1, ['sg-web'])]))).toMatchObject({ adoptedFrom: 'listing', changed: true });
    expect(new Set(lists)).toEqual(new Set(['peek', 'full']));
    await third.close();
  });

  test('a state that differs from the record\'s is compiled once, and its groups get the versions a build from the listing gives', async () => {
    // A group whose one set holds more rules than an in-place delete may touch: a rule removed gives the group a
    // new version of its sets — decided from the listed elements, which the record's look does not carry.
    const rules = Array.from({ length: IN_PLACE_MAX_SET + 6 }, (_, i) => ({
      id: `big-${i}`, direction: 'ingress' as const, ethertype: 'IPv4' as const, protocol: 'tcp', port_range_min: 1000 + i, port_range_max: 1000 + i, remote_ip_prefix: '198.51.100.0/24',
    }));
    const doc = (n: number) => state('routed', [{ id: 'sg-big', stateful: true, security_group_rules: rules.slice(0, n) }], [port(1, ['sg-big']), port(2, ['sg-big'])]);
    const before = doc(rules.length), after = doc(rules.length - 1);
    // What the kernel holds in the end, handles left out (two fakes number them each their own way).
    const held = async (fake: FakeNft) => {
      const h = Portwall.open({ binding: fake, conntrack: null, profileGc: false, adoptRecord: false });
      const { objects } = await h.status();
      await h.close();
      return JSON.stringify(objects, (k, v) => (k === 'handle' ? undefined : typeof v === 'bigint' ? String(v) : v));
    };
    const program = async (fake: FakeNft) => {
      const h = Portwall.open({ binding: fake, conntrack: null, profileGc: false });
      await h.apply(before);
      await h.close();
    };

    // By the record: it vouches (same counts), the digest differs, a full listing follows — one compile.
    const byRecord = new FakeNft();
    await program(byRecord);
    const builds = vi.spyOn(Engine, 'build');
    try {
      const h = Portwall.open({ binding: byRecord, conntrack: null, profileGc: false });
      expect(await h.apply(after)).toMatchObject({ adoptedFrom: 'listing', changed: true });
      expect(builds).toHaveBeenCalledTimes(1);
      await h.close();
    } finally {
      builds.mockRestore();
    }
    // Without the record: a listing, and a build from its hints (elements included).
    const byListing = new FakeNft();
    await program(byListing);
    const h = Portwall.open({ binding: byListing, conntrack: null, profileGc: false, adoptRecord: false });
    expect(await h.apply(after)).toMatchObject({ adoptedFrom: 'listing', changed: true });
    await h.close();

    const kernel = await held(byRecord);
    expect(kernel).toBe(await held(byListing));
    // The group's set got its new version (v1) rather than an in-place delete from the old one.
    expect(kernel).toMatch(/"name":"i4t1_[0-9a-f_a-z]+"/);
    expect(kernel).not.toMatch(/"name":"i4t0_/);
  });
});

describe('recordIdleMs', () => {
  test('a whole number of milliseconds up to 2^31 - 1, or false; anything else is refused at open, by name', () => {
    for (const ok of [0, 1000, 2 ** 31 - 1, false] as const) expect(() => Portwall.open({ binding: new FakeNft(), conntrack: null, recordIdleMs: ok })).not.toThrow();
    // Past 2^31 - 1 a timer fires at once (Node clamps it to 1 ms), over and over: refused like NaN and the rest.
    for (const bad of [-1, 1.5, Number.NaN, Infinity, 2 ** 31]) {
      expect(() => Portwall.open({ binding: new FakeNft(), conntrack: null, recordIdleMs: bad })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_VALUE', message: expect.stringContaining('recordIdleMs') }));
    }
  });
});

describe('the record written once quiet', () => {
  /** A fake kernel whose next `failing` commits are refused (a transient error, as ENOBUFS would be). */
  class Flaky extends FakeNft {
    failing = 0;
    tries = 0;
    override async nftCommit(...args: Parameters<FakeNft['nftCommit']>): ReturnType<FakeNft['nftCommit']> {
      if (this.failing > 0) {
        this.failing--;
        this.tries++;
        throw Object.assign(new Error('No buffer space available'), { errno: 105, code: 'ENOBUFS' });
      }
      return super.nftCommit(...args);
    }
  }
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  test('a write that fails is tried after another quiet period, three tries in all; the next commit owes it again', async () => {
    const kernel = new Flaky();
    const one = state('routed', [webGroup()], [port(1, ['sg-web'])]);
    const two = state('routed', [webGroup()], [port(1, ['sg-web']), port(4, ['sg-web'])]);
    const h = Portwall.open({ binding: kernel, conntrack: null, profileGc: false, recordIdleMs: 40 });
    let before = 0;
    try {
      await h.apply(one);
      kernel.failing = 10;
      // Three tries ~40 ms apart, then none: the handle does not spin on a kernel that keeps refusing.
      for (const t0 = Date.now(); kernel.tries < 3 && Date.now() - t0 < 2000;) await sleep(10);
      await sleep(200);
      expect(kernel.tries).toBe(3);
      kernel.failing = 0;
      before = await kernel.nftGenid(null);
      await h.upsertPort(port(4, ['sg-web']));
      // The change, then its record once quiet (the fake's generation moves by one per commit) …
      for (const t0 = Date.now(); (await kernel.nftGenid(null)) < before + 2 && Date.now() - t0 < 2000;) await sleep(10);
      expect(await kernel.nftGenid(null)).toBe(before + 2);
    } finally {
      await h.close();
    }
    // … so closing owed nothing and committed nothing; a successor adopts from that record.
    expect(await kernel.nftGenid(null)).toBe(before + 2);
    const next = Portwall.open({ binding: kernel, conntrack: null, profileGc: false, recordIdleMs: false });
    try {
      expect((await next.apply(two)).adoptedFrom).toBe('record');
    } finally {
      await next.close();
    }
  });
});
