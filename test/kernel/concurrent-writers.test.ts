/**
 * Concurrent writers in one namespace (root): two `portwall apply` processes, or two Portwall handles in this
 * process, writing different states at the same moment. Every batch carries the generation it was computed
 * against, so the kernel refuses the later one (ERR_CONFLICT) and its writer re-lists and recomputes: both
 * succeed, and the kernel ends up holding exactly one whole state — the last writer's — never a mix. (Without
 * the gate, rounds of part 1 left a mix, or the later batch, computed against a stale listing, was refused by
 * the kernel: exit 1.) The handles' rounds of edits against a whole apply hold one batch at the door until the
 * other writer has committed, so every such round has a refusal.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { Portwall, type ApplyResult } from '../../src/apply/portwall.js';
import { run as cliRun } from '../../src/cli.js';
import type { StateInput } from '../../src/model/schema.js';
import { binding, type NftBinding } from '../../src/native.js';
import { Netns, isRoot } from '../helpers/netns.js';
import { busyGroup, network, port, webGroup } from '../helpers/states.js';
import { CLI } from '../helpers/cli.js';

const ROUNDS = 8;
const PORTS = 400;
// A routed and a bridged network: the kernel holds an inet and a bridge table, listed family by family.
const NETWORKS = [network('routed'), network('bridged', 'net-b', 102, 'br-b')];
const combos = (g: string): string[][] => [[g], ['sg-web', g]];

/**
 * State A or B, version v. A and B differ in groups (sg-a / sg-b), rules (20+v / 30+v, sg-a's referencing
 * sg-web) and members (ports 7v… / 150+7v…, their groups split the other way round).
 */
function makeState(kind: 'A' | 'B', v = 0): StateInput {
  const a = kind === 'A';
  const g = a ? 'sg-a' : 'sg-b';
  const first = (a ? 0 : 150) + 7 * v;
  const ports = Array.from({ length: PORTS }, (_, i) => {
    const n = first + i;
    return port(n, combos(g)[Number((n % 3 === 0) === a)]!, {}, n % 2 ? 'net-b' : 'net-a');
  });
  return { networks: NETWORKS, security_groups: [webGroup(), busyGroup(g, (a ? 20 : 30) + v, a ? 'sg-web' : undefined)], ports };
}

/** The names of the states the kernel equals a fresh layout of (a new handle's plan has no operations). */
async function matching(ns: Netns, docs: Record<string, StateInput>): Promise<string[]> {
  const pw = Portwall.open({ netns: ns.name, conntrack: null });
  try {
    const names: string[] = [];
    for (const [name, doc] of Object.entries(docs)) if ((await pw.plan(doc)).operations.length === 0) names.push(name);
    return names;
  } finally {
    await pw.close();
  }
}

/** A third writer's apply: both writers' handles must adopt afterwards. */
async function reset(ns: Netns, doc: StateInput): Promise<void> {
  const pw = Portwall.open({ netns: ns.name, conntrack: null });
  try {
    await pw.apply(doc);
  } finally {
    await pw.close();
  }
}

/** The `portwall` command as a child process, bounded to 60 s (then killed: code -1). */
function cliProcess(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const r = { code: -1, out: '', err: '' };
    child.stdout.on('data', (d: Buffer) => { r.out += d; });
    child.stderr.on('data', (d: Buffer) => { r.err += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code) => resolve((clearTimeout(timer), { ...r, code: code ?? -1 })));
  });
}

/** The in-process CLI's `plan` (the state read from the file, as apply reads it): true when it prints no change. */
async function cliPlanEmpty(netns: string, file: string): Promise<boolean> {
  let out = '';
  const code = await cliRun(['plan', '--netns', netns, file], { out: (t) => { out += t; }, err: () => {}, stdin: [] });
  expect(code).toBe(0);
  return out === '# no changes\n';
}

/**
 * The native binding, counting the batches the kernel refused because another writer committed first. `hold()`
 * stops the next commit at the door: `arrived` resolves there, and it goes on (computed against what it listed
 * before) once `release()` is called.
 */
function spyBinding(): { binding: NftBinding; conflicts: () => number; hold: () => { arrived: Promise<void>; release: () => void } } {
  const real = binding();
  let n = 0;
  let gate: { arrive: () => void; open: Promise<void> } | undefined;
  const spy: NftBinding = {
    nftSocketOpen: (netns) => real.nftSocketOpen!(netns),
    nftCommit: async (target, batch, genid) => {
      const g = gate;
      gate = undefined;
      if (g) (g.arrive(), await g.open);
      try {
        return await (genid === undefined ? real.nftCommit(target, batch) : real.nftCommit(target, batch, genid));
      } catch (e) {
        if ((e as { errnoName?: string }).errnoName === 'ERESTART') n++;
        throw e;
      }
    },
    nftList: (target, family, table) => real.nftList(target, family, table),
    nftGenid: (target) => real.nftGenid(target),
    nftEncode: (batch) => real.nftEncode(batch),
    nftSendEncoded: (target, netlink) => real.nftSendEncoded(target, netlink),
  };
  const hold = (): { arrived: Promise<void>; release: () => void } => {
    let release!: () => void;
    const open = new Promise<void>((r) => { release = r; });
    const arrived = new Promise<void>((arrive) => { gate = { arrive, open }; });
    return { arrived, release };
  };
  return { binding: spy, conflicts: () => n, hold };
}

/** Of two writers that both committed, the one whose generation is higher committed last (undecided on a tie). */
function later<T>(a: { genid?: number; tag: T }, b: { genid?: number; tag: T }): T | undefined {
  if (a.genid === undefined || b.genid === undefined || a.genid === b.genid) return undefined;
  return a.genid > b.genid ? a.tag : b.tag;
}

describe.skipIf(!isRoot)('concurrent writers never leave a mix', () => {
  let ns: Netns;
  let dir: string;
  beforeAll(() => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run bash scripts/setup.sh first`);
    ns = new Netns('conc');
    dir = mkdtempSync(path.join(tmpdir(), 'pw-conc-'));
  });
  afterAll(() => {
    ns?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('two `portwall apply` processes started together: both exit 0, the kernel holds exactly one state', async () => {
    const docs = { A: makeState('A'), B: makeState('B') };
    const files = { A: path.join(dir, 'A.json'), B: path.join(dir, 'B.json') };
    for (const k of ['A', 'B'] as const) writeFileSync(files[k], JSON.stringify(docs[k]));
    const tally = { A: 0, B: 0, neither: 0, bothCommitted: 0, refusedRounds: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      // Both writers have work to do from an empty namespace (round 0, 4) or a third state (2, 6); the odd
      // rounds start from the previous round's state. Rounds 0-3 start A first, 4-7 B first.
      if (round % 4 === 0) ns.exec('nft', ['flush', 'ruleset']);
      if (round % 4 === 2) await reset(ns, makeState('B', 3));
      const order = round < ROUNDS / 2 ? (['A', 'B'] as const) : (['B', 'A'] as const);
      // Both spawned before either is awaited.
      const runs = order.map((k) => cliProcess(['apply', '--netns', ns.name, '--json', files[k]]));
      const results = await Promise.all(runs);
      results.forEach((r, i) => expect(r, `round ${round}: apply ${order[i]}`).toMatchObject({ code: 0, err: '' }));
      const [r0, r1] = results.map((r) => JSON.parse(r.out) as ApplyResult);
      // Whether the processes raced is up to the scheduler; each reports the batches the kernel refused it.
      if (r0!.conflicts + r1!.conflicts > 0) tally.refusedRounds++;
      const held = await matching(ns, docs);
      tally[(held.length === 1 ? held[0] : 'neither') as 'A' | 'B' | 'neither']++;
      expect(held, `round ${round}: the states the kernel matches`).toHaveLength(1);
      // The CLI's own plan agrees.
      for (const k of ['A', 'B'] as const) expect(await cliPlanEmpty(ns.name, files[k])).toBe(held[0] === k);
      if (r0!.changed && r1!.changed) {
        tally.bothCommitted++;
        const last = later({ genid: r0!.genid, tag: order[0] }, { genid: r1!.genid, tag: order[1] });
        if (last) expect(held[0], `round ${round}: the later commit's state`).toBe(last);
      }
    }
    console.log(`processes: ${ROUNDS} rounds, kernel matched A ${tally.A}, B ${tally.B}, neither ${tally.neither}; ` +
      `both processes committed in ${tally.bothCommitted} (the later one rewrote the earlier one's state whole); a batch refused ` +
      `(ERR_CONFLICT) and recomputed in ${tally.refusedRounds}`);
    expect(tally.neither).toBe(0);
  }, 300_000);

  test('two Portwall handles: whole applies at once, and incremental edits racing a whole apply', async () => {
    const spies = [spyBinding(), spyBinding()];
    // The profile collector's timer is off: collections happen where the test says (a third writer otherwise).
    const h = spies.map((s) => Portwall.open({ netns: ns.name, conntrack: null, binding: s.binding, profileGc: false }));
    const refused = (): number[] => spies.map((s) => s.conflicts());
    // What each handle believes in, tracked alongside: h[0] in versions of A, h[1] in versions of B.
    const docs: StateInput[] = [makeState('A'), makeState('B')];
    const names = ['A', 'B'] as const;
    const tally = { A: 0, B: 0, neither: 0, conflictRounds: 0, trace: [] as string[] };
    try {
      for (let round = 0; round < ROUNDS; round++) {
        const before = refused();
        const done: { genid?: number; tag: number }[] = [];
        let reported = 0;
        const note = (tag: number, r: ApplyResult): void => {
          reported += r.conflicts;
          if (r.changed) done[tag] = { genid: r.genid, tag };
        };
        let winner: number | undefined;
        if (round < ROUNDS / 2) {
          // Both apply a whole new version at once; odd rounds call h[1] first. Even rounds start from a third
          // writer's state, so that both handles list before either commits.
          if (round % 2 === 0) await reset(ns, makeState('A', 7));
          docs[0] = makeState('A', round + 1);
          docs[1] = makeState('B', round + 1);
          const order = round % 2 ? [1, 0] : [0, 1];
          await Promise.all(order.map((i) => h[i]!.apply(docs[i]).then((r) => note(i, r))));
        } else {
          // Handle x edits its state while handle y applies a whole one; y's first batch, computed from its
          // listing, is held until x has committed (all its edits, or the first: then x waits for y and goes on).
          const x = round % 2;
          const y = 1 - x;
          const xLast = round >= ROUNDS - 2;
          docs[y] = makeState(names[y]!, round + 1);
          const door = spies[y]!.hold();
          const whole = h[y]!.apply(docs[y]).then((r) => note(y, r));
          try {
            await Promise.race([door.arrived, whole]);
            for (const [i, step] of edits(h[x]!, docs[x]!, round).entries()) {
              if (i === 1 && xLast) (door.release(), await whole);
              note(x, await step());
            }
          } finally {
            door.release();
          }
          await whole;
          winner = xLast ? x : y;
          // y's held batch was refused; so was x's next edit when it came after y's commit.
          expect(refused()[y]! - before[y]!, `round ${round}: y refused`).toBeGreaterThan(0);
          if (xLast) expect(refused()[x]! - before[x]!, `round ${round}: x refused`).toBeGreaterThan(0);
        }
        // Every refusal the kernel gave was reported by the change it delayed.
        expect(reported, `round ${round}: refusals reported in the results`).toBe(refused()[0]! + refused()[1]! - before[0]! - before[1]!);
        // A rule removed from a group retires rule profiles, collected off the hot path: collect them now so the
        // kernel can be compared with a fresh layout. The collector never adopts, so only the last writer's can
        // commit; the other's is refused and changes nothing.
        for (const x of h) await x.collectProfiles();
        const held = await matching(ns, { A: docs[0]!, B: docs[1]! });
        const n = refused()[0]! + refused()[1]! - before[0]! - before[1]!;
        tally[(held.length === 1 ? held[0] : 'neither') as 'A' | 'B' | 'neither']++;
        if (n > 0) tally.conflictRounds++;
        tally.trace.push(`${held.join('+') || 'neither'}(${n})`);
        expect(held, `round ${round}: the states the kernel matches`).toHaveLength(1);
        const last = winner ?? (done[0] && done[1] ? later(done[0], done[1]) : (done[0] ?? done[1])?.tag);
        if (last !== undefined) expect(held[0], `round ${round}: the last writer's state`).toBe(names[last]);
      }
    } finally {
      for (const x of h) await x.close();
    }
    console.log(`handles: ${ROUNDS} rounds (${ROUNDS / 2} whole vs whole, ${ROUNDS / 2} edits vs whole), kernel matched ` +
      `A (h1) ${tally.A}, B (h2) ${tally.B}, neither ${tally.neither}; a batch refused (ERR_CONFLICT) and recomputed in ` +
      `${tally.conflictRounds} rounds; per round, state held (refusals): ${tally.trace.join(' ')}`);
    expect(tally.neither).toBe(0);
  });
});

/**
 * One writer's incremental changes, each applied to its tracked document, then to the handle: a new port, a
 * port moved to the other combination of groups (both stay in use, so no profile is left to collect), a port
 * removed, the group's rules changed.
 */
function edits(pw: Portwall, doc: StateInput, round: number): (() => Promise<ApplyResult>)[] {
  const g = doc.security_groups![1]!.id;
  const ports = doc.ports!;
  return [
    () => {
      ports.push(port(700 + round, combos(g)[1]!, {}, round % 2 ? 'net-b' : 'net-a'));
      return pw.upsertPort(structuredClone(ports.at(-1)));
    },
    () => {
      const p = ports[1]!;
      p.security_groups = combos(g).find((c) => c.length !== p.security_groups!.length)!;
      return pw.upsertPort(structuredClone(p));
    },
    () => pw.removePort(ports.shift()!.id),
    () => {
      const rules = doc.security_groups![1]!.security_group_rules!.length + 3;
      doc.security_groups![1] = busyGroup(g, rules, g === 'sg-a' ? 'sg-web' : undefined);
      return pw.upsertGroup(structuredClone(doc.security_groups![1]));
    },
  ];
}
