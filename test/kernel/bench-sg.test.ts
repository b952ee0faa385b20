/**
 * The security-group benchmark (bench/sg.ts): its workload is valid portwall state — at the sizes it uses,
 * with members, bridged, and after every change the benchmark makes — deterministic and inside the address
 * ranges the project may use; and `portwall bench --quick` (the CLI entry, as CI runs it) goes end to end into a
 * temporary directory, writing the JSON and Markdown reports and the SVG charts it links, with every expected row,
 * and leaves no namespace behind. Timings are never asserted: they are the report's business, not the test's.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';

import { validateState } from '../../src/model/validate.js';
import type { Report } from '../../bench/sg-report.js';
import { CLIENTS_GROUP, OPS_GROUP, workload } from '../../bench/workload.js';
import { isRoot, leftoverNamespaces, run } from '../helpers/netns.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

describe('the benchmark workload', () => {
  test('is valid state at every size and shape the benchmark loads, and after every change it makes', () => {
    for (const w of [workload({ ports: 100 }), workload({ ports: 1000 }), workload({ ports: 150, mode: 'bridged' }),
      workload({ ports: 100, members: 200, sharedUsers: 100 }), workload({ ports: 200, extraRules: 30 })]) {
      const model = validateState(w.state);
      expect(model.ports.size).toBe(w.opts.ports + w.opts.members);
      const a = w.extraPort(3, 'a');
      const b = w.extraPort(3, 'b');
      const changed = [
        w.with({ ports: [a] }), w.with({ ports: [b] }), w.with({ ports: [w.withNewIp(b, 3)] }),
        w.with({ groups: [w.opsGroup(0)] }), w.with({ groups: [w.opsGroup(1)] }),
        ...(w.opts.members ? [w.with({ ports: [w.member(7, false)] })] : []),
      ];
      for (const s of changed) validateState(s);
      expect(validateState(changed[0]).ports.size).toBe(model.ports.size + 1);
      expect(validateState(changed[1]).ports.get(b.id)!.groupIds).toHaveLength(2);
      expect(validateState(changed[3]).groups.get(OPS_GROUP)!.rules).toHaveLength(w.opsGroup().security_group_rules!.length + 1);
    }
  });

  test('is deterministic, and a smaller workload is a prefix of a bigger one', () => {
    expect(JSON.stringify(workload({ ports: 300 }).state)).toBe(JSON.stringify(workload({ ports: 300 }).state));
    const small = workload({ ports: 100 }).state.ports!;
    const big = workload({ ports: 1000 }).state.ports!;
    expect(big.slice(0, 100).map((p) => p.id)).toEqual(small.map((p) => p.id));
    expect(workload({ ports: 100, seed: 2 }).state.ports![0]!.id).not.toBe(small[0]!.id);
  });

  test('has the shape the spec asks for: ~20 rules per port, 2-3 groups, 50 ports per network, remote groups, v4 and v6', () => {
    const w = workload({ ports: 5000, members: 300 });
    expect(w.rulesPerPort).toBeGreaterThan(18);
    expect(w.rulesPerPort).toBeLessThan(22.5);
    const users = w.state.ports!.slice(0, 5000);
    for (const p of users) expect(p.security_groups!.length).toBeGreaterThanOrEqual(2);
    expect(users.filter((p) => p.security_groups!.includes(OPS_GROUP))).toHaveLength(1000);
    expect(w.state.ports!.filter((p) => p.security_groups!.includes(CLIENTS_GROUP))).toHaveLength(300);
    const perNet = new Map<string, number>();
    for (const p of users) perNet.set(p.network_id, (perNet.get(p.network_id) ?? 0) + 1);
    expect(Math.max(...perNet.values())).toBe(50);
    expect(new Set(w.state.networks.map((n) => n.zone)).size).toBe(w.state.networks.length);
    const rules = w.state.security_groups!.flatMap((g) => g.security_group_rules ?? []);
    expect(new Set(rules.map((r) => r.protocol ?? 'any'))).toEqual(new Set(['tcp', 'udp', 'icmp', 'ipv6-icmp', 'any']));
    expect(rules.some((r) => r.remote_group_id && r.ethertype === 'IPv4') && rules.some((r) => r.remote_group_id && r.ethertype === 'IPv6')).toBe(true);
    expect(rules.some((r) => r.port_range_max !== undefined && r.port_range_max !== null && r.port_range_max > r.port_range_min!)).toBe(true);
  });

  test('the wide memory case has ~50 rules per port at 10k ports, the rest of the workload unchanged', () => {
    const wide = workload({ ports: 10_000, extraRules: 30 });
    expect(wide.rulesPerPort).toBeGreaterThan(48);
    expect(wide.rulesPerPort).toBeLessThan(52);
    expect(validateState(wide.state).ports.size).toBe(10_000);
    const plain = workload({ ports: 10_000 }).state.ports!;
    expect(wide.state.ports!.map((p) => p.id)).toEqual(plain.map((p) => p.id));
  });

  test('uses only documentation addresses and 198.18.0.0/15', () => {
    const w = workload({ ports: 1000, members: 500 });
    const v4 = (a: string) => /^(192\.0\.2|198\.51\.100|203\.0\.113)\.|^198\.1[89]\./.test(a);
    const ok = (a: string) => (a.includes(':') ? a.startsWith('2001:db8:') || a.startsWith('fe80:') : v4(a));
    const extra = [w.extraPort(999, 'a'), w.withNewIp(w.extraPort(0, 'b'), 20_000), w.member(499, true)];
    for (const p of [...w.state.ports!, ...extra]) {
      for (const ip of [...p.fixed_ips!.map((f) => f.ip_address), ...(p.allowed_address_pairs ?? []).map((x) => x.ip_address)]) expect(ok(ip), ip).toBe(true);
    }
    for (const n of w.state.networks) for (const a of [...n.dhcp_servers!, ...n.routers!]) expect(ok(a), a).toBe(true);
    for (const r of w.state.security_groups!.flatMap((g) => g.security_group_rules ?? [])) {
      if (r.remote_ip_prefix) expect(ok(r.remote_ip_prefix), r.remote_ip_prefix).toBe(true);
    }
  });
});

/**
 * dist/ is compiled from bench/ and src/cli.ts; compile again when a source is newer than its output (tsc
 * emits even on type errors elsewhere). Returns the CLI's path.
 */
function ensureBuilt(): string {
  const cli = path.join(ROOT, 'dist', 'src', 'cli.js');
  const outputs = [cli, path.join(ROOT, 'dist', 'bench', 'sg.js')].map((f) => (existsSync(f) ? statSync(f).mtimeMs : 0));
  const sources = [...readdirSync(path.join(ROOT, 'bench')).filter((f) => f.endsWith('.ts')).map((f) => path.join(ROOT, 'bench', f)), path.join(ROOT, 'src', 'cli.ts')]
    .map((f) => statSync(f).mtimeMs);
  if (Math.max(...sources) > Math.min(...outputs)) {
    try {
      run('npx', ['--no-install', 'tsc', '-p', 'tsconfig.json'], { cwd: ROOT, timeoutMs: 120_000 });
    } catch {
      /* the emitted files are what matters; type errors are typecheck's business */
    }
  }
  return cli;
}

const ONE_PORT = ['add', 'change-groups', 'change-ip', 'remove'];
const AGENT = 'portwall agent (socket API)';
type Expected = [section: string, kase: string, tool: string, size?: number];
const each = (section: string, cases: string[], tools: string[], size?: number): Expected[] =>
  cases.flatMap((c) => tools.map((t): Expected => [section, c, t, size]));
// At --quick's size (100 ports) unless a size is given: the datapath's also the port alone (1; no east-west
// case there, it needs two ports of one network), the wide memory case's is --wide-ports (200 with --quick).
const EXPECTED: Expected[] = [
  ...each('one-port', ONE_PORT, ['portwall incremental', 'portwall apply', 'iptables-legacy-restore', 'iptables-nft-restore']),
  ...each('group-rule', ['rule-add', 'rule-remove'], ['portwall incremental', 'portwall apply']),
  ...each('member', ['member-leave', 'member-join'], ['portwall incremental', 'portwall apply', 'ipset restore', 'ipset add/del']),
  ...each('member', ['bulk-leave', 'bulk-join'], ['portwall batch', AGENT, 'ipset restore']),
  ...each('full-sync', ['full-sync'], ['portwall apply', 'replay floor', 'nft -f', 'iptables-legacy-restore', 'iptables-nft-restore', AGENT]),
  ...each('memory', ['rss-after-full-sync'], ['portwall apply', 'portwall agent']),
  ['memory', 'rss-after-full-sync-wide', 'portwall apply', 200],
  ...each('start', ['adopt', 'adopt-first-change'], ['portwall apply']),
  ...each('start', ['adopt-ready', 'adopt-first-change'], ['portwall agent']),
  ...each('datapath', ['new-tcp-conn', 'bulk-tcp'], ['portwall', 'conntrack floor', 'iptables-legacy'], 1),
  ...each('datapath', ['new-tcp-conn', 'bulk-tcp', 'new-tcp-conn-ew'], ['portwall', 'conntrack floor', 'iptables-legacy']),
];

describe.skipIf(!isRoot)('portwall bench --quick', () => {
  const out = mkdtempSync(path.join(tmpdir(), 'pw-bench-sg-'));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  test('runs end to end and reports every case, with the charts', async () => {
    const cli = ensureBuilt();
    const result = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      // --quick, shorter still where only the report's shape is checked: the datapath's rounds, the churn.
      const shorter = ['--dp-seconds', '0.3', '--dp-mb', '50', '--churn-seconds', '2', '--churn-size', '200', '--ct-entries', '20000'];
      execFile(process.execPath, [cli, 'bench', '--quick', ...shorter, '--out', out], { cwd: ROOT, timeout: 170_000, maxBuffer: 64 * 1024 * 1024 },
        (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }));
    });
    expect(result.code, result.stderr).toBe(0);
    const files = readdirSync(out);
    const json = files.find((f) => /^sg-.*\.json$/.test(f));
    expect(json, files.join(', ')).toBeDefined();
    const stem = json!.replace(/\.json$/, '');
    const report = JSON.parse(readFileSync(path.join(out, json!), 'utf8')) as Report;
    // The Markdown and the charts it links, and their paths printed at the end.
    const charts = ['oneport', 'fullsync', ...(report.rows.some((r) => (r.section as string) === 'churn' && r.case === 'timeline' && r.samples.length) ? ['churn'] : [])];
    expect(files.sort()).toEqual([`${stem}.json`, `${stem}.md`, ...charts.map((c) => `${stem}-${c}.svg`)].sort());
    const md = readFileSync(path.join(out, `${stem}.md`), 'utf8');
    expect(md).toMatch(/^## Headline$/m);
    for (const c of charts) {
      expect(md).toContain(`](${stem}-${c}.svg)`);
      const svg = readFileSync(path.join(out, `${stem}-${c}.svg`), 'utf8');
      expect(svg).toMatch(/<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
      expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
      expect(svg).toContain('<polyline');
    }
    for (const f of files) expect(result.stdout).toContain(path.join(out, f));

    expect(report.machine).toMatchObject({ cpus: expect.any(Number), kernel: expect.any(String) });
    for (const [section, kase, tool, size = 100] of EXPECTED) {
      const row = report.rows.find((r) => r.section === section && r.case === kase && r.tool === tool && r.size === size);
      expect(row, `${section} ${kase} ${tool}`).toBeDefined();
      // A number, or a stated reason for none: the API not landed yet, a tool not installed. Never an error.
      expect(row!.status, `${section} ${kase} ${tool}`).toMatch(/^(ok|n\/a \(not implemented\)|skipped: tool missing)$/);
      if (row!.status === 'ok') {
        expect(row!.samples.length).toBeGreaterThan(0);
        expect(row!.p50).toEqual(expect.any(Number));
        expect(row!.p99).toEqual(expect.any(Number));
      }
    }
    // East-west: two ports of one routed network, named with its place in the zone order; none for the port alone.
    const ew = report.rows.find((r) => r.section === 'datapath' && r.case === 'new-tcp-conn-ew' && r.tool === 'portwall')!;
    expect(ew.info).toMatchObject({ network: expect.any(String), zoneRank: expect.any(Number), routedNetworks: expect.any(Number) });
    expect(report.rows.some((r) => r.case === 'new-tcp-conn-ew' && r.size === 1)).toBe(false);
    expect(md).toContain('## Datapath: new TCP connections per second between two routed ports of one network (east-west)');
    // Conntrack cleanup (size = entries in the table) and churn through the agent (size = ports).
    for (const [section, kase, tool] of [
      ...['zone', 'zone+prefix'].flatMap((c) => ['portwall', 'conntrack -D'].map((t): [string, string, string] => ['conntrack', c, t])),
      ...['add', 'change-groups', 'change-ip', 'remove', 'rule-add', 'rule-remove', 'timeline', 'agent-cpu'].map((c): [string, string, string] => ['churn', c, 'portwall agent (socket API)']),
    ]) {
      const row = report.rows.find((r) => r.section === section && r.case === kase && r.tool === tool);
      expect(row?.status, `${section} ${kase} ${tool}`).toBe('ok');
      expect(row!.samples.length).toBeGreaterThan(0);
    }
    // The library's full sync says how long the collector paused inside each of its rounds, warm-up included.
    const sync = report.rows.find((r) => r.section === 'full-sync' && r.tool === 'portwall apply')!;
    expect(sync.info?.gcMs).toHaveLength(sync.samples.length);
    expect(sync.info?.gcCount).toHaveLength(sync.samples.length);
    expect(sync.info?.warmUpGcMs).toHaveLength((sync.info?.warmUpMs as number[]).length);
    for (const [i, ms] of (sync.info!.gcMs as number[]).entries()) {
      expect(ms).toBeGreaterThanOrEqual(0);
      expect(ms).toBeLessThanOrEqual(Math.ceil(sync.samples[i]!));
    }
    // Adopting a kernel that already holds the state commits nothing (spec S12), library and agent alike.
    for (const r of report.rows.filter((x) => x.section === 'start')) expect(r.info?.commitsWhileAdopting, `${r.case} ${r.tool}`).toBe(0);
    expect(report.rows.filter((r) => r.status.startsWith('error'))).toEqual([]);
    expect(report.targets.length).toBeGreaterThan(10);
    for (const t of report.targets) expect(['met', 'missed', 'not measured', 'n/a (not implemented)']).toContain(t.status);
    expect(leftoverNamespaces()).toEqual([]);
  }, 180_000);
});
