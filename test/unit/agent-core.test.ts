/**
 * The agent's core on the fake binding (no root): item changes need a whole state first (409 through the API),
 * a coalesced batch is one commit with each op's own outcome, floating IPs are edits in the same commit, the desired document
 * follows every applied change, and the metrics count elements once per batch.
 */
import { pino } from 'pino';
import { describe, expect, test } from 'vitest';

import { AgentCore } from '../../src/agent/core.js';
import { errorAnswer } from '../../src/agent/answers.js';
import { AgentMetrics } from '../../src/agent/metrics.js';
import { Portwall } from '../../src/apply/portwall.js';
import { FakeNft } from '../../src/nft/fake.js';
import { port, state, webGroup } from '../helpers/states.js';

function open() {
  const fake = new FakeNft();
  const metrics = new AgentMetrics({ processMetrics: false });
  const core = new AgentCore(Portwall.open({ binding: fake, conntrack: null, profileGc: false }), metrics, pino({ level: 'silent' }));
  return { fake, core, metrics };
}

describe('the agent core', () => {
  test('item changes before any whole state: ERR_TRANSACTION_STATE, answered 409', async () => {
    const { core, fake } = open();
    const [o] = await core.commit([{ kind: 'port', id: 'port-00001', body: port(1, ['sg-web']) }]);
    expect(o!.ok).toBe(false);
    const err = (o as { error: unknown }).error;
    expect(errorAnswer(err).status).toBe(409);
    expect(errorAnswer(err).body.error.code).toBe('ERR_TRANSACTION_STATE');
    expect(fake.commits).toBe(0);
    expect(core.ready).toBe(false);
  });

  test('a batch: one commit, each op its own outcome, floating IPs among the edits, the document follows', async () => {
    const { core, fake, metrics } = open();
    await core.applyState(state('routed', [webGroup()], [port(1, ['sg-web'])]), 'test');
    const addedSoFar = async () => Number(/portwall_elements_total\{change="added"\} (\d+)/.exec(await metrics.text())![1]);
    const before = await addedSoFar();
    const commits = fake.commits;
    const outcomes = await core.commit([
      { kind: 'port', id: 'port-00002', body: port(2, ['sg-web']) },
      { kind: 'port', id: 'port-00003', body: port(3, ['sg-none']) },
      { kind: 'floatingip', id: 'fip-1', body: { id: 'fip-1', floating_ip_address: '203.0.113.10' } },
      { kind: 'floatingip', id: 'fip-2', body: 'nope' },
      { kind: 'port', id: 'port-00001' },
    ]);
    expect(outcomes.map((o) => o.ok)).toEqual([true, false, true, false, true]);
    expect(errorAnswer((outcomes[1] as { error: unknown }).error).status).toBe(400);
    expect(fake.commits).toBe(commits + 1);
    const doc = core.document()!;
    expect((doc.ports as { id: string }[]).map((p) => p.id)).toEqual(['port-00002']);
    expect(doc.floatingips).toEqual([{ id: 'fip-1', floating_ip_address: '203.0.113.10' }]);
    const added = (outcomes[0] as { elements: { added: number } }).elements.added;
    expect(added).toBeGreaterThan(0);
    expect((outcomes[4] as { elements: { added: number } }).elements.added).toBe(added); // the batch's
    // Counted once for the batch, though two applied ops carry it.
    expect(await addedSoFar()).toBe(before + added);
  });

  test('floating IPs are validated against the ports and each other (named fields), then programmed', async () => {
    const { core } = open();
    await core.applyState(state('routed', [webGroup()], [port(1, ['sg-web'])]), 'test');
    const fixed = port(1, ['sg-web']).fixed_ips![0]!.ip_address;
    const fip = (id: string, address: string, over: object = {}) => ({ kind: 'floatingip' as const, id, body: { id, floating_ip_address: address, port_id: 'port-00001', fixed_ip_address: fixed, ...over } });
    const outcomes = await core.commit([
      fip('fip-1', '203.0.113.10'),
      fip('fip-2', '203.0.113.10', { port_id: null, fixed_ip_address: null }),
      fip('fip-3', '203.0.113.11'),
      fip('fip-4', '203.0.113.12', { fixed_ip_address: '192.0.2.250' }),
      fip('fip-5', '203.0.113.13', { port_id: 'port-nope' }),
    ]);
    expect(outcomes.map((o) => o.ok)).toEqual([true, false, false, false, false]);
    const paths = outcomes.slice(1).map((o) => ((o as { error: { problems: { path: string; message: string }[] } }).error.problems[0]!));
    expect(paths.map((p) => p.path)).toEqual([
      'floatingips[0] (fip-2).floating_ip_address', 'floatingips[0] (fip-3).fixed_ip_address',
      'floatingips[0] (fip-4).fixed_ip_address', 'floatingips[0] (fip-5).port_id',
    ]);
    expect(paths[0]!.message).toContain('unique on the host');
    expect(paths[1]!.message).toContain('already has floating IP "fip-1"');
    expect((core.document()!.floatingips as { id: string }[]).map((f) => f.id)).toEqual(['fip-1']);
  });

  test('a commit writes one log line at level info, with its timings to the microsecond; none at warn', async () => {
    const lines = (level: string) => {
      const out: Record<string, unknown>[] = [];
      const logger = pino({ level }, { write: (l: string) => void out.push(JSON.parse(l) as Record<string, unknown>) });
      const core = new AgentCore(Portwall.open({ binding: new FakeNft(), conntrack: null, profileGc: false }), new AgentMetrics({ processMetrics: false }), logger);
      return { out, core };
    };
    const info = lines('info');
    await info.core.applyState(state('routed', [webGroup()], [port(1, ['sg-web'])]), 'test');
    await info.core.commit([{ kind: 'port', id: 'port-00002', body: port(2, ['sg-web']) }]);
    const commits = info.out.filter((l) => l.event === 'commit');
    expect(commits.map((l) => [l.kind, l.msg, l.ops])).toEqual([['state', 'committed', 1], ['port', 'committed', 1]]);
    const timings = commits[1]!.timings as Record<string, number>;
    expect(Object.keys(timings)).toContain('commit');
    for (const v of Object.values(timings)) expect(Math.round(v * 1000) / 1000).toBe(v);
    const warn = lines('warn');
    await warn.core.applyState(state('routed', [webGroup()], [port(1, ['sg-web'])]), 'test');
    await warn.core.commit([{ kind: 'port', id: 'port-00002', body: port(2, ['sg-web']) }]);
    expect(warn.out).toEqual([]);
  });

  test('a batch refused because another writer committed first: recomputed, then counted in the metrics and the log line', async () => {
    const fake = new FakeNft();
    const out: Record<string, unknown>[] = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => void out.push(JSON.parse(l) as Record<string, unknown>) });
    const metrics = new AgentMetrics({ processMetrics: false });
    const core = new AgentCore(Portwall.open({ binding: fake, conntrack: null, profileGc: false }), metrics, logger);
    await core.applyState(state('routed', [webGroup()], [port(1, ['sg-web'])]), 'test');
    const conflicts = async () => Number(/^portwall_commit_conflicts_total (\d+)$/m.exec(await metrics.text())![1]);
    expect(await conflicts()).toBe(0);
    // Another writer moves the generation on behind the core's back.
    const other = Portwall.open({ binding: fake, conntrack: null, profileGc: false });
    await other.apply(state('routed', [webGroup()], [port(9, ['sg-web'])]));
    await other.close();
    const [o] = await core.commit([{ kind: 'port', id: 'port-00002', body: port(2, ['sg-web']) }]);
    expect(o!.ok).toBe(true);
    expect(await conflicts()).toBe(1);
    expect(out.filter((l) => l.event === 'commit').at(-1)).toMatchObject({ kind: 'port', conflicts: 1 });
    // Recomputed from a listing: the namespace holds the core's state (ports 1 and 2), not the other writer's.
    const check = Portwall.open({ binding: fake, conntrack: null, profileGc: false });
    expect((await check.plan(state('routed', [webGroup()], [port(1, ['sg-web']), port(2, ['sg-web'])]))).operations).toEqual([]);
  });
});
