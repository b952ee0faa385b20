/**
 * Network namespaces for kernel tests: uniquely named per test run, always removed.
 * Commands run with argument arrays (never shell strings) and bounded time.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
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
  const args = [to.includes(':') ? '-6' : '-4', '-c', String(opts.count ?? 1), '-W', String(opts.waitS ?? 1), '-i', '0.2', '-q', to];
  return from.tryExec('ping', args, { timeoutMs: 10_000 }).status === 0;
}

/** Names of this run's namespaces that still exist. */
export function leftoverNamespaces(): string[] {
  return run('ip', ['netns', 'list'])
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(runPrefix()));
}

/** Starts a long-running process inside `ns` (the caller kills it). */
export function spawnIn(ns: Netns, cmd: string, args: string[]): ChildProcess {
  return spawn('ip', ['netns', 'exec', ns.name, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
}

/**
 * client (198.51.100.2) — router (198.51.100.1 | 203.0.113.1, forwarding, conntrack active) — server
 * (203.0.113.2). Conntrack runs in the router because an nft rule there matches `ct state`.
 */
export class Topology {
  readonly client: Netns;
  readonly router: Netns;
  readonly server: Netns;
  readonly clientAddr = '198.51.100.2';
  readonly serverAddr = '203.0.113.2';

  constructor() {
    this.client = new Netns('cli');
    this.router = new Netns('rtr');
    this.server = new Netns('srv');
    try {
      veth(this.client, 'eth0', this.router, 'cli0', { a: ['198.51.100.2/24'], b: ['198.51.100.1/24'] });
      veth(this.router, 'srv0', this.server, 'eth0', { a: ['203.0.113.1/24'], b: ['203.0.113.2/24'] });
      this.client.exec('ip', ['route', 'add', 'default', 'via', '198.51.100.1']);
      this.server.exec('ip', ['route', 'add', 'default', 'via', '203.0.113.1']);
      this.router.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
      this.router.nftLoad('table inet pwtest {\n chain forward_ct {\n type filter hook forward priority 0;\n ct state established,related counter accept\n }\n}\n');
    } catch (e) {
      this.remove();
      throw e;
    }
  }

  remove(): void {
    for (const ns of [this.client, this.router, this.server]) ns.destroy();
  }
}

const SERVER_JS = `
const net = require('net');
const [host, port] = process.argv.slice(1);
const srv = net.createServer((s) => { s.on('error', () => {}); s.end('ok'); });
srv.listen(Number(port), host, () => console.log('listening'));
setTimeout(() => process.exit(0), 30000);
`;
const CLIENT_JS = `
const net = require('net');
const [host, port] = process.argv.slice(1);
const s = net.connect({ host, port: Number(port), timeout: 2000 });
let data = '';
s.on('data', (d) => { data += d; });
s.on('end', () => { process.exit(data === 'ok' ? 0 : 1); });
s.on('timeout', () => process.exit(2));
s.on('error', () => process.exit(3));
`;

/** A TCP server in `ns` that answers "ok" to each connection; resolves once listening, stops itself after 30 s. */
export async function startTcpServer(ns: Netns, host: string, port: number): Promise<ChildProcess> {
  const child = spawnIn(ns, process.execPath, ['-e', SERVER_JS, host, String(port)]);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('tcp server did not start')), 5000);
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('listening')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', () => reject(new Error('tcp server exited')));
  });
  return child;
}

/** One TCP connection from `ns` (bounded to ~3 s); true if the server answered. */
export function tcpConnect(from: Netns, host: string, port: number): boolean {
  return from.tryExec(process.execPath, ['-e', CLIENT_JS, host, String(port)], { timeoutMs: 5000 }).status === 0;
}
