/**
 * Plumbing of the security-group benchmark: rows and their statistics, bounded measurement loops, the
 * progress line, and the cleanup registry that removes every namespace and process the run created — on
 * success, on error and on SIGINT/SIGTERM.
 */
import type { ChildProcess } from 'node:child_process';
import { PerformanceObserver, performance } from 'node:perf_hooks';

import { Netns, run } from '../test/helpers/netns.js';

export type Section = 'one-port' | 'group-rule' | 'member' | 'full-sync' | 'memory' | 'start' | 'datapath' | 'conntrack' | 'churn';

/** One measured case: every sample kept (ms, or connections/s and Mbit/s for the datapath, MB for memory, % of a core for CPU). */
export interface Row {
  section: Section;
  case: string;
  /** User ports loaded when it was measured. */
  size: number;
  tool: string;
  /** 'ok', 'n/a (not implemented)', 'error: …' or 'skipped: …'. */
  status: string;
  /** '%': CPU time over wall time, 100 = one core busy. */
  unit: 'ms' | 'conn/s' | 'Mbit/s' | 'MB' | '%' | 'count';
  samples: number[];
  p50?: number;
  p99?: number;
  min?: number;
  max?: number;
  /** Case facts (members of the group, users of the group, rounds, …). */
  info?: Record<string, unknown>;
}

export const NOT_IMPLEMENTED = 'n/a (not implemented)';

/**
 * Untimed rounds before a timed loop of one-port, group-rule or member changes, so that warm (JIT-optimised)
 * code is measured, as a long-lived handle or agent runs it. A round is one change of each case, and V8 keeps
 * optimising for hundreds of them: after 25 rounds (100 one-port changes) its compiler threads were still busy
 * through the timed loop, taking the CPU whenever the kernel's release work preempted the handle's thread.
 * Measured side by side at 100 ports (one-port changes, p50 / changes over 2 ms of 200): 25 rounds
 * 0.55 ms / 17-18, 600 rounds 0.30-0.32 ms / 1 (docs/benchmark.md, "Warm-up").
 */
export const WARM_UP_ROUNDS = 600;

/** The incremental API's stubs reject with "…: not implemented yet"; a later one may carry a code instead. */
export function isNotImplemented(e: unknown): boolean {
  const err = e as { message?: unknown; code?: unknown } | null;
  return /not implemented/i.test(String(err?.message ?? '')) || err?.code === 'ERR_NOT_IMPLEMENTED';
}

/** One line: the message's first line and, for a failed command, the first line it printed on stderr. */
export function errorText(e: unknown): string {
  const err = e as { message?: unknown; stderr?: unknown } | null;
  const first = (x: unknown) => String(x ?? '').split('\n').map((l) => l.trim()).find(Boolean) ?? '';
  const stderr = first(err?.stderr);
  return `error: ${first(err?.message ?? e)}${stderr ? ` (${stderr})` : ''}`.slice(0, 300);
}

/** Nearest-rank quantile of sorted samples (p99 of 50 samples is the 50th: the worst but none). */
export function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** Fills p50/p99/min/max from the samples; a row without samples keeps its status ('ok' becomes an error). */
export function finish(row: Row): Row {
  if (row.samples.length === 0) {
    if (row.status === 'ok') row.status = 'error: no sample';
    return row;
  }
  const s = [...row.samples].sort((a, b) => a - b);
  Object.assign(row, { p50: quantile(s, 0.5), p99: quantile(s, 0.99), min: s[0], max: s[s.length - 1] });
  return row;
}

export function newRow(section: Section, kase: string, size: number, tool: string, unit: Row['unit'] = 'ms', info?: Record<string, unknown>): Row {
  return { section, case: kase, size, tool, status: 'ok', unit, samples: [], ...(info ? { info } : {}) };
}

export async function timed(fn: () => Promise<unknown> | unknown): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/**
 * This process's garbage-collection pauses (Node's `gc` performance entries), so a row can say how much of a
 * sample was the collector's: a full sync allocates tens of MB, and how often V8 collects depends on what the
 * process did before (docs/benchmark.md, "Warm-up").
 */
export class GcPauses {
  readonly #pauses: { start: number; ms: number }[] = [];
  readonly #observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) this.#pauses.push({ start: e.startTime, ms: e.duration });
  });

  constructor() {
    this.#observer.observe({ entryTypes: ['gc'] });
  }

  /** The pauses that began from `from` to `to` (performance.now() times): their count and total ms. */
  async between(from: number, to: number): Promise<{ count: number; ms: number }> {
    // Node queues a pause's entry after the collection; one turn of the event loop delivers it.
    await new Promise((resolve) => setImmediate(resolve));
    const inside = this.#pauses.filter((p) => p.start >= from && p.start <= to);
    this.#pauses.length = 0;
    return { count: inside.length, ms: inside.reduce((sum, p) => sum + p.ms, 0) };
  }

  stop(): void {
    this.#observer.disconnect();
  }
}

/**
 * Runs `body(r)` for r = 0, 1, … until `count` rounds ran, `budgetMs` passed, or `body` returns false.
 * Every measurement loop goes through here, so each is bounded in count and in time.
 */
export async function repeat(count: number, budgetMs: number, body: (r: number) => Promise<boolean | void>): Promise<number> {
  const t0 = performance.now();
  let r = 0;
  for (; r < count && performance.now() - t0 < budgetMs; r++) {
    if ((await body(r)) === false) return r + 1;
  }
  return r;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The one-line progress display: rewritten in place on a terminal, a line every few seconds otherwise. */
export class Progress {
  readonly #tty = Boolean(process.stdout.isTTY);
  readonly #t0 = performance.now();
  #lastPrint = 0;
  #lastTopic = '';

  update(topic: string, detail = ''): void {
    const now = performance.now();
    const elapsed = `${((now - this.#t0) / 1000).toFixed(0).padStart(4)} s`;
    const line = `[${elapsed}] ${topic}${detail ? ` — ${detail}` : ''}`;
    if (this.#tty) {
      if (now - this.#lastPrint < 100 && topic === this.#lastTopic) return;
      process.stdout.write(`\r\x1b[K${line.slice(0, (process.stdout.columns ?? 120) - 1)}`);
    } else {
      if (topic === this.#lastTopic && now - this.#lastPrint < 10_000) return;
      process.stdout.write(`${line}\n`);
    }
    this.#lastPrint = now;
    this.#lastTopic = topic;
  }

  /** A line that stays (results, warnings). */
  log(text: string): void {
    if (this.#tty) process.stdout.write('\r\x1b[K');
    process.stdout.write(`${text}\n`);
    this.#lastTopic = '';
  }

  done(): void {
    if (this.#tty) process.stdout.write('\r\x1b[K');
  }
}

/**
 * Namespaces and child processes of this run. `all()` is synchronous so that it also runs from an 'exit'
 * handler; signals remove everything and exit with 128 + signal number.
 */
export class Cleanup {
  readonly #ns = new Set<Netns>();
  readonly #procs = new Set<ChildProcess>();

  netns(label: string): Netns {
    const ns = new Netns(label);
    this.#ns.add(ns);
    return ns;
  }

  drop(ns: Netns): void {
    ns.destroy();
    this.#ns.delete(ns);
  }

  proc<T extends ChildProcess>(child: T): T {
    this.#procs.add(child);
    child.on('exit', () => this.#procs.delete(child));
    return child;
  }

  kill(child: ChildProcess): void {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    this.#procs.delete(child);
  }

  all(): void {
    for (const p of [...this.#procs]) this.kill(p);
    for (const ns of [...this.#ns]) this.drop(ns);
  }

  installSignalHandlers(onSignal: () => void = () => {}): void {
    const handler = (signal: NodeJS.Signals, code: number) => {
      process.stdout.write(`\n${signal}: removing the benchmark's namespaces\n`);
      onSignal();
      this.all();
      process.exit(128 + code);
    };
    process.once('SIGINT', () => handler('SIGINT', 2));
    process.once('SIGTERM', () => handler('SIGTERM', 15));
    process.once('exit', () => this.all());
  }
}

/** A tool's first version line, or 'missing'. */
export function versionOf(cmd: string, args: string[] = ['--version']): string {
  try {
    return run(cmd, args, { timeoutMs: 5000 }).split('\n').find((l) => l.trim())!.trim();
  } catch {
    return 'missing';
  }
}
