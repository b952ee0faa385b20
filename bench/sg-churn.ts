/**
 * Sustained churn through the agent (section `churn`): a `portwall agent` process serving a workload (1000
 * ports by default) is sent a fixed rate of mixed changes for a fixed time, open loop — each request leaves at
 * its scheduled time whether or not earlier ones were answered, over a kept-alive pool of a few connections —
 * so a change's latency (from its scheduled time to its answer) includes any queueing, in the client's pool, in
 * the agent's coalescer or behind its commits.
 *
 * The mix: SLOTS port slots (`extraPort`), each cycling add → change groups → change IP → remove, and started
 * a quarter in each stage (the agent's state file holds the three quarters whose port exists), so the four kinds
 * are equally likely from the first second. Each op draws a kind at random, then a random slot with nothing in
 * flight that is at that stage (another kind when none is), and sends that slot's next step. One op in
 * GROUP_EVERY is instead a rule added to / removed from `sg-ops` (used by up to 1000 ports), when no group change
 * is in flight. Before the schedule, the same mix runs untimed one op at a time (4 × WARM_UP_ROUNDS ops), so
 * the rows measure an agent that runs optimised code, as one does after its first minutes.
 *
 * Rows: one per op kind (latency of each 200 answer), `timeline` (samples: each second's p99, by scheduled
 * time; info: each second's p50, p99, requests sent and answers received), `agent-cpu` (the agent process's
 * utime + stime over the run, % of one core). Non-200 answers are counted by status in the rows' info; a 5xx
 * or a transport error marks the row's status, as does an op that could not be sent because MAX_IN_FLIGHT were.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { Agent } from 'node:http';
import { performance } from 'node:perf_hooks';

import { AGENT_TOOL, type RunningAgent, agentCall, processMemory, startAgent } from './sg-agent.js';
import { type Cleanup, type Progress, type Row, WARM_UP_ROUNDS, errorText, finish, newRow, quantile, sleep } from './sg-harness.js';
import { OPS_GROUP, type Workload } from './workload.js';
import { mulberry32 } from '../test/helpers/prng.js';

export const CHURN_KINDS = ['add', 'change-groups', 'change-ip', 'remove', 'rule-add', 'rule-remove'] as const;
type Kind = (typeof CHURN_KINDS)[number];
const PORT_STEPS = ['add', 'change-groups', 'change-ip', 'remove'] as const;
const SLOTS = 400;
/** One op in this many is a group rule change. */
const GROUP_EVERY = 50;
/**
 * Ops in flight (sent or queued in the client's pool, not answered) beyond which a scheduled op is not sent
 * (the agent fell behind by this many; at 500/s, 0.7 s). Below SLOTS, so a port op always finds an idle slot.
 */
const MAX_IN_FLIGHT = 350;
/** After the schedule, how long answers are waited for (the request timeout is 30 s). */
const DRAIN_MS = 35_000;

export interface ChurnOptions {
  /** Ops per second. */
  rate: number;
  seconds: number;
  /** Connections of the kept-alive pool (default 16). */
  sockets?: number;
  seed?: number;
  progress: Progress;
  /**
   * Also sample the agent process every this many milliseconds: rows `agent-rss` (MB, VmRSS) and `agent-fds`
   * (open file descriptors), one sample per tick, with the tick times in their info (the soak's curves).
   */
  sampleEveryMs?: number;
  /** One op in this many is a group rule change (default GROUP_EVERY; 0: none, port changes only). */
  groupEvery?: number;
}

/** Clock ticks per second of /proc/<pid>/stat's utime and stime (getconf CLK_TCK; 100 on Linux). */
let clkTck: number | undefined;
function clockTicks(): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5000 }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/** utime + stime of a process (all its threads), in clock ticks. */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces and parentheses): state is field 3, utime 14, stime 15.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}


const r3 = (x: number) => Math.round(x * 1000) / 1000;

export async function churnCases(cleanup: Cleanup, w: Workload, opts: ChurnOptions): Promise<Row[]> {
  const size = w.opts.ports;
  const sockets = opts.sockets ?? 16;
  const total = Math.max(1, Math.round(opts.rate * opts.seconds));
  const groupEvery = opts.groupEvery ?? GROUP_EVERY;
  const info = { rate: opts.rate, seconds: opts.seconds, sockets, groupChangeEvery: opts.groupEvery ?? GROUP_EVERY };
  const rows = new Map<Kind, Row>(CHURN_KINDS.map((k) => [k, newRow('churn', k, size, AGENT_TOOL, 'ms', { ...info })]));
  const timeline = newRow('churn', 'timeline', size, AGENT_TOOL, 'ms', { ...info });
  const cpu = newRow('churn', 'agent-cpu', size, AGENT_TOOL, '%', { ...info });
  const rss = newRow('churn', 'agent-rss', size, AGENT_TOOL, 'MB', { ...info, everyMs: opts.sampleEveryMs });
  const fds = newRow('churn', 'agent-fds', size, AGENT_TOOL, 'count', { ...info, everyMs: opts.sampleEveryMs });
  const all = [...rows.values(), timeline, cpu, ...(opts.sampleEveryMs ? [rss, fds] : [])];
  let sampler: NodeJS.Timeout | undefined;
  const pool = new Agent({ keepAlive: true, maxSockets: sockets });
  let agent: RunningAgent | undefined;
  try {
    // Slot s starts at stage s % 4: no port, its port as added, as after the group change, as after the IP change.
    const stage = Array.from({ length: SLOTS }, (_, s) => s % PORT_STEPS.length);
    const bodyOf = (slot: number, kind: Kind) =>
      kind === 'add' ? w.extraPort(slot, 'a') : kind === 'change-groups' ? w.extraPort(slot, 'b') : w.withNewIp(w.extraPort(slot, 'b'), slot);
    const seeded = stage.flatMap((k, slot) => (k === 0 ? [] : [bodyOf(slot, PORT_STEPS[k - 1]!)]));
    for (const row of all) row.info = { ...row.info, slots: SLOTS, extraPortsAtStart: seeded.length };
    opts.progress.update(`churn @${size}: start the agent (full sync from its state file)`);
    agent = await startAgent(cleanup, w, `sg-churn${size}`, w.with({ ports: seeded }));
    const { socketPath } = agent;
    const pid = agent.child.pid!;
    const port = (id: string) => `/v1/ports/${encodeURIComponent(id)}`;

    const random = mulberry32(opts.seed ?? 1);
    // Idle slots by the stage they are at (the kind of their next op).
    const idle = PORT_STEPS.map((_, k) => stage.flatMap((x, slot) => (x === k ? [slot] : [])));
    const idleCount = () => idle.reduce((n, l) => n + l.length, 0);
    let groupBusy = false;
    let groupChanges = 0;
    let inFlight = 0, maxInFlight = 0, notSent = 0;
    const seconds = Math.ceil(opts.seconds);
    const perSecond = Array.from({ length: seconds }, () => ({ latencies: [] as number[], sent: 0, answered: 0 }));
    let answeredAfter = 0;
    const errors = new Map<Kind, Map<string, number>>();
    const firstError = new Map<Kind, string>();
    let lastAnswer = 0;

    // Warm the pool's connections (not measured), so the first second does not pay for connecting.
    await Promise.all(Array.from({ length: sockets }, () => agentCall(socketPath, 'GET', '/v1/status', undefined, pool)));
    const status = async () => {
      const a = await agentCall(socketPath, 'GET', '/v1/status', undefined, pool);
      const doc = JSON.parse(a.text) as { genid?: number; desired?: { ports?: number } | null };
      return { genid: doc.genid ?? NaN, ports: doc.desired?.ports ?? NaN };
    };
    // Op i of the mix: its kind and request, and what to do once it is answered (its slot is idle again).
    const pick = (i: number): { kind: Kind; method: string; url: string; body: unknown; release: () => void } => {
      let kind: Kind;
      let method = 'PUT', url: string, body: unknown;
      let release: () => void;
      if (groupEvery > 0 && i % groupEvery === groupEvery - 1 && !groupBusy) {
        const add = groupChanges % 2 === 0;
        kind = add ? 'rule-add' : 'rule-remove';
        url = `/v1/security-groups/${encodeURIComponent(OPS_GROUP)}`;
        body = add ? w.opsGroup((groupChanges >> 1) % 1000) : w.opsGroup();
        groupChanges++;
        groupBusy = true;
        release = () => { groupBusy = false; };
      } else {
        let k = Math.floor(random() * PORT_STEPS.length);
        while (idle[k]!.length === 0) k = (k + 1) % PORT_STEPS.length; // some list is not empty: idleCount() > 0
        const list = idle[k]!;
        const at = Math.floor(random() * list.length);
        const slot = list[at]!;
        list[at] = list[list.length - 1]!;
        list.pop();
        kind = PORT_STEPS[k]!;
        stage[slot] = (k + 1) % PORT_STEPS.length;
        url = port(w.extraPort(slot, 'a').id);
        if (kind === 'remove') method = 'DELETE';
        else body = bodyOf(slot, kind);
        release = () => { idle[stage[slot]!]!.push(slot); };
      }
      return { kind, method, url, body, release };
    };

    // Untimed first, one op at a time: the same mix, so that the agent runs optimised code (as a long-lived one
    // does) before the schedule starts; WARM_UP_ROUNDS says why. The timed run then starts from wherever the
    // slots are.
    const warmUpOps = WARM_UP_ROUNDS * PORT_STEPS.length;
    for (let i = 0; i < warmUpOps; i++) {
      const op = pick(i);
      opts.progress.update(`churn @${size}: warm-up`, `${i}/${warmUpOps}`);
      try {
        const answer = await agentCall(socketPath, op.method, op.url, op.body, pool);
        if (answer.status !== 200) throw new Error(`warm-up op ${i} (${op.kind}): HTTP ${answer.status}: ${answer.text.slice(0, 200)}`);
      } finally {
        op.release();
      }
    }
    const liveAtStart = stage.filter((x) => x !== 0).length;
    for (const row of all) row.info = { ...row.info, warmUpOps };

    const before = await status();

    const interval = 1000 / opts.rate;
    const cpu0 = cpuTicks(pid);
    const client0 = process.cpuUsage();
    const t0 = performance.now();
    if (opts.sampleEveryMs) {
      const at: number[] = [];
      const tick = () => {
        try {
          rss.samples.push(processMemory(pid).rssMB);
          fds.samples.push(readdirSync(`/proc/${pid}/fd`).length);
          at.push(Math.round((performance.now() - t0) / 100) / 10);
        } catch {
          // the agent is gone: the rows end there (its status says why)
        }
      };
      rss.info = { ...rss.info, atS: at };
      fds.info = { ...fds.info, atS: at };
      tick();
      sampler = setInterval(tick, opts.sampleEveryMs);
    }

    const send = (i: number): void => {
      const scheduled = t0 + i * interval;
      const { kind, method, url, body, release } = pick(i);
      const sec = Math.min(seconds - 1, Math.floor((scheduled - t0) / 1000));
      perSecond[sec]!.sent++;
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      const fail = (what: string, text: string) => {
        const byKind = errors.get(kind) ?? new Map<string, number>();
        byKind.set(what, (byKind.get(what) ?? 0) + 1);
        errors.set(kind, byKind);
        if (!firstError.has(kind)) firstError.set(kind, `${what}: ${text.slice(0, 200)}`);
      };
      agentCall(socketPath, method, url, body, pool).then(
        (answer) => {
          const now = performance.now();
          if (answer.status === 200) {
            const ms = now - scheduled;
            rows.get(kind)!.samples.push(ms);
            perSecond[sec]!.latencies.push(ms);
            const done = Math.floor((now - t0) / 1000);
            if (done < seconds) perSecond[done]!.answered++;
            else answeredAfter++;
          } else fail(`HTTP ${answer.status}`, answer.text);
          lastAnswer = now;
        },
        (e: unknown) => fail('transport', errorText(e)),
      ).catch((e: unknown) => fail('client', errorText(e))).finally(() => {
        inFlight--;
        release();
      });
    };

    // The schedule: op i is due at t0 + i × interval; whatever is due is sent at once, then sleep to the next.
    let issued = 0;
    const end = t0 + opts.seconds * 1000;
    while (issued < total && performance.now() < end + 5000) {
      const due = Math.min(total, Math.floor((performance.now() - t0) / interval) + 1);
      for (; issued < due; issued++) {
        if (inFlight >= MAX_IN_FLIGHT || idleCount() === 0) notSent++;
        else send(issued);
      }
      opts.progress.update(`churn @${size}`, `${Math.min(opts.seconds, Math.floor((performance.now() - t0) / 1000))}/${opts.seconds} s, ${inFlight} in flight`);
      await sleep(Math.max(0, t0 + issued * interval - performance.now()));
    }
    notSent += total - issued;
    const drainUntil = performance.now() + DRAIN_MS;
    while (inFlight > 0 && performance.now() < drainUntil) await sleep(5);
    const wallS = (performance.now() - t0) / 1000;
    const cpuS = (cpuTicks(pid) - cpu0) / clockTicks();
    const client = process.cpuUsage(client0);
    const after = await status();
    // Slots between add and remove hold a port now; with every op answered, the agent's desired state agrees.
    const live = stage.filter((x) => x !== 0).length;

    const answered = [...rows.values()].reduce((n, r) => n + r.samples.length, 0);
    const summary = {
      ops: total, answered200: answered, answeredAfterSchedule: answeredAfter, notSent, stillInFlight: inFlight, maxInFlight,
      commits: after.genid - before.genid, desiredPorts: after.ports, expectedPorts: before.ports - liveAtStart + live,
      achievedOpsPerS: Math.round((answered / Math.max(opts.seconds, (lastAnswer - t0) / 1000)) * 10) / 10,
      errors: Object.fromEntries([...errors].map(([k, m]) => [k, Object.fromEntries(m)])),
    };
    for (const [kind, row] of rows) {
      const errs = errors.get(kind);
      if (errs) {
        row.info = { ...row.info, errors: Object.fromEntries(errs), firstError: firstError.get(kind) };
        if ([...errs.keys()].some((k) => k === 'transport' || /^HTTP 5/.test(k))) row.status = `error: ${firstError.get(kind)}`.slice(0, 300);
      }
    }
    const sorted = perSecond.map((s) => [...s.latencies].sort((a, b) => a - b));
    timeline.samples = sorted.filter((s) => s.length).map((s) => quantile(s, 0.99));
    timeline.info = {
      ...timeline.info, ...summary,
      p50PerS: sorted.map((s) => (s.length ? r3(quantile(s, 0.5)) : null)),
      p99PerS: sorted.map((s) => (s.length ? r3(quantile(s, 0.99)) : null)),
      sentPerS: perSecond.map((s) => s.sent),
      answeredPerS: perSecond.map((s) => s.answered),
    };
    const hardErrors = [...errors.values()].reduce((n, m) => n + [...m].filter(([k]) => k === 'transport' || /^HTTP 5/.test(k)).reduce((a, [, c]) => a + c, 0), 0);
    if (notSent > 0) timeline.status = `error: ${notSent} ops not sent (${MAX_IN_FLIGHT} in flight: the agent fell behind)`;
    else if (inFlight > 0) timeline.status = `error: ${inFlight} ops unanswered ${DRAIN_MS / 1000} s after the schedule`;
    else if (hardErrors > 0) timeline.status = `error: ${hardErrors} ops failed (5xx or transport)`;
    else if (errors.size === 0 && after.ports !== summary.expectedPorts) timeline.status = `error: the agent holds ${after.ports} ports, expected ${summary.expectedPorts}`;
    cpu.samples = [Math.round((cpuS / wallS) * 1000) / 10];
    cpu.info = {
      ...cpu.info, agentCpuS: r3(cpuS), wallS: r3(wallS), clockTicks: clockTicks(), agentStartMs: Math.round(agent.startMs),
      benchClientCpuPct: Math.round(((client.user + client.system) / 1e6 / wallS) * 1000) / 10,
    };
  } catch (e) {
    for (const row of all) if (row.status === 'ok') row.status = errorText(e);
  } finally {
    if (sampler) clearInterval(sampler);
    if (agent) await agent.stop([pool]);
    else pool.destroy();
  }
  return all.map(finish);
}
