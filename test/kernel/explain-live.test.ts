/**
 * `explain --live` with real packets (docs/dataplane.md, "Tracing a packet"): nftables tracing, read over
 * netlink by the native addon, follows one packet through the hooks. An allowed TCP connect ends accepted, a
 * ping no rule admits ends dropped at a drop rule, both as the static explanation says; with no packet the
 * trace times out; and the trace tables are gone afterwards every time (`nft list ruleset` as the oracle).
 * The CLI prints the same path and exits 0 / 3 as `explain` does (1 on timeout; Ctrl-C removes the trace), and
 * the agent answers `GET /v1/explain?live=1` with the trace beside the static answer, one at a time.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';

import { pino } from 'pino';

import { startAgent } from '../../src/agent/agent.js';
import type { Portwall } from '../../src/apply/portwall.js';
import { call } from '../helpers/agent-api.js';
import { formatTrace } from '../../src/trace.js';
import { binding } from '../../src/native.js';
import { isRoot, tryRun } from '../helpers/netns.js';
import { ComputeHost, MODES, OUTSIDE, group, openFirewall, pingCount, probe, sleep, state, type Bg, type Mode, type Vm } from '../helpers/hosts.js';
import { CLI } from '../helpers/cli.js';

describe.skipIf(!isRoot).each(MODES)('explain --live (%s)', (mode: Mode) => {
  let h: ComputeHost;
  let vm: Vm;
  let fw: Portwall;
  let dir: string;
  const servers: Bg[] = [];

  beforeAll(async () => {
    h = new ComputeHost(mode, [{ id: 'net-a', zone: 101, bridge: 'br-lv', macByte: 1 }]);
    vm = h.addVm('ltv', { n: 10 });
    const doc = state([h.networkState('net-a')], [
      group('sg-web', [
        { id: 'ssh-admins', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 22, port_range_max: 22, remote_ip_prefix: '198.51.100.0/24' },
        { id: 'ping-b', direction: 'ingress', ethertype: 'IPv4', protocol: 'icmp', remote_ip_prefix: '203.0.113.0/24' },
      ]),
    ], [h.port(vm, { security_groups: ['sg-web'] })]);
    fw = openFirewall(h);
    await fw.apply(doc);
    servers.push(await h.serve(vm.ns, { tcp: [22] }, 90));
    dir = mkdtempSync(path.join(tmpdir(), 'pw-live-'));
    writeFileSync(path.join(dir, 'state.json'), JSON.stringify(doc));
  }, 60_000);

  afterAll(async () => {
    await fw?.close();
    h?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  // The oracle: nothing of the trace is left in the kernel.
  afterEach(() => {
    expect(h.host.nftText()).not.toMatch(/_trace|nftrace/);
  });

  it('an allowed TCP connect: the path through portwall\'s chains ends accepted, as explained statically', async () => {
    let sent: Promise<unknown> | undefined;
    const a = await fw.explainLive(`port-${vm.name}`, `tcp ${OUTSIDE.a4}:40100 -> ${vm.ip4}:22`, {
      timeoutMs: 8000,
      onArmed: () => { sent = probe(h.outside, [{ proto: 'tcp', host: vm.ip4, port: 22, src: OUTSIDE.a4, sport: 40100 }], 1); },
    });
    expect(await sent).toEqual(['open']);
    console.log(`[${mode}] ${formatTrace(a.live, a)}`);
    expect(a.live.timedOut).toBe(false);
    const t = a.live.trace!;
    expect(a.allowed).toBe(true);
    expect(t.verdict).toBe('accepted');
    expect(a.agrees).toBe(true);
    expect(t.seen).toMatchObject({ src: OUTSIDE.a4, dst: vm.ip4, sport: 40100, dport: 22, protocol: 6 });
    // It went through portwall's inet table in the forward hook, into a port chain and back (layout-agnostic:
    // whatever the chains are called, something jumped and something returned).
    const mine = t.steps.filter((s) => s.family === 'inet' && s.table === 'portwall');
    expect(mine.some((s) => s.hook === 'forward')).toBe(true);
    expect(mine.some((s) => s.verdict === 'jump' || s.verdict === 'goto')).toBe(true);
    expect(mine.some((s) => s.verdict === 'return' || s.kind === 'return')).toBe(true);
    expect(t.steps.some((s) => s.verdict === 'drop')).toBe(false);
    // Every rule step is named: by its comment or its nft rendering.
    for (const s of mine.filter((x) => x.kind === 'rule')) expect(s.comment ?? s.text, `${s.chain} handle ${s.handle}`).toBeTruthy();
  });

  it('a ping no rule admits: the path ends at a drop rule, dropped, as explained statically', async () => {
    let sent: Promise<number> | undefined;
    const a = await fw.explainLive(`port-${vm.name}`, `icmp ${OUTSIDE.a4} -> ${vm.ip4} type 8 code 0`, {
      timeoutMs: 8000,
      onArmed: () => { sent = pingCount(h.outside, vm.ip4, { count: 1, src: OUTSIDE.a4, waitS: 1 }); },
    });
    expect(await sent).toBe(0);
    const text = formatTrace(a.live, a);
    console.log(`[${mode}] ${text}`);
    const t = a.live.trace!;
    expect(a).toMatchObject({ allowed: false, reason: 'default', agrees: true });
    expect(t.verdict).toBe('dropped');
    const last = t.steps.at(-1)!;
    expect(last).toMatchObject({ kind: 'rule', verdict: 'drop', family: 'inet', table: 'portwall' });
    expect(last.comment).toBeTruthy();
    expect(text).toMatch(/=> DROPPED\nstatic: DROPPED: .*\nlive and static agree\n$/);
  });

  it('no packet: the trace times out, and an allowed ping afterwards is not held up by it; the handle still trusts its memory', async () => {
    expect(await fw.current()).toBe(true);
    const t0 = Date.now();
    const a = await fw.explainLive(`port-${vm.name}`, `icmp ${OUTSIDE.b4} -> ${vm.ip4}`, { timeoutMs: 600 });
    // The trace's own two commits moved the generation; nobody else's did, so the next change lists nothing.
    expect(await fw.current()).toBe(true);
    expect(a.live).toMatchObject({ timedOut: true });
    expect(a.live.trace).toBeUndefined();
    expect(a.agrees).toBeUndefined();
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(formatTrace(a.live, a)).toMatch(/^live: no packet .* came within 0\.\d s\nstatic: ALLOWED/);
    expect(await pingCount(h.outside, vm.ip4, { count: 1, src: OUTSIDE.b4, waitS: 2 })).toBe(1);
    // The trace's commits left the kernel at a generation no adopt record names: the handle owes one, and
    // writes it once quiet (a successor of a killed process would otherwise list everything).
    const record = () => tryRun('ip', ['netns', 'exec', h.host.name, 'nft', 'list', 'set', 'inet', 'portwall', 'adopt_record']).out;
    const named = async () => record().includes(`comment "gen ${await binding().nftGenid(h.host.name)} `);
    for (const t1 = Date.now(); Date.now() - t1 < 5000 && !(await named());) await sleep(50);
    expect(await named()).toBe(true);
    expect(await fw.current()).toBe(true);
  });

  it('the CLI: explain --live --state prints the path and exits 3 for a dropped packet, 1 on timeout', async () => {
    const args = ['explain', '--live', '--timeout', '8', '--netns', h.host.name, '--state', path.join(dir, 'state.json'), '--port', `port-${vm.name}`];
    const child = spawn('node', [CLI, ...args, `icmp ${OUTSIDE.a4} -> ${vm.ip4}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? -1)));
    // The CLI arms the trace after it starts: ping until it has seen one (bounded).
    let code: number | undefined;
    void exited.then((c) => (code = c));
    for (let i = 0; i < 20 && code === undefined; i++) {
      await pingCount(h.outside, vm.ip4, { count: 1, src: OUTSIDE.a4, waitS: 1 });
      await sleep(100);
    }
    expect(await exited, out).toBe(3);
    expect(out).toMatch(/live trace of ingress icmp 198\.51\.100\.2 -> 192\.0\.2\.10 type 8 code 0 at port port-ltv/);
    expect(out).toMatch(/rule ".*" .*→ drop\n {2}=> DROPPED\n/);
    expect(out).toContain('live and static agree');
    const timeout = await new Promise<{ code: number; out: string }>((resolve) => {
      const c = spawn('node', [CLI, ...args.map((x) => (x === '8' ? '1' : x)), `icmp ${OUTSIDE.c4} -> ${vm.ip4}`], { stdio: ['ignore', 'pipe', 'pipe'] });
      let o = '';
      c.stdout.on('data', (d: Buffer) => (o += d.toString()));
      c.stderr.on('data', (d: Buffer) => (o += d.toString()));
      c.on('exit', (n) => resolve({ code: n ?? -1, out: o }));
    });
    expect(timeout.code, timeout.out).toBe(1);
    expect(timeout.out).toMatch(/live: no packet .* came within \d+\.\d s/);
  }, 40_000);

  it('the CLI: Ctrl-C while it waits removes the trace table and exits 1', async () => {
    const child = spawn('node', [CLI, 'explain', '--live', '--timeout', '30', '--netns', h.host.name, '--state', path.join(dir, 'state.json'), '--port', `port-${vm.name}`, `icmp ${OUTSIDE.c4} -> ${vm.ip4}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const armed = new Promise<void>((resolve) => {
      const on = (d: Buffer) => {
        out += d.toString();
        if (out.includes('send the packet now')) resolve();
      };
      child.stdout.on('data', on);
      child.stderr.on('data', on);
    });
    const exited = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? -1)));
    await Promise.race([armed, sleep(15_000)]);
    expect(h.host.nftText()).toContain('table inet portwall_trace');
    const t0 = Date.now();
    child.kill('SIGINT');
    expect(await exited, out).toBe(1);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(out).toMatch(/live: no packet .* came within/);
  }, 30_000);

  it('the agent: GET /v1/explain?live=1 traces in its namespace and answers with both verdicts; a second live request meanwhile is 409', async () => {
    const socketPath = path.join(dir, 'pw.sock');
    const agent = await startAgent({ netns: h.host.name, stateFile: path.join(dir, 'state.json'), socketPath, logger: pino({ level: 'silent' }), checkIntervalMs: 0 });
    try {
      const q = `/v1/explain?port=port-${vm.name}&packet=${encodeURIComponent(`icmp ${OUTSIDE.b4} -> ${vm.ip4}`)}&live=1&timeout=8`;
      const answer = call(socketPath, 'GET', q, undefined, 20_000);
      await sleep(500); // armed by now
      const second = await call(socketPath, 'GET', q, undefined, 20_000);
      expect(second.status).toBe(409);
      expect(second.body.error.message).toContain('a live trace is already running');
      let replies = 0;
      for (let i = 0; i < 10 && replies === 0; i++) replies = await pingCount(h.outside, vm.ip4, { count: 1, src: OUTSIDE.b4, waitS: 1 });
      expect(replies).toBe(1);
      const a = await answer;
      expect(a.status, a.text).toBe(200);
      expect(a.body).toMatchObject({ allowed: true, ruleId: 'ping-b', agrees: true, live: { timedOut: false, trace: { verdict: 'accepted' } } });
      expect(a.body.live.trace.steps.some((s: { table: string; hook?: string }) => s.table === 'portwall' && s.hook === 'forward')).toBe(true);
      const bad = await call(socketPath, 'GET', `${q.replace('timeout=8', 'timeout=600')}`);
      expect(bad.status).toBe(400);
    } finally {
      await agent.stop();
    }
  }, 40_000);
});
