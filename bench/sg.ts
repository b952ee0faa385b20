/**
 * Security-group update benchmark (`npm run bench:sg`), in fresh network namespaces it creates and removes:
 *  - one port added / changed (groups, fixed IP) / removed at each size, through one handle after a full
 *    sync, via the incremental API and via apply(state ± port); the same change as Neutron's iptables
 *    driver makes it (ipset delta + full-table restore) at --change-size;
 *  - the same one-port changes through a `portwall agent` process's socket API (section `agent`);
 *  - a rule added to / removed from a group that --sizes' ports (up to 1000) use;
 *  - a port joining / leaving a remote group of --members members referenced by --member-refs ports, and
 *    --member-bulk members leaving / joining at once (one library batch; a burst of agent requests), against
 *    `ipset restore` (and `ipset add`/`del` for one member) of Neutron's member sets (sg-members.ts);
 *  - full sync: portwall apply vs the replay of its encoded batch (floor), `nft -f`, and ipset + iptables
 *    restore (legacy and nft back ends); the same through the agent (`PUT /v1/state`);
 *  - memory: the RSS of a process after a full sync, of a `portwall agent` after its start, and of a process
 *    after a full sync of --wide-ports ports with --wide-rules rules each;
 *  - start: a fresh handle and a fresh agent adopting a kernel that already holds the state (sg-start.ts);
 *  - the datapath: new TCP connections/s and one bulk stream's Mbit/s through one routed port, with the port
 *    alone (size 1) and at --dp-sizes, and new connections/s between two routed ports of one network
 *    (east-west), portwall vs the conntrack floor vs legacy iptables of the same state;
 *  - conntrack cleanup of 1k matching entries among --ct-entries (by zone, by zone + source /24): portwall's
 *    list + deleteEntries vs `conntrack -D` (section `conntrack`);
 *  - sustained churn through an agent serving --churn-size ports: --churn-rate mixed changes per second for
 *    --churn-seconds, open loop; latency per op kind, p99 per second, the agent's CPU (section `churn`).
 * Prints a progress line and a table; writes every sample to <out>/sg-<time>.json, a headline, p50/p99
 * tables, ratios and the spec's targets (met/missed) to <out>/sg-<time>.md, and SVG charts next to it
 * (sg-charts.ts); prints the files' paths at the end.
 *
 * `portwall bench …` runs it ({@link runBench}, imported by the CLI); so does executing this file directly.
 * Usage: node dist/bench/sg.js [--quick] [--sizes 100,1000,5000] [--reps 200] [--apply-reps 50]
 *   [--budget-s 120] [--sync-sizes 1000,5000] [--sync-reps 5] [--change-size 1000] [--change-reps 50]
 *   [--members 10000] [--member-refs 1000] [--member-bulk 1000] [--bulk-reps 10] [--wide-ports 10000]
 *   [--wide-rules 50] [--start-reps 5] [--dp-sizes 1,…] [--dp-rounds 5] [--dp-seconds 2] [--dp-mb 4000]
 *   [--dp-concurrency 32] [--ct-entries 100000] [--ct-reps 7] [--churn-rate 500] [--churn-seconds 60]
 *   [--churn-size 1000] [--mode routed|bridged] [--seed 1]
 *   [--only updates,agent,members,sync,memory,start,datapath,conntrack,churn]
 *   [--skip …] [--out bench/reports (under the current directory)]
 * --quick: size 100, a few repetitions, 50 members at once, 200 wide ports, a tiny datapath, 5 s of churn at
 * 50/s; a smoke test (about a minute), no timing asserted.
 */
import { readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

import { agentCases } from './sg-agent.js';
import { churnCases } from './sg-churn.js';
import { conntrackCases } from './sg-conntrack.js';
import { datapathCases } from './sg-datapath.js';
import { agentFullSyncCase, agentRssCase } from './sg-agent.js';
import { fullSyncCases, rssCase } from './sg-competitors.js';
import { Cleanup, Progress, type Row, errorText } from './sg-harness.js';
import { WIDE_CHANGES, WIDE_RSS_CASE, consoleTable, judge, machineFacts, type Report, writeReport } from './sg-report.js';
import { memberBulkCases } from './sg-members.js';
import { startCases } from './sg-start.js';
import { memberCases, updateCases } from './sg-updates.js';
import { type Mode, workload } from './workload.js';

/** The benchmark's sections (--only, --skip); `portwall bench --help` describes each. */
export const SECTIONS = ['updates', 'agent', 'members', 'sync', 'memory', 'start', 'datapath', 'conntrack', 'churn'] as const;
type SectionName = (typeof SECTIONS)[number];

/** A bad command line (exit code 2). */
class UsageError extends Error {}

/** The benchmark's command-line options (parseArgs); `portwall bench --help` documents each. */
export const OPTIONS = {
  quick: { type: 'boolean', default: false },
  sizes: { type: 'string' }, reps: { type: 'string' }, 'apply-reps': { type: 'string' }, 'budget-s': { type: 'string' },
  'sync-sizes': { type: 'string' }, 'sync-reps': { type: 'string' }, 'change-size': { type: 'string' }, 'change-reps': { type: 'string' },
  members: { type: 'string' }, 'member-refs': { type: 'string' }, 'member-bulk': { type: 'string' }, 'bulk-reps': { type: 'string' },
  'wide-ports': { type: 'string' }, 'wide-rules': { type: 'string' }, 'start-reps': { type: 'string' },
  'dp-sizes': { type: 'string' }, 'dp-rounds': { type: 'string' }, 'dp-seconds': { type: 'string' }, 'dp-mb': { type: 'string' }, 'dp-concurrency': { type: 'string' },
  'ct-entries': { type: 'string' }, 'ct-reps': { type: 'string' },
  'churn-rate': { type: 'string' }, 'churn-seconds': { type: 'string' }, 'churn-size': { type: 'string' },
  mode: { type: 'string' }, seed: { type: 'string' }, only: { type: 'string' }, skip: { type: 'string' }, out: { type: 'string' },
} as const;

function parsed(argv: string[]) {
  try {
    return parseArgs({ args: argv, allowPositionals: false, options: OPTIONS }).values;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** A number ≥ 0 from the command line. */
function count(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < 0) throw new UsageError(`not a number ≥ 0: "${v}"`);
  return n;
}

/** The run's settings from its command line. */
function settings(argv: string[]) {
  const a = parsed(argv);
  const quick = a.quick === true;
  // Explicit arguments win; otherwise the full run's defaults, or --quick's.
  const num = (v: string | undefined, full: number, q: number): number => (v === undefined ? (quick ? q : full) : count(v));
  const list = (v: string | undefined, full: number[], q: number[]): number[] => (v === undefined ? (quick ? q : full) : v.split(',').filter(Boolean).map(count));
  const sizes = list(a.sizes, [100, 1000, 5000], [100]);
  const args = {
    quick, sizes,
    reps: num(a.reps, 200, 5),
    applyReps: num(a['apply-reps'], 50, 3),
    budgetS: num(a['budget-s'], 120, 20),
    syncSizes: list(a['sync-sizes'], sizes.some((n) => n >= 1000) ? sizes.filter((n) => n >= 1000) : [Math.max(...sizes)], [Math.max(...sizes)]),
    syncReps: num(a['sync-reps'], 5, 2),
    changeSize: num(a['change-size'], sizes.includes(1000) ? 1000 : Math.min(...sizes), Math.min(...sizes)),
    changeReps: num(a['change-reps'], 50, 3),
    members: num(a.members, 10_000, 200),
    memberRefs: num(a['member-refs'], 1000, 100),
    memberBulk: num(a['member-bulk'], 1000, 50),
    bulkReps: num(a['bulk-reps'], 10, 2),
    widePorts: num(a['wide-ports'], 10_000, 200),
    wideRules: num(a['wide-rules'], 50, 50),
    startReps: num(a['start-reps'], 5, 1),
    // Size 1: the port alone, no other port loaded (and no east-west case: that needs two ports of a network).
    dpSizes: list(a['dp-sizes'], [1, ...sizes], [1, 100]),
    dpRounds: num(a['dp-rounds'], 5, 1),
    dpSeconds: num(a['dp-seconds'], 2, 1),
    dpMB: num(a['dp-mb'], 4000, 500),
    dpConcurrency: num(a['dp-concurrency'], 32, 8),
    ctEntries: num(a['ct-entries'], 100_000, 100_000),
    ctReps: num(a['ct-reps'], 7, 5),
    churnRate: num(a['churn-rate'], 500, 50),
    churnSeconds: num(a['churn-seconds'], 60, 5),
    churnSize: num(a['churn-size'], 1000, 1000),
    mode: (a.mode ?? 'routed') as Mode,
    seed: num(a.seed, 1, 1),
    only: (a.only?.split(',') ?? [...SECTIONS]) as SectionName[],
    skip: (a.skip?.split(',') ?? []) as SectionName[],
  };
  for (const s of [...args.only, ...args.skip]) if (!SECTIONS.includes(s)) throw new UsageError(`unknown section ${s}; sections: ${SECTIONS.join(', ')}`);
  if (!['routed', 'bridged'].includes(args.mode)) throw new UsageError('--mode is routed or bridged');
  if (sizes.length === 0) throw new UsageError('--sizes: at least one size');
  if (args.churnRate < 1 || args.churnSeconds < 1) throw new UsageError('--churn-rate and --churn-seconds: at least 1');
  if (args.dpSizes.some((n) => n < 1)) throw new UsageError('--dp-sizes: each at least 1 (1: the measured port alone)');
  if (args.wideRules < 21) throw new UsageError('--wide-rules: at least 21 (the workload\'s ports have ~20 rules without the extra group)');
  const enabled = (s: SectionName) => args.only.includes(s) && !args.skip.includes(s);
  const outDir = path.resolve(a.out ?? path.join('bench', 'reports'));
  return { args, sizes, enabled, outDir };
}
type Settings = ReturnType<typeof settings>;

const NOTES = [
  'Incremental rows marked n/a: the method rejected with "not implemented"; the state it would reach was reached by an untimed apply, so the following cases start where they expect.',
  'Incremental and apply(state ± change) run on one handle after a full sync; conntrack cleanup is on (the default), as in production. Each one-port round adds a port never loaded before, changes its groups, then its IPv4 address, then removes it.',
  'iptables one-port change (Neutron style): the member delta through one `ipset restore -exist`, then `iptables-restore` and `ip6tables-restore` of the whole new rendering; the rendering is computed ahead and not timed.',
  'Full sync: every tool into the same namespace, emptied between tools (nft flush ruleset, empty legacy tables, ipset destroy) and left to settle; portwall uses a fresh handle each round, after 4 untimed rounds of its own (their times in the row\'s info, warmUpMs: the first is a cold process\'s when the section runs alone). The replay floor is portwall\'s own full batch, encoded once, sent again.',
  'Competitors run through `ip netns exec` (its fork/exec cost is netnsExecMs in the machine facts), as an agent forking the tools pays it too.',
  'Stages p50: from each call\'s ApplyResult.timings (compile = validate and recompute, list, diff, commit, cleanup = conntrack), elements per batch, adoptions (listings); `other` is the wall time no stage accounts for (validation before the stages, waiting behind the handle\'s queue, event-loop and GC pauses).',
  'p99 is nearest-rank: with fewer than 100 samples it is the largest sample or close to it.',
  'Members at once (bulk-leave / bulk-join): the first --member-bulk members leave `sg-clients` and join it again. portwall batch: one `batch()` of that many upsertPort edits on one handle. Agent: that many PUT /v1/ports sent at once over 16 kept-alive connections, timed to the last answer (info: most commits per burst). ipset restore: the same element dels / adds to Neutron\'s member sets (rendered from the same state, loaded next to portwall\'s tables) in one `ipset restore -exist`; ipset add/del: one call per element (v4 and v6), as Neutron\'s ipset manager does for a few members. Neutron\'s iptables rules only name the sets, so no restore is due.',
  'Full sync through the agent: an agent started with an empty state gets the whole state in one PUT /v1/state, timed to the answer (after the commit); an empty state between rounds, untimed; one untimed round first.',
  'Memory: RSS of a child process that generates the workload and runs one full sync, nothing else; of a `portwall agent` process once started with the workload as its state file (VmRSS from /proc/PID/status, VmHWM in info); the wide case: --wide-ports ports with ~--wide-rules rules each (a per-tenant group of the extra rules on every port). MB = 10^6 bytes.',
  'Start: the namespace holds the state (one handle loaded it and closed). portwall apply: a fresh handle in the benchmark\'s (warm) process, apply(state) — adopt: from the adopt record the loading handle left (a look at set definitions, a compile, a digest; info fromRecord) or else by listing, compiling and diffing (byListing), nothing to commit — and, on another fresh handle, apply(state + one port) (adopt-first-change). portwall agent: spawned with the same state file, to its first 200 on GET /v1/status (adopt-ready: it listens once adopted), plus its first PUT /v1/ports answered right after (adopt-first-change); after it deleted that port, stayed quiet until its adopt record was written and was killed with SIGKILL, the next agent\'s start (adopt-ready-after-kill); info cliVersionMs is `portwall --version`\'s run, the floor of any process start. commitsWhileAdopting counts generations that moved while adopting (0 expected).',
  'Datapath: size 1 is the measured port alone (no other port loaded). New connections: server closes first; conntrack flushed before each measurement; rounds alternate the configurations, each reloaded; the rate is the client\'s completed connections over its run. Bulk: after the rate, in the same load, one TCP stream client → VM through the port, bounded by --dp-mb and --dp-seconds; Mbit/s of the bytes the server read, from connecting to the server\'s count.',
  'Conntrack: a fresh namespace holding 100k synthetic entries (size = entries); 1k match — zone A\'s (case zone), or 192.0.2.0/24\'s in zone B, whose other 1k come from another /24 while other zones hold 192.0.2.0/24 entries too (case zone+prefix). portwall runs what its cleanup runs on a persistent client: count, list(filter), deleteEntries(listed); `conntrack -D -w ZONE [-s NET --mask-src MASK]` runs through ip netns exec. Each run is checked (exactly the 1k gone, the rest there) and the 1k re-created, untimed; the tools alternate which goes first.',
  'Churn: an agent process serving the workload gets a fixed rate of changes, open loop (each sent at its scheduled time over a kept-alive pool of 16 connections, whatever is still unanswered): 400 port slots cycling add → change groups → change IP → remove, started a quarter at each stage (the 300 existing ones in the agent\'s state file), each op a random kind on a random idle slot at that stage; one op in 50 a rule added to / removed from sg-ops. Latency runs from the scheduled time to the answer (so it includes queueing in the pool, the coalescer and behind commits); timeline samples are each second\'s p99 (info: p50/p99, sent and answered per second, commits as nftables generations); agent CPU is its utime + stime over the run (100% = one core).',
];

async function main({ args, sizes, enabled, outDir }: Settings): Promise<void> {
  const started = new Date();
  const progress = new Progress();
  const cleanup = new Cleanup();
  const rows: Row[] = [];
  const workloads: Record<string, unknown>[] = [];
  const machine = await machineFacts();
  const write = (partial: boolean): string[] => {
    const { targets, ratios } = judge(rows, sizes, args.changeSize);
    const report: Report = {
      started: started.toISOString(), durationS: (Date.now() - started.getTime()) / 1000, args: { ...args, ...(partial ? { interrupted: true } : {}) },
      machine: { ...machine, loadavgAtEnd: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ') }, workloads, rows, ratios, targets, notes: NOTES,
    };
    return writeReport(report, path.join(outDir, `sg-${started.toISOString().replace(/[:.]/g, '-')}`));
  };
  // Ctrl-C: the namespaces go (Cleanup), and what was measured so far is still written.
  cleanup.installSignalHandlers(() => progress.log(`partial report: ${write(true).join(', ')}`));

  const section = async (name: SectionName, size: number, fn: () => Promise<void>) => {
    if (!enabled(name)) return;
    try {
      await fn();
    } catch (e) {
      progress.log(`${name} @${size}: ${errorText(e)}`);
      const rowSection = name === 'updates' || name === 'agent' ? 'one-port' : name === 'sync' ? 'full-sync' : name === 'members' ? 'member' : name;
      rows.push({ section: rowSection, case: 'harness', size, tool: 'harness', status: errorText(e), unit: 'ms', samples: [] });
    }
  };
  const facts = (name: string, w: ReturnType<typeof workload>) => workloads.push({
    name, ports: w.opts.ports, members: w.opts.members, tenants: w.tenants, groups: w.state.security_groups?.length,
    rulesPerPort: Math.round(w.rulesPerPort * 10) / 10, sharedGroupUsers: w.opts.sharedUsers, mode: w.opts.mode, seed: w.opts.seed,
  });
  const wl = (ports: number, extra: { members?: number; sharedUsers?: number; extraRules?: number } = {}) => workload({ ports, mode: args.mode, seed: args.seed, ...extra });
  const budgetMs = args.budgetS * 1000;
  const log = (rs: Row[]) => {
    rows.push(...rs);
    for (const r of rs) progress.log(`  ${r.section} ${r.case} @${r.size} ${r.tool}: ${r.p50 === undefined ? r.status : `p50 ${r.p50.toFixed(3)} p99 ${r.p99!.toFixed(3)} ${r.unit} (n=${r.samples.length})`}`);
  };

  try {
    for (const n of sizes) {
      const w = wl(n);
      facts(`ports ${n}`, w);
      await section('updates', n, async () => log(await updateCases(cleanup, w, { reps: args.reps, applyReps: args.applyReps, budgetMs, progress })));
      await section('agent', n, async () => log(await agentCases(cleanup, w, { reps: args.reps, budgetMs, progress })));
    }
    await section('members', args.memberRefs, async () => {
      const w = wl(args.memberRefs, { members: args.members, sharedUsers: args.memberRefs });
      facts(`members ${args.members}, ${args.memberRefs} referencing ports`, w);
      log((await memberCases(cleanup, w, { reps: args.reps, applyReps: args.applyReps, budgetMs, progress })).rows);
      log(await memberBulkCases(cleanup, w, { bulk: args.memberBulk, reps: args.bulkReps, budgetMs, progress }));
    });
    for (const n of args.syncSizes) {
      await section('sync', n, async () => {
        log(await fullSyncCases(cleanup, wl(n), { reps: args.syncReps, changeReps: args.changeReps, budgetMs, settleMs: 300, progress }, n === args.changeSize));
        log([await agentFullSyncCase(cleanup, wl(n), { reps: args.syncReps, budgetMs, settleMs: 300, progress })]);
      });
    }
    // The iptables one-port change runs at --change-size even when no full sync runs there.
    if (!args.syncSizes.includes(args.changeSize)) {
      await section('sync', args.changeSize, async () => log((await fullSyncCases(cleanup, wl(args.changeSize), {
        reps: 0, changeReps: args.changeReps, budgetMs, settleMs: 300, progress,
      }, true)).filter((r) => r.section === 'one-port')));
    }
    for (const n of sizes) await section('memory', n, async () => log([await rssCase(cleanup, wl(n), progress), await agentRssCase(cleanup, wl(n), progress)]));
    await section('memory', args.widePorts, async () => {
      // ~20 rules per port from the usual groups, the rest from a per-tenant group every port carries.
      const w = wl(args.widePorts, { extraRules: args.wideRules - 20 });
      facts(`memory: ports ${args.widePorts} × ${args.wideRules} rules`, w);
      log([await rssCase(cleanup, w, progress, WIDE_RSS_CASE, WIDE_CHANGES)]);
    });
    for (const n of sizes) await section('start', n, async () => log(await startCases(cleanup, wl(n), { reps: args.startReps, budgetMs, progress })));
    await section('datapath', 0, async () => log(await datapathCases(cleanup, args.dpSizes.map((n) => wl(n)), {
      rounds: args.dpRounds, seconds: args.dpSeconds, concurrency: args.dpConcurrency, bulkBytes: args.dpMB * 1e6, progress,
    })));
    await section('conntrack', args.ctEntries, async () => log(await conntrackCases(cleanup, { reps: args.ctReps, entries: args.ctEntries, budgetMs, progress })));
    await section('churn', args.churnSize, async () => {
      const w = wl(args.churnSize);
      facts(`churn: ports ${args.churnSize}`, w);
      log(await churnCases(cleanup, w, { rate: args.churnRate, seconds: args.churnSeconds, seed: args.seed, progress }));
    });
  } finally {
    cleanup.all();
    progress.done();
  }
  const files = write(false);
  const { targets } = judge(rows, sizes, args.changeSize);
  console.log(`\n${consoleTable(rows)}\n`);
  for (const t of targets) console.log(`${t.status.padEnd(21)} ${t.target}: ${t.measured}`);
  console.log(`\nreport:\n${files.map((f) => `  ${f}`).join('\n')}`);
}

/**
 * Runs the benchmark with the options in `argv` (as after `portwall bench`, e.g. `['--quick', '--out', dir]`)
 * and resolves with the exit code: 0 the report was written; 1 it could not run (not root, an error outside
 * the measurements — each measurement's own failure is a row of the report); 2 a usage error.
 */
export async function runBench(argv: string[]): Promise<number> {
  let s: Settings;
  try {
    s = settings(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`bench: ${e.message} (portwall bench --help lists the options)`);
    return 2;
  }
  if (process.getuid?.() !== 0) {
    console.error('bench: the security-group benchmark needs root (it creates network namespaces)');
    return 1;
  }
  try {
    await main(s);
    return 0;
  } catch (err) {
    console.error(err);
    return 1;
  }
}

// Run when executed (npm run bench:sg), not when imported (portwall bench).
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  runBench(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
