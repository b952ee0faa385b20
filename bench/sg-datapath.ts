/**
 * The datapath cases: the rate of new TCP connections, and the throughput of one bulk TCP stream, through one
 * routed port while portwall holds a workload of N ports (N = 1: the port alone, no other port loaded),
 * against the conntrack floor (a minimal stateful forward chain: `ct state established,related accept; tcp
 * dport 80 accept`) and against Neutron-style iptables (legacy) of the same state.
 *
 *   client ns (198.51.100.2) ─ uplink ─ host ns (the firewall, forwarding) ─ <port 0's device> ─ VM ns
 *
 * The VM plays the workload's port 0 (its device name, MAC and fixed IPv4; routed as in Calico: a /32 on
 * eth0, default route via 169.254.1.1 on the host's loopback); its app0 group admits tcp 80 from
 * 198.51.100.0/24. Neighbours are static, so ARP never enters a measurement. Rounds alternate the
 * configurations (reloading each), so slow drift of the machine hits all of them alike.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { Portwall } from '../src/apply/portwall.js';
import type { PortInput } from '../src/model/schema.js';
import type { IptablesRender } from '../src/render/iptables.js';
import { type Netns, veth } from '../test/helpers/netns.js';
import { Loaded, renderFor, BACKENDS } from './sg-competitors.js';
import { type Cleanup, type Progress, type Row, errorText, finish, newRow, sleep } from './sg-harness.js';
import { DATAPATH_TCP_PORT, type Workload } from './workload.js';

export interface DatapathOptions {
  rounds: number;
  /** Seconds of each measurement (the bulk stream's upper bound). */
  seconds: number;
  concurrency: number;
  /** Upper bound of the bulk stream's bytes. */
  bulkBytes: number;
  progress: Progress;
}

const PEER = fileURLToPath(new URL('./tcp-peer.js', import.meta.url));
const GW4 = '169.254.1.1';
// `fwd` and other keywords are refused as chain names by nft 1.0.6's parser.
const FLOOR = `table inet sgfloor {\n chain forward_ct {\n  type filter hook forward priority 0; policy drop;\n  ct state established,related accept\n  tcp dport ${DATAPATH_TCP_PORT} accept\n }\n}\n`;

/** The three namespaces and the VM's server; `close()` (or the cleanup registry) removes them. */
class Path {
  readonly host: Netns;
  readonly client: Netns;
  readonly vm: Netns;
  readonly vmAddr: string;
  #server: ChildProcess | undefined;
  /** Lines the server printed and nobody awaited yet; the waiter for the next one. */
  #lines: string[] = [];
  #onLine: (() => void) | undefined;

  /** With `peer`, the client is a second VM on that port (east-west, through the host) instead of the uplink's. */
  constructor(private readonly cleanup: Cleanup, port: PortInput, peer?: PortInput) {
    this.host = cleanup.netns('sg-dp-host');
    this.client = cleanup.netns(peer ? 'sg-dp-peer' : 'sg-dp-cli');
    this.vm = cleanup.netns('sg-dp-vm');
    this.vmAddr = port.fixed_ips![0]!.ip_address;
    const h = this.host, c = this.client, vm = this.vm;
    for (const ns of [h, c, vm]) ns.exec('sysctl', ['-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.all.router_solicitations=0', 'net.ipv6.conf.default.router_solicitations=0']);
    h.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0', 'net.ipv4.conf.all.send_redirects=0', 'net.ipv4.conf.default.send_redirects=0']);
    // The client's ephemeral ports cover a whole round without reuse.
    c.exec('sysctl', ['-qw', 'net.ipv4.ip_local_port_range=1024 65535']);
    h.exec('ip', ['addr', 'add', `${GW4}/32`, 'dev', 'lo']);
    const macOf = (ns: Netns, dev: string) => ns.exec('cat', [`/sys/class/net/${dev}/address`]).trim();
    const plug = (ns: Netns, p: PortInput) => {
      const addr = p.fixed_ips![0]!.ip_address;
      h.exec('ip', ['link', 'add', p.device, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.name]);
      ns.exec('ip', ['link', 'set', 'eth0', 'address', p.mac_address]);
      ns.exec('ip', ['addr', 'add', `${addr}/32`, 'dev', 'eth0']);
      ns.exec('ip', ['link', 'set', 'eth0', 'up']);
      ns.exec('ip', ['route', 'add', GW4, 'dev', 'eth0', 'scope', 'link']);
      ns.exec('ip', ['route', 'add', 'default', 'via', GW4, 'dev', 'eth0']);
      h.exec('ip', ['link', 'set', p.device, 'up']);
      h.exec('ip', ['route', 'add', `${addr}/32`, 'dev', p.device]);
      h.exec('ip', ['neigh', 'replace', addr, 'lladdr', p.mac_address, 'dev', p.device, 'nud', 'permanent']);
      ns.exec('ip', ['neigh', 'replace', GW4, 'lladdr', macOf(h, p.device), 'dev', 'eth0', 'nud', 'permanent']);
    };
    plug(vm, port);
    if (peer) plug(c, peer);
    else {
      veth(h, 'uplink', c, 'eth0', { a: ['198.51.100.1/24'], b: ['198.51.100.2/24'] });
      c.exec('ip', ['route', 'add', '198.18.0.0/15', 'via', '198.51.100.1']);
      h.exec('ip', ['neigh', 'replace', '198.51.100.2', 'lladdr', macOf(c, 'eth0'), 'dev', 'uplink', 'nud', 'permanent']);
      c.exec('ip', ['neigh', 'replace', '198.51.100.1', 'lladdr', macOf(h, 'uplink'), 'dev', 'eth0', 'nud', 'permanent']);
    }
  }

  /** The VM's TCP server, for at most `seconds`; it answers each connection ("accept") until told to sink. */
  async serve(seconds: number): Promise<void> {
    const child = this.#server = this.cleanup.proc(spawn('ip', ['netns', 'exec', this.vm.name, process.execPath, PEER, 'server', '--port', String(DATAPATH_TCP_PORT), '--seconds', String(seconds)], { stdio: ['pipe', 'pipe', 'pipe'] }));
    let buffered = '';
    child.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      this.#lines.push(...lines.map((l) => l.trim()).filter(Boolean));
      this.#onLine?.();
    });
    child.on('exit', () => this.#onLine?.());
    await this.#expect('ready');
  }

  /** Switches the server between answering each connection ("accept") and reading streams ("sink"). */
  async mode(m: 'accept' | 'sink'): Promise<void> {
    this.#server!.stdin!.write(`${m}\n`);
    await this.#expect(`mode ${m}`);
  }

  async #expect(line: string): Promise<void> {
    const server = this.#server!;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => done(new Error(`tcp server: no "${line}" within 10 s`)), 10_000);
      const done = (err?: Error) => {
        clearTimeout(timer);
        this.#onLine = undefined;
        if (err) reject(err);
        else resolve();
      };
      this.#onLine = () => {
        const k = this.#lines.indexOf(line);
        if (k >= 0) {
          this.#lines.splice(0, k + 1);
          done();
        } else if (server.exitCode !== null || server.signalCode !== null) done(new Error('tcp server exited'));
      };
      this.#onLine();
    });
  }

  /** One client run from the outside namespace (bounded by its own clock and by a kill timer). */
  async connect(seconds: number, concurrency: number, max = 200_000): Promise<{ connections: number; failures: number; rate: number }> {
    const args = [PEER, 'client', '--host', this.vmAddr, '--port', String(DATAPATH_TCP_PORT), '--seconds', String(seconds), '--max', String(max), '--concurrency', String(concurrency)];
    return this.#run(args, seconds) as Promise<{ connections: number; failures: number; rate: number }>;
  }

  /** A client in the outside namespace; its one JSON line. */
  async #run(args: string[], seconds: number): Promise<unknown> {
    const child = this.cleanup.proc(spawn('ip', ['netns', 'exec', this.client.name, process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    const timer = setTimeout(() => this.cleanup.kill(child), (seconds + 15) * 1000);
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    clearTimeout(timer);
    const line = out.split('\n').find((l) => l.startsWith('{'));
    if (code !== 0 || !line) throw new Error(`tcp ${args[1]} exited ${code}`);
    return JSON.parse(line);
  }

  /** One bulk stream from the outside namespace to the sink (bounded in bytes, in time and by a kill timer). */
  async bulk(seconds: number, bytes: number): Promise<{ bytes: number; elapsedMs: number; mbps: number }> {
    const args = [PEER, 'bulk', '--host', this.vmAddr, '--port', String(DATAPATH_TCP_PORT), '--seconds', String(seconds), '--bytes', String(bytes)];
    return this.#run(args, seconds) as Promise<{ bytes: number; elapsedMs: number; mbps: number }>;
  }

  flushConntrack(): void {
    this.host.tryExec('conntrack', ['-F']);
  }

  close(): void {
    if (this.#server) this.cleanup.kill(this.#server);
    for (const ns of [this.client, this.vm, this.host]) this.cleanup.drop(ns);
  }
}

/** The east-west case: new connections between two routed ports of one network (from one VM to another). */
export const EAST_WEST_CASE = 'new-tcp-conn-ew';

/**
 * Two ports of one routed network for the east-west case: the network with two ports sharing a group whose place
 * in the zone order is nearest the middle (a packet between two routed ports looks up the networks' zone sets
 * before its own: docs/dataplane.md, "Zones"). Undefined when no network has two such ports.
 */
export function eastWestPair(state: Workload['state']): { server: PortInput; client: PortInput; network: string; rank: number; networks: number } | undefined {
  const routed = [...(state.networks ?? [])].filter((n) => n.mode !== 'bridged').sort((a, b) => a.zone - b.zone);
  const candidates = routed.flatMap((n, rank) => {
    const ports = (state.ports ?? []).filter((p) => p.network_id === n.id);
    const [server, client] = ports;
    const shared = server && client && (server.security_groups ?? []).some((g) => (client.security_groups ?? []).includes(g));
    return shared ? [{ server: server!, client: client!, network: n.id, rank, networks: routed.length }] : [];
  });
  const middle = (routed.length - 1) / 2;
  return candidates.sort((a, b) => Math.abs(a.rank - middle) - Math.abs(b.rank - middle) || a.rank - b.rank)[0];
}

/**
 * At each size, for portwall, the floor and legacy iptables, over `rounds` alternating rounds: each
 * configuration loaded, then the new-connection rate (server answering), then one bulk stream (server sinking);
 * then, where the workload has two ports of one routed network, the new-connection rate between them.
 */
export async function datapathCases(cleanup: Cleanup, workloads: Workload[], opts: DatapathOptions): Promise<Row[]> {
  const rows: Row[] = [];
  for (const w of workloads) {
    const port = w.state.ports![0]!;
    const alone = w.opts.ports === 1 ? { otherPorts: 0 } : {};
    // Legacy iptables of the state, rendered once for both paths (seconds at 5000 ports).
    const rendered = renderFor(w.state);
    rows.push(...await measurePath(new Path(cleanup, port), w, rendered, { kase: 'new-tcp-conn', bulk: true }, { port: port.device, ...alone }, opts));
    const pair = eastWestPair(w.state);
    if (pair) {
      const info = { port: pair.server.device, from: pair.client.device, network: pair.network, zoneRank: pair.rank, routedNetworks: pair.networks };
      rows.push(...await measurePath(new Path(cleanup, pair.server, pair.client), w, rendered, { kase: EAST_WEST_CASE, bulk: false }, info, opts));
    }
  }
  return rows.map(finish);
}

/**
 * One path's rounds: each configuration loaded in turn, its new-connection rate (row case `kase`), and with
 * `bulk` one bulk stream too.
 */
async function measurePath(p: Path, w: Workload, rendered: IptablesRender, { kase, bulk: withBulk }: { kase: string; bulk: boolean }, where: Record<string, unknown>, opts: DatapathOptions): Promise<Row[]> {
  const rows: Row[] = [];
  const size = w.opts.ports;
  const loaded = new Loaded(p.host);
  try {
    const budgetS = opts.rounds * 3 * (2 * opts.seconds + 60) + 60;
    await p.serve(budgetS);
    const configs: { tool: string; load: () => Promise<void> }[] = [
      { tool: 'portwall', load: async () => {
        loaded.nft = true;
        const pw = Portwall.open({ netns: p.host.name });
        await pw.apply(w.state);
        await pw.close();
      } },
      { tool: 'conntrack floor', load: async () => { loaded.nft = true; p.host.nftLoad(FLOOR); } },
      ...(BACKENDS.includes('legacy') ? [{ tool: 'iptables-legacy', load: async () => loaded.restore('legacy', rendered) }] : []),
    ];
    const info = { seconds: opts.seconds, concurrency: opts.concurrency, ...where };
    const bulkInfo = { maxSeconds: opts.seconds, maxBytes: opts.bulkBytes, streams: 1, ...where };
    const byTool = configs.map((c) => newRow('datapath', kase, size, c.tool, 'conn/s', { ...info }));
    const bulkRows = withBulk ? configs.map((c) => newRow('datapath', 'bulk-tcp', size, c.tool, 'Mbit/s', { ...bulkInfo })) : [];
    if (!BACKENDS.includes('legacy')) {
      for (const k of withBulk ? [kase, 'bulk-tcp'] : [kase]) rows.push({ ...newRow('datapath', k, size, 'iptables-legacy', k === 'bulk-tcp' ? 'Mbit/s' : 'conn/s'), status: 'skipped: tool missing' });
    }
    rows.push(...byTool, ...bulkRows);
    const failures = configs.map(() => 0);
    const bytes = configs.map(() => [] as number[]);
    for (let round = 0; round < opts.rounds; round++) {
      for (const [k, c] of configs.entries()) {
        const row = byTool[k]!;
        const bulkRow = bulkRows[k];
        if (row.status !== 'ok' && bulkRow?.status !== 'ok') continue;
        opts.progress.update(`datapath${withBulk ? '' : ' east-west'} @${size}`, `round ${round + 1}/${opts.rounds}: ${c.tool}`);
        try {
          loaded.reset();
          await c.load();
          p.flushConntrack();
          await sleep(200);
          // The port must really admit the client, or the rate would measure timeouts.
          const probe = await p.connect(1, 1, 3);
          if (probe.connections === 0) throw new Error(`no connection passed ${c.tool}`);
          if (row.status === 'ok') {
            await p.connect(Math.min(0.5, opts.seconds), opts.concurrency);
            p.flushConntrack();
            const r = await p.connect(opts.seconds, opts.concurrency);
            row.samples.push(r.rate);
            failures[k]! += r.failures;
          }
          if (!bulkRow) continue;
          await p.mode('sink');
          try {
            const b = await p.bulk(opts.seconds, opts.bulkBytes);
            if (b.bytes <= 0) throw new Error(`no byte passed ${c.tool}`);
            bulkRow.samples.push(b.mbps);
            bytes[k]!.push(b.bytes);
          } catch (e) {
            bulkRow.status = errorText(e);
          } finally {
            await p.mode('accept');
          }
        } catch (e) {
          if (row.status === 'ok') row.status = errorText(e);
          if (bulkRow?.status === 'ok') bulkRow.status = errorText(e);
        }
      }
    }
    byTool.forEach((row, k) => { row.info = { ...row.info, failures: failures[k] }; });
    bulkRows.forEach((row, k) => { row.info = { ...row.info, bytesP50: bytes[k]!.length ? [...bytes[k]!].sort((a, b) => a - b)[Math.ceil(bytes[k]!.length / 2) - 1] : undefined }; });
  } finally {
    p.close();
  }
  return rows;
}
