/**
 * Network namespaces for kernel tests (SPEC §5): uniquely named (`pw-<pid>-<random>`), always removed, and
 * every command run with an argument array inside one of them — never in the host's own namespace.
 */
import { execFileSync, spawn, ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export const isRoot = process.getuid?.() === 0;
/** Why kernel tests are skipped, or undefined when they can run. */
export const skipReason = isRoot ? undefined : 'kernel tests need root (network namespaces, netlink)';

const created = new Set<string>();

/** Creates a namespace with loopback up; remember to remove it (or use {@link withNetns}). */
export function createNetns(): string {
  const name = `pw-${process.pid}-${randomBytes(3).toString('hex')}`;
  execFileSync('ip', ['netns', 'add', name]);
  created.add(name);
  nsRun(name, 'ip', ['link', 'set', 'lo', 'up']);
  return name;
}

export function removeNetns(name: string): void {
  try {
    execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  } finally {
    created.delete(name);
  }
}

/** Removes every namespace this process created and did not remove yet. */
export function removeAllNetns(): void {
  for (const name of [...created]) removeNetns(name);
}
process.on('exit', removeAllNetns);

/** Runs `cmd args…` inside `ns`; returns stdout. Throws on a non-zero exit or after `timeoutMs`. */
export function nsRun(ns: string, cmd: string, args: string[], options: { timeoutMs?: number; input?: string } = {}): string {
  return execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], {
    encoding: 'utf8',
    timeout: options.timeoutMs ?? 10_000,
    input: options.input,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

/** Like nsRun, but returns whether the command succeeded instead of throwing. */
export function nsTry(ns: string, cmd: string, args: string[], timeoutMs = 10_000): boolean {
  try {
    nsRun(ns, cmd, args, { timeoutMs });
    return true;
  } catch {
    return false;
  }
}

/** Starts a long-running process inside `ns` (killed by the caller). */
export function nsSpawn(ns: string, cmd: string, args: string[]): ChildProcess {
  return spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A veth pair between two namespaces, each end addressed and up. */
export function veth(a: { ns: string; dev: string; addr: string }, b: { ns: string; dev: string; addr: string }): void {
  const tmpA = `pwa${randomBytes(3).toString('hex')}`, tmpB = `pwb${randomBytes(3).toString('hex')}`;
  // Created inside a's namespace so that no device ever appears in the host's.
  nsRun(a.ns, 'ip', ['link', 'add', tmpA, 'type', 'veth', 'peer', 'name', tmpB, 'netns', b.ns]);
  nsRun(a.ns, 'ip', ['link', 'set', tmpA, 'name', a.dev]);
  nsRun(b.ns, 'ip', ['link', 'set', tmpB, 'name', b.dev]);
  for (const end of [a, b]) {
    nsRun(end.ns, 'ip', ['addr', 'add', end.addr, 'dev', end.dev]);
    nsRun(end.ns, 'ip', ['link', 'set', end.dev, 'up']);
  }
}

/**
 * client (198.51.100.2) — router (198.51.100.1 | 203.0.113.1, forwarding, conntrack active) — server
 * (203.0.113.2). Conntrack runs in the router because an nft rule there matches `ct state`.
 */
export interface Topology {
  client: string;
  router: string;
  server: string;
  clientAddr: string;
  serverAddr: string;
  remove(): void;
}

export function createTopology(): Topology {
  const client = createNetns(), router = createNetns(), server = createNetns();
  const remove = () => [client, router, server].forEach(removeNetns);
  try {
    veth({ ns: client, dev: 'eth0', addr: '198.51.100.2/24' }, { ns: router, dev: 'cli0', addr: '198.51.100.1/24' });
    veth({ ns: router, dev: 'srv0', addr: '203.0.113.1/24' }, { ns: server, dev: 'eth0', addr: '203.0.113.2/24' });
    nsRun(client, 'ip', ['route', 'add', 'default', 'via', '198.51.100.1']);
    nsRun(server, 'ip', ['route', 'add', 'default', 'via', '203.0.113.1']);
    nsRun(router, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    nsRun(router, 'nft', ['-f', '-'], {
      input: 'table inet pwtest {\n chain forward_ct {\n type filter hook forward priority 0;\n ct state established,related counter accept\n }\n}\n',
    });
  } catch (e) {
    remove();
    throw e;
  }
  return { client, router, server, clientAddr: '198.51.100.2', serverAddr: '203.0.113.2', remove };
}

/** Pings from `ns` (bounded: `count` packets, 1 s each); true if any reply came. */
export function ping(ns: string, addr: string, count = 2): boolean {
  return nsTry(ns, 'ping', ['-c', String(count), '-W', '1', '-i', '0.2', '-q', addr], (count + 2) * 1000);
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
s.on('end', () => { console.log(data); process.exit(data === 'ok' ? 0 : 1); });
s.on('timeout', () => process.exit(2));
s.on('error', () => process.exit(3));
`;

/** A TCP server in `ns` that answers "ok" to each connection; resolves once listening, stops itself after 30 s. */
export async function startTcpServer(ns: string, host: string, port: number): Promise<ChildProcess> {
  const child = nsSpawn(ns, process.execPath, ['-e', SERVER_JS, host, String(port)]);
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
export function tcpConnect(ns: string, host: string, port: number): boolean {
  return nsTry(ns, process.execPath, ['-e', CLIENT_JS, host, String(port)], 5000);
}
