/**
 * Update latency through one library handle after a full sync: one port added, changed (groups, fixed IP)
 * and removed; a rule added to and removed from a group many ports use; a port joining and leaving a big
 * remote group. Each case runs through the incremental API (`upsertPort`, `removePort`, `upsertGroup`) and,
 * for comparison, as `apply(whole state ± the change)` on the same handle.
 *
 * A method that still rejects with "not implemented" marks its row n/a; the state it would have reached is
 * then reached by an untimed `apply`, so the next case starts from where it expects.
 */
import { Portwall, type ApplyResult } from '../src/apply/portwall.js';
import type { StateInput } from '../src/model/schema.js';
import {
  type Cleanup, type Progress, type Row, type Section, NOT_IMPLEMENTED, WARM_UP_ROUNDS, errorText, finish, isNotImplemented, newRow, quantile, repeat, timed,
} from './sg-harness.js';
import { type Workload } from './workload.js';

export interface UpdateOptions {
  /** Repetitions through the incremental API. */
  reps: number;
  /** Repetitions through `apply(state ± change)` (each costs a whole list/compile/diff). */
  applyReps: number;
  /** Time budget of each loop. */
  budgetMs: number;
  progress: Progress;
}

/** One change: its incremental call, and the whole state it leads to (built lazily, outside the timing). */
interface Step {
  case: string;
  incremental: (pw: Portwall) => Promise<ApplyResult>;
  state: () => StateInput;
}

export type Stages = Record<string, number[]>;

/** Cases for one size: one-port changes and group-rule changes, in a fresh namespace. */
export async function updateCases(cleanup: Cleanup, w: Workload, opts: UpdateOptions): Promise<Row[]> {
  const size = w.opts.ports;
  const ns = cleanup.netns(`sg-upd${size}`);
  try {
    const pw = Portwall.open({ netns: ns.name });
    opts.progress.update(`updates @${size}: full sync`);
    await pw.apply(w.state);
    const onePort = (r: number): Step[] => {
      const a = w.extraPort(r % 1000, 'a');
      const b = w.extraPort(r % 1000, 'b');
      const c = w.withNewIp(b, r);
      return [
        { case: 'add', incremental: (p) => p.upsertPort(a), state: () => w.with({ ports: [a] }) },
        { case: 'change-groups', incremental: (p) => p.upsertPort(b), state: () => w.with({ ports: [b] }) },
        { case: 'change-ip', incremental: (p) => p.upsertPort(c), state: () => w.with({ ports: [c] }) },
        { case: 'remove', incremental: (p) => p.removePort(a.id), state: () => w.state },
      ];
    };
    const groupRule = (r: number): Step[] => {
      const grown = w.opsGroup(r);
      const base = w.opsGroup();
      return [
        { case: 'rule-add', incremental: (p) => p.upsertGroup(grown), state: () => w.with({ groups: [grown] }) },
        { case: 'rule-remove', incremental: (p) => p.upsertGroup(base), state: () => w.state },
      ];
    };
    const rows: Row[] = [];
    const info = { rulesPerPort: round1(w.rulesPerPort), tenants: w.tenants, warmUpRounds: WARM_UP_ROUNDS };
    rows.push(...await measure(pw, 'one-port', size, onePort, opts, `one-port @${size}`, info));
    const users = { ...info, groupUsers: w.opts.sharedUsers, groupRules: w.opsGroup().security_group_rules?.length ?? 0 };
    rows.push(...await measure(pw, 'group-rule', size, groupRule, opts, `group rule @${size} (${w.opts.sharedUsers} users)`, users));
    await pw.close();
    return rows;
  } finally {
    cleanup.drop(ns);
  }
}

/** A port joining and leaving `sg-clients` (w.opts.members members, referenced by w.opts.sharedUsers ports). */
export async function memberCases(cleanup: Cleanup, w: Workload, opts: UpdateOptions): Promise<{ rows: Row[]; fullSyncMs: number }> {
  const size = w.opts.ports;
  const ns = cleanup.netns('sg-mem');
  try {
    const pw = Portwall.open({ netns: ns.name });
    opts.progress.update(`members: full sync of ${size} ports + ${w.opts.members} members`);
    const fullSyncMs = await timed(() => pw.apply(w.state));
    const steps = (r: number): Step[] => {
      const j = r % w.opts.members;
      const out = w.member(j, false);
      return [
        { case: 'member-leave', incremental: (p) => p.upsertPort(out), state: () => w.with({ ports: [out] }) },
        { case: 'member-join', incremental: (p) => p.upsertPort(w.member(j, true)), state: () => w.state },
      ];
    };
    const info = { members: w.opts.members, referencingPorts: w.opts.sharedUsers, fullSyncMs: round1(fullSyncMs), warmUpRounds: WARM_UP_ROUNDS };
    const rows = await measure(pw, 'member', size, steps, opts, `members (${w.opts.members} in the group)`, info);
    await pw.close();
    return { rows, fullSyncMs };
  } finally {
    cleanup.drop(ns);
  }
}

/** The incremental loop, then the apply loop, on one handle; each leaves the kernel at the workload's state. */
async function measure(pw: Portwall, section: Section, size: number, stepsOf: (r: number) => Step[], opts: UpdateOptions, topic: string, info: Record<string, unknown>): Promise<Row[]> {
  const cases = stepsOf(0).map((s) => s.case);
  const inc = new Map(cases.map((c) => [c, newRow(section, c, size, 'portwall incremental', 'ms', info)]));
  const incStages: Stages = {};
  // Samples whose batch created a rule profile (a group combination new to the host): the kernel then validates
  // the whole table, so such samples are told apart in the row's info (docs/dataplane.md, "Measured").
  const newProfile = new Map<string, number[]>();
  // Untimed rounds first (on ports, members and rules the timed loop does not use): a long-lived handle runs
  // optimised code, and so does the agent's row, warmed the same way (WARM_UP_ROUNDS says how many and why).
  for (let k = 0; k < WARM_UP_ROUNDS; k++) {
    const r = 999 - k;
    for (const step of stepsOf(r)) await step.incremental(pw).catch(() => pw.apply(step.state()));
  }
  // The warm-up's ports left rule profiles no port uses; collected, the timed loop starts from the workload's
  // state alone, and a port of a group combination new to the host still creates its profile there.
  await pw.collectProfiles();
  await repeat(opts.reps, opts.budgetMs, async (r) => {
    for (const step of stepsOf(r)) {
      const row = inc.get(step.case)!;
      if (row.status === 'ok') {
        try {
          let res!: ApplyResult;
          const ms = await timed(async () => { res = await step.incremental(pw); });
          row.samples.push(ms);
          collect(incStages, step.case, res, ms);
          if (NEW_PROFILE.test(res.plan)) {
            let at = newProfile.get(step.case);
            if (!at) newProfile.set(step.case, (at = []));
            at.push(row.samples.length - 1);
          }
          continue;
        } catch (e) {
          row.status = isNotImplemented(e) ? NOT_IMPLEMENTED : errorText(e);
        }
      }
      await pw.apply(step.state());
    }
    opts.progress.update(`${topic}: incremental`, `rep ${r + 1}/${opts.reps} ${summary(inc)}`);
    // Once every method is missing there is nothing left to measure here.
    return [...inc.values()].some((row) => row.status === 'ok');
  });

  const app = new Map(cases.map((c) => [c, newRow(section, c, size, 'portwall apply', 'ms', info)]));
  const appStages: Stages = {};
  await repeat(opts.applyReps, opts.budgetMs, async (r) => {
    for (const step of stepsOf(r)) {
      const row = app.get(step.case)!;
      const state = step.state();
      try {
        let res!: ApplyResult;
        const ms = await timed(async () => { res = await pw.apply(state); });
        row.samples.push(ms);
        collect(appStages, step.case, res, ms);
      } catch (e) {
        row.status = errorText(e);
        return false;
      }
    }
    opts.progress.update(`${topic}: apply(state ± change)`, `rep ${r + 1}/${opts.applyReps} ${summary(app)}`);
  });
  const withStages = (rows: Map<string, Row>, stages: Stages) => [...rows.values()].map((row) => {
    const s = stagesP50(stages, row.case);
    if (s) row.info = { ...row.info, stageP50: s };
    return finish(row);
  });
  for (const [c, at] of newProfile) {
    const row = inc.get(c)!;
    const others = row.samples.filter((_, i) => !at.includes(i)).sort((a, b) => a - b);
    row.info = { ...row.info, newProfileSamples: at.length, ...(others.length ? { p50WithoutNewProfile: Math.round(quantile(others, 0.5) * 1000) / 1000 } : {}) };
  }
  return [...withStages(inc, incStages), ...withStages(app, appStages)];
}

// A batch that made a rule profile adds its entry in `profiles` (its slot elements are jumps, docs/dataplane.md).
const NEW_PROFILE = /^add element \S+ \S+ profiles \(/m;

/**
 * Keeps the per-stage timings an ApplyResult reports (compile, list, diff, commit, cleanup) and `other`: the
 * call's wall time that no stage accounts for (validation before the stages, waiting behind the handle's
 * queue, event-loop and GC pauses).
 */
export function collect(stages: Stages, kase: string, res: ApplyResult | undefined, wallMs: number): void {
  let accounted = 0;
  for (const [k, v] of Object.entries(res?.timings ?? {})) {
    if (typeof v !== 'number') continue;
    (stages[`${kase}/${k}`] ??= []).push(v);
    accounted += v;
  }
  (stages[`${kase}/other`] ??= []).push(Math.max(0, wallMs - accounted));
  (stages[`${kase}/elements`] ??= []).push((res?.elements.added ?? 0) + (res?.elements.removed ?? 0));
  // Newer handles say whether they listed the kernel (adopted) for the change; counted, not a timing.
  const adopted = (res as { adopted?: unknown } | undefined)?.adopted;
  if (adopted !== undefined) (stages[`${kase}/adoptedCount`] ??= [0])[0]! += adopted === true ? 1 : 0;
}

export function stagesP50(stages: Stages, kase: string): Record<string, number> | undefined {
  const out: Record<string, number> = {};
  for (const [key, xs] of Object.entries(stages)) {
    if (!key.startsWith(`${kase}/`) || xs.length === 0) continue;
    const name = key.slice(kase.length + 1);
    const s = [...xs].sort((a, b) => a - b);
    out[name] = name === 'adoptedCount' ? s[0]! : round3(s[Math.ceil(s.length / 2) - 1]!);
  }
  return Object.keys(out).length ? out : undefined;
}

function summary(rows: Map<string, Row>): string {
  return [...rows.values()].map((row) => {
    if (row.status !== 'ok') return `${row.case} ${row.status === NOT_IMPLEMENTED ? 'n/a' : 'error'}`;
    const s = [...row.samples].sort((a, b) => a - b);
    return `${row.case} ${s.length ? `${s[Math.ceil(s.length / 2) - 1]!.toFixed(2)} ms` : '…'}`;
  }).join(', ');
}

const round1 = (x: number) => Math.round(x * 10) / 10;
const round3 = (x: number) => Math.round(x * 1000) / 1000;
