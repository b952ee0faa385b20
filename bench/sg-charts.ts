/**
 * The security-group benchmark's charts, drawn as plain SVG (no dependency) next to the Markdown report:
 *  - `oneport`: one-port change latency (p50) against the host's size, one line per tool;
 *  - `fullsync`: full sync time (p50) against the host's size, one line per tool;
 *  - `churn`: latency over time under sustained churn through the agent — each second's p99 and p50 from the
 *    churn section's `timeline` row (only when the report has one).
 * Latency axes are logarithmic with ticks at powers of ten, since the tools differ by orders of magnitude.
 *
 * Small pieces, each usable alone: scales ({@link logScale}, {@link linearScale}), tick choices
 * ({@link decades}, {@link niceTicks}), {@link axes}, {@link polyline}, {@link legend}, put together by
 * {@link lineChart}; {@link reportCharts} picks the rows of a report.
 */
import { AGENT_TOOL } from './sg-agent.js';
import type { Row } from './sg-harness.js';

/** A point in data units: x, y. */
export type Point = readonly [x: number, y: number];

/** One line of a chart: its legend name and its points (drawn in the given order). */
export interface Series {
  name: string;
  points: Point[];
  /** Dashed (a floor, a reference or a median rather than the headline number). */
  dashed?: boolean;
  /** Default: the tool's colour ({@link colorOf}). */
  color?: string;
}

/** A mapping from data units to pixels along one axis, with the values its axis labels. */
export interface Scale {
  kind: 'log' | 'linear';
  domain: readonly [number, number];
  range: readonly [number, number];
  ticks: number[];
  map(v: number): number;
  format(v: number): string;
}

/** The plot area inside the SVG, in pixels. */
export interface Frame {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** An axis as a chart describes it. */
export interface AxisSpec {
  label: string;
  /** Default 'log'. */
  kind?: 'log' | 'linear';
  /** Tick values (default: powers of ten for log, round numbers for linear). */
  ticks?: number[];
  /** Tick label (default {@link tickLabel}). */
  format?: (v: number) => string;
  /** Widen a log domain by this factor on each side, so that points do not sit on the frame (default 1). */
  pad?: number;
}

/** What {@link lineChart} draws. */
export interface ChartSpec {
  title: string;
  subtitle?: string;
  x: AxisSpec;
  y: AxisSpec;
  series: Series[];
  width?: number;
  height?: number;
}

/** A chart of a report: `key` names its file (`<stem>-<key>.svg`). */
export interface Chart {
  key: 'oneport' | 'fullsync' | 'churn';
  title: string;
  svg: string;
}

/** The one-port case the chart and the report's headline show: a port's security groups changed. */
export const ONE_PORT_CASE = 'change-groups';

/** Text safe inside an SVG element or attribute. */
export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/** The decimal exponent of v, rounded down (exact at powers of ten, where Math.log10 may land just below). */
function floorLog10(v: number): number {
  const e = Math.log10(v);
  return Math.abs(e - Math.round(e)) < 1e-9 ? Math.round(e) : Math.floor(e);
}

function ceilLog10(v: number): number {
  const e = Math.log10(v);
  return Math.abs(e - Math.round(e)) < 1e-9 ? Math.round(e) : Math.ceil(e);
}

/** 10^k, exactly as its decimal literal (10 ** -3 is not always 0.001). */
const pow10 = (k: number): number => Number(`1e${k}`);

/** The powers of ten enclosing the positive values (at least one decade); [1, 10] when there are none. */
export function logDomain(values: readonly number[]): [number, number] {
  const xs = values.filter((v) => Number.isFinite(v) && v > 0);
  if (xs.length === 0) return [1, 10];
  const lo = floorLog10(Math.min(...xs));
  const hi = Math.max(lo + 1, ceilLog10(Math.max(...xs)));
  return [pow10(lo), pow10(hi)];
}

/** The powers of ten from lo to hi, both included when they are powers of ten. */
export function decades([lo, hi]: readonly [number, number]): number[] {
  const out: number[] = [];
  for (let k = ceilLog10(lo); k <= floorLog10(hi); k++) out.push(pow10(k));
  return out;
}

/** About `count` round values (1, 2 or 5 × 10^k apart) from lo to hi. */
export function niceTicks([lo, hi]: readonly [number, number], count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / Math.max(1, count);
  const mag = pow10(floorLog10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** A plain number, without float noise (0.1, 1, 1000, 2.5). */
export function tickLabel(v: number): string {
  return String(Number(v.toPrecision(6)));
}

/** Milliseconds as a time label: 0.1 ms … 100 ms, then 1 s, 10 s. */
export function msLabel(v: number): string {
  return v >= 1000 ? `${tickLabel(v / 1000)} s` : `${tickLabel(v)} ms`;
}

/** A logarithmic scale: equal ratios take equal distances. The domain must be positive. */
export function logScale(domain: readonly [number, number], range: readonly [number, number], ticks = decades(domain), format = tickLabel): Scale {
  const [l0, l1] = [Math.log10(domain[0]), Math.log10(domain[1])];
  const span = l1 - l0 || 1;
  return { kind: 'log', domain, range, ticks, format, map: (v) => range[0] + ((Math.log10(v) - l0) / span) * (range[1] - range[0]) };
}

/** A linear scale: equal differences take equal distances. */
export function linearScale(domain: readonly [number, number], range: readonly [number, number], ticks = niceTicks(domain), format = tickLabel): Scale {
  const span = domain[1] - domain[0] || 1;
  return { kind: 'linear', domain, range, ticks, format, map: (v) => range[0] + ((v - domain[0]) / span) * (range[1] - range[0]) };
}

const f1 = (v: number): string => String(Math.round(v * 10) / 10);

/** Frame, grid lines and tick labels of both axes, and the axis labels. */
export function axes(frame: Frame, x: Scale, y: Scale, labels: { x: string; y: string }): string {
  const { left, top, width, height } = frame;
  const bottom = top + height;
  const out = [`<g class="axes" stroke="#444" fill="none"><rect x="${f1(left)}" y="${f1(top)}" width="${f1(width)}" height="${f1(height)}"/></g>`];
  for (const v of x.ticks) {
    const px = f1(x.map(v));
    out.push(`<line class="grid x" data-value="${v}" x1="${px}" x2="${px}" y1="${f1(top)}" y2="${f1(bottom)}" stroke="#ddd"/>`,
      `<text class="tick x" data-value="${v}" x="${px}" y="${f1(bottom + 16)}" text-anchor="middle">${escapeXml(x.format(v))}</text>`);
  }
  for (const v of y.ticks) {
    const py = f1(y.map(v));
    out.push(`<line class="grid y" data-value="${v}" x1="${f1(left)}" x2="${f1(left + width)}" y1="${py}" y2="${py}" stroke="#ddd"/>`,
      `<text class="tick y" data-value="${v}" x="${f1(left - 6)}" y="${py}" dy="4" text-anchor="end">${escapeXml(y.format(v))}</text>`);
  }
  out.push(`<text class="label x" x="${f1(left + width / 2)}" y="${f1(bottom + 38)}" text-anchor="middle">${escapeXml(labels.x)}</text>`,
    `<text class="label y" transform="translate(${f1(left - 58)},${f1(top + height / 2)}) rotate(-90)" text-anchor="middle">${escapeXml(labels.y)}</text>`);
  return out.join('\n');
}

/** One series: a polyline through its points and a marker at each (with the value as a tooltip). */
export function polyline(series: Series, color: string, x: Scale, y: Scale): string {
  const pts = series.points.map(([px, py]) => [x.map(px), y.map(py), px, py] as const);
  const dash = series.dashed ? ' stroke-dasharray="6 4"' : '';
  const line = `<polyline class="series" data-series="${escapeXml(series.name)}" points="${pts.map(([a, b]) => `${f1(a)},${f1(b)}`).join(' ')}" fill="none" stroke="${color}" stroke-width="2"${dash}/>`;
  // Markers show single points (a tool measured at one size) and carry the numbers; too many would be noise.
  const marks = pts.length > 60 ? [] : pts.map(([a, b, vx, vy]) =>
    `<circle cx="${f1(a)}" cy="${f1(b)}" r="3.5" fill="${color}"><title>${escapeXml(`${series.name}: ${x.format(vx)}, ${y.format(vy)}`)}</title></circle>`);
  return [`<g class="series-group">`, line, ...marks, '</g>'].join('\n');
}

/** A legend: a line sample and the name of each series, top to bottom from `at`. */
export function legend(items: { name: string; color: string; dashed?: boolean }[], at: { x: number; y: number }): string {
  const out = ['<g class="legend">'];
  items.forEach((it, i) => {
    const y = at.y + i * 20;
    out.push(`<line x1="${f1(at.x)}" x2="${f1(at.x + 24)}" y1="${f1(y)}" y2="${f1(y)}" stroke="${it.color}" stroke-width="2"${it.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
      `<text class="legend-item" x="${f1(at.x + 30)}" y="${f1(y)}" dy="4">${escapeXml(it.name)}</text>`);
  });
  out.push('</g>');
  return out.join('\n');
}

const TOOL_COLORS: Record<string, string> = {
  'portwall incremental': '#1f77b4',
  'portwall apply': '#2ca02c',
  [AGENT_TOOL]: '#9467bd',
  'replay floor': '#7f7f7f',
  'nft -f': '#17becf',
  'iptables-legacy-restore': '#d62728',
  'iptables-nft-restore': '#ff7f0e',
};
const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f'];

/** A tool's colour: fixed for the known tools (the same in every chart), else from a palette by position. */
export function colorOf(name: string, index: number): string {
  return TOOL_COLORS[name] ?? PALETTE[index % PALETTE.length]!;
}

function scaleFor(spec: AxisSpec, values: number[], range: readonly [number, number], logTicks: 'decades' | 'values'): Scale {
  const format = spec.format ?? tickLabel;
  if ((spec.kind ?? 'log') === 'linear') {
    const finite = values.filter(Number.isFinite);
    const lo = finite.length ? Math.min(...finite) : 0;
    const hi = finite.length ? Math.max(...finite) : 1;
    const domain: [number, number] = hi > lo ? [lo, hi] : [lo - 1, lo + 1];
    return linearScale(domain, range, spec.ticks ?? niceTicks(domain), format);
  }
  const pos = values.filter((v) => Number.isFinite(v) && v > 0);
  const pad = spec.pad ?? 1;
  let domain: [number, number];
  if (logTicks === 'values' && pos.length) {
    // Around the values themselves (host sizes: 100, 1000, 5000), ticks at those values.
    const lo = Math.min(...pos), hi = Math.max(...pos);
    domain = hi > lo ? [lo / pad, hi * pad] : [lo / 3, lo * 3];
  } else {
    domain = logDomain(pos);
  }
  const ticks = spec.ticks ?? (logTicks === 'values' && pos.length ? [...new Set(pos)].sort((a, b) => a - b) : decades(domain));
  return logScale(domain, range, ticks, format);
}

/**
 * A line chart: title, axes with labelled ticks, one polyline per series (non-positive values are left out
 * on a log axis), legend on the right. Log x axes are ticked at the x values present; log y axes at powers of ten.
 */
export function lineChart(spec: ChartSpec): string {
  const width = spec.width ?? 780;
  const height = spec.height ?? 440;
  const legendWidth = 220;
  const frame: Frame = { left: 78, top: spec.subtitle ? 58 : 42, width: width - 78 - legendWidth - 16, height: 0 };
  frame.height = height - frame.top - 56;
  const logX = (spec.x.kind ?? 'log') === 'log';
  const logY = (spec.y.kind ?? 'log') === 'log';
  const series = spec.series.map((s) => ({
    ...s,
    points: s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!logX || x > 0) && (!logY || y > 0)),
  }));
  const all = series.flatMap((s) => s.points);
  const x = scaleFor(spec.x, all.map((p) => p[0]), [frame.left, frame.left + frame.width], 'values');
  const y = scaleFor(spec.y, all.map((p) => p[1]), [frame.top + frame.height, frame.top], 'decades');
  const colors = series.map((s, i) => s.color ?? colorOf(s.name, i));
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12" fill="#222">`,
    `<rect class="background" width="${width}" height="${height}" fill="#fff"/>`,
    `<text class="title" x="${frame.left}" y="24" font-size="16" font-weight="bold">${escapeXml(spec.title)}</text>`,
    ...(spec.subtitle ? [`<text class="subtitle" x="${frame.left}" y="42" fill="#555">${escapeXml(spec.subtitle)}</text>`] : []),
    axes(frame, x, y, { x: spec.x.label, y: spec.y.label }),
    ...series.map((s, i) => polyline(s, colors[i]!, x, y)),
    legend(series.map((s, i) => ({ name: s.name, color: colors[i]!, dashed: s.dashed })), { x: frame.left + frame.width + 16, y: frame.top + 10 }),
    '</svg>',
    '',
  ].join('\n');
}

/** p50 against size, one series per tool in the order the tools first appear. */
function p50BySize(rows: readonly Row[], section: string, kase: string): Series[] {
  const byTool = new Map<string, Point[]>();
  for (const r of rows) {
    if (r.section !== section || r.case !== kase || r.status !== 'ok' || r.p50 === undefined || !(r.p50 > 0)) continue;
    let pts = byTool.get(r.tool);
    if (!pts) byTool.set(r.tool, (pts = []));
    pts.push([r.size, r.p50]);
  }
  return [...byTool].map(([name, points]) => ({ name, points: points.sort((a, b) => a[0] - b[0]), dashed: name === 'replay floor' }));
}

/** A per-second series of a churn timeline's info (null: nothing answered that second), as (second, value). */
function perSecond(v: unknown): Point[] | undefined {
  if (!Array.isArray(v)) return undefined;
  return v.flatMap((x, i): Point[] => (typeof x === 'number' ? [[i, x]] : []));
}

/**
 * The churn section's timeline rows (samples: each second's p99; info.p99PerS / p50PerS: the same by second,
 * null for a second without answers) as p99 and p50 lines over time; without the per-second info, the samples
 * in order. Rows in error still have their timeline drawn: an agent falling behind is what it shows.
 */
function churnSeries(rows: readonly Row[]): { series: Series[]; subtitle: string } {
  const timelines = rows.filter((r) => (r.section as string) === 'churn' && r.case === 'timeline' && r.samples.length > 0);
  const bySize = new Set(timelines.map((r) => r.size)).size > 1;
  const series = timelines.flatMap((r, i): Series[] => {
    const at = bySize ? ` @${r.size}` : '';
    const color = PALETTE[i % PALETTE.length]!;
    const p99 = perSecond(r.info?.p99PerS) ?? r.samples.map((v, k): Point => [k, v]);
    const p50 = perSecond(r.info?.p50PerS);
    return [{ name: `p99 per second${at}`, points: p99, color }, ...(p50 ? [{ name: `p50 per second${at}`, points: p50, color, dashed: true }] : [])];
  });
  const t = timelines[0];
  const facts = t?.info && typeof t.info.rate === 'number' ? `, ${t.info.rate} changes/s${typeof t.info.seconds === 'number' ? ` for ${t.info.seconds} s` : ''}` : '';
  return { series, subtitle: t ? `${t.tool} serving ${t.size} ports${facts}; latency from the scheduled time` : '' };
}

/**
 * The report's charts, each only when it has a point to draw: one-port change p50 and full sync p50 against
 * the host's size (log-log), and the churn rows' samples over time (log y).
 */
export function reportCharts(rows: readonly Row[]): Chart[] {
  const charts: Chart[] = [];
  const has = (s: Series[]) => s.some((x) => x.points.length > 0);
  const sizeAxis: AxisSpec = { label: 'ports on the host (log scale)', pad: 1.4 };
  const onePort = p50BySize(rows, 'one-port', ONE_PORT_CASE);
  if (has(onePort)) {
    const title = 'One-port change: p50 latency vs host size';
    charts.push({ key: 'oneport', title, svg: lineChart({
      title, subtitle: `a port's security groups changed after a full sync (case ${ONE_PORT_CASE}); lower is better`,
      x: sizeAxis, y: { label: 'p50 latency (log scale)', format: msLabel }, series: onePort,
    }) });
  }
  const sync = p50BySize(rows, 'full-sync', 'full-sync');
  if (has(sync)) {
    const title = 'Full sync into an empty namespace: p50 time vs host size';
    charts.push({ key: 'fullsync', title, svg: lineChart({
      title, subtitle: 'the whole state loaded from nothing; lower is better',
      x: sizeAxis, y: { label: 'p50 time (log scale)', format: msLabel }, series: sync,
    }) });
  }
  const churn = churnSeries(rows);
  if (has(churn.series)) {
    const title = 'Sustained churn: latency over time';
    charts.push({ key: 'churn', title, svg: lineChart({
      title, subtitle: churn.subtitle,
      x: { label: 'seconds since the churn started', kind: 'linear' },
      y: { label: 'latency (log scale)', format: msLabel }, series: churn.series,
    }) });
  }
  return charts;
}
