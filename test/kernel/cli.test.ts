/**
 * The CLI contract (docs/requirements.md) in a fresh namespace (root): apply makes the kernel match FILE (exit 0) or
 * changes nothing and names the bad object and field (exit 1); plan prints changes (--detailed-exitcode: 2 when
 * there are some); status --json prints what is programmed; usage errors exit 2; every command has --help with the
 * exit codes; --config names the tables; teardown removes what portwall owns; and, through the built CLI in a
 * process of its own: a closed stdout (EPIPE) is a quiet exit, a missing privilege is named, preflight warnings.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { run } from '../../src/cli.js';
import { idHash } from '../../src/compile/names.js';
import { Netns, isRoot } from '../helpers/netns.js';
import { Bg } from '../helpers/probes.js';
import { port, state, webGroup } from '../helpers/states.js';
import { CLI } from '../helpers/cli.js';

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  return cliWithStdin([], ...argv);
}

async function cliWithStdin(stdin: string[], ...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await run(argv, { out: (t) => { out += t; }, err: (t) => { err += t; }, stdin });
  return { code, out, err };
}

describe.skipIf(!isRoot)('portwall CLI', () => {
  let ns: Netns;
  let dir: string;
  const file = (name: string, doc: unknown): string => {
    const f = path.join(dir, name);
    writeFileSync(f, JSON.stringify(doc));
    return f;
  };
  beforeAll(() => {
    ns = new Netns('cli');
    dir = mkdtempSync(path.join(tmpdir(), 'pw-cli-'));
  });
  afterAll(() => {
    ns?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test('apply: exit 0 when the kernel matches FILE; the second run changes nothing', async () => {
    const f = file('two.json', state('routed', [webGroup()], [port(1, ['sg-web']), port(2, ['sg-web'])]));
    const first = await cli('apply', '--netns', ns.name, f);
    expect(first).toMatchObject({ code: 0, err: '' });
    expect(first.out).toMatch(/applied \d+ operations/);
    const second = await cli('apply', '--netns', ns.name, f);
    expect(second).toMatchObject({ code: 0, out: 'no changes: the kernel already matches\n' });
  });

  test('apply of a bad state: exit 1, the object and field on stderr, nothing applied', async () => {
    const bad = state('routed', [webGroup()], [port(1, ['sg-web'], { device: 'tap-far-too-long-for-linux' })]);
    const fresh = new Netns('clibad');
    try {
      const r = await cli('apply', '--netns', fresh.name, file('bad.json', bad));
      expect(r.code).toBe(1);
      expect(r.out).toBe('');
      expect(r.err).toMatch(/ERR_INVALID_STATE/);
      expect(r.err).toMatch(/ports\[0\].*\.device/);
      expect(fresh.nftText()).toBe('');
    } finally {
      fresh.destroy();
    }
  });

  test('unknown keys: one "warning:" line each on stderr (apply, plan, stdin), the exit code unchanged', async () => {
    const doc = state('routed', [webGroup()], [port(1, ['sg-web']), port(2, ['sg-web'])]) as unknown as {
      security_groups: { security_group_rules: Record<string, unknown>[] }[]; ports: Record<string, unknown>[];
    };
    const http = doc.security_groups[0]!.security_group_rules[0]!;
    http.remote_ip_prefx = http.remote_ip_prefix;
    delete http.remote_ip_prefix;
    doc.ports[1]!['Fixed IP Addresses'] = "ip_address='192.0.2.3'";
    const expected = [
      'warning: security_groups[0] (sg-web).security_group_rules[0] (sg-web-http).remote_ip_prefx: unknown key, ignored (did you mean remote_ip_prefix?)',
      'warning: ports[1] (tap2).Fixed IP Addresses: unknown key, ignored ("Fixed IP Addresses" is the openstack CLI\'s name; the state file has fixed_ips)',
      '',
    ].join('\n');
    const f = file('warn.json', doc);
    const applied = await cli('apply', '--netns', ns.name, f);
    expect(applied).toMatchObject({ code: 0, err: expected });
    expect(await cli('plan', '--netns', ns.name, f)).toMatchObject({ code: 0, out: '# no changes\n', err: expected });
    expect(await cliWithStdin([JSON.stringify(doc)], 'plan', '--format', 'iptables', '-')).toMatchObject({ code: 0, err: expected });
    // An invalid state: the warnings come first, then the error (a misspelt required field is both); exit 1 still.
    const rule = doc.security_groups[0]!.security_group_rules[0]!;
    rule.Direction = rule.direction;
    delete rule.direction;
    const bad = await cli('apply', '--netns', ns.name, file('warn-bad.json', doc));
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/^(?:warning: .*\n){3}portwall: ERR_INVALID_STATE: /);
    expect(bad.err).toContain('warning: security_groups[0] (sg-web).security_group_rules[0] (sg-web-http).Direction: unknown key, ignored (the state file spells it direction)\n');
    expect(bad.err).toMatch(/security_group_rules\[0\] \(sg-web-http\)\.direction: is required/);
  });

  test('plan: prints the batch as nft commands without applying it', async () => {
    const one = file('one.json', state('routed', [webGroup()], [port(1, ['sg-web'])]));
    const r = await cli('plan', '--netns', ns.name, one);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^delete element inet portwall ports_dev \{ "tap2" \}$/m);
    // The test before left sg-web's http rule open to anywhere (a misspelt key): the group's sets take their
    // next version (its chains refilled); nothing else but elements.
    expect(r.out.split('\n').filter((l) => / rule | chain | set /.test(l) && !l.includes(idHash('sg-web')))).toEqual([]);
    expect((await cli('plan', '--netns', ns.name, one)).out).toBe(r.out); // nothing was applied
    const ipt = await cli('plan', '--format', 'iptables', one);
    expect(ipt.code).toBe(0);
    expect(ipt.out).toContain('*filter');
  });

  test('status --json prints what is programmed', async () => {
    const r = await cli('status', '--netns', ns.name, '--json');
    expect(r.code).toBe(0);
    const s = JSON.parse(r.out) as { tables: unknown[]; counts: { elements: number } };
    expect(s.tables).toEqual([{ family: 'inet', name: 'portwall' }, { family: 'inet', name: 'portwall_raw' }]);
    expect(s.counts.elements).toBeGreaterThan(0);
    expect((await cli('status', '--netns', ns.name)).out).toMatch(/^table inet portwall\ntable inet portwall_raw\n\d+ chains, \d+ rules/);
  });

  test('usage errors exit 2; --help documents the exit codes', async () => {
    expect((await cli('frobnicate')).code).toBe(2);
    expect((await cli('apply', '--bogus', 'x')).code).toBe(2);
    expect((await cli('apply')).code).toBe(2);
    expect((await cli('plan', '--format', 'yaml', 'x.json')).code).toBe(2);
    for (const c of ['apply', 'plan', 'status', 'teardown', 'schema']) {
      const h = await cli(c, '--help');
      expect(h.code).toBe(0);
      expect(h.out).toContain('Exit codes');
    }
    expect((await cli('--help')).out).toContain('portwall apply [--netns NAME] [--config FILE] [--json] FILE');
  });

  test('plan --detailed-exitcode: 0 when the kernel matches FILE, 2 when apply would change something', async () => {
    const fresh = new Netns('clidetail');
    try {
      const f = file('detail.json', state('routed', [webGroup()], [port(1, ['sg-web'])]));
      const before = await cli('plan', '--detailed-exitcode', '--netns', fresh.name, f);
      expect(before).toMatchObject({ code: 2, err: '' });
      expect(before.out).toContain('add table inet portwall');
      expect((await cli('plan', '--netns', fresh.name, f)).code).toBe(0);
      expect((await cli('apply', '--netns', fresh.name, f)).code).toBe(0);
      expect(await cli('plan', '--detailed-exitcode', '--netns', fresh.name, f)).toEqual({ code: 0, out: '# no changes\n', err: '' });
      expect((await cli('plan', '--detailed-exitcode', '--netns', fresh.name, path.join(dir, 'missing.json'))).code).toBe(1);
    } finally {
      fresh.destroy();
    }
  });

  test('--config: the inet, bridge and NAT tables by the names it gives, ipsets published; teardown --config removes them in one batch', async () => {
    const fresh = new Netns('cliconfig');
    try {
      fresh.exec('nft', ['add table inet someone_else']);
      const doc = {
        ...state('bridged', [webGroup()], [port(1, ['sg-web']), port(2, ['sg-web'])]),
        floatingips: [{ id: 'fip-1', floating_ip_address: '203.0.113.50', fixed_ip_address: '192.0.2.2', port_id: 'port-00001' }],
      };
      const f = file('config-state.json', doc);
      const config = file('config.json', { tables: { inet: 'pw_filter', bridge: 'pw_l2', nat: 'pw_nat' }, markMask: '0xff00', publishIpsets: true });
      expect((await cli('apply', '--config', config, '--netns', fresh.name, f)).code).toBe(0);
      const ruleset = fresh.nftText();
      for (const t of ['table inet pw_filter', 'table bridge pw_l2', 'table ip pw_nat', 'table inet someone_else']) expect(ruleset).toContain(t);
      expect(ruleset).not.toMatch(/table \w+ portwall/);
      expect(ruleset).toMatch(/0x00000100 comment "port-00001"/); // the first tag under mask 0xff00 (1 << 8)
      const sets = fresh.exec('ipset', ['list', '-n']).split('\n').filter((n) => n.startsWith('pw'));
      expect(sets.length).toBeGreaterThan(0);
      const s = await cli('status', '--config', config, '--netns', fresh.name, '--json');
      const status = JSON.parse(s.out) as { tables: unknown[]; genid: number };
      expect(status.tables).toEqual(expect.arrayContaining([{ family: 'inet', name: 'pw_filter' }, { family: 'bridge', name: 'pw_l2' }, { family: 'ip', name: 'pw_nat' }]));

      // Without --config, teardown looks for the default names: nothing of these is touched.
      expect(await cli('teardown', '--netns', fresh.name)).toMatchObject({ code: 0, out: expect.stringMatching(/^no portwall tables\ndestroyed ipsets /) });
      expect(fresh.nftText()).toContain('table inet pw_filter');
      const gone = await cli('teardown', '--config', config, '--netns', fresh.name);
      expect(gone).toMatchObject({ code: 0, err: '' });
      expect(gone.out).toBe(`deleted table inet pw_filter, table inet pw_filter_raw, table bridge pw_l2, table ip pw_nat in one batch, generation ${status.genid + 1}\n`);
      expect(fresh.nftText()).toMatch(/^table inet someone_else \{\s*\}\s*$/);
      expect(fresh.exec('ipset', ['list', '-n']).trim()).toBe('');
      expect(await cli('teardown', '--config', config, '--netns', fresh.name)).toEqual({ code: 0, out: 'no portwall tables\n', err: '' });
    } finally {
      fresh.destroy();
    }
  });

  test('teardown: portwall\'s default tables go; a published ipset an iptables rule references is kept and named, exit 1', async () => {
    const fresh = new Netns('clitear');
    try {
      const f = file('tear.json', { ...state('routed', [webGroup()], [port(1, ['sg-web'])]), floatingips: [{ id: 'fip-1', floating_ip_address: '203.0.113.51', fixed_ip_address: '192.0.2.2', port_id: 'port-00001' }] });
      const config = file('publish.json', { publishIpsets: true });
      expect((await cli('apply', '--config', config, '--netns', fresh.name, f)).code).toBe(0);
      const [set] = fresh.exec('ipset', ['list', '-n']).split('\n').filter((n) => n.startsWith('pw4-'));
      fresh.exec('iptables', ['-A', 'INPUT', '-m', 'set', '--match-set', set!, 'src', '-j', 'ACCEPT']);
      const r = await cli('teardown', '--netns', fresh.name);
      expect(r.code).toBe(1);
      expect(r.out).toMatch(/^deleted table inet portwall, table inet portwall_raw, table ip portwall_nat in one batch, generation \d+\n$/);
      expect(r.err).toBe(`portwall: ipset ${set} is kept: an iptables rule still references it\n`);
      expect(fresh.exec('nft', ['list', 'tables'])).not.toMatch(/portwall/);
      fresh.exec('iptables', ['-F', 'INPUT']);
      expect(await cli('teardown', '--netns', fresh.name)).toEqual({ code: 0, out: `no portwall tables\ndestroyed ipsets ${set}\n`, err: '' });
    } finally {
      fresh.destroy();
    }
  });

  test('the built CLI: a reader that closes early (status --json | head -1) ends it quietly, exit 0', async () => {
    expect(existsSync(CLI), 'run scripts/setup.sh first (builds dist/)').toBe(true);
    const child = spawn(process.execPath, [CLI, 'status', '--netns', ns.name, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy(); // before the CLI writes a byte: its write fails with EPIPE
    let err = '';
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    const code = await new Promise<number | null>((done) => child.on('close', (c) => done(c)));
    expect({ code, err }).toEqual({ code: 0, err: '' });
    // And in a shell pipeline, with more output than one pipe buffer.
    const piped = spawnSync('bash', ['-c', 'set -o pipefail; node "$1" status --netns "$2" --json | head -c 10', 'sh', CLI, ns.name], { encoding: 'utf8', timeout: 30_000 });
    expect({ status: piped.status, stderr: piped.stderr, out: piped.stdout }).toEqual({ status: 0, stderr: '', out: '{\n  "table' });
  });

  test('without CAP_NET_ADMIN the error says so (and entering a namespace names CAP_SYS_ADMIN), exit 1', () => {
    const nobody = ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', '--bounding-set=-all'];
    const inside = spawnSync('ip', ['netns', 'exec', ns.name, 'setpriv', ...nobody, process.execPath, CLI, 'status'], { encoding: 'utf8', timeout: 30_000 });
    expect(inside.status).toBe(1);
    expect(inside.stderr).toMatch(/Operation not permitted\nportwall: netlink to nftables, ipset and conntrack needs CAP_NET_ADMIN \(run as root, or grant the process CAP_NET_ADMIN\)\n$/);
    const entering = spawnSync('setpriv', [...nobody, process.execPath, CLI, 'status', '--netns', ns.name], { encoding: 'utf8', timeout: 30_000 });
    expect(entering.status).toBe(1);
    expect(entering.stderr).toMatch(/ERR_NETNS: .*Operation not permitted\nportwall: entering a network namespace needs CAP_SYS_ADMIN \(run as root\)\n$/);
  });

  test('preflight, run inside the namespace: bridge-nf-call-iptables off and missing devices are warnings on stderr; the apply goes on', () => {
    const fresh = new Netns('clipre');
    try {
      const f = file('pre.json', state('bridged', [webGroup()], [port(1, ['sg-web']), port(2, ['sg-web'])]));
      fresh.exec('sysctl', ['-qw', 'net.bridge.bridge-nf-call-iptables=0', 'net.bridge.bridge-nf-call-ip6tables=1']);
      const inside = (...args: string[]) => spawnSync('ip', ['netns', 'exec', fresh.name, process.execPath, CLI, ...args], { encoding: 'utf8', timeout: 30_000 });
      const first = inside('apply', f);
      expect(first.status).toBe(0);
      expect(first.stderr).toBe([
        "warning: net.bridge.bridge-nf-call-iptables is 0: traffic between ports of a bridge does not reach portwall's inet chains, so security groups are not enforced on bridged network net-a (sysctl -w net.bridge.bridge-nf-call-iptables=1)",
        'warning: network net-a: bridge br-a does not exist (its rules are programmed and apply once it does)',
        'warning: port port-00001: device tap1 does not exist (its rules are programmed and apply once it does)',
        'warning: port port-00002: device tap2 does not exist (its rules are programmed and apply once it does)',
        '',
      ].join('\n'));
      expect(fresh.nftText()).toContain('table bridge portwall');
      fresh.exec('sysctl', ['-qw', 'net.bridge.bridge-nf-call-iptables=1']);
      fresh.exec('ip', ['link', 'add', 'br-a', 'type', 'bridge']);
      for (const d of ['tap1', 'tap2']) fresh.exec('ip', ['link', 'add', d, 'type', 'veth', 'peer', 'name', `${d}-peer`]);
      expect(inside('plan', '--detailed-exitcode', f)).toMatchObject({ status: 0, stderr: '' });
    } finally {
      fresh.destroy();
    }
  });

  test('agent --config: programs the tables by the names it gives; --record-idle-ms sets when its adopt record follows', async () => {
    const fresh = new Netns('cliagent');
    const child = spawn(process.execPath, [CLI, 'agent', '--netns', fresh.name, '--config', file('agent-config.json', { tables: { inet: 'pw_agent' } }),
      '--state', file('agent-state.json', state('routed', [webGroup()], [port(1, ['sg-web'])])), '--socket', path.join(dir, 'agent.sock'), '--check-interval', '0',
      '--record-idle-ms', '50'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
    const bg = new Bg(child);
    try {
      await bg.waitFor((l) => l.includes('agent ready'), 20_000);
      expect(fresh.exec('nft', ['list', 'tables']).trim()).toBe('table inet pw_agent\ntable inet pw_agent_raw');
      // 50 ms after its first commit, not the default second: well within 600 ms of being ready.
      const record = () => String(spawnSync('ip', ['netns', 'exec', fresh.name, 'nft', 'list', 'set', 'inet', 'pw_agent', 'adopt_record']).stdout);
      for (const t0 = Date.now(); Date.now() - t0 < 600 && !record().includes('comment "gen ');) await new Promise((r) => setTimeout(r, 20));
      expect(record()).toContain('comment "gen ');
    } finally {
      child.kill('SIGTERM');
      await bg.done;
      fresh.destroy();
    }
  });

  test('schema prints the shipped JSON Schema', async () => {
    const r = await cli('schema');
    expect(r.code).toBe(0);
    expect(r.out).toBe(readFileSync(path.resolve(import.meta.dirname, '../../schema/state.schema.json'), 'utf8'));
  });
});
