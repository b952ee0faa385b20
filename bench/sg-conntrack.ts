/**
 * Conntrack cleanup (section `conntrack`): 1k matching entries deleted from a table of 100k, in a fresh
 * namespace, by portwall and by `conntrack -D` with the same filter:
 *  - `zone`: the 1k entries are all of zone A; the others are spread over ~100 other zones;
 *  - `zone+prefix`: the 1k entries come from one /24 (192.0.2.0/24) in zone B, which also holds 1k entries
 *    from another /24, while other zones hold entries from 192.0.2.0/24 too — only zone and prefix together
 *    select exactly the 1k.
 * portwall runs what src/apply/cleanup.ts runs, on a persistent ConntrackClient: count() (no table walk), then
 * list(filter) and deleteEntries(listed) — the policy judgement between them is left out (every listed entry is
 * doomed). `conntrack -D` runs through `ip netns exec` (its fork/exec is in the time, as for every competitor).
 * After every run the table is checked (exactly the 1k gone, all others there) and the 1k are re-created,
 * untimed. Addresses: 198.18.0.0/15 and the documentation ranges only.
 */
import { ConntrackClient, type ConntrackEntrySpec, type ConntrackFilter } from '../src/conntrack.js';
import { type Cleanup, type Progress, type Row, errorText, finish, newRow, quantile, repeat, sleep, timed } from './sg-harness.js';

export const CT_TOOLS = ['portwall', 'conntrack -D'] as const;
export const CT_MATCHING = 1000;
const PER_ZONE = 1000;
const ZONE_A = 10;
const ZONE_B = 20;
const FIRST_BACKGROUND_ZONE = 20;

interface Case {
  name: 'zone' | 'zone+prefix';
  victims: ConntrackEntrySpec[];
  filter: ConntrackFilter;
  /** `conntrack -D` arguments selecting the same entries. */
  cli: string[];
}

/** Entry i of a zone: tcp (established) and udp alternating, a distinct source port each, long timeouts. */
function entry(zone: number, src: string, dst: string, i: number, sportBase: number): ConntrackEntrySpec {
  return i % 2
    ? { zone, protocol: 'tcp', src, dst, sport: sportBase + i, dport: 443, timeout: 3600, tcpState: 'established' }
    : { zone, protocol: 'udp', src, dst, sport: sportBase + i, dport: 53, timeout: 3600 };
}

/**
 * The table: `total` entries — 1k in zone A (the zone case's), 1k from 192.0.2.0/24 in zone B (the prefix
 * case's), and the rest, 1k per zone from zone B on: zone B's from 198.51.100.0/24, every other zone's from
 * 198.18.0.0/15 with one in four from 192.0.2.0/24.
 */
export function conntrackTable(total: number): { background: ConntrackEntrySpec[]; cases: Case[] } {
  if (total < 3 * CT_MATCHING || total % PER_ZONE !== 0) throw new Error(`--ct-entries: a multiple of ${PER_ZONE}, at least ${3 * CT_MATCHING}`);
  const background: ConntrackEntrySpec[] = [];
  const zones = (total - 2 * CT_MATCHING) / PER_ZONE;
  for (let k = 0; k < zones; k++) {
    const zone = FIRST_BACKGROUND_ZONE + k;
    for (let i = 0; i < PER_ZONE; i++) {
      const src = zone === ZONE_B ? `198.51.100.${i % 256}` : i % 4 === 0 ? `192.0.2.${i % 256}` : `198.18.${i >> 8}.${i & 0xff}`;
      background.push(entry(zone, src, `198.19.${k >> 8}.${k & 0xff}`, i, 10_000));
    }
  }
  const zoneVictims = Array.from({ length: CT_MATCHING }, (_, i) => entry(ZONE_A, `198.18.200.${i & 0xff}`, '203.0.113.10', i, 20_000));
  const prefixVictims = Array.from({ length: CT_MATCHING }, (_, i) => entry(ZONE_B, `192.0.2.${i & 0xff}`, '203.0.113.20', i, 30_000));
  return {
    background,
    cases: [
      { name: 'zone', victims: zoneVictims, filter: { zone: ZONE_A }, cli: ['-w', String(ZONE_A)] },
      {
        name: 'zone+prefix', victims: prefixVictims, filter: { zone: ZONE_B, family: 'ipv4', src: '192.0.2.0/24' },
        cli: ['-w', String(ZONE_B), '-f', 'ipv4', '-s', '192.0.2.0', '--mask-src', '255.255.255.0'],
      },
    ],
  };
}

export async function conntrackCases(cleanup: Cleanup, opts: { reps: number; entries: number; budgetMs: number; progress: Progress }): Promise<Row[]> {
  const { background, cases } = conntrackTable(opts.entries);
  const total = opts.entries;
  const info = (c: Case) => ({
    entries: total, matching: CT_MATCHING, zones: 1 + (total - 2 * CT_MATCHING) / PER_ZONE, filter: c.filter,
  });
  const rows = new Map(cases.flatMap((c) => CT_TOOLS.map((t) => [`${c.name}/${t}`, newRow('conntrack', c.name, total, t, 'ms', { ...info(c), ...(t === 'conntrack -D' ? { args: c.cli } : {}) })] as const)));
  const ns = cleanup.netns('sg-ct');
  const ct = new ConntrackClient({ netns: ns.name, persistent: true });
  try {
    opts.progress.update(`conntrack: create ${total} entries`);
    const createMs = await timed(() => ct.create([...background, ...cases.flatMap((c) => c.victims)]));
    await expectCount(ct, total, 'after creating the table');
    for (const c of cases) {
      const ours = rows.get(`${c.name}/portwall`)!;
      const theirs = rows.get(`${c.name}/conntrack -D`)!;
      ours.info = { ...ours.info, createAllMs: Math.round(createMs) };
      const stages = { list: [] as number[], deleteEntries: [] as number[] };
      const tools: [Row, () => Promise<void>][] = [
        [ours, async () => {
          // What cleanup() does: count, list the candidates, delete the doomed ones by identity.
          const t0 = performance.now();
          if ((await ct.count()) === 0) throw new Error('count() says the table is empty');
          const listed = await ct.list(c.filter);
          const t1 = performance.now();
          const n = await ct.deleteEntries(listed);
          stages.list.push(t1 - t0);
          stages.deleteEntries.push(performance.now() - t1);
          if (n !== CT_MATCHING) throw new Error(`deleteEntries deleted ${n} of ${listed.length} listed`);
        }],
        [theirs, async () => { ns.exec('conntrack', ['-D', ...c.cli], { timeoutMs: 120_000 }); }],
      ];
      await repeat(opts.reps, opts.budgetMs, async (r) => {
        // Alternate which tool goes first, so neither always meets the table just after a refill.
        for (const [row, run] of r % 2 ? [...tools].reverse() : tools) {
          if (row.status !== 'ok') continue;
          opts.progress.update(`conntrack ${c.name}`, `${row.tool}, rep ${r + 1}/${opts.reps}`);
          try {
            const ms = await timed(run);
            await verifyDeleted(ct, c, total);
            row.samples.push(ms);
          } catch (e) {
            row.status = errorText(e);
          }
          // Back to the full table (untimed), whatever happened.
          await refill(ct, c, total);
        }
        return [ours, theirs].some((row) => row.status === 'ok');
      });
      const p50 = (xs: number[]) => Math.round(quantile([...xs].sort((a, b) => a - b), 0.5) * 1000) / 1000;
      if (stages.list.length) ours.info = { ...ours.info, stageP50: { 'count+list': p50(stages.list), deleteEntries: p50(stages.deleteEntries) } };
    }
  } catch (e) {
    for (const row of rows.values()) if (row.status === 'ok') row.status = errorText(e);
  } finally {
    await ct.close();
    cleanup.drop(ns);
  }
  return [...rows.values()].map(finish);
}

/** Exactly the case's entries are gone: none matches its filter and the table holds total − 1k. */
async function verifyDeleted(ct: ConntrackClient, c: Case, total: number): Promise<void> {
  const left = await ct.count(c.filter);
  if (left !== 0) throw new Error(`${left} of ${CT_MATCHING} matching entries still there`);
  await expectCount(ct, total - CT_MATCHING, 'after the delete');
}

async function refill(ct: ConntrackClient, c: Case, total: number): Promise<void> {
  const present = await ct.count(c.filter);
  if (present === 0) await ct.create(c.victims);
  else if (present < CT_MATCHING) {
    await ct.delete(c.filter);
    await ct.create(c.victims);
  }
  await expectCount(ct, total, 'after the refill');
}

/**
 * The namespace's entry counter equals `want`. It drops when a deleted entry is freed, which may trail the
 * delete's answer by a moment: asked again for up to ~200 ms before it counts as wrong.
 */
async function expectCount(ct: ConntrackClient, want: number, when: string): Promise<void> {
  let n = -1;
  for (let i = 0; i < 10; i++) {
    n = await ct.count();
    if (n === want) return;
    await sleep(20);
  }
  throw new Error(`${n} entries ${when}, expected ${want}`);
}
