/**
 * The benchmark's SVG charts (bench/sg-charts.ts) from a small synthetic report: well-formed SVG, one polyline
 * per tool, a logarithmic latency axis ticked at powers of ten (equal ratios at equal distances — a linear
 * axis fails here), points placed monotonically for monotone data, and a churn chart only when there are
 * churn rows.
 */
import { describe, expect, test } from 'vitest';

import {
  ONE_PORT_CASE, decades, linearScale, logDomain, logScale, msLabel, niceTicks, reportCharts, type Chart,
} from '../../bench/sg-charts.js';
import type { Row } from '../../bench/sg-harness.js';

const AGENT = 'portwall agent (socket API)';

function row(section: string, kase: string, size: number, tool: string, p50: number, status = 'ok'): Row {
  return { section: section as Row['section'], case: kase, size, tool, status, unit: 'ms', samples: status === 'ok' ? [p50] : [], ...(status === 'ok' ? { p50, p99: p50 } : {}) };
}

// One-port change: portwall grows tenfold per size (1, 10, 100 ms), the restores exist at one size only.
const ROWS: Row[] = [
  ...[[100, 1], [1000, 10], [5000, 100]].flatMap(([n, ms]) => [
    row('one-port', ONE_PORT_CASE, n!, 'portwall incremental', ms!),
    row('one-port', ONE_PORT_CASE, n!, 'portwall apply', ms! * 2),
    row('one-port', ONE_PORT_CASE, n!, AGENT, ms! * 1.5),
    row('one-port', 'add', n!, 'portwall incremental', ms! / 2), // another case: not in the chart
  ]),
  row('one-port', ONE_PORT_CASE, 1000, 'iptables-legacy-restore', 1200),
  row('one-port', ONE_PORT_CASE, 1000, 'iptables-nft-restore', 2400),
  row('one-port', ONE_PORT_CASE, 1000, 'broken tool', 0, 'error: it broke'), // no number: no line
  ...[[1000, 1], [5000, 5]].flatMap(([n, k]) => [
    row('full-sync', 'full-sync', n!, 'portwall apply', 380 * k!),
    row('full-sync', 'full-sync', n!, 'replay floor', 52 * k!),
    row('full-sync', 'full-sync', n!, 'nft -f', 128 * k!),
    row('full-sync', 'full-sync', n!, 'iptables-legacy-restore', 1150 * k!),
    row('full-sync', 'full-sync', n!, 'iptables-nft-restore', 2400 * k!),
  ]),
  row('datapath', 'new-tcp-conn', 100, 'portwall', 6800),
];

interface Tag { name: string; attrs: Record<string, string> }

/**
 * A small well-formedness check: every tag balanced and properly nested, one root <svg>, attributes quoted,
 * no stray markup characters in text. Returns the elements in document order.
 */
function parseSvg(svg: string): Tag[] {
  const body = svg.replace(/^<\?xml[^?]*\?>\s*/, '');
  const tags: Tag[] = [];
  const stack: string[] = [];
  let roots = 0;
  let last = 0;
  for (const m of body.matchAll(/<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g)) {
    const text = body.slice(last, m.index);
    expect(text, `text before ${m[0]}`).not.toMatch(/[<>]|&(?!(amp|lt|gt|quot|apos);)/);
    last = m.index + m[0].length;
    const [, close, name, attrText, selfClose] = m;
    if (close) {
      expect(stack.pop(), `</${name}>`).toBe(name);
      continue;
    }
    if (stack.length === 0) roots++;
    const attrs = Object.fromEntries([...attrText!.matchAll(/([\w:-]+)="([^"]*)"/g)].map((a) => [a[1]!, a[2]!]));
    tags.push({ name: name!, attrs });
    if (!selfClose) stack.push(name!);
  }
  expect(body.slice(last).trim()).toBe('');
  expect(stack).toEqual([]);
  expect(roots).toBe(1);
  expect(tags[0]!.name).toBe('svg');
  expect(tags[0]!.attrs.xmlns).toBe('http://www.w3.org/2000/svg');
  return tags;
}

const points = (t: Tag): [number, number][] => t.attrs.points!.split(' ').map((p) => p.split(',').map(Number) as [number, number]);
const polylines = (tags: Tag[]) => new Map(tags.filter((t) => t.name === 'polyline').map((t) => [t.attrs['data-series']!, points(t)]));
const yTicks = (tags: Tag[]) => tags.filter((t) => t.name === 'line' && t.attrs.class === 'grid y').map((t) => ({ value: Number(t.attrs['data-value']), y: Number(t.attrs.y1) }));
const chart = (charts: Chart[], key: string): Chart => {
  const c = charts.find((x) => x.key === key);
  expect(c, key).toBeDefined();
  return c!;
};

describe('scales', () => {
  test('log: ticks at powers of ten enclosing the data, equal ratios at equal distances', () => {
    expect(logDomain([0.37, 2419])).toEqual([0.1, 10_000]);
    expect(logDomain([1000])).toEqual([1000, 10_000]);
    expect(logDomain([10, 100])).toEqual([10, 100]);
    expect(decades([0.01, 1000])).toEqual([0.01, 0.1, 1, 10, 100, 1000]);
    const s = logScale([1, 1000], [300, 0]);
    expect([1, 10, 100, 1000].map(s.map)).toEqual([300, 200, 100, 0]);
    expect(s.map(Math.sqrt(10))).toBeCloseTo(250);
  });

  test('linear: equal differences at equal distances, round ticks', () => {
    const s = linearScale([0, 10], [0, 100]);
    expect([0, 5, 10].map(s.map)).toEqual([0, 50, 100]);
    expect(niceTicks([0, 10])).toEqual([0, 2, 4, 6, 8, 10]);
    expect(niceTicks([0.3, 2.9], 4)).toEqual([1, 2]);
    expect(niceTicks([0.3, 2.9], 8)).toEqual([0.5, 1, 1.5, 2, 2.5]);
  });

  test('time labels', () => {
    expect([0.1, 1, 100, 1000, 10_000].map(msLabel)).toEqual(['0.1 ms', '1 ms', '100 ms', '1 s', '10 s']);
  });
});

describe('report charts', () => {
  const charts = reportCharts(ROWS);

  test('one-port and full-sync charts; no churn chart without churn rows', () => {
    expect(charts.map((c) => c.key)).toEqual(['oneport', 'fullsync']);
    for (const c of charts) {
      expect(c.title.length).toBeGreaterThan(0);
      parseSvg(c.svg);
    }
  });

  test('one polyline per tool that has a number, named in the legend; titled, both axes labelled', () => {
    const tags = parseSvg(chart(charts, 'oneport').svg);
    const tools = ['portwall incremental', 'portwall apply', AGENT, 'iptables-legacy-restore', 'iptables-nft-restore'];
    expect([...polylines(tags).keys()]).toEqual(tools);
    const svg = chart(charts, 'oneport').svg;
    const legendItems = [...svg.matchAll(/class="legend-item"[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);
    expect(legendItems).toEqual(tools);
    expect(svg).not.toContain('broken tool');
    expect(svg).toMatch(/class="title"[^>]*>One-port change/);
    expect(svg).toMatch(/class="label x"[^>]*>ports on the host/);
    expect(svg).toMatch(/class="label y"[^>]*>p50 latency \(log scale\)/);
    const sync = parseSvg(chart(charts, 'fullsync').svg);
    expect([...polylines(sync).keys()]).toEqual(['portwall apply', 'replay floor', 'nft -f', 'iptables-legacy-restore', 'iptables-nft-restore']);
  });

  test('the latency axis is logarithmic: ticks at powers of ten, evenly spaced, labelled as times', () => {
    const tags = parseSvg(chart(charts, 'oneport').svg);
    const ticks = yTicks(tags);
    // Data from 1 ms to 2400 ms: decades 1 ms … 10 s.
    expect(ticks.map((t) => t.value)).toEqual([1, 10, 100, 1000, 10_000]);
    const gaps = ticks.slice(1).map((t, i) => ticks[i]!.y - t.y);
    for (const g of gaps) expect(g).toBeCloseTo(gaps[0]!, 0);
    expect(gaps[0]!).toBeGreaterThan(20);
    const labels = tags.filter((t) => t.name === 'text' && t.attrs.class === 'tick y').length;
    expect(labels).toBe(5);
    expect(chart(charts, 'oneport').svg).toMatch(/class="tick y"[^>]*>1 ms<\/text>/);
    expect(chart(charts, 'oneport').svg).toMatch(/class="tick y"[^>]*>10 s<\/text>/);
  });

  test('points: x grows with size, y rises with latency, tenfold steps at equal heights, values on their ticks', () => {
    const tags = parseSvg(chart(charts, 'oneport').svg);
    const inc = polylines(tags).get('portwall incremental')!;
    expect(inc).toHaveLength(3);
    for (let i = 1; i < inc.length; i++) {
      expect(inc[i]![0]).toBeGreaterThan(inc[i - 1]![0]); // right: bigger host
      expect(inc[i]![1]).toBeLessThan(inc[i - 1]![1]); // up (SVG y grows downwards): slower
    }
    // 1 → 10 → 100 ms: equal steps on a log axis (a linear axis would put 1 and 10 nearly together).
    expect(inc[0]![1] - inc[1]![1]).toBeCloseTo(inc[1]![1] - inc[2]![1], 0);
    const tickY = new Map(yTicks(tags).map((t) => [t.value, t.y]));
    inc.forEach(([, y], i) => expect(y).toBeCloseTo(tickY.get([1, 10, 100][i]!)!, 0));
    // The host size axis is logarithmic too: 100 → 1000 is as wide as 1000 → 10000 would be.
    const xs = tags.filter((t) => t.name === 'line' && t.attrs.class === 'grid x').map((t) => [Number(t.attrs['data-value']), Number(t.attrs.x1)] as const);
    expect(xs.map(([v]) => v)).toEqual([100, 1000, 5000]);
    const decade = xs[1]![1] - xs[0]![1];
    expect(xs[2]![1] - xs[1]![1]).toBeCloseTo(decade * Math.log10(5), 0);
    // Apply is twice incremental at every size: a constant distance on a log axis.
    const app = polylines(tags).get('portwall apply')!;
    const d = app.map(([, y], i) => inc[i]![1] - y);
    for (const x of d) expect(x).toBeCloseTo(d[0]!, 0);
    // A tool measured at one size is one point.
    expect(polylines(tags).get('iptables-legacy-restore')).toHaveLength(1);
    expect(polylines(tags).get('iptables-legacy-restore')![0]![0]).toBeCloseTo(xs[1]![1], 0);
  });

  test('names are escaped', () => {
    const svg = reportCharts([row('full-sync', 'full-sync', 100, 'a <b> & "c"', 5)])[0]!.svg;
    parseSvg(svg);
    expect(svg).toContain('a &lt;b&gt; &amp; &quot;c&quot;');
  });

  test('a churn timeline gets a chart over time (log y): p99 and p50 of each second', () => {
    const churnRow = (kase: string, samples: number[], info: Record<string, unknown> = {}): Row => ({
      section: 'churn' as Row['section'], case: kase, size: 1000, tool: AGENT, status: 'ok', unit: 'ms', samples,
      p50: samples[0], p99: samples[0], info: { rate: 50, seconds: 4, ...info },
    });
    const kinds = [churnRow('add', [3, 4, 5]), churnRow('change-groups', [2, 3])];
    // Without a timeline, the op kinds' rows alone make no chart.
    expect(reportCharts([...ROWS, ...kinds]).map((x) => x.key)).toEqual(['oneport', 'fullsync']);
    const timeline = churnRow('timeline', [8, 80, 800], { p99PerS: [8, null, 80, 800], p50PerS: [1, null, 10, 100] });
    const charts2 = reportCharts([...ROWS, ...kinds, timeline]);
    expect(charts2.map((x) => x.key)).toEqual(['oneport', 'fullsync', 'churn']);
    const c = chart(charts2, 'churn');
    const tags = parseSvg(c.svg);
    expect([...polylines(tags).keys()]).toEqual(['p99 per second', 'p50 per second']);
    expect(yTicks(tags).map((t) => t.value)).toEqual([1, 10, 100, 1000]);
    expect(c.svg).toMatch(/class="label x"[^>]*>seconds since the churn started/);
    expect(c.svg).toMatch(/class="subtitle"[^>]*>portwall agent \(socket API\) serving 1000 ports, 50 changes\/s for 4 s/);
    // Second 1 had no answer: no point there; seconds on a linear axis, tenfold steps at equal heights.
    const p99 = polylines(tags).get('p99 per second')!;
    expect(p99).toHaveLength(3);
    const [s0, s2, s3] = p99 as [[number, number], [number, number], [number, number]];
    expect(s3[0] - s2[0]).toBeCloseTo((s2[0] - s0[0]) / 2, 0);
    expect(s0[1] - s2[1]).toBeCloseTo(s2[1] - s3[1], 0);
    const p50 = polylines(tags).get('p50 per second')!;
    p50.forEach(([x, y], i) => {
      expect(x).toBeCloseTo(p99[i]![0], 5);
      expect(y).toBeGreaterThan(p99[i]![1]); // lower latency: lower on the chart
    });
  });

  test('no chart without a number to draw', () => {
    expect(reportCharts([row('one-port', ONE_PORT_CASE, 100, 'portwall incremental', 0, 'n/a (not implemented)')])).toEqual([]);
    expect(reportCharts([])).toEqual([]);
  });
});
