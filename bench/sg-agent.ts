/**
 * One-port changes through the agent's socket API: a `portwall agent` process (the CLI, as deployed) in a
 * fresh namespace, started with the workload as its state file; each change is one HTTP request over the Unix
 * socket over one kept-alive connection, timed from sending the request to receiving the answer (which comes
 * after the commit). `startAgent` and `agentCall` serve the churn section (sg-churn.ts) too.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import type { StateInput } from '../src/model/schema.js';
import { call, type Answer } from '../test/helpers/agent-api.js';
import type { Netns } from '../test/helpers/netns.js';
import { type Cleanup, type Progress, type Row, errorText, finish, newRow, repeat, sleep, timed } from './sg-harness.js';
import type { Workload } from './workload.js';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli.js');
export const AGENT_TOOL = 'portwall agent (socket API)';
const WARM_UP_ROUNDS = 25;

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
 * it) as its state file.
 */
export async function startAgent(cleanup: Cleanup, w: Workload, label: string, state: StateInput = w.state): Promise<RunningAgent> {
  const ns = cleanup.netns(label);
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
    cleanup.drop(ns);
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
  const info = { transport: 'HTTP/1.1 over a Unix socket, one request per change, answered after the commit' };
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

async function waitReady(socketPath: string, child: ChildProcess, stderr: () => string): Promise<void> {
  const t0 = performance.now();
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the agent exited (${child.exitCode}): ${stderr().slice(-500)}`);
    if (existsSync(socketPath)) {
      const s = await agentCall(socketPath, 'GET', '/v1/status').catch(() => undefined);
      if (s?.status === 200) return;
    }
    if (performance.now() - t0 > 120_000) throw new Error('the agent did not answer within 120 s');
    await sleep(20);
  }
}
