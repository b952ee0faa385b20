/**
 * Full sync of a workload into an empty namespace, portwall against its floor and its competitors:
 * - `portwall apply` (a fresh handle: validate, compile, list, diff, encode, commit, conntrack cleanup);
 * - the replay floor: portwall's own full batch, encoded once (`nftEncode`), sent again (`nftSendEncoded`) —
 *   the kernel's cost of exactly that batch;
 * - `nft -f` of the same batch as text (`plan(state).text`);
 * - Neutron-style `ipset restore` + `iptables-restore` + `ip6tables-restore` of `renderIptables()`'s output,
 *   with the legacy (x_tables) and the nft back end.
 * And, at one size, a one-port change as Neutron's iptables driver makes it: the member delta through
 * `ipset restore -exist`, then the whole raw and filter tables restored from the new rendering (rendering
 * itself untimed — Neutron's Python would add to it).
 *
 * Every tool runs through `ip netns exec`; its fork/exec cost (the machine facts list it) is part of the
 * competitors' time, as a Neutron agent forking the tools pays it too.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

import { Portwall } from '../src/apply/portwall.js';
import { compilePolicy } from '../src/compile/policy.js';
import type { StateInput } from '../src/model/schema.js';
import { DEFAULT_CONFIG } from '../src/model/types.js';
import { validateState } from '../src/model/validate.js';
import { binding } from '../src/native.js';
import { Transaction } from '../src/nft/transaction.js';
import { renderIptables, type IptablesRender } from '../src/render/iptables.js';
import type { Netns } from '../test/helpers/netns.js';
import { type Cleanup, type Progress, type Row, GcPauses, errorText, finish, newRow, repeat, sleep, timed } from './sg-harness.js';
import type { Workload } from './workload.js';

export interface SyncOptions {
  reps: number;
  /** Repetitions of the iptables one-port change. */
  changeReps: number;
  budgetMs: number;
  /** Pause after each reset, so the kernel's deferred freeing of the last ruleset is not timed. */
  settleMs: number;
  progress: Progress;
}

export type Backend = 'legacy' | 'nft';
export const BACKENDS: Backend[] = (['legacy', 'nft'] as const).filter((b) =>
  ['iptables', 'ip6tables'].every((t) => ['/usr/sbin', '/sbin'].some((d) => existsSync(`${d}/${t}-${b}-restore`))));
export const restoreTool = (b: Backend) => `iptables-${b}-restore`;

const EMPTY_TABLES = '*raw\nCOMMIT\n*filter\nCOMMIT\n';

/** What one namespace holds, so that a reset removes exactly that (ipsets last: rules refer to them). */
export class Loaded {
  nft = false;
  legacy = false;
  ipset = false;

  constructor(readonly ns: Netns) {}

  reset(): void {
    if (this.nft) this.ns.exec('nft', ['flush', 'ruleset'], { timeoutMs: 120_000 });
    if (this.legacy) {
      this.ns.exec('iptables-legacy-restore', [], { input: EMPTY_TABLES, timeoutMs: 120_000 });
      this.ns.exec('ip6tables-legacy-restore', [], { input: EMPTY_TABLES, timeoutMs: 120_000 });
    }
    if (this.ipset) this.ns.exec('ipset', ['destroy'], { timeoutMs: 120_000 });
    this.nft = this.legacy = this.ipset = false;
  }

  /** Neutron's full load: member sets first, then both families' tables. */
  restore(backend: Backend, r: IptablesRender): void {
    this.ipset = true;
    if (r.ipsets) this.ns.exec('ipset', ['restore', '-exist'], { input: r.ipsets, timeoutMs: 120_000 });
    if (backend === 'nft') this.nft = true;
    else this.legacy = true;
    this.ns.exec(`iptables-${backend}-restore`, [], { input: r.iptables, timeoutMs: 120_000 });
    this.ns.exec(`ip6tables-${backend}-restore`, [], { input: r.ip6tables, timeoutMs: 120_000 });
  }
}

export function renderFor(state: StateInput): IptablesRender {
  return renderIptables(compilePolicy(validateState(state, DEFAULT_CONFIG), DEFAULT_CONFIG));
}

/**
 * Untimed full syncs of portwall before the timed rounds: at 1000 ports a fresh process's first two took
 * 1.5–3× what later ones do and the next two ~1.3× (V8 still compiling and optimising); from the fifth on
 * they were within the noise (a probe of 16 rounds, 2026-12-06).
 */
const SYNC_WARM_UP_ROUNDS = 4;

/** Full sync at one size (and, with `withChange`, the iptables one-port change at that size). */
export async function fullSyncCases(cleanup: Cleanup, w: Workload, opts: SyncOptions, withChange: boolean): Promise<Row[]> {
  const size = w.opts.ports;
  const ns = cleanup.netns(`sg-sync${size}`);
  const dir = mkdtempSync(path.join(tmpdir(), 'pw-sg-'));
  const loaded = new Loaded(ns);
  // portwall runs in this process: the collector's pauses inside each of its rounds go into its row's info.
  const gc = new GcPauses();
  try {
    opts.progress.update(`full sync @${size}: planning, encoding, rendering`);
    // The batch a full sync commits: planned against the still empty namespace.
    const planner = Portwall.open({ netns: ns.name });
    const plan = await planner.plan(w.state);
    await planner.close();
    const tx = new Transaction();
    for (const op of plan.operations) tx[op.verb](op.object as never);
    const netlink = await binding().nftEncode(tx.encode());
    const nftFile = path.join(dir, 'portwall.nft');
    writeFileSync(nftFile, plan.text);
    const rendered = renderFor(w.state);
    const info = {
      batchOperations: plan.operations.length, netlinkBytes: netlink.length, nftTextBytes: plan.text.length,
      iptablesRules: countRules(rendered.iptables) + countRules(rendered.ip6tables), ipsetLines: rendered.ipsets.split('\n').length - 1,
    };

    // A fresh handle per round, as an agent starting up has; closed after the timing (an agent keeps it open).
    const handles: Portwall[] = [];
    const tools: { tool: string; run: () => Promise<unknown> | unknown }[] = [
      { tool: 'portwall apply', run: () => { loaded.nft = true; const pw = Portwall.open({ netns: ns.name }); handles.push(pw); return pw.apply(w.state); } },
      { tool: 'replay floor', run: () => { loaded.nft = true; return binding().nftSendEncoded(ns.name, netlink); } },
      { tool: 'nft -f', run: () => { loaded.nft = true; ns.exec('nft', ['-f', nftFile], { timeoutMs: 120_000 }); } },
      ...BACKENDS.map((b) => ({ tool: restoreTool(b), run: () => loaded.restore(b, rendered) })),
    ];
    const rows = tools.map((t) => newRow('full-sync', 'full-sync', size, t.tool, 'ms', info));
    const gcMs: number[] = [];
    const gcCount: number[] = [];
    // The process's minor page faults in each portwall round: on a virtual machine each costs ~10 µs
    // (docs/wire.md, "Fresh memory"), so they explain much of a round's spread.
    const pageFaults: number[] = [];
    // One round of one tool into the emptied namespace: its time, or its error marked on its row.
    const round = async (k: number, label: string): Promise<number | undefined> => {
      const row = rows[k]!;
      if (row.status !== 'ok') return undefined;
      loaded.reset();
      await sleep(opts.settleMs);
      opts.progress.update(`full sync @${size}`, `${label}: ${tools[k]!.tool}`);
      const faults = process.resourceUsage().minorPageFault;
      const t0 = performance.now();
      try {
        const ms = await timed(tools[k]!.run);
        if (k === 0) {
          pageFaults.push(process.resourceUsage().minorPageFault - faults);
          const paused = await gc.between(t0, t0 + ms);
          gcMs.push(Math.round(paused.ms));
          gcCount.push(paused.count);
        }
        return ms;
      } catch (e) {
        row.status = errorText(e);
        return undefined;
      } finally {
        for (const pw of handles.splice(0)) await pw.close();
      }
    };
    // Untimed rounds of portwall first (the agent's row has one): with `--only sync` the process has run no
    // other section, and its first full syncs would time V8 compiling and optimising the handle's code; they
    // are reported in the row's info (warmUpMs, the first is the cold one). docs/benchmark.md, "Warm-up".
    const warmUpMs: number[] = [];
    for (let k = 0; k < SYNC_WARM_UP_ROUNDS; k++) {
      const ms = await round(0, `untimed warm-up round ${k + 1}/${SYNC_WARM_UP_ROUNDS}`);
      if (ms !== undefined) warmUpMs.push(Math.round(ms));
    }
    const warmUpGc = { warmUpGcMs: gcMs.splice(0), warmUpGcCount: gcCount.splice(0) };
    pageFaults.splice(0);
    await repeat(opts.reps, opts.budgetMs, async (r) => {
      // Side by side in every round, each into an emptied namespace.
      for (let k = 0; k < tools.length; k++) {
        const ms = await round(k, `round ${r + 1}/${opts.reps}`);
        if (ms !== undefined) rows[k]!.samples.push(ms);
      }
    });
    rows[0]!.info = { ...rows[0]!.info, warmUpMs, ...warmUpGc, gcMs, gcCount, pageFaults };
    for (const b of BACKENDS) missingBackendRow(rows, size, b);
    if (withChange) rows.push(...await iptablesChange(loaded, w, rendered, opts));
    return rows.map(finish);
  } finally {
    gc.stop();
    rmSync(dir, { recursive: true, force: true });
    cleanup.drop(ns);
  }
}

/** A row per missing back end, so the report says why there is no number. */
function missingBackendRow(rows: Row[], size: number, b: Backend): void {
  if (!rows.some((r) => r.tool === restoreTool(b))) rows.push({ ...newRow('full-sync', 'full-sync', size, restoreTool(b)), status: 'skipped: tool missing' });
}

/** Neutron's one-port change: the ipset delta, then a full restore of the new rendering, per back end. */
async function iptablesChange(loaded: Loaded, w: Workload, base: IptablesRender, opts: SyncOptions): Promise<Row[]> {
  const size = w.opts.ports;
  const a = w.extraPort(0, 'a');
  const b = w.extraPort(0, 'b');
  const c = w.withNewIp(b, 0);
  // The same four states every round: what the restore costs does not depend on which port changes.
  const steps: { case: string; render: IptablesRender }[] = [
    { case: 'add', render: renderFor(w.with({ ports: [a] })) },
    { case: 'change-groups', render: renderFor(w.with({ ports: [b] })) },
    { case: 'change-ip', render: renderFor(w.with({ ports: [c] })) },
    { case: 'remove', render: base },
  ];
  const rows: Row[] = [];
  for (const backend of BACKENDS) {
    const byCase = steps.map((s) => newRow('one-port', s.case, size, restoreTool(backend), 'ms', { method: 'ipset delta + full-table restore' }));
    rows.push(...byCase);
    loaded.reset();
    await sleep(opts.settleMs);
    try {
      loaded.restore(backend, base);
    } catch (e) {
      for (const row of byCase) row.status = errorText(e);
      continue;
    }
    await repeat(opts.changeReps, opts.budgetMs, async (r) => {
      for (const [k, s] of steps.entries()) {
        const prev = k === 0 ? base : steps[k - 1]!.render;
        const delta = ipsetDelta(prev.ipsets, s.render.ipsets);
        try {
          byCase[k]!.samples.push(await timed(() => {
            if (delta) loaded.ns.exec('ipset', ['restore', '-exist'], { input: delta });
            loaded.ns.exec(`iptables-${backend}-restore`, [], { input: s.render.iptables, timeoutMs: 120_000 });
            loaded.ns.exec(`ip6tables-${backend}-restore`, [], { input: s.render.ip6tables, timeoutMs: 120_000 });
          }));
        } catch (e) {
          byCase[k]!.status = errorText(e);
          return false;
        }
      }
      opts.progress.update(`one-port @${size}: ${restoreTool(backend)}`, `rep ${r + 1}/${opts.changeReps}`);
    });
  }
  for (const backend of ['legacy', 'nft'] as const) {
    if (BACKENDS.includes(backend)) continue;
    for (const s of steps) rows.push({ ...newRow('one-port', s.case, size, restoreTool(backend)), status: 'skipped: tool missing' });
  }
  return rows;
}

/** `ipset restore` lines taking the sets of `before` to those of `after` (new sets created; none destroyed). */
export function ipsetDelta(before: string, after: string): string {
  const parse = (text: string) => {
    const creates = new Map<string, string>();
    const members = new Set<string>();
    for (const line of text.split('\n')) {
      if (line.startsWith('create ')) creates.set(line.split(' ')[1]!, line);
      else if (line.startsWith('add ')) members.add(line.slice(4));
    }
    return { creates, members };
  };
  const old = parse(before);
  const next = parse(after);
  const lines: string[] = [];
  for (const [name, line] of next.creates) if (!old.creates.has(name)) lines.push(line);
  for (const m of next.members) if (!old.members.has(m)) lines.push(`add ${m}`);
  for (const m of old.members) if (!next.members.has(m)) lines.push(`del ${m}`);
  return lines.length ? `${lines.join('\n')}\n` : '';
}

/**
 * The process's memory after a full sync, measured in a child process (`sg-rss.js`) that does nothing
 * else — this process's own heap holds every earlier case's garbage. RSS now and the peak (maxRSS). With
 * `changes`, the child then re-applies the same state and makes that many one-port adds and removes; the
 * sample is the highest RSS after any phase, the timings go to the row's info.
 */
export async function rssCase(cleanup: Cleanup, w: Workload, progress: Progress, kase = 'rss-after-full-sync', changes = 0): Promise<Row> {
  const size = w.opts.ports;
  const row = newRow('memory', kase, size, 'portwall apply', 'MB', { rulesPerPort: Math.round(w.rulesPerPort * 10) / 10 });
  const ns = cleanup.netns(`sg-rss${size}`);
  try {
    progress.update(`memory @${size}: full sync in a child process (${row.info!.rulesPerPort} rules per port)`);
    const script = fileURLToPath(new URL('./sg-rss.js', import.meta.url));
    const args = [script, '--netns', ns.name, '--ports', String(size), '--extra-rules', String(w.opts.extraRules), '--changes', String(changes), '--mode', w.opts.mode, '--seed', String(w.opts.seed)];
    const child = cleanup.proc(spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    const timer = setTimeout(() => cleanup.kill(child), 300_000);
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    clearTimeout(timer);
    const line = out.split('\n').find((l) => l.startsWith('{'));
    if (code !== 0 || !line) throw new Error(`sg-rss exited ${code}: ${err.trim().split('\n').pop() ?? ''}`);
    const m = JSON.parse(line) as { rssMB: number; maxRssMB: number; heapUsedMB: number; applyMs: number; reapplyRssMB?: number; heldRssMB?: number };
    const { rssMB, ...info } = m;
    row.samples.push(Math.max(rssMB, m.reapplyRssMB ?? 0, m.heldRssMB ?? 0));
    row.info = { ...row.info, ...(changes > 0 ? { syncRssMB: rssMB, changes } : {}), ...info };
  } catch (e) {
    row.status = errorText(e);
  } finally {
    cleanup.drop(ns);
  }
  return finish(row);
}

function countRules(text: string): number {
  let n = 0;
  for (const line of text.split('\n')) if (line.startsWith('-A ')) n++;
  return n;
}
