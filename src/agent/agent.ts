/**
 * `portwall agent`: the long-running process (docs/agent.md). One {@link Portwall} handle in one namespace, fed
 * by a state file and the HTTP API on a Unix socket; it adopts what the kernel holds on start (no flush, so no
 * gap), repairs drift it hears about from nftables' own netlink events, checks the whole state periodically,
 * logs JSON lines and counts in Prometheus metrics. Stopping it leaves the rules in place.
 */
import { EventEmitter } from 'node:events';
import { watch, type FSWatcher } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { basename, dirname, resolve } from 'node:path';

import type { Logger } from 'pino';

import { Portwall } from '../apply/portwall.js';
import { ownTables } from '../compile/names.js';
import { PortwallError } from '../errors.js';
import { readStateFile, type LoadedState } from '../model/load.js';
import { InvalidStateError, type Problem } from '../model/problems.js';
import type { Model, PortwallConfig } from '../model/types.js';
import { subscribeNftEvents, type NftEventSubscription, type NftTransactionEvent } from '../nft/events.js';
import { subscribeDropLog } from '../droplog.js';
import { AgentCore } from './core.js';
import { startApiServer, type ApiServer } from './http.js';
import { AgentMetrics } from './metrics.js';
import { DEFAULT_SOCKET } from './socket-path.js';

/** Options of {@link startAgent}. */
export interface AgentOptions {
  /** Network namespace (a name under /run/netns or a path); default: the agent's own. */
  netns?: string;
  /** Table names, mark mask, zone range, ipset publishing (defaults: DEFAULT_CONFIG). */
  config?: Partial<PortwallConfig>;
  /** The state file: applied on start, again on SIGHUP ({@link Agent.reload}) and when the file changes. */
  stateFile?: string;
  /**
   * The state file as the caller already read and validated it (`readStateFile` with the same config), for
   * the start only: a 5000-port file is not read and validated twice (the CLI reads it first for its
   * preflight warnings). Reloads read the file again.
   */
  loadedState?: LoadedState;
  /** The API's Unix socket (default `/run/portwall/portwall.sock`). */
  socketPath?: string;
  /** `HOST:PORT` of an extra TCP listener that serves only `GET /metrics`. */
  metricsAddress?: string;
  logger: Logger;
  /** The periodic full check (list and compare), in milliseconds; default 60 000; 0 turns it off. */
  checkIntervalMs?: number;
  /**
   * How long after its last commit the agent writes the adopt record (so that even kill -9 leaves one), in
   * milliseconds; default 1000; 0: only when it stops gracefully.
   */
  recordIdleMs?: number;
  /** How long a repair waits for more drift events of the same burst, in milliseconds (default 20). */
  repairDelayMs?: number;
  bodyLimit?: number;
  coalesceMs?: number;
  /**
   * Write the drop log: every packet the networks with `log_drops` drop, as a JSON line with `event: "drop"`
   * (port, network, zone, policy step, direction, 5-tuple; docs/dataplane.md, "Drop log"), and every new
   * connection the networks with `log_accepts` allow, with `event: "accept"`, `verdict: "accept"`.
   */
  dropLog?: boolean;
}

/** A running agent. */
export interface Agent {
  readonly core: AgentCore;
  readonly metrics: AgentMetrics;
  readonly socketPath: string;
  /** With `metricsAddress`: the TCP port `GET /metrics` is served on (the one asked for, or the one port 0 got). */
  readonly metricsPort?: number;
  /**
   * What the agent does, as events (the same as its log lines): `'drift'` (causes) when it hears someone
   * else change its tables or lost events, `'repaired'` ({ causes, ms, genid, elements }) after a repair that
   * changed the kernel, `'error'` (error) when a repair or a reload failed.
   */
  readonly events: EventEmitter<AgentEvents>;
  /** Re-reads the state file (a no-op without one); an invalid file is logged and the running state kept. */
  reload(): Promise<void>;
  /** Stops serving and watching; the rules stay in the kernel. */
  stop(): Promise<void>;
}

/** The events of {@link Agent.events}. */
export interface AgentEvents {
  drift: [causes: string[]];
  repaired: [{ causes: string[]; ms: number; genid?: number; elements: { added: number; removed: number } }];
  error: [error: unknown];
}

/** Where the agent listens unless told otherwise. */
export { DEFAULT_SOCKET };

/**
 * Starts the agent. Throws when the state file is unreadable or invalid (naming every bad object and field)
 * or the socket cannot be served — nothing is applied then.
 */
export async function startAgent(o: AgentOptions): Promise<Agent> {
  const log = o.logger;
  const metrics = new AgentMetrics();
  const handle = Portwall.open({
    ...(o.netns === undefined ? {} : { netns: o.netns }), ...(o.config ? { config: o.config } : {}),
    ...(o.recordIdleMs === undefined ? {} : { recordIdleMs: o.recordIdleMs === 0 ? false : o.recordIdleMs }),
  });
  const core = new AgentCore(handle, metrics, log);
  metrics.watchCounters(() => handle.counters());
  const closers: (() => Promise<void> | void)[] = [];
  const stopAll = async () => {
    for (const c of closers.reverse()) await Promise.resolve().then(c).catch((err: unknown) => log.warn({ err }, 'while stopping'));
    closers.length = 0;
  };
  closers.push(() => handle.close());
  try {
    // No listener for 'error' must not throw: failures are logged anyway.
    const events = new EventEmitter<AgentEvents>().on('error', () => undefined);
    const repairs = new Repairs(core, log, o.repairDelayMs ?? 20, events);
    closers.push(() => repairs.stop());
    // Listen before adopting: a change someone makes while the agent starts is heard, not missed.
    const subscription = await subscribeNftEvents(handle.netns, (txs, lost) => onEvents(txs, lost, handle, repairs), {
      onError: (err) => {
        log.warn({ err }, 'nftables event subscription error');
        repairs.schedule('event-error');
      },
    });
    closers.push(() => subscription.close());
    if (o.dropLog) {
      const drops = await subscribeDropLog((records, lost) => {
        for (const r of records) log.info(r, r.event === 'accept' ? 'accepted' : 'dropped');
        if (lost > 0) log.warn({ event: 'drop-log-lost', lost }, 'drop log: packets lost (the reader fell behind)');
      }, { netns: handle.netns, group: handle.config.logGroup, model: () => handle.programmed(), onError: (err) => log.warn({ err }, 'drop log error') });
      closers.push(() => drops.close());
    }
    if (o.stateFile) {
      const first = o.loadedState ? loadedDoc(o.stateFile, o.loadedState, log) : await readStateDoc(o.stateFile, handle, log);
      const result = await core.applyState(...first);
      log.info({ event: 'start', genid: result.genid, changed: result.changed, adopted: result.adopted, adoptedFrom: result.adoptedFrom }, result.changed ? 'adopted and reconciled' : 'adopted; the kernel already matched');
    } else log.info({ event: 'start' }, 'no state file: waiting for PUT /v1/state');

    const socketPath = o.socketPath ?? DEFAULT_SOCKET;
    const api: ApiServer = await startApiServer({ socketPath, backend: core, metrics, logger: log, bodyLimit: o.bodyLimit, coalesceMs: o.coalesceMs });
    closers.push(() => api.close());
    let metricsPort: number | undefined;
    if (o.metricsAddress) {
      const server = await serveMetrics(o.metricsAddress, metrics);
      metricsPort = (server.address() as { port: number }).port;
      closers.push(() => new Promise<void>((res) => server.close(() => res())));
    }
    const reload = async () => {
      if (!o.stateFile) return;
      try {
        const r = await core.applyState(...(await readStateDoc(o.stateFile, handle, log)));
        log.info({ event: 'reload', genid: r.genid, changed: r.changed }, 'state file reloaded');
      } catch (err) {
        metrics.countError(err instanceof PortwallError ? err.code : 'ERR_INTERNAL');
        log.error({ event: 'reload', err: errorFields(err) }, 'state file not applied; the running state stays');
        events.emit('error', err);
      }
    };
    if (o.stateFile) closers.push(watchFile(o.stateFile, reload));
    const every = o.checkIntervalMs ?? 60_000;
    if (every > 0) {
      const timer = setInterval(() => repairs.schedule('periodic'), every);
      timer.unref();
      closers.push(() => clearInterval(timer));
    }
    log.info({ event: 'listening', socket: socketPath, netns: handle.netns, metricsPort }, 'agent ready');
    return { core, metrics, socketPath, metricsPort, events, reload, stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/**
 * Drift: a transaction of another process that touched portwall's tables (the subscription knows our own), or
 * events the socket lost. Transactions of others on other tables are no drift.
 */
function onEvents(txs: readonly NftTransactionEvent[], lost: number, handle: Portwall, repairs: Repairs): void {
  if (lost > 0) repairs.schedule('events-lost');
  const tables = ownTables(handle.config.tables);
  for (const tx of txs) {
    if (tx.self) continue;
    const ours = tx.events.some((e) => tables.some(([family, table]) => e.family === family && e.table === table));
    if (ours) repairs.schedule('drift');
  }
}

/** Debounced, one-at-a-time repairs; each logs how long it took from the first event of its burst. */
class Repairs {
  #timer: NodeJS.Timeout | undefined;
  #since = 0;
  #causes = new Set<string>();
  #running: Promise<void> = Promise.resolve();
  #stopped = false;

  constructor(
    readonly core: AgentCore,
    readonly log: Logger,
    readonly delayMs: number,
    readonly events: EventEmitter<AgentEvents>,
  ) {}

  schedule(cause: string): void {
    if (this.#stopped) return;
    this.#causes.add(cause);
    if (this.#timer) return;
    this.#since = performance.now();
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const causes = [...this.#causes];
      this.#causes.clear();
      const since = this.#since;
      if (causes.some((c) => c !== 'periodic')) this.events.emit('drift', causes);
      this.#running = this.#running.then(() => this.#repair(causes, since));
    }, this.delayMs);
  }

  async #repair(causes: string[], since: number): Promise<void> {
    if (this.#stopped) return;
    const cause = causes.includes('drift') ? 'drift' : causes[0]!;
    try {
      const r = await this.core.repair(cause);
      if (!r) return;
      const ms = Math.round((performance.now() - since) * 10) / 10;
      if (r.changed) {
        this.log.warn({ event: 'drift', causes, repairedInMs: ms, genid: r.genid, elements: r.elements }, `drift repaired in ${ms} ms`);
        this.events.emit('repaired', { causes, ms, genid: r.genid, elements: r.elements });
      } else this.log.debug({ event: 'check', causes, ms }, 'kernel matches the desired state');
    } catch (err) {
      this.core.metrics.countError(err instanceof PortwallError ? err.code : 'ERR_INTERNAL');
      this.log.error({ event: 'repair', causes, err: errorFields(err) }, 'repair failed; retrying');
      this.events.emit('error', err);
      if (!this.#stopped) setTimeout(() => this.schedule(cause), 1000).unref();
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#running;
  }
}

/**
 * The state file as a document and as a validated model (problems named with the file's name); keys the
 * schema does not know are logged at warn, one line each, and do not stop the load.
 */
async function readStateDoc(file: string, handle: Portwall, log: Logger): Promise<[unknown, string, Model]> {
  const loaded = await readStateFile(file, handle.config).catch((err: unknown) => {
    if (err instanceof InvalidStateError) logWarnings(log, file, err.warnings);
    throw err;
  });
  return loadedDoc(file, loaded, log);
}

function loadedDoc(file: string, { doc, model, warnings }: LoadedState, log: Logger): [unknown, string, Model] {
  logWarnings(log, file, warnings);
  return [doc, `file ${file}`, model];
}

function logWarnings(log: Logger, file: string, warnings: readonly Problem[]): void {
  for (const w of warnings) log.warn({ event: 'warning', file, path: w.path }, `${w.path}: ${w.message}`);
}

/** Watches the state file's directory (editors and `mv` replace the file), debounced. Returns the closer. */
function watchFile(file: string, onChange: () => Promise<void>): () => void {
  const path = resolve(file);
  let timer: NodeJS.Timeout | undefined;
  let running = Promise.resolve();
  const w: FSWatcher = watch(dirname(path), (_kind, name) => {
    if (name !== basename(path)) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      running = running.then(onChange);
    }, 100);
  });
  w.unref();
  return () => {
    if (timer) clearTimeout(timer);
    w.close();
  };
}

async function serveMetrics(address: string, metrics: AgentMetrics): Promise<Server> {
  const m = /^(.*):(\d+)$/.exec(address);
  if (!m) throw new PortwallError('ERR_INVALID_VALUE', `--metrics must be HOST:PORT, not ${JSON.stringify(address)}`, { field: 'metrics' });
  const host = m[1]!.replace(/^\[(.*)\]$/, '$1');
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      return;
    }
    metrics.text().then(
      (text) => res.writeHead(200, { 'Content-Type': metrics.contentType }).end(text),
      (err: unknown) => res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`${String(err)}\n`),
    );
  });
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(Number(m[2]), host, () => res());
  });
  return server;
}

function errorFields(err: unknown): Record<string, unknown> {
  if (err instanceof PortwallError) return { code: err.code, message: err.message, field: err.field };
  return { message: err instanceof Error ? err.message : String(err) };
}
