/**
 * `portwall bench` without running a benchmark: its help names every option and section bench/sg.ts has, the
 * main help lists it, and a bad command line is a usage error (exit 2) before anything needs root. The report's
 * headline and chart links (bench/sg-report.ts) from synthetic rows.
 */
import { afterEach, describe, expect, test, vi } from 'vitest';

import { OPTIONS, SECTIONS, runBench } from '../../bench/sg.js';
import type { Row } from '../../bench/sg-harness.js';
import { headline, markdown, type Report } from '../../bench/sg-report.js';
import { run } from '../../src/cli.js';

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await run(argv, { out: (t) => { out += t; }, err: (t) => { err += t; }, stdin: [] });
  return { code, out, err };
}

describe('portwall bench: help and usage', () => {
  afterEach(() => vi.restoreAllMocks());

  test('--help documents every option and section of the benchmark, the report files and the exit codes', async () => {
    const h = await cli('bench', '--help');
    expect(h.code).toBe(0);
    for (const o of Object.keys(OPTIONS)) expect(h.out, `--${o} (bench/sg.ts OPTIONS) in src/cli.ts COMMAND_HELP.bench`).toMatch(new RegExp(`^  --${o} `, 'm'));
    for (const s of SECTIONS) expect(h.out, `section ${s} (bench/sg.ts SECTIONS) in src/cli.ts COMMAND_HELP.bench`).toMatch(new RegExp(`^  ${s} `, 'm'));
    for (const f of ['.md', '.json', '-oneport.svg', '-fullsync.svg', '-churn.svg']) expect(h.out).toContain(`sg-TIME${f}`);
    expect(h.out).toContain('Exit codes');
    expect(h.out).toContain('default bench/reports under the current directory');
    expect((await cli('bench', '-h')).out).toBe(h.out);
    expect((await cli('--help')).out).toContain('portwall bench [--quick] [--sizes 100,1000,5000] [--out DIR]');
  });

  test('a bad command line exits 2 before anything runs (no root needed)', async () => {
    const errors: string[] = [];
    vi.spyOn(console, 'error').mockImplementation((m: unknown) => void errors.push(String(m)));
    expect(await cli('bench', '--bogus')).toMatchObject({ code: 2 });
    expect(await runBench(['--reps', 'many'])).toBe(2);
    expect(await runBench(['--sizes', '100,-5'])).toBe(2);
    expect(await runBench(['--only', 'updates,nope'])).toBe(2);
    expect(await runBench(['--mode', 'bridgy'])).toBe(2);
    expect(await runBench(['stray'])).toBe(2);
    expect(errors).toHaveLength(6);
    expect(errors[0]).toMatch(/--bogus/);
    expect(errors[1]).toMatch(/not a number ≥ 0: "many"/);
    expect(errors[3]).toMatch(/unknown section nope/);
  });
});

function row(section: string, kase: string, size: number, tool: string, p50: number, unit: Row['unit'] = 'ms'): Row {
  return { section: section as Row['section'], case: kase, size, tool, status: 'ok', unit, samples: [p50], p50, p99: p50 };
}

const FULL: Row[] = [
  row('one-port', 'change-groups', 100, 'portwall incremental', 1),
  row('one-port', 'change-groups', 1000, 'portwall incremental', 2),
  row('one-port', 'change-groups', 5000, 'portwall incremental', 4), // no legacy row at 5000: not the headline's size
  row('one-port', 'change-groups', 1000, 'iptables-legacy-restore', 1200),
  row('one-port', 'add', 1000, 'iptables-legacy-restore', 9999),
  row('full-sync', 'full-sync', 1000, 'portwall apply', 400),
  row('full-sync', 'full-sync', 5000, 'portwall apply', 2000),
  row('full-sync', 'full-sync', 5000, 'replay floor', 500),
  row('full-sync', 'full-sync', 5000, 'iptables-legacy-restore', 7000),
  row('datapath', 'new-tcp-conn', 100, 'portwall', 6000, 'conn/s'),
  row('datapath', 'new-tcp-conn', 5000, 'portwall', 3000, 'conn/s'),
  row('datapath', 'new-tcp-conn', 5000, 'conntrack floor', 6000, 'conn/s'),
  row('datapath', 'new-tcp-conn', 5000, 'iptables-legacy', 1500, 'conn/s'),
];

describe('report headline', () => {
  test('one-port change, full sync and datapath at the largest size that has both sides, with ratios', () => {
    expect(headline(FULL)).toEqual([
      'One-port change (change-groups) @1000 ports, p50: portwall incremental 2.000 ms, iptables-legacy-restore 1200 ms — legacy restore takes **600×** as long.',
      'Full sync @5000 ports, p50: portwall apply 2000 ms; iptables-legacy-restore 7000 ms takes **3.50×** as long; portwall is **4.00×** the replay floor (500.0 ms).',
      'Datapath @5000 ports, new TCP connections/s: portwall 3000 conn/s = **50.0%** of the conntrack floor (6000 conn/s); iptables-legacy 1500 conn/s = 25.0%.',
    ]);
  });

  test('lines and parts whose rows are missing or failed are left out', () => {
    const some = FULL.filter((r) => r.tool !== 'iptables-legacy-restore' && r.tool !== 'conntrack floor');
    expect(headline(some)).toEqual([
      'Full sync @5000 ports, p50: portwall apply 2000 ms; portwall is **4.00×** the replay floor (500.0 ms).',
    ]);
    const failed = FULL.map((r) => (r.tool === 'replay floor' || r.tool === 'iptables-legacy-restore' ? { ...r, status: 'error: boom' } : r));
    expect(headline(failed)).toHaveLength(1);
    expect(headline(failed)[0]).toMatch(/^Datapath/);
    expect(headline([])).toEqual([]);
  });

  test('the Markdown report opens with the headline and links the charts', () => {
    const report: Report = { started: '2026-12-04T00:00:00.000Z', durationS: 1, args: {}, machine: {}, workloads: [], rows: FULL, ratios: [], targets: [], notes: [] };
    const md = markdown(report, [{ title: 'One-port change', file: 'sg-x-oneport.svg' }, { title: 'Full sync', file: 'sg-x-fullsync.svg' }]);
    const sections = [...md.matchAll(/^## (.*)$/gm)].map((m) => m[1]);
    expect(sections.slice(0, 3)).toEqual(['Headline', 'Charts', 'Machine']);
    expect(md).toContain('- One-port change (change-groups) @1000 ports');
    expect(md).toContain('![One-port change](sg-x-oneport.svg)');
    expect(md).toContain('![Full sync](sg-x-fullsync.svg)');
    expect(markdown({ ...report, rows: [] })).not.toMatch(/^## (Headline|Charts)$/m);
  });

  test('members at once, the bulk stream and the start rows have their headline parts and tables', () => {
    const bulk = (tool: string, p50: number): Row => ({ ...row('member', 'bulk-leave', 1000, tool, p50), info: { changedAtOnce: 1000, members: 10000 } });
    const rows = [...FULL, bulk('portwall batch', 50), bulk('ipset restore', 10),
      row('datapath', 'bulk-tcp', 5000, 'portwall', 9000, 'Mbit/s'), row('datapath', 'bulk-tcp', 5000, 'conntrack floor', 10000, 'Mbit/s'),
      row('datapath', 'bulk-tcp', 1, 'portwall', 9500, 'Mbit/s'), row('start', 'adopt', 5000, 'portwall apply', 800)];
    const lines = headline(rows);
    expect(lines[2]).toMatch(/; one bulk stream: portwall 9000 Mbit\/s = 90\.0% of the floor's\.$/);
    expect(lines[3]).toBe('1000 of 10000 remote-group members leaving at once, p50: portwall batch 50.0 ms, Neutron-style ipset restore 10.0 ms — ipset restore takes **0.20×** as long.');
    const md = markdown({ started: 'x', durationS: 1, args: {}, machine: {}, workloads: [], rows, ratios: [], targets: [], notes: [] });
    expect(md).toContain('## Datapath: one bulk TCP stream, Mbit/s through one routed port');
    expect(md).toContain('| 1 (the port alone) | portwall | 1 | 9500 |');
    expect(md).toMatch(/^## Start: adopting a kernel that already holds the state$/m);
    expect(md).toMatch(/^\| 1000 \| bulk-leave \| 1000 \| portwall batch \|/m);
  });

  test('a one-port row whose samples made new rule profiles says how many, and the p50 of the others', () => {
    const add: Row = { ...row('one-port', 'add', 5000, 'portwall incremental', 0.7), info: { stageP50: { commit: 0.3 }, newProfileSamples: 21, p50WithoutNewProfile: 0.5 } };
    const md = markdown({ started: 'x', durationS: 1, args: {}, machine: {}, workloads: [], rows: [add], ratios: [], targets: [], notes: [] });
    expect(md).toMatch(/^\| 5000 \| add \| portwall incremental \|.*\| commit 0\.3 · 21 samples made a new rule profile; the others' p50 0\.5 ms \|$/m);
  });
});
