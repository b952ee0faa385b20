/**
 * Hostile input (docs/reliability.md, "Hostile input and the evaluator"), without the kernel:
 * seeded states and single objects that are wrong in every way (test/helpers/hostile.ts) through validation
 * and through the incremental API of a handle on the fake binding. Each is applied correctly (the handle's
 * tables then equal a fresh compile of what it was given) or refused with an InvalidStateError whose every
 * problem names a path; a refusal changes nothing; nothing else is ever thrown; the heap does not grow.
 *
 * Seeded: PW_HOSTILE_SEED (default: time-based), PW_HOSTILE_STATES (default 10 000) and PW_HOSTILE_EDITS
 * (default 1500); the seed is printed and named in every failure.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { describe, expect, test } from 'vitest';
import { testSeed } from '../helpers/prng.js';

import { Portwall, type Edit } from '../../src/apply/portwall.js';
import { readStateText } from '../../src/model/load.js';
import { InvalidStateError } from '../../src/model/problems.js';
import { validateState } from '../../src/model/validate.js';
import { Nft } from '../../src/nft/client.js';
import { FakeNft } from '../../src/nft/fake.js';
import { comparable, json } from '../helpers/compare.js';
import { allNamed, baseObject, baseState, jsonText, mutate, rng, hostileState, type Harm } from '../helpers/hostile.js';
import { port, state } from '../helpers/states.js';

const SEED = testSeed('PW_HOSTILE_SEED', 207321);
const STATES = Number(process.env.PW_HOSTILE_STATES ?? 10_000);
const EDITS = Number(process.env.PW_HOSTILE_EDITS ?? 1500);
const why = (what: string, i: number) => `seed ${SEED}, ${what} ${i} (PW_HOSTILE_SEED=${SEED} reproduces it)`;

// A full collection before each heap reading, so the figure is what is still held.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const heapMb = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed / 2 ** 20;
};

/** What happened to one input: applied, refused with named problems, or anything else (a crash). */
type Outcome = { kind: 'applied' } | { kind: 'refused'; problems: number } | { kind: 'crash'; error: string };

function judge(run: () => unknown): Outcome {
  try {
    run();
    return { kind: 'applied' };
  } catch (e) {
    return refusal(e);
  }
}

function refusal(e: unknown): Outcome {
  if (e instanceof InvalidStateError && allNamed(e.problems)) return { kind: 'refused', problems: e.problems.length };
  const text = e instanceof InvalidStateError ? `unnamed problems ${json(e.problems)}` : e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  return { kind: 'crash', error: text.slice(0, 300) };
}

const fakeHandle = (fake: FakeNft) => Portwall.open({ binding: fake, conntrack: null, profileGc: false });
async function listing(fake: FakeNft): Promise<string> {
  const nft = new Nft({ binding: fake });
  const tables = await Promise.all(['portwall', 'portwall_nat'].map((table) => nft.list({ table })));
  return json(comparable(tables.flatMap((t) => t.objects)));
}

describe('hostile input without the kernel', () => {
  test(`${STATES} generated states through validation, and the valid ones through a handle (seed ${SEED})`, async () => {
    const r = rng(SEED);
    const fake = new FakeNft();
    const pw = fakeHandle(fake);
    const counts = { tried: 0, refused: 0, applied: 0, crashes: 0, problems: 0 };
    const byHarm = new Map<Harm, number>();
    const crashes: string[] = [];
    const heapBefore = heapMb();
    const t0 = performance.now();
    for (let i = 0; i < STATES; i++) {
      const { doc, harms } = hostileState(r);
      for (const h of harms) byHarm.set(h, (byHarm.get(h) ?? 0) + 1);
      counts.tried++;
      // The library takes any value; a JSON text goes through the loader too and must be judged the same.
      const outcome = judge(() => validateState(doc));
      // (Values JSON has no spelling for — NaN, undefined, a Date — become others in the text: not compared.)
      const text = i % 4 === 0 && !harms.includes('not JSON') ? jsonText(doc) : undefined;
      if (text !== undefined) {
        const fromText = judge(() => readStateText(i % 20 === 0 ? `\uFEFF${text}` : text));
        if (fromText.kind !== outcome.kind && outcome.kind !== 'crash') crashes.push(`${why('state', i)}: the object was ${outcome.kind}, its JSON text ${fromText.kind}`);
      }
      if (outcome.kind === 'crash') {
        counts.crashes++;
        crashes.push(`${why('state', i)} [${harms.join(', ')}]: ${outcome.error}`);
        continue;
      }
      if (outcome.kind === 'refused') {
        counts.refused++;
        counts.problems += outcome.problems;
        continue;
      }
      // Valid: applied through the handle (each one replacing the last), then a fresh plan has nothing to do.
      counts.applied++;
      try {
        await pw.apply(doc);
        // Every tenth: the tables are a fresh compile's, once the profiles no port uses are collected.
        if (counts.applied % 10 === 1) {
          await pw.collectProfiles();
          const left = await leftOver(pw, doc);
          if (left !== '') crashes.push(`${why('state', i)}: left after apply: ${left.slice(0, 300)}`);
        }
      } catch (e) {
        counts.crashes++;
        crashes.push(`${why('state', i)}: apply of a valid state threw ${String(e).slice(0, 300)}`);
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    const heapAfter = heapMb();
    await pw.close();
    console.log(`[hostile] seed ${SEED}: ${counts.tried} states tried in ${seconds.toFixed(1)} s: ${counts.refused} rejected with named fields ` +
      `(${counts.problems} problems), ${counts.applied} applied, ${counts.crashes} crashes; heap ${heapBefore.toFixed(1)} → ${heapAfter.toFixed(1)} MB; ` +
      `mutations: ${[...byHarm].map(([h, n]) => `${h} ${n}`).join(', ')}`);
    expect(crashes.slice(0, 10), why('run', 0)).toEqual([]);
    expect(counts.refused).toBeGreaterThan(STATES / 2);
    expect(counts.applied).toBeGreaterThan(0);
    expect(heapAfter - heapBefore, 'heap growth (MB)').toBeLessThan(32);
  });

  test(`${EDITS} hostile edits through the incremental API: applied correctly or refused by name, a refusal changes nothing (seed ${SEED})`, async () => {
    const r = rng(SEED + 1);
    const fake = new FakeNft();
    const pw = fakeHandle(fake);
    const base = baseState();
    await pw.apply(base);
    // What the handle should hold, kept beside it.
    const expected = {
      ports: new Map(base.ports!.map((p) => [p.id, p as unknown])),
      groups: new Map(base.security_groups!.map((g) => [g.id, g as unknown])),
      fips: new Map(base.floatingips!.map((f) => [f.id, f as unknown])),
    };
    const doc = () => ({ ...base, ports: [...expected.ports.values()], security_groups: [...expected.groups.values()], floatingips: [...expected.fips.values()] });
    const counts = { tried: 0, refused: 0, applied: 0, crashes: 0 };
    const crashes: string[] = [];
    const heapBefore = heapMb();
    for (let i = 0; i < EDITS; i++) {
      const kind = r.pick(['port', 'port', 'group', 'floatingip'] as const);
      let edit: Edit;
      if (r.chance(0.15)) {
        // A remove by an id that may be odd, unknown, or in use.
        const ids = [...(kind === 'port' ? expected.ports : kind === 'group' ? expected.groups : expected.fips).keys()];
        const id = r.chance(0.6) && ids.length ? r.pick(ids) : r.pick(['', '\u0000', 'x'.repeat(70_000), '__proto__', 'sg-web ', 'port-00001\n']);
        edit = kind === 'port' ? { op: 'removePort', id } : kind === 'group' ? { op: 'removeGroup', id } : { op: 'removeFloatingIp', id };
      } else {
        let obj: unknown = baseObject(r, kind, i);
        const n = r.chance(0.25) ? 0 : 1 + r.int(3);
        for (let k = 0; k < n; k++) obj = mutate(r, obj, false).doc;
        edit = kind === 'port' ? { op: 'upsertPort', port: obj } : kind === 'group' ? { op: 'upsertGroup', group: obj } : { op: 'upsertFloatingIp', floatingIp: obj };
      }
      counts.tried++;
      // Only a commit changes the fake's tables; every tenth edit, the listing is compared as well.
      const before = i % 10 === 0 ? await listing(fake) : undefined;
      const commits = fake.commits;
      let outcome: Outcome;
      try {
        await run(pw, edit);
        outcome = { kind: 'applied' };
      } catch (e) {
        outcome = refusal(e);
      }
      if (outcome.kind === 'crash') {
        counts.crashes++;
        crashes.push(`${why('edit', i)} ${edit.op}: ${outcome.error}`);
        continue;
      }
      if (outcome.kind === 'refused') {
        counts.refused++;
        if (fake.commits !== commits || (before !== undefined && (await listing(fake)) !== before)) crashes.push(`${why('edit', i)} ${edit.op}: refused, yet the tables changed`);
        continue;
      }
      counts.applied++;
      remember(expected, edit);
      // Applied correctly: the tables are what a fresh compile of the expected state makes (checked every few edits).
      if (i % 25 === 0 || i === EDITS - 1) {
        await pw.collectProfiles();
        const left = await leftOver(pw, doc()).catch((e: unknown) => `plan threw ${String(e).slice(0, 200)}`);
        if (left !== '') crashes.push(`${why('edit', i)} ${edit.op}: after it, left: ${left.slice(0, 300)}`);
      }
    }
    const heapAfter = heapMb();
    await pw.close();
    console.log(`[hostile] seed ${SEED}: ${counts.tried} edits tried: ${counts.refused} rejected with named fields, ${counts.applied} applied, ` +
      `${counts.crashes} crashes; heap ${heapBefore.toFixed(1)} → ${heapAfter.toFixed(1)} MB`);
    expect(crashes.slice(0, 10)).toEqual([]);
    expect(counts.applied).toBeGreaterThan(EDITS / 20);
    expect(heapAfter - heapBefore, 'heap growth (MB)').toBeLessThan(32);
  });

  test('100 000 rules in one group: applied in seconds and planned back to nothing; 100 000 fixed IPs: refused by name', async () => {
    const rules = Array.from({ length: 100_000 }, (_, i) => ({
      id: `r${i}`, direction: 'ingress' as const, ethertype: 'IPv4' as const, protocol: 'tcp',
      port_range_min: 1 + (i % 65535), port_range_max: 1 + (i % 65535), remote_ip_prefix: `198.51.${(i >> 8) & 255}.${i & 255}/32`,
    }));
    const fake = new FakeNft();
    const pw = fakeHandle(fake);
    const s = state('routed', [{ id: 'sg-big', security_group_rules: [] }], [port(1, ['sg-big'])]);
    await pw.apply(s);
    const t0 = performance.now();
    await pw.upsertGroup({ id: 'sg-big', security_group_rules: rules });
    const ms = performance.now() - t0;
    const big = { ...s, security_groups: [{ id: 'sg-big', security_group_rules: rules }] };
    expect(await leftOver(pw, big)).toBe('');
    console.log(`[hostile] 100000 rules in one group: upsertGroup on the fake binding in ${Math.round(ms)} ms`);
    expect(ms).toBeLessThan(45_000);
    const many = { ...port(2, ['sg-big']), fixed_ips: Array.from({ length: 100_000 }, (_, i) => ({ ip_address: `2001:db8:2::${i.toString(16)}` })) };
    const commits = fake.commits;
    const e = await pw.upsertPort(many).catch((x: unknown) => x);
    // Neutron would take them; portwall does too, as long as they are distinct host addresses.
    if (e instanceof Error) expect(refusal(e).kind).toBe('refused');
    else expect(fake.commits).toBe(commits + 1);
    await pw.close();
  });
});

/**
 * What a plan of `doc` on `pw` would still do beyond what it does on a handle that applied `doc` afresh: ''
 * when `pw`'s tables are a fresh compile's. (The fake binding lists the NAT table's map and snat
 * expressions back differently, so even a fresh handle plans its NAT rules again; that part is the same.)
 */
async function leftOver(pw: Portwall, doc: unknown): Promise<string> {
  const fresh = fakeHandle(new FakeNft());
  await fresh.apply(doc);
  const [mine, theirs] = [(await pw.plan(doc)).text, (await fresh.plan(doc)).text];
  await fresh.close();
  return mine === theirs ? '' : mine;
}

function run(pw: Portwall, e: Edit): Promise<unknown> {
  switch (e.op) {
    case 'upsertPort': return pw.upsertPort(e.port);
    case 'removePort': return pw.removePort(e.id);
    case 'upsertGroup': return pw.upsertGroup(e.group);
    case 'removeGroup': return pw.removeGroup(e.id);
    case 'upsertFloatingIp': return pw.upsertFloatingIp(e.floatingIp);
    case 'removeFloatingIp': return pw.removeFloatingIp(e.id);
  }
}

function remember(x: { ports: Map<string, unknown>; groups: Map<string, unknown>; fips: Map<string, unknown> }, e: Edit): void {
  const idOf = (o: unknown) => (o as { id: string }).id;
  if (e.op === 'upsertPort') x.ports.set(idOf(e.port), e.port);
  else if (e.op === 'removePort') x.ports.delete(e.id);
  else if (e.op === 'upsertGroup') x.groups.set(idOf(e.group), e.group);
  else if (e.op === 'removeGroup') x.groups.delete(e.id);
  else if (e.op === 'upsertFloatingIp') x.fips.set(idOf(e.floatingIp), e.floatingIp);
  else x.fips.delete(e.id);
}
