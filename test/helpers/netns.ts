/**
 * Network namespaces for kernel tests: uniquely named per test run, always removed.
 * Commands run with argument arrays (never shell strings) and bounded time.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** Prefix shared by every namespace of this test run (set by test/helpers/global-setup.ts). */
export function runPrefix(): string {
  return process.env.PORTWALL_TEST_RUN ?? `pw-${process.pid.toString(36)}`;
}

export const isRoot = process.getuid?.() === 0;

/** Runs a command, returns stdout; throws with stderr on failure. */
export function run(
  cmd: string,
  args: string[],
  opts: { input?: string; timeoutMs?: number; cwd?: string; env?: NodeJS.ProcessEnv } = {},
): string {
  return execFileSync(cmd, args, {
    input: opts.input,
    cwd: opts.cwd,
    env: opts.env,
    timeout: opts.timeoutMs ?? 30_000,
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

/** Like run() but returns the exit status instead of throwing. */
export function tryRun(cmd: string, args: string[], opts: { timeoutMs?: number } = {}): { status: number; out: string } {
  try {
    return { status: 0, out: run(cmd, args, opts) };
  } catch (e) {
    const err = e as { status?: number; stdout?: string; stderr?: string };
    return { status: err.status ?? -1, out: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}

export class Netns {
  readonly name: string;

  constructor(label: string) {
    this.name = `${runPrefix()}-${label}-${randomBytes(3).toString('hex')}`.slice(0, 60);
    run('ip', ['netns', 'add', this.name]);
    this.exec('ip', ['link', 'set', 'lo', 'up']);
  }

  exec(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): string {
    return run('ip', ['netns', 'exec', this.name, cmd, ...args], opts);
  }

  tryExec(cmd: string, args: string[], opts: { timeoutMs?: number } = {}): { status: number; out: string } {
    return tryRun('ip', ['netns', 'exec', this.name, cmd, ...args], opts);
  }

  /** `nft -f` of a text, through a temporary file. */
  nftLoad(text: string): void {
    const dir = mkdtempSync(path.join(tmpdir(), 'pw-nft-'));
    const file = path.join(dir, 'rules.nft');
    try {
      writeFileSync(file, text);
      this.exec('nft', ['-f', file], { timeoutMs: 120_000 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /** `nft -j list ruleset`, parsed. */
  nftJson(): { nftables: Record<string, unknown>[] } {
    return JSON.parse(this.exec('nft', ['-j', 'list', 'ruleset'], { timeoutMs: 120_000 }));
  }

  nftText(): string {
    return this.exec('nft', ['list', 'ruleset'], { timeoutMs: 120_000 });
  }

  destroy(): void {
    tryRun('ip', ['netns', 'del', this.name]);
  }
}

/** Connects two namespaces with a veth pair and optional addresses (CIDR strings). */
export function veth(
  a: Netns,
  ifA: string,
  b: Netns,
  ifB: string,
  addrs: { a?: string[]; b?: string[] } = {},
): void {
  a.exec('ip', ['link', 'add', ifA, 'type', 'veth', 'peer', 'name', ifB, 'netns', b.name]);
  for (const addr of addrs.a ?? []) a.exec('ip', ['addr', 'add', addr, 'dev', ifA]);
  for (const addr of addrs.b ?? []) b.exec('ip', ['addr', 'add', addr, 'dev', ifB]);
  a.exec('ip', ['link', 'set', ifA, 'up']);
  b.exec('ip', ['link', 'set', ifB, 'up']);
}

/** One bounded ping; true if a reply came back. */
export function ping(from: Netns, to: string, opts: { count?: number; waitS?: number } = {}): boolean {
  const args = [to.includes(':') ? '-6' : '-4', '-c', String(opts.count ?? 1), '-W', String(opts.waitS ?? 1), '-q', to];
  return from.tryExec('ping', args, { timeoutMs: 10_000 }).status === 0;
}

/** Names of this run's namespaces that still exist. */
export function leftoverNamespaces(): string[] {
  return run('ip', ['netns', 'list'])
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(runPrefix()));
}
