import { describe, expect, it } from 'vitest';

import { type Row, finish, newRow } from '../../bench/sg-harness.js';
import { churnTargets, judge, markdown } from '../../bench/sg-report.js';

const AGENT = 'portwall agent (socket API)';

/** A finished row with these samples. */
function row(section: Row['section'], kase: string, size: number, tool: string, samples: number[], info?: Record<string, unknown>, unit: Row['unit'] = 'ms'): Row {
  return finish({ ...newRow(section, kase, size, tool, unit, info), samples });
}

/** A churn run's rows: `slow` changes of 20 ms among 1000 of 2 ms per kind, and the agent's CPU. */
function churn(slow: number, cpuPct: number, run = { rate: 500, seconds: 60 }, ports = 1000): Row[] {
  const kinds = ['add', 'change-groups', 'change-ip', 'remove', 'rule-add', 'rule-remove'];
  return [
    ...kinds.map((k) => row('churn', k, ports, AGENT, [...Array(1000 - slow).fill(2), ...Array(slow).fill(20)])),
    row('churn', 'timeline', ports, AGENT, [5, 6]),
    row('churn', 'agent-cpu', ports, AGENT, [cpuPct], run, '%'),
  ];
}

const statusOf = (targets: { target: string; status: string }[], part: string) => targets.filter((t) => t.target.includes(part)).map((t) => t.status);

describe('the report judges the churn targets', () => {
  it('over every change of the mix together, and the agent CPU', () => {
    // 1% of the changes slow: the p99 (nearest rank) is still a fast one; 2%: it is a slow one.
    expect(statusOf(churnTargets(churn(10, 45)), 'p99')).toEqual(['met']);
    expect(statusOf(churnTargets(churn(20, 45)), 'p99')).toEqual(['missed']);
    expect(churnTargets(churn(20, 45)).find((t) => t.target.includes('p99'))?.measured).toBe('p99 20.0 ms (n=6000)');
    expect(statusOf(churnTargets(churn(0, 45)), 'CPU')).toEqual(['met']);
    expect(statusOf(churnTargets(churn(0, 61)), 'CPU')).toEqual(['missed']);
  });

  it('only when the run churned as much as the target says', () => {
    const short = churnTargets(churn(0, 10, { rate: 50, seconds: 5 }));
    expect(short.map((t) => t.status)).toEqual(['not measured', 'not measured']);
    expect(short[0]!.measured).toBe('only 50/s for 5 s @1000 run');
    expect(churnTargets([]).map((t) => t.measured)).toEqual(['not run', 'not run']);
  });

  it('marks a failed churn row as an error, not as met', () => {
    const rows = churn(0, 45);
    rows[0]!.status = 'error: 5xx answers';
    expect(churnTargets(rows).map((t) => t.status)).toEqual(['error', 'error']);
  });
});

describe('the report judges the conntrack cleanup targets', () => {
  const cleanup = (portwall: number, cli: number, entries = 100_000) => [
    row('conntrack', 'zone', entries, 'portwall', [portwall, portwall, portwall]),
    row('conntrack', 'zone', entries, 'conntrack -D', [cli, cli, cli]),
  ];

  it('at most 50 ms and at least 10× faster than conntrack -D', () => {
    const met = judge(cleanup(20, 230), [100], 100).targets;
    expect(statusOf(met, 'conntrack cleanup (zone)')).toEqual(['met', 'met']);
    const slow = judge(cleanup(60, 1000), [100], 100).targets;
    expect(statusOf(slow, 'p50 ≤ 50 ms')).toEqual(['missed']);
    const close = judge(cleanup(30, 230), [100], 100).targets;
    expect(statusOf(close, '≥ 10× faster than conntrack -D')).toEqual(['missed']);
    expect(close.find((t) => t.target.includes('conntrack -D'))?.measured).toBe('7.67× (230.0 ms vs 30.0 ms)');
  });

  it('not measured with fewer entries than the target states', () => {
    expect(statusOf(judge(cleanup(5, 100, 10_000), [100], 100).targets, 'conntrack cleanup')).toEqual(['not measured']);
  });
});

describe('the report\'s full-sync table', () => {
  it('lists every round, and for portwall the collector\'s pauses and the page faults in each', () => {
    const pw = row('full-sync', 'full-sync', 1000, 'portwall apply', [205.4, 231.2], { gcMs: [63, 73], gcCount: [4, 5], pageFaults: [3100, 5200], warmUpMs: [179, 214], warmUpGcMs: [48, 63] });
    const floor = row('full-sync', 'full-sync', 1000, 'replay floor', [51.2, 47]);
    const md = markdown({ started: 'now', durationS: 1, args: {}, machine: {}, workloads: [], rows: [pw, floor], ratios: [], targets: [], notes: [] });
    const lines = md.split('\n');
    expect(lines.find((l) => l.includes('| portwall apply |'))).toContain(
      'rounds 205, 231 ms · GC pauses 63, 73 ms (4, 5 collections) · page faults 3100, 5200 · untimed warm-up rounds 179, 214 ms, GC pauses 48, 63 ms');
    expect(lines.find((l) => l.includes('| replay floor |'))).toMatch(/\| rounds 51, 47 ms \|$/);
  });
});
