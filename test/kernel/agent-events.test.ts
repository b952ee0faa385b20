// The agent in-process (startAgent): every drift it repairs is an event as well as a log line and a metric —
// here for the hand edits the process test (agent.test.ts) does not make: an element added by hand and a rule
// deleted by hand. After each, a fresh handle's plan of the desired state is empty (the kernel matches again).
// The metrics are also served over TCP (metricsAddress, on a port the kernel picks).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startAgent, type Agent, type AgentEvents } from '../../src/agent/agent.js';
import { Portwall } from '../../src/apply/portwall.js';
import { isRoot, Netns } from '../helpers/netns.js';
import { port, state, webGroup } from '../helpers/states.js';

describe.skipIf(!isRoot)('agent events', () => {
  let ns: Netns;
  let dir: string;
  let agent: Agent;
  const desired = state('routed', [webGroup()], [port(1, ['sg-web']), port(2, ['sg-web'])]);

  beforeAll(async () => {
    ns = new Netns('agentev');
    dir = mkdtempSync(path.join(tmpdir(), 'pw-agentev-'));
    writeFileSync(path.join(dir, 'state.json'), JSON.stringify(desired));
    agent = await startAgent({
      netns: ns.name, stateFile: path.join(dir, 'state.json'), socketPath: path.join(dir, 'pw.sock'),
      logger: pino({ level: 'silent' }), checkIntervalMs: 0, metricsAddress: '127.0.0.1:0',
    });
  });
  afterAll(async () => {
    await agent?.stop();
    ns?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Runs a hand edit and resolves with the drift and repaired events it caused (within a second). */
  async function handEdit(args: string[]): Promise<{ drift: string[]; repaired: AgentEvents['repaired'][0]; ms: number }> {
    const drift = new Promise<string[]>((resolve) => agent.events.once('drift', resolve));
    const repaired = new Promise<AgentEvents['repaired'][0]>((resolve) => agent.events.once('repaired', resolve));
    const t0 = Date.now();
    ns.exec('nft', args);
    const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no repair within 1 s')), 1000));
    const [d, r] = await Promise.race([Promise.all([drift, repaired]), timeout]);
    return { drift: d, repaired: r, ms: Date.now() - t0 };
  }

  async function kernelMatches(): Promise<boolean> {
    const fresh = Portwall.open({ netns: ns.name });
    try {
      return (await fresh.plan(desired)).operations.length === 0;
    } finally {
      await fresh.close();
    }
  }

  it('an element added by hand is taken out again', async () => {
    expect(await kernelMatches()).toBe(true);
    const e = await handEdit(['add', 'element', 'inet', 'portwall', 'ports_dev', '{ "evil0" }']);
    console.log(`[agent-events] element added by hand: repaired in ${e.ms} ms (${e.repaired.ms} ms inside), -${e.repaired.elements.removed} elements`);
    expect(e.drift).toContain('drift');
    expect(e.repaired.elements.removed).toBeGreaterThanOrEqual(1);
    expect(ns.exec('nft', ['list', 'set', 'inet', 'portwall', 'ports_dev'])).not.toContain('evil0');
    expect(await kernelMatches()).toBe(true);
  });

  it('a rule deleted by hand is put back', async () => {
    const listing = ns.exec('nft', ['-a', 'list', 'chain', 'inet', 'portwall', 'fwd_filter']);
    const handle = /# handle (\d+)/.exec(listing.split('\n').find((l) => l.includes('jump') && l.includes('# handle'))!)![1]!;
    const e = await handEdit(['delete', 'rule', 'inet', 'portwall', 'fwd_filter', 'handle', handle]);
    console.log(`[agent-events] rule deleted by hand: repaired in ${e.ms} ms (${e.repaired.ms} ms inside)`);
    expect(e.drift).toContain('drift');
    expect(await kernelMatches()).toBe(true);
  });

  it('--metrics serves GET /metrics over TCP (and nothing else); the repairs are counted there', async () => {
    const base = `http://127.0.0.1:${agent.metricsPort}`;
    const m = await fetch(`${base}/metrics`);
    expect(m.status).toBe(200);
    expect(m.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await m.text();
    expect(text).toMatch(/portwall_drift_repairs_total\{cause="drift"\} [2-9]/);
    expect(text).toMatch(/^portwall_generation \d+/m);
    expect((await fetch(`${base}/v1/status`)).status).toBe(404);
  });
});

