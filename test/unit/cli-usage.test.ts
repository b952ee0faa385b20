/**
 * The command line without a kernel: --version, every command's --help, usage errors as one message line and
 * one usage line (exit 2), --config errors named by key path (exit 1).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, test } from 'vitest';

import { run } from '../../src/cli.js';
import { USAGE } from '../../src/cli-help.js';
import { port, state, webGroup } from '../helpers/states.js';

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await run(argv, { out: (t) => { out += t; }, err: (t) => { err += t; }, stdin: [] });
  return { code, out, err };
}

const dir = mkdtempSync(path.join(tmpdir(), 'pw-cli-usage-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, content: unknown): string => {
  const f = path.join(dir, name);
  writeFileSync(f, typeof content === 'string' ? content : JSON.stringify(content));
  return f;
};

describe('portwall CLI (no kernel)', () => {
  test('--version prints the package version', async () => {
    const { version } = JSON.parse(readFileSync(path.resolve(import.meta.dirname, '../../package.json'), 'utf8')) as { version: string };
    expect(await cli('--version')).toEqual({ code: 0, out: `${version}\n`, err: '' });
    expect(await cli('-V')).toEqual({ code: 0, out: `${version}\n`, err: '' });
  });

  test('every command has --help (and -h), starting with its usage; the overview lists them all', async () => {
    const overview = await cli('--help');
    expect(overview.code).toBe(0);
    for (const command of Object.keys(USAGE)) {
      const h = await cli(command, '--help');
      expect(h, command).toMatchObject({ code: 0, err: '' });
      const first = h.out.split('\n')[0]!;
      if (['agent', 'bench', 'demo'].includes(command)) expect(first, command).toMatch(new RegExp(`^portwall ${command}\\b`));
      else expect(first, command).toBe(USAGE[command]);
      expect((await cli(command, '-h')).out, command).toBe(h.out);
      expect(overview.out).toContain(`portwall ${command}`);
    }
    for (const command of ['apply', 'plan', 'status', 'teardown', 'agent', 'schema']) expect((await cli(command, '--help')).out, command).toContain('Exit codes');
    expect(overview.out).toContain('portwall --version');
    expect(overview.out).toContain('CAP_NET_ADMIN');
  });

  test('a usage error prints its message and the command\'s one usage line, exit 2', async () => {
    const cases: [string[], string, string][] = [
      [['apply', '--bogus', 'x'], "Unknown option '--bogus'", 'apply'],
      [['apply'], 'missing FILE', 'apply'],
      [['apply', 'a.json', 'b.json'], 'unexpected argument "b.json"', 'apply'],
      [['plan', '--format', 'yaml', 'x.json'], '--format yaml: use nft or iptables', 'plan'],
      [['plan', '--format', 'iptables', '--netns', 'ns1', 'x.json'], '--format iptables reads no namespace', 'plan'],
      [['plan', '--format', 'iptables', '--detailed-exitcode', 'x.json'], '--detailed-exitcode compares with the kernel', 'plan'],
      [['status', 'extra'], 'unexpected argument "extra"', 'status'],
      [['teardown', '--json'], "Unknown option '--json'", 'teardown'],
      [['schema', '--bogus'], "Unknown option '--bogus'", 'schema'],
      [['agent', '--log-level', 'loud'], '--log-level: unknown level "loud"', 'agent'],
    ];
    for (const [argv, message, command] of cases) {
      const r = await cli(...argv);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.out).toBe('');
      const lines = r.err.split('\n');
      expect(lines, argv.join(' ')).toHaveLength(3);
      expect(lines[0]).toContain(message);
      expect(lines[1]).toBe(`usage: ${USAGE[command]}  (portwall ${command} --help)`);
    }
    for (const argv of [[], ['frobnicate'], ['--netns', 'x']]) {
      const r = await cli(...argv);
      expect(r.code).toBe(2);
      expect(r.err.split('\n')).toHaveLength(3);
      expect(r.err).toContain('usage: portwall COMMAND [OPTIONS] (portwall --help lists the commands)');
    }
  });

  test('--config: applied (plan --format iptables), and an invalid file names every bad key, exit 1', async () => {
    const s = file('s.json', state('routed', [webGroup()], [port(1, ['sg-web'])]));
    const good = file('good.json', { zoneRange: { min: 101, max: 200 } });
    expect((await cli('plan', '--format', 'iptables', '--config', good, s)).code).toBe(0);
    // The zone range is the config's: network zone 101 is outside 200-300.
    const narrow = file('narrow.json', { zoneRange: { min: 200, max: 300 } });
    const outside = await cli('plan', '--format', 'iptables', '--config', narrow, s);
    expect(outside.code).toBe(1);
    expect(outside.err).toMatch(/ERR_INVALID_STATE.*\n.*zone/);

    const bad = file('bad.json', { tables: { inet: 'has space', nat: 7, ip: 'x' }, markMask: '0xf0f0', zoneRange: { min: 9, max: 3 }, publishIpsets: 'yes', mark_mask: 1 });
    const r = await cli('plan', '--format', 'iptables', '--config', bad, s);
    expect(r).toMatchObject({ code: 1, out: '' });
    expect(r.err).toBe([
      `portwall: ERR_INVALID_CONFIG: ${bad}: 7 problems`,
      '  mark_mask: unknown key (known: tables, markMask, zoneRange, publishIpsets, logGroup)',
      '  tables.ip: unknown key (known: inet, bridge, nat)',
      '  tables.inet: not a table name (letters, digits, _ . -): "has space"',
      '  tables.nat: not a table name (letters, digits, _ . -): 7',
      '  markMask: markMask 0xf0f0 must be one run of bits',
      '  zoneRange: min 9 is above max 3',
      '  publishIpsets: must be true or false: "yes"',
      '',
    ].join('\n'));
    const syntax = await cli('plan', '--format', 'iptables', '--config', file('syntax.json', '{"tables": {"inet": "a",}}'), s);
    expect(syntax.code).toBe(1);
    expect(syntax.err).toMatch(/ERR_INVALID_CONFIG: .*syntax\.json: 1 problem\n  \(root\): not valid JSON at line 1, column \d+/);
    const missing = await cli('plan', '--format', 'iptables', '--config', path.join(dir, 'nope.json'), s);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/ERR_SYSTEM: cannot read config file .*nope\.json/);
  });
});
