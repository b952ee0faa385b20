// The agent in-process (startAgent) says which keys it ignored: every API answer (a port, a group, a floating
// IP, a whole state; applied or refused) lists the body's unknown keys in `warnings`, and loading the state
// file — on start and on reload — logs each at warn. An answer for a body without unknown keys has none. And a
// start from a state file the caller already loaded (the CLI's preflight read) does not read the file again.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';

import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startAgent, type Agent } from '../../src/agent/agent.js';
import { readStateFile } from '../../src/model/load.js';
import { DEFAULT_CONFIG } from '../../src/model/types.js';
import { call } from '../helpers/agent-api.js';
import { isRoot, Netns } from '../helpers/netns.js';
import { port, state, webGroup } from '../helpers/states.js';

interface LogLine { level: number; msg: string; event?: string; file?: string; path?: string }

/** A pino destination that parses each JSON line into `lines`. */
function logInto(lines: LogLine[]): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as LogLine);
      done();
    },
  });
}

describe.skipIf(!isRoot)('agent warnings for unknown keys', () => {
  let ns: Netns;
  let dir: string;
  let stateFile: string;
  let socket: string;
  let agent: Agent;
  const lines: LogLine[] = [];
  const WARN = 40;

  // The state file names a rule's remote prefix wrongly: the rule stays valid (it admits any remote) and is warned of.
  const fileState = () => {
    const s = state('routed', [webGroup()], [port(1, ['sg-web']), port(2, ['sg-web'])]) as unknown as {
      security_groups: { security_group_rules: Record<string, unknown>[] }[];
    };
    const http = s.security_groups[0]!.security_group_rules[0]!;
    http.remote_ip_prefx = http.remote_ip_prefix;
    delete http.remote_ip_prefix;
    return s;
  };

  beforeAll(async () => {
    ns = new Netns('agentwarn');
    dir = mkdtempSync(path.join(tmpdir(), 'pw-agentwarn-'));
    stateFile = path.join(dir, 'state.json');
    socket = path.join(dir, 'pw.sock');
    writeFileSync(stateFile, JSON.stringify(fileState()));
    agent = await startAgent({ netns: ns.name, stateFile, socketPath: socket, logger: pino({ level: 'info' }, logInto(lines)), checkIntervalMs: 0 });
  });
  afterAll(async () => {
    await agent?.stop();
    ns?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const warnLines = () => lines.filter((l) => l.level === WARN && l.event === 'warning');

  it('the state file on start: one warn line per unknown key, with the file and the path', () => {
    expect(warnLines()).toEqual([{
      level: WARN, event: 'warning', file: stateFile, path: 'security_groups[0] (sg-web).security_group_rules[0] (sg-web-http).remote_ip_prefx',
      msg: 'security_groups[0] (sg-web).security_group_rules[0] (sg-web-http).remote_ip_prefx: unknown key, ignored (did you mean remote_ip_prefix?)',
    }].map((w) => expect.objectContaining(w)));
  });

  it('a group, a port, a floating IP and a whole state: the answer lists the keys it ignored', async () => {
    const group = webGroup() as unknown as { security_group_rules: Record<string, unknown>[] };
    group.security_group_rules.push({ id: 'cli', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', 'IP Range': '203.0.113.0/24' });
    const g = await call(socket, 'PUT', '/v1/security-groups/sg-web', group);
    expect(g.status).toBe(200);
    expect(g.body.warnings).toEqual([{
      path: 'security_groups[0] (sg-web).security_group_rules[6] (cli).IP Range',
      message: 'unknown key, ignored ("IP Range" is the openstack CLI\'s name; the state file has remote_ip_prefix)',
    }]);

    const p = await call(socket, 'PUT', '/v1/ports/port-00002', { ...port(2, ['sg-web']), securitygroup: ['sg-web'] });
    expect(p.status).toBe(200);
    expect(p.body.warnings).toEqual([{ path: 'ports[0] (tap2).securitygroup', message: 'unknown key, ignored (did you mean security_groups?)' }]);

    const f = await call(socket, 'PUT', '/v1/floatingips/fip-1', { floating_ip_address: '203.0.113.50', Port: 'port-00001' });
    expect(f.status).toBe(200);
    expect(f.body.warnings).toEqual([{ path: 'floatingips[0] (fip-1).Port', message: 'unknown key, ignored ("Port" is the openstack CLI\'s name; the state file has port_id)' }]);

    const s = await call(socket, 'PUT', '/v1/state', { ...fileState(), floatingip: [] });
    expect(s.status).toBe(200);
    expect(s.body.warnings.map((w: { path: string }) => w.path)).toEqual([
      'security_groups[0] (sg-web).security_group_rules[0] (sg-web-http).remote_ip_prefx', 'floatingip',
    ]);
  });

  it('a refused body: the problems and, beside them, the keys it ignored; a body without unknown keys: no warnings', async () => {
    const bad = await call(socket, 'PUT', '/v1/ports/port-00002', { ...port(2, ['sg-web']), mac_address: 'zz', MAC: 'fa:16:3e:00:00:02' });
    expect(bad.status).toBe(400);
    expect(bad.body.error.problems).toEqual([expect.objectContaining({ path: 'ports[0] (tap2).mac_address' })]);
    expect(bad.body.warnings).toEqual([{ path: 'ports[0] (tap2).MAC', message: 'unknown key, ignored' }]);
    const good = await call(socket, 'PUT', '/v1/ports/port-00002', port(2, ['sg-web']));
    expect(good.status).toBe(200);
    expect(good.body).not.toHaveProperty('warnings');
  });

  it('a reload of the state file logs its unknown keys again', async () => {
    const before = warnLines().length;
    writeFileSync(stateFile, JSON.stringify({ ...fileState(), nat_rules: [] }));
    await agent.reload();
    expect(warnLines().slice(before).map((l) => l.path)).toEqual(expect.arrayContaining([
      'security_groups[0] (sg-web).security_group_rules[0] (sg-web-http).remote_ip_prefx', 'nat_rules',
    ]));
  });
});

describe.skipIf(!isRoot)('agent start from a state already loaded', () => {
  it('starts from the loadedState it is given (the CLI\'s preflight read) without reading the file again, and logs its warnings', async () => {
    const ns = new Netns('agentloaded');
    const dir = mkdtempSync(path.join(tmpdir(), 'pw-agentloaded-'));
    const stateFile = path.join(dir, 'state.json');
    const lines: LogLine[] = [];
    let agent: Agent | undefined;
    try {
      const doc = state('routed', [webGroup()], [port(1, ['sg-web'])]) as unknown as { ports: Record<string, unknown>[] };
      doc.ports[0]!.colour = 'blue';
      writeFileSync(stateFile, JSON.stringify(doc));
      const loadedState = await readStateFile(stateFile, DEFAULT_CONFIG);
      // The file is gone: a start that read it again would fail.
      rmSync(stateFile);
      agent = await startAgent({ netns: ns.name, stateFile, loadedState, socketPath: path.join(dir, 'pw.sock'), logger: pino({ level: 'info' }, logInto(lines)), checkIntervalMs: 0 });
      expect(lines.find((l) => l.event === 'start')).toMatchObject({ msg: expect.stringContaining('adopted') });
      expect(lines.some((l) => l.event === 'warning' && l.path?.includes('colour'))).toBe(true);
      expect(ns.exec('nft', ['list', 'set', 'inet', 'portwall', 'ports_dev'])).toContain('tap1');
    } finally {
      await agent?.stop();
      ns.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
