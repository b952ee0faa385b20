/**
 * ipset and conntrack benchmarks, portwall against the standard tools, in one run and one fresh namespace:
 *   - conntrack cleanup of 1k matching entries among 100k: portwall delete vs `conntrack -D` with the same filter;
 *   - ipset membership change of 1 and of 1k members in a 10k set: portwall add vs `ipset add` and `ipset restore`.
 * Prints medians and ratios and writes them to bench/reports/ (gitignored).
 *
 * Run as root: npx tsc -p tsconfig.json && node dist/bench/ipset-conntrack.js
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { ConntrackClient, ConntrackEntrySpec } from '../src/conntrack.js';
import { IpsetClient } from '../src/ipset.js';
import { Netns } from '../test/helpers/netns.js';

interface Row {
  case: string;
  tool: string;
  runs: number;
  medianMs: number;
  p90Ms: number;
}

const rows: Row[] = [];

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** Runs `prepare` (untimed) then `op` (timed) `runs` times; records the median. */
async function measure(name: string, tool: string, runs: number, prepare: () => Promise<void> | void, op: () => Promise<unknown> | unknown): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    await prepare();
    const t0 = process.hrtime.bigint();
    await op();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((a, b) => a - b);
  const row = { case: name, tool, runs, medianMs: quantile(times, 0.5), p90Ms: quantile(times, 0.9) };
  rows.push(row);
  console.log(`  ${tool.padEnd(28)} median ${row.medianMs.toFixed(2).padStart(9)} ms   p90 ${row.p90Ms.toFixed(2).padStart(9)} ms   (${runs} runs)`);
  return row.medianMs;
}

function flows(n: number, zone: number, a: number, base: number): ConntrackEntrySpec[] {
  return Array.from({ length: n }, (_, i) => ({
    zone, protocol: 'udp' as const, src: `${a === 192 ? '192.0.2' : '198.51.100'}.${(base + i) % 256}`,
    dst: `203.0.113.${Math.floor((base + i) / 256) % 256}`, sport: 1024 + ((base + i) % 60000), dport: 53, timeout: 600,
  }));
}

async function benchConntrack(ns: Netns): Promise<void> {
  const ct = new ConntrackClient({ netns: ns.name });
  console.log('conntrack: delete 1k matching entries among 100k');
  await ct.create(flows(99_000, 10, 198, 0));
  const victims = flows(1000, 10, 192, 0);
  const zoneVictims = flows(1000, 11, 198, 0);
  const refill = async () => {
    await ct.create(victims);
  };
  const byPrefix = { zone: 10, protocol: 'udp' as const, src: '192.0.2.0/24' };
  const ours = await measure('ct: 1k of 100k, zone+proto+src prefix', 'portwall delete', 11, refill, async () => {
    if ((await ct.delete(byPrefix)) !== 1000) throw new Error('portwall deleted the wrong number of entries');
  });
  const theirs = await measure('ct: 1k of 100k, zone+proto+src prefix', 'conntrack -D -w -p -s', 3, refill, () =>
    ns.exec('conntrack', ['-D', '-w', '10', '-p', 'udp', '-s', '192.0.2.0/24'], { timeoutMs: 120_000 }));
  ratio('ct: 1k of 100k, zone+proto+src prefix', theirs / ours);

  // A remote-group member left: its flows (one source host) go, in the zone holding all 100k entries.
  const hostVictims = victims.map((v) => ({ ...v, src: '192.0.2.7' }));
  const refillHost = async () => {
    await ct.create(hostVictims);
  };
  const byHost = { zone: 10, protocol: 'udp' as const, src: '192.0.2.7' };
  const oursHost = await measure('ct: 1k of 100k, zone+proto+src host', 'portwall delete', 11, refillHost, async () => {
    if ((await ct.delete(byHost)) !== 1000) throw new Error('portwall deleted the wrong number of entries');
  });
  const theirsHost = await measure('ct: 1k of 100k, zone+proto+src host', 'conntrack -D -w -p -s', 3, refillHost, () =>
    ns.exec('conntrack', ['-D', '-w', '10', '-p', 'udp', '-s', '192.0.2.7'], { timeoutMs: 120_000 }));
  ratio('ct: 1k of 100k, zone+proto+src host', theirsHost / oursHost);

  const refillZone = async () => {
    await ct.create(zoneVictims);
  };
  const oursZone = await measure('ct: 1k of 100k, zone only', 'portwall delete', 11, refillZone, async () => {
    if ((await ct.delete({ zone: 11 })) !== 1000) throw new Error('portwall deleted the wrong number of entries');
  });
  const theirsZone = await measure('ct: 1k of 100k, zone only', 'conntrack -D -w', 3, refillZone, () =>
    ns.exec('conntrack', ['-D', '-w', '11'], { timeoutMs: 120_000 }));
  ratio('ct: 1k of 100k, zone only', theirsZone / oursZone);
  await measure('ct: create 100k', 'portwall create', 1, () => ct.flushZone(10), () => ct.create(flows(99_000, 10, 198, 0).concat(victims)));
  await ct.flushZone(10);
}

async function benchIpset(ns: Netns): Promise<void> {
  const sets = new IpsetClient({ netns: ns.name });
  // IPv6 so that 10k distinct members fit in the documentation range (2001:db8::/32).
  console.log('ipset: membership change in a 10k-member hash:ip inet6 set');
  await sets.create('pw-bench', { type: 'hash:ip', family: 'ipv6', maxelem: 65536 });
  const hex = (i: number) => i.toString(16);
  await sets.add('pw-bench', Array.from({ length: 10_000 }, (_, i) => `2001:db8::${hex(i >> 16)}:${hex(i & 0xffff)}`));
  for (const n of [1, 1000]) {
    const change = Array.from({ length: n }, (_, i) => `2001:db8:1::${hex(i)}`);
    const reset = async () => { await sets.del('pw-bench', change); };
    const name = `ipset: add ${n} to 10k`;
    console.log(` ${name}`);
    const ours = await measure(name, 'portwall add', 21, reset, () => sets.add('pw-bench', change));
    const restoreInput = change.map((m) => `add pw-bench ${m}`).join('\n') + '\n';
    const restore = await measure(name, 'ipset restore -exist', 7, reset, () => ns.exec('ipset', ['restore', '-exist'], { input: restoreInput }));
    const addLoop = await measure(name, `ipset add ×${n}`, n === 1 ? 7 : 1, reset, () => {
      for (const m of change) ns.exec('ipset', ['add', '-exist', 'pw-bench', m]);
    });
    ratio(`${name} vs ipset restore`, restore / ours);
    ratio(`${name} vs ipset add`, addLoop / ours);
  }
  await sets.destroy('pw-bench');
}

const ratios: { case: string; ratio: number }[] = [];
function ratio(name: string, r: number): void {
  ratios.push({ case: name, ratio: r });
  console.log(`  => portwall is ${r.toFixed(1)}× faster (${name})`);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.error('the ipset/conntrack benchmark needs root (it creates a network namespace)');
    process.exitCode = 1;
    return;
  }
  const ns = new Netns('t');
  try {
    await benchConntrack(ns);
    await benchIpset(ns);
  } finally {
    ns.destroy();
  }
  const kernel = execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim();
  const lines = [
    `# ipset / conntrack benchmark — ${new Date().toISOString()} — kernel ${kernel}`, '',
    '| case | tool | runs | median ms | p90 ms |', '|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.case} | ${r.tool} | ${r.runs} | ${r.medianMs.toFixed(2)} | ${r.p90Ms.toFixed(2)} |`), '',
    '| comparison | portwall speed-up (median ratio) |', '|---|---|',
    ...ratios.map((r) => `| ${r.case} | ${r.ratio.toFixed(1)}× |`), '',
  ];
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
  const dir = path.join(root, 'bench', 'reports');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `ipset-conntrack-${Date.now()}.md`);
  writeFileSync(file, lines.join('\n'));
  console.log(`\n${lines.join('\n')}\nreport: ${file}`);
}

await main();
