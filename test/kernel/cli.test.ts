/**
 * The CLI contract (docs/requirements.md) in a fresh namespace (root): apply makes the kernel match FILE (exit 0) or
 * changes nothing and names the bad object and field (exit 1); plan prints changes; status --json prints what
 * is programmed; usage errors exit 2; every command has --help with the exit codes.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { run } from '../../src/cli.js';
import { Netns, isRoot } from '../helpers/netns.js';
import { port, state, webGroup } from '../helpers/states.js';

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
    expect(r.out).not.toMatch(/rule/);
    expect((await cli('plan', '--netns', ns.name, one)).out).toBe(r.out); // nothing was applied
    const ipt = await cli('plan', '--format', 'iptables', one);
    expect(ipt.code).toBe(0);
    expect(ipt.out).toContain('*filter');
  });

  test('status --json prints what is programmed', async () => {
    const r = await cli('status', '--netns', ns.name, '--json');
    expect(r.code).toBe(0);
    const s = JSON.parse(r.out) as { tables: unknown[]; counts: { elements: number } };
    expect(s.tables).toEqual([{ family: 'inet', name: 'portwall' }]);
    expect(s.counts.elements).toBeGreaterThan(0);
    expect((await cli('status', '--netns', ns.name)).out).toMatch(/^table inet portwall\n\d+ chains, \d+ rules/);
  });

  test('usage errors exit 2; --help documents the exit codes', async () => {
    expect((await cli('frobnicate')).code).toBe(2);
    expect((await cli('apply', '--bogus', 'x')).code).toBe(2);
    expect((await cli('apply')).code).toBe(2);
    expect((await cli('plan', '--format', 'yaml', 'x.json')).code).toBe(2);
    for (const c of ['apply', 'plan', 'status']) {
      const h = await cli(c, '--help');
      expect(h.code).toBe(0);
      expect(h.out).toContain('Exit codes');
    }
    expect((await cli('--help')).out).toContain('portwall apply [--netns NAME] FILE');
  });

  test('schema prints the shipped JSON Schema', async () => {
    const r = await cli('schema');
    expect(r.code).toBe(0);
    expect(r.out).toBe(readFileSync(path.resolve(import.meta.dirname, '../../schema/state.schema.json'), 'utf8'));
  });
});
