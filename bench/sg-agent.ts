/**
 * One-port changes through the agent's socket API: a `portwall agent` process (the CLI, as deployed) in a
 * fresh namespace, started with the workload as its state file; each change is one HTTP request over the Unix
 * socket over one kept-alive connection, timed from sending the request to receiving the answer (which comes
 * after the commit). Also the agent's full sync (`PUT /v1/state`) and its RSS after starting with the workload.
 * `startAgent` and `agentCall` serve the churn, members and start cases too.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import type { StateInput } from '../src/model/schema.js';
import { call, type Answer } from '../test/helpers/agent-api.js';
import type { Netns } from '../test/helpers/netns.js';
import { type Cleanup, type Progress, type Row, WARM_UP_ROUNDS, errorText, finish, newRow, repeat, sleep, timed } from './sg-harness.js';
import type { Workload } from './workload.js';

/** The `portwall` command as installed: the bundled CLI package.json's `bin` names (scripts/bundle-cli.mjs). */
export const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli.bundle.js');
export const AGENT_TOOL = 'portwall agent (socket API)';
/** The agent as a process (its memory, its start), not a request path. */
export const AGENT_PROCESS = 'portwall agent';

// One kept-alive connection per socket, as an orchestrator's client would hold it.
const keepAlive = new Agent({ keepAlive: true, maxSockets: 1 });

/**
 * One request over the socket; resolves with the status (and the answer), rejects on a transport error.
 * `agent` is the connection pool (default: the one kept-alive connection above).
 */
export function agentCall(socketPath: string, method: string, url: string, body?: unknown, agent: Agent = keepAlive): Promise<Answer> {
  return call(socketPath, method, url, body, 30_000, agent);
}

/** A `portwall agent` process serving a workload in a namespace of its own. */
export interface RunningAgent {
  readonly ns: Netns;
  readonly socketPath: string;
  readonly child: ChildProcess;
  /** From spawning the process to its first 200 on GET /v1/status (the full sync from the state file). */
  readonly startMs: number;
  /** Closes the given connection pools, stops the agent (SIGTERM, SIGKILL after 10 s), removes its namespace and files. */
  stop(pools?: Agent[]): Promise<void>;
}

/**
 * Starts `portwall agent` (the CLI, as deployed) in a fresh namespace with the workload (or `state`, a change of
 * it) as its state file — or in `where.ns`, a namespace the caller owns (and keeps: `stop()` leaves it).
 */
export async function startAgent(cleanup: Cleanup, w: Workload, label: string, state: StateInput = w.state, where: { ns?: Netns } = {}): Promise<RunningAgent> {
  const ns = where.ns ?? cleanup.netns(label);
  const dir = mkdtempSync(path.join(tmpdir(), 'pw-bench-agent-'));
  const socketPath = path.join(dir, 'portwall.sock');
  const stateFile = path.join(dir, 'state.json');
  let child: ChildProcess | undefined;
  const stop = async (pools: Agent[] = []) => {
    for (const p of new Set([keepAlive, ...pools])) p.destroy(); // idle kept-alive connections would hold the agent's close()
    if (child) {
      const c = child;
      c.kill('SIGTERM');
      await new Promise<void>((res) => {
        if (c.exitCode !== null || c.signalCode !== null) return res();
        const timer = setTimeout(() => { cleanup.kill(c); res(); }, 10_000);
        c.once('exit', () => { clearTimeout(timer); res(); });
      });
    }
    if (!where.ns) cleanup.drop(ns);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    writeFileSync(stateFile, JSON.stringify(state));
    child = cleanup.proc(spawn(process.execPath, [CLI, 'agent', '--netns', ns.name, '--state', stateFile, '--socket', socketPath, '--check-interval', '0', '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'pipe'] }));
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const c = child;
    const startMs = await timed(() => waitReady(socketPath, c, () => stderr));
    return { ns, socketPath, child: c, startMs, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** add / change-groups / change-ip / remove of one port through the agent, as the library rows do. */
export async function agentCases(cleanup: Cleanup, w: Workload, opts: { reps: number; budgetMs: number; progress: Progress }): Promise<Row[]> {
  const size = w.opts.ports;
  const info = { transport: 'HTTP/1.1 over a Unix socket, one request per change, answered after the commit', warmUpRounds: WARM_UP_ROUNDS };
  const rows = new Map(['add', 'change-groups', 'change-ip', 'remove'].map((c) => [c, newRow('one-port', c, size, AGENT_TOOL, 'ms', info)]));
  opts.progress.update(`agent @${size}: start (full sync from its state file)`);
  let agent: RunningAgent | undefined;
  try {
    agent = await startAgent(cleanup, w, `sg-agt${size}`);
    const { socketPath } = agent;
    for (const row of rows.values()) row.info = { ...row.info, agentStartMs: Math.round(agent.startMs) };
    const port = (id: string) => `/v1/ports/${encodeURIComponent(id)}`;
    const stepsOf = (r: number): [string, () => Promise<{ status: number; text: string }>][] => {
      const a = w.extraPort(r % 1000, 'a');
      const b = w.extraPort(r % 1000, 'b');
      const c = w.withNewIp(b, r);
      return [
        ['add', () => agentCall(socketPath, 'PUT', port(a.id), a)],
        ['change-groups', () => agentCall(socketPath, 'PUT', port(b.id), b)],
        ['change-ip', () => agentCall(socketPath, 'PUT', port(c.id), c)],
        ['remove', () => agentCall(socketPath, 'DELETE', port(a.id))],
      ];
    };
    // A freshly started agent runs its request path unoptimised at first: untimed rounds (on ports the timed
    // loop does not use) so the rows measure a warm agent, as the library rows measure a warm handle.
    for (let r = 0; r < WARM_UP_ROUNDS; r++) for (const [, send] of stepsOf(999 - r)) await send();
    // As the library rows do: the rule profiles the warm-up's ports left go before the timed loop (the agent's
    // handle collects them after a quiet second; its status counts those left).
    await profilesCollected(socketPath);
    await repeat(opts.reps, opts.budgetMs, async (r) => {
      for (const [kase, send] of stepsOf(r)) {
        const row = rows.get(kase)!;
        let answer!: { status: number; text: string };
        const ms = await timed(async () => { answer = await send(); });
        if (answer.status !== 200) {
          row.status = `HTTP ${answer.status}: ${answer.text.slice(0, 200)}`;
          return false;
        }
        row.samples.push(ms);
      }
      opts.progress.update(`agent @${size}`, `rep ${r + 1}/${opts.reps}`);
    });
  } catch (e) {
    for (const row of rows.values()) if (row.status === 'ok') row.status = errorText(e);
  } finally {
    await agent?.stop();
  }
  return [...rows.values()].map(finish);
}

/** Waits (at most 10 s) until the agent's status counts no unused rule profile. */
async function profilesCollected(socketPath: string): Promise<void> {
  const until = performance.now() + 10_000;
  for (;;) {
    const answer = await agentCall(socketPath, 'GET', '/v1/status');
    if (answer.status !== 200) return; // the timed loop's first request reports what is wrong
    const left = (JSON.parse(answer.text) as { unusedProfiles?: number }).unusedProfiles;
    if (!left) return;
    if (performance.now() > until) throw new Error(`the agent still holds ${left} unused rule profiles after 10 s`);
    await sleep(250);
  }
}

async function waitReady(socketPath: string, child: ChildProcess, stderr: () => string): Promise<void> {
  const t0 = performance.now();
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the agent exited (${child.exitCode}): ${stderr().slice(-500)}`);
    if (existsSync(socketPath)) {
      const s = await agentCall(socketPath, 'GET', '/v1/status').catch(() => undefined);
      if (s?.status === 200) return;
    }
    if (performance.now() - t0 > 120_000) throw new Error('the agent did not answer within 120 s');
    // Often: the start is timed to the answer, and a 20 ms poll added ~10 ms to it on average.
    await sleep(2);
  }
}

/** A state that holds nothing: what an agent started before its orchestrator's first full sync serves. */
export const EMPTY_STATE: StateInput = { networks: [], security_groups: [], ports: [] };

/**
 * Full sync through the agent's socket API: an agent started with an empty state gets the whole workload in
 * one `PUT /v1/state`, timed to its answer (which comes after the commit). Between rounds an empty state
 * (untimed) takes the kernel back to nothing; one untimed round first, so a warm agent is measured as the
 * library's row measures a fresh handle in a warm process.
 */
export async function agentFullSyncCase(cleanup: Cleanup, w: Workload, opts: { reps: number; budgetMs: number; settleMs: number; progress: Progress }): Promise<Row> {
  const size = w.opts.ports;
  const row = newRow('full-sync', 'full-sync', size, AGENT_TOOL, 'ms', { request: 'PUT /v1/state of the whole state into an agent holding nothing' });
  let agent: RunningAgent | undefined;
  try {
    opts.progress.update(`full sync @${size}: ${AGENT_TOOL}, PUT /v1/state`);
    agent = await startAgent(cleanup, w, `sg-agsync${size}`, EMPTY_STATE);
    const { socketPath } = agent;
    // Serialised once: the agent's read and parse of the body are timed, the benchmark's stringify is not.
    const body = JSON.stringify(w.state);
    const put = async (doc: unknown) => {
      const a = await agentCall(socketPath, 'PUT', '/v1/state', doc);
      if (a.status !== 200) throw new Error(`PUT /v1/state: HTTP ${a.status}: ${a.text.slice(0, 200)}`);
    };
    await put(body);
    await repeat(opts.reps, opts.budgetMs, async (r) => {
      await put(EMPTY_STATE);
      await sleep(opts.settleMs);
      opts.progress.update(`full sync @${size}: ${AGENT_TOOL}`, `round ${r + 1}/${opts.reps}`);
      row.samples.push(await timed(() => put(body)));
    });
    row.info = { ...row.info, bodyBytes: body.length, agentStartMs: Math.round(agent.startMs) };
  } catch (e) {
    row.status = errorText(e);
  } finally {
    await agent?.stop();
  }
  return finish(row);
}

/** VmRSS and VmHWM (the peak) of a process in MB (10^6 bytes), from /proc/PID/status. */
export function processMemory(pid: number): { rssMB: number; hwmMB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kB = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  const mb = (x: number) => Math.round((x * 1024) / 1e5) / 10;
  return { rssMB: mb(kB('VmRSS')), hwmMB: mb(kB('VmHWM')) };
}

/** The RSS of a `portwall agent` process once it has started with the workload as its state file (a full sync). */
export async function agentRssCase(cleanup: Cleanup, w: Workload, progress: Progress): Promise<Row> {
  const size = w.opts.ports;
  const row = newRow('memory', 'rss-after-full-sync', size, AGENT_PROCESS, 'MB');
  let agent: RunningAgent | undefined;
  try {
    progress.update(`memory @${size}: ${AGENT_PROCESS} (full sync from its state file)`);
    agent = await startAgent(cleanup, w, `sg-agrss${size}`);
    const m = processMemory(agent.child.pid!);
    row.samples.push(m.rssMB);
    row.info = { vmHwmMB: m.hwmMB, agentStartMs: Math.round(agent.startMs) };
  } catch (e) {
    row.status = errorText(e);
  } finally {
    await agent?.stop();
  }
  return finish(row);
}
