/**
 * Remote-group membership changed for many members at once, and the Neutron-style competitor, in a namespace
 * of their own holding the members workload (`sg-clients`: --members members, referenced through `sg-ops` by
 * --member-refs ports):
 * - `bulk-leave` / `bulk-join`: the first `bulk` member ports leave `sg-clients` and join it again, through one
 *   library handle as one `batch()` of port edits, and through a `portwall agent` as `bulk` PUT /v1/ports
 *   requests sent at once over a kept-alive pool (the agent coalesces them into batches), timed to the last
 *   answer;
 * - the same element deletes and adds to Neutron's member sets (portwall's iptables renderer's ipsets, loaded
 *   in the same namespace) through one `ipset restore -exist`, for the bulk and for the one-member change
 *   (member-leave / member-join); and for the one-member change also one `ipset del` / `ipset add -exist` per
 *   element, as Neutron's ipset manager does for a few members.
 * Member changes never rewrite iptables rules (Neutron's rules only name the sets), so no restore is timed.
 */
import { Agent } from 'node:http';

import { Portwall, type BatchResult } from '../src/apply/portwall.js';
import type { PortInput } from '../src/model/schema.js';
import { AGENT_TOOL, agentCall, startAgent, type RunningAgent } from './sg-agent.js';
import { renderFor } from './sg-competitors.js';
import { type Cleanup, type Progress, type Row, errorText, finish, newRow, repeat, timed } from './sg-harness.js';
import { collect, type Stages, stagesP50 } from './sg-updates.js';
import { CLIENTS_GROUP, type Workload } from './workload.js';

export interface MemberBulkOptions {
  /** Members changed at once. */
  bulk: number;
  reps: number;
  budgetMs: number;
  progress: Progress;
}

const POOL_SOCKETS = 16;

export async function memberBulkCases(cleanup: Cleanup, w: Workload, opts: MemberBulkOptions): Promise<Row[]> {
  const size = w.opts.ports;
  const bulk = Math.min(opts.bulk, w.opts.members);
  const info = { members: w.opts.members, referencingPorts: w.opts.sharedUsers, changedAtOnce: bulk };
  const cases = ['bulk-leave', 'bulk-join'];
  const batchRows = cases.map((c) => newRow('member', c, size, 'portwall batch', 'ms', info));
  const agentRows = cases.map((c) => newRow('member', c, size, AGENT_TOOL, 'ms', { ...info, requests: `${bulk} PUT /v1/ports at once over ${POOL_SOCKETS} connections` }));
  const restoreRows = cases.map((c) => newRow('member', c, size, 'ipset restore', 'ms', info));
  const one = { members: w.opts.members, referencingPorts: w.opts.sharedUsers, changedAtOnce: 1 };
  const oneRestore = ['member-leave', 'member-join'].map((c) => newRow('member', c, size, 'ipset restore', 'ms', one));
  const oneCalls = ['member-leave', 'member-join'].map((c) => newRow('member', c, size, 'ipset add/del', 'ms', { ...one, method: 'one ipset del / ipset add -exist per element' }));
  const rows = [...batchRows, ...agentRows, ...restoreRows, ...oneRestore, ...oneCalls];
  const fail = (rs: Row[], e: unknown) => { for (const r of rs) if (r.status === 'ok') r.status = errorText(e); };
  const leavers = Array.from({ length: bulk }, (_, j) => w.member(j, false));
  const joiners = Array.from({ length: bulk }, (_, j) => w.member(j, true));

  const ns = cleanup.netns('sg-membulk');
  try {
    opts.progress.update(`members ×${bulk}: full sync of ${size} ports + ${w.opts.members} members`);
    const pw = Portwall.open({ netns: ns.name });
    await pw.apply(w.state);
    const stages: Stages = {};
    const batch = async (row: Row, ports: PortInput[]) => {
      let res!: BatchResult;
      const ms = await timed(async () => { res = await pw.batch(ports.map((port) => ({ op: 'upsertPort', port }))); });
      const refused = res.refused.findIndex((x) => x !== undefined);
      if (refused >= 0) throw new Error(`batch refused edit ${refused}: ${res.refused[refused]!.message}`);
      row.samples.push(ms);
      collect(stages, row.case, res, ms);
    };
    try {
      await repeat(opts.reps, opts.budgetMs, async (r) => {
        opts.progress.update(`members ×${bulk}: portwall batch`, `rep ${r + 1}/${opts.reps}`);
        await batch(batchRows[0]!, leavers);
        await batch(batchRows[1]!, joiners);
      });
      for (const row of batchRows) row.info = { ...row.info, stageP50: stagesP50(stages, row.case) };
    } catch (e) {
      fail(batchRows, e);
    }
    await pw.close();

    // Neutron's member sets, rendered from the same state, next to portwall's tables.
    opts.progress.update(`members ×${bulk}: rendering Neutron's ipsets`);
    const base = renderFor(w.state).ipsets;
    ns.exec('ipset', ['restore', '-exist'], { input: base, timeoutMs: 120_000 });
    const linesOf = (ports: PortInput[]) => {
      const ips = new Set(ports.flatMap((p) => (p.fixed_ips ?? []).map((f) => f.ip_address)));
      return base.split('\n').filter((l) => {
        const [verb, set, element] = l.split(' ');
        return verb === 'add' && set!.includes(CLIENTS_GROUP) && ips.has(element!);
      }).map((l) => l.slice('add '.length));
    };
    const elements = linesOf(leavers);
    const first = linesOf(leavers.slice(0, 1));
    for (const row of [...restoreRows, ...oneRestore, ...oneCalls]) row.info = { ...row.info, elements: row.info!.changedAtOnce === 1 ? first.length : elements.length };
    const restore = (verb: 'del' | 'add', els: string[]) => () => ns.exec('ipset', ['restore', '-exist'], { input: `${els.map((e) => `${verb} ${e}`).join('\n')}\n`, timeoutMs: 60_000 });
    const each = (verb: 'del' | 'add', els: string[]) => () => {
      for (const e of els) ns.exec('ipset', verb === 'add' ? ['add', '-exist', ...e.split(' ')] : ['del', ...e.split(' ')]);
    };
    try {
      if (elements.length === 0 || first.length === 0) throw new Error(`no ${CLIENTS_GROUP} set elements in the rendering`);
      await repeat(opts.reps, opts.budgetMs, async (r) => {
        opts.progress.update(`members ×${bulk}: ipset`, `rep ${r + 1}/${opts.reps}`);
        restoreRows[0]!.samples.push(await timed(restore('del', elements)));
        restoreRows[1]!.samples.push(await timed(restore('add', elements)));
        oneRestore[0]!.samples.push(await timed(restore('del', first)));
        oneRestore[1]!.samples.push(await timed(restore('add', first)));
        oneCalls[0]!.samples.push(await timed(each('del', first)));
        oneCalls[1]!.samples.push(await timed(each('add', first)));
      });
    } catch (e) {
      fail([...restoreRows, ...oneRestore, ...oneCalls], e);
    }
  } catch (e) {
    fail(rows, e);
  } finally {
    cleanup.drop(ns);
  }
  await agentBulk(cleanup, w, leavers, joiners, agentRows, opts).catch((e) => fail(agentRows, e));
  return rows.map(finish);
}

/** The same bulk changes through an agent: every PUT sent at once, timed to the last answer. */
async function agentBulk(cleanup: Cleanup, w: Workload, leavers: PortInput[], joiners: PortInput[], rows: Row[], opts: MemberBulkOptions): Promise<void> {
  const pool = new Agent({ keepAlive: true, maxSockets: POOL_SOCKETS });
  let agent: RunningAgent | undefined;
  try {
    opts.progress.update(`members ×${leavers.length}: ${AGENT_TOOL}, start (full sync from its state file)`);
    agent = await startAgent(cleanup, w, 'sg-agmem');
    const { socketPath } = agent;
    await Promise.all(Array.from({ length: POOL_SOCKETS }, () => agentCall(socketPath, 'GET', '/v1/status', undefined, pool)));
    const commits = rows.map(() => [] as number[]);
    const burst = async (k: number, ports: PortInput[]) => {
      let answers: { status: number; body: { genid?: number } | undefined; text: string }[] = [];
      const ms = await timed(async () => {
        answers = await Promise.all(ports.map((p) => agentCall(socketPath, 'PUT', `/v1/ports/${encodeURIComponent(p.id)}`, p, pool)));
      });
      const bad = answers.find((a) => a.status !== 200);
      if (bad) throw new Error(`HTTP ${bad.status}: ${bad.text.slice(0, 200)}`);
      rows[k]!.samples.push(ms);
      commits[k]!.push(new Set(answers.map((a) => a.body?.genid)).size);
    };
    // One untimed round: a freshly started agent runs its request path unoptimised at first.
    await burst(0, leavers);
    await burst(1, joiners);
    for (const r of rows) r.samples.length = 0;
    for (const c of commits) c.length = 0;
    await repeat(opts.reps, opts.budgetMs, async (r) => {
      opts.progress.update(`members ×${leavers.length}: ${AGENT_TOOL}`, `rep ${r + 1}/${opts.reps}`);
      await burst(0, leavers);
      await burst(1, joiners);
    });
    rows.forEach((row, k) => { row.info = { ...row.info, maxCommitsPerBurst: Math.max(0, ...commits[k]!), agentStartMs: Math.round(agent!.startMs) }; });
  } finally {
    await agent?.stop([pool]);
  }
}
