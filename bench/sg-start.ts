/**
 * Adopt-on-start: a namespace already holding the workload's state (loaded by a handle that is then closed)
 * is taken over, as after a restart:
 * - by a fresh library handle: `apply(state)` finds nothing to commit (case `adopt`) — from the adopt record
 *   the last handle left as it closed (a look at set definitions, a compile, a digest), or, when the record
 *   cannot vouch, by listing, compiling and diffing (info `fromRecord` / `byListing` count which); another
 *   fresh handle's `apply(state + one port)` adopts (by listing: the state differs from the record's) and
 *   commits that port (`adopt-first-change`);
 * - by a freshly spawned `portwall agent` with the same state file: from the spawn to its first 200 on
 *   GET /v1/status (`adopt-ready`; it listens once it has adopted), and to the answer of its first
 *   PUT /v1/ports right after (`adopt-first-change`); that agent then deletes the port again, is left quiet until
 *   it has written its adopt record, and is killed with SIGKILL: the next agent's start is `adopt-ready-after-kill`.
 * Commits made while adopting are counted from the ruleset generation (none expected: spec S12).
 */
import { spawnSync } from 'node:child_process';

import { Portwall } from '../src/apply/portwall.js';
import { binding } from '../src/native.js';
import { AGENT_PROCESS, CLI, agentCall, startAgent } from './sg-agent.js';
import { type Cleanup, type Progress, type Row, errorText, finish, newRow, repeat, sleep, timed } from './sg-harness.js';
import type { Netns } from '../test/helpers/netns.js';
import type { Workload } from './workload.js';

export interface StartOptions {
  /** Rounds of each (a fresh handle, or a fresh agent process, per round). */
  reps: number;
  budgetMs: number;
  progress: Progress;
}

export async function startCases(cleanup: Cleanup, w: Workload, opts: StartOptions): Promise<Row[]> {
  const size = w.opts.ports;
  const ns = cleanup.netns(`sg-start${size}`);
  const [adopt, libFirst] = ['adopt', 'adopt-first-change'].map((c) => newRow('start', c, size, 'portwall apply', 'ms', { handle: 'fresh, in the benchmark\'s warm process' }));
  const [ready, agentFirst] = ['adopt-ready', 'adopt-first-change'].map((c) => newRow('start', c, size, AGENT_PROCESS, 'ms', { process: 'spawned per round, same state file' }));
  const afterKill = newRow('start', 'adopt-ready-after-kill', size, AGENT_PROCESS, 'ms', {
    process: 'spawned after the last one was killed with SIGKILL, once it had been quiet (its adopt record written, --record-idle-ms)',
  });
  const rows = [adopt!, libFirst!, ready!, agentFirst!, afterKill];
  const genid = () => binding().nftGenid(ns.name);
  try {
    opts.progress.update(`start @${size}: loading the state to adopt`);
    // Also after each round: the extra port's rule profile, unused once the port is gone, would otherwise stay
    // in the kernel (no handle lives long enough to collect it) and the next adoption would commit its removal.
    const settle = async () => {
      const pw = Portwall.open({ netns: ns.name, profileGc: false });
      try {
        const ms = await timed(() => pw.apply(w.state));
        await pw.collectProfiles();
        return ms;
      } finally {
        await pw.close();
      }
    };
    const loadMs = await settle();
    const extra = w.extraPort(0, 'a');

    let libCommits = 0;
    // How each adoption went: from the adopt record the last handle left, or by a full listing.
    const adoptedFrom = { record: 0, listing: 0 };
    await repeat(opts.reps, opts.budgetMs, async (r) => {
      opts.progress.update(`start @${size}: a fresh handle adopts`, `round ${r + 1}/${opts.reps}`);
      const g0 = await genid();
      const pw = Portwall.open({ netns: ns.name });
      try {
        adopt!.samples.push(await timed(async () => {
          const from = (await pw.apply(w.state)).adoptedFrom;
          if (from) adoptedFrom[from]++;
        }));
      } finally {
        await pw.close();
      }
      libCommits += (await genid()) - g0;
      const pw2 = Portwall.open({ netns: ns.name });
      try {
        libFirst!.samples.push(await timed(() => pw2.apply(w.with({ ports: [extra] }))));
      } finally {
        await pw2.close();
      }
      await settle();
    });

    // The floor of any agent start: node starting and loading the CLI's modules.
    const cliVersionMs = await timed(() => spawnSync(process.execPath, [CLI, '--version'], { stdio: 'ignore', timeout: 30_000 }));
    let agentCommits = 0;
    const url = `/v1/ports/${encodeURIComponent(extra.id)}`;
    await repeat(opts.reps, opts.budgetMs, async (r) => {
      opts.progress.update(`start @${size}: a fresh ${AGENT_PROCESS} adopts`, `round ${r + 1}/${opts.reps}`);
      const g0 = await genid();
      const agent = await startAgent(cleanup, w, '', w.state, { ns });
      try {
        ready!.samples.push(agent.startMs);
        agentCommits += (await genid()) - g0;
        let status = 0;
        const putMs = await timed(async () => { status = (await agentCall(agent.socketPath, 'PUT', url, extra)).status; });
        if (status !== 200) throw new Error(`PUT ${url}: HTTP ${status}`);
        agentFirst!.samples.push(agent.startMs + putMs);
        // Back to the file's state, then quiet until the agent has collected the port's profile and written the
        // record of what it holds; then killed, as by the OOM killer: its successor adopts from that record.
        const gone = (await agentCall(agent.socketPath, 'DELETE', url)).status;
        if (gone !== 200) throw new Error(`DELETE ${url}: HTTP ${gone}`);
        await recordWritten(ns, genid);
        agent.child.kill('SIGKILL');
        await new Promise((res) => (agent.child.exitCode !== null || agent.child.signalCode !== null ? res(undefined) : agent.child.once('exit', res)));
      } finally {
        await agent.stop();
      }
      const g1 = await genid();
      const next = await startAgent(cleanup, w, '', w.state, { ns });
      try {
        afterKill.samples.push(next.startMs);
        agentCommits += (await genid()) - g1;
      } finally {
        await next.stop();
      }
      await settle();
    });
    for (const row of [adopt!, libFirst!]) row.info = { ...row.info, loadMs: Math.round(loadMs), commitsWhileAdopting: libCommits };
    adopt!.info = { ...adopt!.info, fromRecord: adoptedFrom.record, byListing: adoptedFrom.listing };
    for (const row of [ready!, agentFirst!, afterKill]) row.info = { ...row.info, cliVersionMs: Math.round(cliVersionMs), commitsWhileAdopting: agentCommits };
  } catch (e) {
    for (const row of rows) if (row.status === 'ok') row.status = errorText(e);
  } finally {
    cleanup.drop(ns);
  }
  return rows.map(finish);
}

/**
 * Waits (bounded, 15 s) until the inet table's adopt record names the kernel's generation and the generation
 * has then stayed put for 1.5 s: the agent wrote the record after its last commit, its profile collector (which
 * also waits for a quiet second) has run, and nothing more is coming (read with the nft tool, the benchmark's
 * oracle).
 */
async function recordWritten(ns: Netns, genid: () => Promise<number>): Promise<void> {
  let since: { gen: number; at: number } | undefined;
  for (const t0 = Date.now(); Date.now() - t0 < 15_000; await sleep(50)) {
    const gen = await genid();
    const named = ns.exec('nft', ['list', 'set', 'inet', 'portwall', 'adopt_record']).includes(`comment "gen ${gen} `);
    if (!named) since = undefined;
    else if (since?.gen !== gen) since = { gen, at: Date.now() };
    else if (Date.now() - since.at >= 1500) return;
  }
  throw new Error('the agent wrote no lasting adopt record within 15 s of its last change');
}
