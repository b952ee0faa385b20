/**
 * The soak (`npm run soak -- --minutes N`): mixed churn through a `portwall agent` process for N minutes — the
 * churn section of the benchmark (bench/sg-churn.ts: port adds, group and address changes, removes, group rule
 * changes, open loop) at a steady rate — with the agent's RSS and open file descriptors sampled every few
 * seconds. It prints and writes (Markdown and JSON) the curves and a verdict: after a warm-up fifth, the median
 * of the last third against the first third, RSS within +10% (+5 MB) and descriptors within +2, and no op lost.
 * Everything runs in namespaces it creates and removes (root).
 */
import { mkdirSync, realpathSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';

import { churnCases } from './sg-churn.js';
import { Cleanup, Progress, quantile, type Row } from './sg-harness.js';
import { workload } from './workload.js';

const HELP = `npm run soak -- [--minutes N] [--rate OPS] [--ports N] [--every SECONDS] [--group-every N] [--out DIR]

Mixed churn through a portwall agent for --minutes (default 10) at --rate changes per second (default 200) on
a host of --ports ports (default 1000), sampling the agent's RSS and open file descriptors every --every
seconds (default 5). One change in --group-every (default 50; 0: none) is a rule added to or removed from a
group 1000 ports use, the rest are port changes. Writes soak-<time>.md and .json to --out (default bench/reports). Exit 0 when both curves
are flat and every op was answered, 1 otherwise, 2 on a usage error. Needs root.`;

interface Verdict {
  flat: boolean;
  rss: { firstMB: number; lastMB: number };
  fds: { first: number; last: number };
  why: string[];
}

const median = (xs: readonly number[]): number => quantile([...xs].sort((a, b) => a - b), 0.5);

/** Flat: after the warm-up (the first fifth), the last third's median against the first third's. */
export function judge(rss: readonly number[], fds: readonly number[]): Verdict {
  const steady = (xs: readonly number[]) => xs.slice(Math.floor(xs.length / 5));
  const thirds = (xs: readonly number[]) => {
    const k = Math.max(1, Math.floor(xs.length / 3));
    return [median(xs.slice(0, k)), median(xs.slice(-k))] as const;
  };
  const [r0, r1] = thirds(steady(rss));
  const [f0, f1] = thirds(steady(fds));
  const why: string[] = [];
  if (r1 > r0 * 1.1 + 5) why.push(`RSS grew from ${r0.toFixed(1)} MB to ${r1.toFixed(1)} MB`);
  if (f1 > f0 + 2) why.push(`open descriptors grew from ${f0} to ${f1}`);
  return { flat: why.length === 0, rss: { firstMB: r0, lastMB: r1 }, fds: { first: f0, last: f1 }, why };
}

export async function runSoak(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        minutes: { type: 'string' }, rate: { type: 'string' }, ports: { type: 'string' }, every: { type: 'string' },
        'group-every': { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    console.error(`soak: ${(e as Error).message}\n${HELP}`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const num = (v: string | undefined, d: number, name: string) => {
    const n = v === undefined ? d : Number(v);
    if (!(n > 0)) throw new Error(`--${name} must be a positive number`);
    return n;
  };
  let minutes: number, rate: number, ports: number, every: number, groupEvery: number;
  try {
    [minutes, rate, ports, every] = [num(values.minutes, 10, 'minutes'), num(values.rate, 200, 'rate'), num(values.ports, 1000, 'ports'), num(values.every, 5, 'every')];
    groupEvery = values['group-every'] === undefined ? 50 : Number(values['group-every']);
    if (!Number.isInteger(groupEvery) || groupEvery < 0) throw new Error('--group-every must be a whole number');
  } catch (e) {
    console.error(`soak: ${(e as Error).message}`);
    return 2;
  }
  if (process.getuid?.() !== 0) {
    console.error('soak: needs root (it creates network namespaces)');
    return 1;
  }
  const cleanup = new Cleanup();
  cleanup.installSignalHandlers();
  const started = new Date();
  let rows: Row[];
  try {
    rows = await churnCases(cleanup, workload({ ports, seed: 1 }), { rate, seconds: Math.round(minutes * 60), progress: new Progress(), sampleEveryMs: every * 1000, groupEvery });
  } finally {
    cleanup.all();
  }
  const rss = rows.find((r) => r.case === 'agent-rss')!;
  const fds = rows.find((r) => r.case === 'agent-fds')!;
  const timeline = rows.find((r) => r.case === 'timeline')!;
  const verdict = judge(rss.samples, fds.samples);
  if (timeline.status !== 'ok') verdict.why.push(`churn: ${timeline.status}`);
  const ok = verdict.why.length === 0;
  const at = (rss.info?.atS as number[] | undefined) ?? [];
  const lines = [
    `# Soak — ${started.toISOString()}`,
    '',
    `${minutes} min of mixed churn at ${rate} ops/s through a portwall agent serving ${ports} ports (${groupEvery ? `one change in ${groupEvery} a rule of a group 1000 ports use` : 'port changes only'}); the agent's RSS and open descriptors every ${every} s.`,
    '',
    `**${ok ? 'Flat' : 'NOT flat'}**: RSS median ${verdict.rss.firstMB.toFixed(1)} MB (first third after the warm-up fifth) → ${verdict.rss.lastMB.toFixed(1)} MB (last third); open descriptors ${verdict.fds.first} → ${verdict.fds.last}.${verdict.why.length ? ` ${verdict.why.join('; ')}.` : ''}`,
    '',
    `Churn: ${JSON.stringify(Object.fromEntries(Object.entries(timeline.info ?? {}).filter(([k]) => ['ops', 'answered200', 'notSent', 'commits', 'achievedOpsPerS', 'errors'].includes(k))))}; p50 ${rows.filter((r) => ['add', 'change-groups', 'change-ip', 'remove'].includes(r.case)).map((r) => `${r.case} ${r.p50?.toFixed(1)} ms`).join(', ')}.`,
    '',
    '| t (s) | RSS (MB) | open fds |',
    '|---|---|---|',
    ...rss.samples.map((m, i) => `| ${at[i] ?? ''} | ${m.toFixed(1)} | ${fds.samples[i] ?? ''} |`),
    '',
  ];
  const out = values.out ?? path.join('bench', 'reports');
  mkdirSync(out, { recursive: true });
  const base = path.join(out, `soak-${started.toISOString().replace(/[:.]/g, '-')}`);
  writeFileSync(`${base}.md`, lines.join('\n'));
  writeFileSync(`${base}.json`, JSON.stringify({ started, minutes, rate, ports, every, groupEvery, verdict, rows }));
  console.log(lines.slice(0, 7).join('\n'));
  console.log(`written: ${base}.md, ${base}.json`);
  return ok ? 0 : 1;
}

// Run when executed (npm run soak).
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  runSoak(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
