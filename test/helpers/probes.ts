/**
 * Traffic probes for the scenario tests: bounded background processes, TCP/UDP probes, ping counts, long-lived
 * timestamped flows and hand-made frames (through test/fixtures/netprobe.py). Every process is bounded in time.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import type { Netns } from './netns.js';

/** test/fixtures/netprobe.py, found from here whether this runs from test/ or compiled under dist/. */
export const NETPROBE = findUp(path.dirname(fileURLToPath(import.meta.url)), path.join('test', 'fixtures', 'netprobe.py'));

function findUp(dir: string, rel: string): string {
  for (let d = dir; ; d = path.dirname(d)) {
    if (existsSync(path.join(d, rel))) return path.join(d, rel);
    if (path.dirname(d) === d) return path.join(dir, '..', 'fixtures', 'netprobe.py');
  }
}

/** A bounded background process whose stdout lines are collected (JSON lines parsed when they parse). */
export class Bg {
  readonly lines: string[] = [];
  private buf = '';
  private exited = false;
  readonly done: Promise<number | null>;
  /** Resolves once the process has exited and its output is read to the end. */
  private readonly closed: Promise<void>;

  constructor(readonly child: ChildProcess) {
    child.stdout!.on('data', (d: Buffer) => {
      this.buf += d.toString();
      let i: number;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        this.lines.push(this.buf.slice(0, i));
        this.buf = this.buf.slice(i + 1);
      }
    });
    child.stderr!.on('data', () => {});
    this.done = new Promise((resolve) => child.on('exit', (code) => {
      this.exited = true;
      resolve(code);
    }));
    this.closed = new Promise((resolve) => child.on('close', () => resolve()));
  }

  /**
   * Ends a listening netprobe mode (serve, sniff, listen-*, dhcp-*) without losing what already arrived: on
   * SIGTERM it reads on until its sockets have been quiet for 0.2 s. Resolves once its output is all read;
   * killed if it has not ended after `timeoutMs`.
   */
  async finish(timeoutMs = 5000): Promise<void> {
    if (!this.exited && this.child.pid !== undefined) {
      try {
        process.kill(this.child.pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
    }
    const timer = setTimeout(() => this.stop(), timeoutMs);
    try {
      await this.closed;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Runs `send`, then {@link finish} (also when `send` throws): the lines are then what arrived meanwhile. */
  async during(send: () => Promise<unknown>): Promise<void> {
    try {
      await send();
    } finally {
      await this.finish();
    }
  }

  /** Resolves when a line satisfies `pred`; rejects after `timeoutMs`. */
  async waitFor(pred: (line: string) => boolean, timeoutMs = 5000): Promise<string> {
    const t0 = Date.now();
    for (;;) {
      const hit = this.lines.find(pred);
      if (hit !== undefined) return hit;
      if (this.exited) throw new Error(`process exited before the expected output: ${this.lines.join('\n')}`);
      if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms; got: ${this.lines.join('\n')}`);
      await sleep(20);
    }
  }

  /** The parsed JSON lines. */
  records<T = Record<string, unknown>>(): T[] {
    return this.lines.filter((l) => l.startsWith('{') || l.startsWith('[')).map((l) => JSON.parse(l) as T);
  }

  stop(): void {
    if (!this.exited && this.child.pid !== undefined) {
      try {
        process.kill(this.child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Resolves once `pred()` holds, checking every 20 ms; after `timeoutMs` resolves anyway (the caller asserts). */
export async function until(pred: () => boolean, timeoutMs = 5000): Promise<void> {
  for (const t0 = Date.now(); !pred() && Date.now() - t0 < timeoutMs;) await sleep(20);
}

/** Runs a command in `ns` without blocking the event loop. */
export function execIn(ns: Netns, cmd: string, args: string[], timeoutMs = 10_000): Promise<{ status: number; out: string }> {
  return new Promise((resolve) => {
    execFile('ip', ['netns', 'exec', ns.name, cmd, ...args], { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const status = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1) : 0;
      resolve({ status, out: `${stdout}${stderr}` });
    });
  });
}

export type ProbeResult = 'open' | 'refused' | 'timeout' | `error:${string}`;
export interface Probe {
  proto: 'tcp' | 'udp';
  host: string;
  port: number;
  /** Source address to bind (must be local to the namespace). */
  src?: string;
  sport?: number;
}

/** Runs TCP/UDP probes concurrently from `ns`; "open" = answered, "timeout" = dropped somewhere. */
export async function probe(ns: Netns, probes: Probe[], timeoutS = 1): Promise<ProbeResult[]> {
  if (probes.length === 0) return [];
  const r = await execIn(ns, 'python3', [NETPROBE, 'probe', '--json', JSON.stringify(probes), '--timeout', String(timeoutS)], (timeoutS * 3 + 8) * 1000);
  const line = r.out.split('\n').find((l) => l.startsWith('['));
  if (!line) throw new Error(`probe failed: ${r.out}`);
  return JSON.parse(line) as ProbeResult[];
}

/** Bounded ping; resolves to the number of replies. */
export async function pingCount(ns: Netns, to: string, opts: { count?: number; src?: string; waitS?: number; dev?: string } = {}): Promise<number> {
  const count = opts.count ?? 2;
  const args = [to.includes(':') ? '-6' : '-4', '-n', '-q', '-c', String(count), '-i', '0.2', '-W', String(opts.waitS ?? 1)];
  if (opts.src ?? opts.dev) args.push('-I', (opts.src ?? opts.dev)!);
  args.push(to);
  const r = await execIn(ns, 'ping', args, 15_000);
  const m = /(\d+) (?:packets )?received/.exec(r.out);
  return m ? Number(m[1]) : 0;
}

/** A running flow whose answers carry wall-clock times (ms, comparable with Date.now()). */
export interface LiveFlow {
  readonly bg: Bg;
  replies(): number[];
  repliesAfter(t: number): number[];
  waitReplies(n: number, timeoutMs?: number): Promise<void>;
  stop(): void;
}

abstract class TimedFlow implements LiveFlow {
  abstract readonly bg: Bg;
  abstract replies(): number[];

  repliesAfter(t: number): number[] {
    return this.replies().filter((r) => r > t);
  }

  async waitReplies(n: number, timeoutMs = 5000): Promise<void> {
    const t0 = Date.now();
    while (this.replies().length < n) {
      if (Date.now() - t0 > timeoutMs) throw new Error(`flow got ${this.replies().length}/${n} replies in ${timeoutMs} ms: ${this.bg.lines.slice(-5).join(' | ')}`);
      await sleep(20);
    }
  }

  stop(): void {
    this.bg.stop();
  }
}

/** One TCP connection kept open to an echo server (`serve --echo`), a byte every 100 ms; replies = echoes. */
export class LongTcp extends TimedFlow {
  readonly bg: Bg;

  constructor(ns: Netns, host: string, port: number, seconds = 15) {
    super();
    this.bg = new Bg(spawn('ip', ['netns', 'exec', ns.name, 'python3', NETPROBE, 'tcp-chat', '--host', host, '--port', String(port), '--seconds', String(seconds)], { stdio: ['ignore', 'pipe', 'pipe'] }));
  }

  replies(): number[] {
    return this.bg.records<{ echo?: number }>().filter((r) => r.echo !== undefined).map((r) => Math.round(r.echo! * 1000));
  }
}

/**
 * A running ping with timestamps (`ping -D`), bounded by its count: measures when replies stop and resume.
 * Reply times are wall-clock milliseconds, comparable with Date.now().
 */
export class LongPing extends TimedFlow {
  readonly bg: Bg;

  constructor(ns: Netns, to: string, opts: { intervalS?: number; count?: number; src?: string } = {}) {
    super();
    const args = [to.includes(':') ? '-6' : '-4', '-n', '-D', '-i', String(opts.intervalS ?? 0.1), '-c', String(opts.count ?? 150), '-W', '1'];
    if (opts.src) args.push('-I', opts.src);
    args.push(to);
    this.bg = new Bg(spawn('ip', ['netns', 'exec', ns.name, 'ping', ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
  }

  /** Reply timestamps (ms since the epoch). */
  replies(): number[] {
    const out: number[] = [];
    for (const l of this.bg.lines) {
      const m = /^\[(\d+\.\d+)\] \d+ bytes from/.exec(l);
      if (m) out.push(Math.round(Number(m[1]) * 1000));
    }
    return out;
  }
}

/** A sniffed frame (netprobe.py sniff). */
export interface Frame {
  type: string;
  smac: string;
  dmac: string;
  src?: string;
  dst?: string;
  proto?: string | number;
  sport?: number;
  dport?: number;
  flags?: string;
  icmpType?: number;
  op?: number;
  sip?: string;
  tip?: string;
}

/** A hand-made ARP frame (netprobe.py frame): sender MAC `sha` defaults to `smac`. */
export interface ArpFrameSpec {
  proto: 'arp';
  smac: string;
  dmac: string;
  op: number;
  sha?: string;
  sip: string;
  tha?: string;
  tip: string;
  count?: number;
}

/** A hand-made frame (netprobe.py frame). */
export interface FrameSpec {
  smac: string;
  dmac: string;
  src: string;
  dst: string;
  proto: 'udp' | 'tcp' | 'icmpv6' | 'icmp';
  sport?: number;
  dport?: number;
  /** TCP flags, e.g. "S", "SF", "A". */
  flags?: string;
  icmp?: 'ra';
  ttl?: number;
  count?: number;
  payload?: string;
  /** An 802.1Q tag with this VLAN id. */
  vlan?: number;
}
