/**
 * The built-in demo: the portwall agent at work on a compute host with two VMs behind routed tap ports and an
 * outside client, each in a fresh network namespace. It narrates, with timings: the agent starting from a
 * state file, changes through its HTTP API on the Unix socket (with the equivalent `curl` command lines), a
 * running ping cut by a rule removal, `nft flush ruleset` repaired from nftables' own events, a restart
 * without a lost packet (adopted from the record the agent left, committing nothing), and invalid
 * input refused by field. Every step checks traffic
 * allowed and blocked (rules, a remote group, anti-spoofing). It removes its namespaces and files when done.
 *
 * The demo is a harness, not product path: it builds namespaces with `ip`, sends traffic with `ping` and small
 * probes (the scenario tests' helpers) and plays the intruder with `nft`. Everything it programs goes through
 * the agent (`startAgent`, in this process) and its API.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { pino } from 'pino';

import { startAgent, type Agent } from '../src/agent/agent.js';
import type { SecurityGroupInput, StateInput } from '../src/model/schema.js';
import { call, curlLine, type Answer } from '../test/helpers/agent-api.js';
import {
  ComputeHost, EGRESS_ANY, OUTSIDE, execIn, group, pingCount, probe, sleep, state, type RuleSpec, type Vm,
} from '../test/helpers/hosts.js';

const say = (msg = ''): void => void process.stdout.write(`${msg}\n`);
const mark = (ok: boolean): string => (ok ? 'as expected' : 'UNEXPECTED');
const ms = (t0: number): string => (performance.now() - t0).toFixed(1);

const HTTP: RuleSpec = { id: 'web-http', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 80, port_range_max: 80, remote_ip_prefix: '198.51.100.0/24' };
const PING: RuleSpec = { id: 'web-ping', direction: 'ingress', ethertype: 'IPv4', protocol: 'icmp', remote_ip_prefix: '198.51.100.0/24' };
const DB: RuleSpec = { id: 'db-pg', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 5432, port_range_max: 5432, remote_group_id: 'sg-web' };

// Stable ids, so a rule removed elsewhere in the group leaves these elements (and their comments) alone.
const egress = (g: string): RuleSpec[] => EGRESS_ANY.map((r, i) => ({ id: `${g}-egress-${i}`, ...r }));
const sgWeb = (rules: RuleSpec[]): SecurityGroupInput => group('sg-web', [...rules, ...egress('web')]);

/** A group as the body of `PUT /v1/security-groups/{id}` (the id comes from the path). */
function groupBody(g: SecurityGroupInput): Omit<SecurityGroupInput, 'id'> {
  const { id: _id, ...body } = g;
  return body;
}

/** The agent's JSON log lines, read back from its file (pino writes it synchronously). */
class LogFile {
  constructor(readonly file: string) {}

  lines(): string[] {
    return readFileSync(this.file, 'utf8').split('\n').filter(Boolean);
  }

  /** Waits for a line after the first `from` lines whose record satisfies `pred`; undefined after `timeoutMs`. */
  async waitFor(from: number, pred: (r: Record<string, unknown>) => boolean, timeoutMs = 3000): Promise<{ line: string; rec: Record<string, unknown> } | undefined> {
    const t0 = Date.now();
    for (;;) {
      for (const line of this.lines().slice(from)) {
        const rec = JSON.parse(line) as Record<string, unknown>;
        if (pred(rec)) return { line, rec };
      }
      if (Date.now() - t0 > timeoutMs) return undefined;
      await sleep(2);
    }
  }
}

/** How an API answer reads: status, round trip, generation, elements and the agent's own stage timings. */
function outcome(a: Answer, roundTripMs: string): string {
  if (a.status !== 200) return `${a.status} in ${roundTripMs} ms: ${a.body?.error?.code ?? a.text.trim()}`;
  const b = a.body as { genid?: number; changed: boolean; timings: Record<string, number>; elements: { added: number; removed: number } };
  const stages = Object.entries(b.timings).filter(([, v]) => v >= 0.05).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ');
  return `200 in ${roundTripMs} ms: genid ${b.genid}, ${b.changed ? 'changed' : 'unchanged'}, ` +
    `+${b.elements.added}/-${b.elements.removed} elements (agent: ${stages || 'nothing to do'} ms)`;
}

/** Runs the demo; resolves to whether every check came out as expected. */
export async function runDemo(): Promise<boolean> {
  process.env.PORTWALL_TEST_RUN ??= `pwdemo${randomBytes(2).toString('hex')}`;
  const tDemo = performance.now();
  const checks: boolean[] = [];
  const check = (ok: boolean, text: string): void => {
    checks.push(ok);
    say(`   ${text} — ${mark(ok)}`);
  };
  const step = (title: string): void => say(`\n== ${title}`);
  const h = new ComputeHost('routed', [{ id: 'net-demo', zone: 101, macByte: 1 }]);
  const dir = mkdtempSync(path.join(tmpdir(), 'pw-demo-'));
  const stateFile = path.join(dir, 'state.json');
  const socketPath = path.join(dir, 'portwall.sock');
  const logFile = path.join(dir, 'agent.log');
  const dest = pino.destination({ dest: logFile, sync: true });
  const logger = pino({ level: 'info', base: null }, dest);
  const log = new LogFile(logFile);
  const agentOptions = { netns: h.host.name, stateFile, socketPath, logger, checkIntervalMs: 0 };
  let agent: Agent | undefined;
  const api = (method: string, url: string, body?: unknown) => call(socketPath, method, url, body);
  const genid = async (): Promise<number> => ((await api('GET', '/v1/status')).body as { genid: number }).genid;
  const showCurl = (method: string, url: string, body?: unknown): void => {
    const [first, ...more] = curlLine('$S', method, url, body).split('\n');
    say(`   $ ${first}`);
    for (const l of more) say(`   ${l}`);
  };

  try {
    const web = h.addVm('web', { n: 10 });
    const db = h.addVm('db', { n: 11 });
    say(`compute host ${h.host.name}: VM "web" ${web.ip4} on ${web.device}, VM "db" ${db.ip4} on ${db.device};`);
    say(`outside client ${h.outside.name} at ${OUTSIDE.a4}`);
    await h.serve(web.ns, { tcp: [80, 81] }, 60);
    await h.serve(db.ns, { tcp: [5432] }, 60);

    const desired = (webRules: RuleSpec[]): StateInput => state(
      [h.networkState('net-demo')],
      [sgWeb(webRules), group('sg-db', [DB, ...egress('db')])],
      [h.port(web, { security_groups: ['sg-web'] }), h.port(db, { security_groups: ['sg-db'] })],
    );
    /** The policy of the state file, checked with real traffic (one concurrent probe round per source). */
    const trafficAsDesigned = async (label: string): Promise<void> => {
      const [[http, other, fromOutside], [fromWeb, spoofed]] = await Promise.all([
        probe(h.outside, [{ proto: 'tcp', host: web.ip4, port: 80 }, { proto: 'tcp', host: web.ip4, port: 81 }, { proto: 'tcp', host: db.ip4, port: 5432 }]),
        probe(web.ns, [{ proto: 'tcp', host: db.ip4, port: 5432 }, { proto: 'tcp', host: db.ip4, port: 5432, src: '192.0.2.99' }]),
      ]);
      const ok = http === 'open' && other === 'timeout' && fromOutside === 'timeout' && fromWeb === 'open' && spoofed === 'timeout';
      if (label) {
        check(ok, `${label}: outside → web tcp/80 ${http}, tcp/81 ${other}; outside → db tcp/5432 ${fromOutside}; web → db tcp/5432 ${fromWeb}, from a spoofed source ${spoofed}`);
        return;
      }
      check(http === 'open', `outside → web tcp/80: ${http}`);
      check(other === 'timeout', `outside → web tcp/81: ${other} (no rule)`);
      check(fromOutside === 'timeout', `outside → db tcp/5432: ${fromOutside} (not a member of sg-web)`);
      check(fromWeb === 'open', `web → db tcp/5432: ${fromWeb} (web is a member of sg-web: remote group)`);
      check(spoofed === 'timeout', `web → db from a spoofed source 192.0.2.99: ${spoofed} (anti-spoof)`);
    };
    // A second address inside web, for the anti-spoof probes: the agent's rules must drop what it sends.
    web.ns.exec('ip', ['addr', 'add', '192.0.2.99/32', 'dev', 'eth0']);

    // ---- 1. start ----
    step(`1. the agent starts in this process, on the host's namespace, from a state file`);
    writeFileSync(stateFile, `${JSON.stringify(desired([HTTP]), null, 2)}\n`);
    say(`   state file: sg-web (tcp 80 from 198.51.100.0/24), sg-db (tcp 5432 from members of sg-web), ports of web and db`);
    say(`   S=${socketPath}   (the API's Unix socket; the agent's JSON log goes to ${path.basename(logFile)} next to it)`);
    let t = performance.now();
    agent = await startAgent(agentOptions);
    const start0 = await log.waitFor(0, (r) => r.event === 'start', 1000);
    say(`   agent ready in ${ms(t)} ms: ${start0?.rec.msg ?? '?'}, genid ${start0?.rec.genid ?? '?'}`);
    await trafficAsDesigned('');
    const p0 = await pingCount(h.outside, web.ip4, { count: 1 });
    check(p0 === 0, `outside → web ping: ${p0}/1 replies (no ping rule yet)`);

    // ---- 2. a rule added through the API ----
    step('2. PUT /v1/security-groups/sg-web through the API: ping allowed from 198.51.100.0/24');
    const withPing = groupBody(sgWeb([HTTP, PING]));
    showCurl('PUT', '/v1/security-groups/sg-web', withPing);
    const g1 = await genid();
    t = performance.now();
    const put = await api('PUT', '/v1/security-groups/sg-web', withPing);
    say(`   ${outcome(put, ms(t))}`);
    check(put.status === 200 && put.body.genid === g1 + 1, `one commit: generation ${g1} → ${put.body?.genid}`);
    const p1 = await pingCount(h.outside, web.ip4, { count: 2 });
    check(p1 === 2, `outside → web ping: ${p1}/2 replies`);

    // ---- 3. a running ping cut by a rule removal ----
    step('3. the ping rule removed through the API while a ping runs (outside → web, every 0.1 s)');
    const withoutPing = groupBody(sgWeb([HTTP]));
    showCurl('PUT', '/v1/security-groups/sg-web', withoutPing);
    const flow = h.longPing(h.outside, web.ip4, { intervalS: 0.1, count: 40 });
    try {
      await flow.waitReplies(5);
      const seen = log.lines().length;
      const t0 = Date.now();
      t = performance.now();
      const cut = await api('PUT', '/v1/security-groups/sg-web', withoutPing);
      const answered = Date.now();
      say(`   ${outcome(cut, ms(t))}`);
      const commit = await log.waitFor(seen, (r) => r.event === 'commit', 1000);
      await sleep(1000);
      const before = flow.replies().filter((r) => r <= t0).length;
      const after = flow.repliesAfter(answered).length;
      const last = flow.replies().at(-1);
      check(cut.status === 200 && after === 0, `running ping: ${before} replies before the PUT, ${after} after its answer` +
        ` (last reply ${last === undefined ? '?' : answered - last} ms before the answer; conntrack entries deleted by the agent: ${commit?.rec.conntrackDeleted ?? '?'})`);
    } finally {
      flow.stop();
    }
    const p2 = await pingCount(h.outside, web.ip4, { count: 2 });
    check(p2 === 0, `a new ping to web: ${p2}/2 replies`);

    // ---- 4. drift: someone flushes the ruleset ----
    step(`4. someone runs \`nft flush ruleset\` in the host's namespace; the agent hears it and repairs`);
    const programmed = async () => ((await api('GET', '/v1/status')).body as { programmed: { rules: number; sets: number; elements: number } }).programmed;
    const was = await programmed();
    say(`   $ ip netns exec ${h.host.name} nft flush ruleset`);
    const seen = log.lines().length;
    t = performance.now();
    const flushed = await execIn(h.host, 'nft', ['flush', 'ruleset']);
    const drift = await log.waitFor(seen, (r) => r.event === 'drift', 3000);
    const seenMs = ms(t);
    if (flushed.status !== 0) say(`   nft failed: ${flushed.out.trim()}`);
    if (drift) say(`   agent log: ${drift.line}`);
    check(drift !== undefined && Number(seenMs) < 1000, `drift repaired ${seenMs} ms after nft was started (${drift?.rec.repairedInMs ?? '?'} ms inside the agent, from the first event)`);
    const now = await programmed();
    check(now.rules === was.rules && now.sets === was.sets && now.elements === was.elements,
      `the tables are back: ${now.rules} rules, ${now.sets} sets, ${now.elements} elements (before the flush: ${was.rules}, ${was.sets}, ${was.elements})`);
    await trafficAsDesigned('traffic as before');
    const p3 = await pingCount(h.outside, web.ip4, { count: 1 });
    check(p3 === 0, `outside → web ping: ${p3}/1 replies (still no ping rule)`);

    // ---- 5. restart under traffic ----
    const COUNT = 40;
    step(`5. the agent restarts while web pings the outside (${COUNT} × 0.05 s, allowed by sg-web's egress) and the outside pings web (denied)`);
    const genBefore = await genid();
    const allowed = h.longPing(web.ns, OUTSIDE.a4, { intervalS: 0.05, count: COUNT });
    const denied = h.longPing(h.outside, web.ip4, { intervalS: 0.05, count: COUNT });
    try {
      await allowed.waitReplies(5);
      t = performance.now();
      await agent.stop();
      agent = undefined;
      say(`   stop(): ${ms(t)} ms — the rules stay in the kernel; the agent is down for 300 ms`);
      await sleep(300);
      const seenRestart = log.lines().length;
      t = performance.now();
      agent = await startAgent(agentOptions);
      say(`   startAgent() with the same state file: ready in ${ms(t)} ms`);
      const started = await log.waitFor(seenRestart, (r) => r.event === 'start', 1000);
      if (started) say(`   agent log: ${started.line}`);
      let bound: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all([allowed.bg.done, denied.bg.done]), new Promise((r) => (bound = setTimeout(r, COUNT * 50 + 5000)))]);
      clearTimeout(bound);
      const got = allowed.replies().length, admitted = denied.replies().length;
      check(got === COUNT, `ping through the restart: ${got}/${COUNT} replies, ${COUNT - got} lost`);
      check(admitted === 0, `denied ping through the restart: ${admitted}/${COUNT} replies`);
      // The agent wrote its adopt record (one commit, no rule changed) once quiet for a second after its last
      // commit, or else as it stopped; the new one adopted from it without listing every element and committed
      // nothing.
      const genAfter = await genid();
      const record = genAfter === genBefore ? 'the adopt record the agent wrote once quiet' : 'the stopping agent\'s adopt record';
      check(genAfter - genBefore <= 1 && started?.rec.changed === false && started?.rec.adoptedFrom === 'record',
        `generation ${genBefore} before and ${genAfter} after: ${record}, then nothing — the restart adopted from it (${String(started?.rec.adoptedFrom)}) and committed nothing`);
    } finally {
      allowed.stop();
      denied.stop();
    }

    // ---- 6. invalid input ----
    step('6. invalid input through the API: refused by field, nothing applied');
    const { id: _id, ...dbPort } = h.port(db, { security_groups: ['sg-none'], mac_address: 'zz' });
    showCurl('PUT', `/v1/ports/port-${db.name}`, dbPort);
    const g6 = await genid();
    t = performance.now();
    const bad = await api('PUT', `/v1/ports/port-${db.name}`, dbPort);
    const problems = (bad.body?.error?.problems ?? []) as { path: string; message: string }[];
    say(`   ${bad.status} in ${ms(t)} ms: ${bad.body?.error?.code}, ${problems.length} problem${problems.length === 1 ? '' : 's'}:`);
    for (const p of problems) say(`     ${p.path}: ${p.message}`);
    const g6after = await genid();
    check(bad.status === 400 && problems.length >= 2 && g6after === g6, `400, generation still ${g6after}: nothing applied`);
    const [stillOpen] = await probe(web.ns, [{ proto: 'tcp', host: db.ip4, port: 5432 }]);
    check(stillOpen === 'open', `web → db tcp/5432: ${stillOpen} (db's port unchanged)`);

    const s = (await api('GET', '/v1/status')).body as { programmed: { tables: { family: string; name: string }[]; rules: number; sets: number; elements: number; counted: string } };
    const how = s.programmed.counted === 'memory' ? 'counted from the agent\'s memory: the kernel\'s generation shows nobody else committed' : 'listed back over netlink';
    say(`\nthe host's tables ${s.programmed.tables.map((x) => `${x.family} ${x.name}`).join(', ')} hold ${s.programmed.rules} rules, ` +
      `${s.programmed.sets} sets and ${s.programmed.elements} elements (GET /v1/status, ${how})`);
  } finally {
    await agent?.stop();
    dest.end();
    rmSync(dir, { recursive: true, force: true });
    h.destroy();
    say('agent stopped, namespaces and temporary files removed');
  }
  const ok = checks.every(Boolean);
  say(ok ? `\ndemo: OK — ${checks.length} checks as expected in ${((performance.now() - tDemo) / 1000).toFixed(1)} s` : '\ndemo: SOMETHING UNEXPECTED HAPPENED');
  return ok;
}
