/**
 * `explain` and the counters against real traffic: for a table of packets (ingress from the outside namespace's three addresses,
 * egress from the VM, TCP and ICMP), the library's answer — allowed or dropped, and by which rule or step —
 * must match what a real packet does through the kernel (a TCP probe that is answered or refused arrived; one
 * that times out was dropped). Then the CLI (`--state`, exit 0 allowed / 3 dropped) gives the same answers.
 * The kernel's counters (`Portwall.counters()`, `portwall status --port`) rise with the traffic each rule and
 * each drop step sees.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';

import type { Portwall } from '../../src/apply/portwall.js';
import { narrowCounters } from '../../src/apply/counters.js';
import { packetText } from '../../src/explain.js';
import type { StateInput } from '../../src/model/schema.js';
import { isRoot, tryRun } from '../helpers/netns.js';
import { ComputeHost, MODES, OUTSIDE, group, openFirewall, pingCount, probe, state, type Bg, type Mode, type Vm } from '../helpers/hosts.js';
import { CLI } from '../helpers/cli.js';

describe.skipIf(!isRoot).each(MODES)('explain agrees with real packets (%s)', (mode: Mode) => {
  let h: ComputeHost;
  let vm: Vm;
  let fw: Portwall;
  let doc: StateInput;
  let dir: string;
  const servers: Bg[] = [];

  beforeAll(async () => {
    h = new ComputeHost(mode, [{ id: 'net-a', zone: 101, bridge: 'br-ex', macByte: 1 }]);
    vm = h.addVm('exv', { n: 10 });
    doc = state([h.networkState('net-a')], [
      group('sg-web', [
        { id: 'ssh-admins', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 22, port_range_max: 22, remote_ip_prefix: '198.51.100.0/24' },
        { id: 'http-all', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 80, port_range_max: 80 },
        { id: 'ping-b', direction: 'ingress', ethertype: 'IPv4', protocol: 'icmp', remote_ip_prefix: '203.0.113.0/24' },
        { id: 'https-out', direction: 'egress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 443, port_range_max: 443 },
      ]),
    ], [h.port(vm, { security_groups: ['sg-web'] })]);
    fw = openFirewall(h);
    await fw.apply(doc);
    servers.push(await h.serve(vm.ns, { tcp: [22, 80, 8080] }, 60), await h.serve(h.outside, { tcp: [443, 7000] }, 60));
    dir = mkdtempSync(path.join(tmpdir(), 'pw-explain-'));
    writeFileSync(path.join(dir, 'state.json'), JSON.stringify(doc));
  }, 60_000);

  afterAll(async () => {
    await fw?.close();
    h?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  // [packet, expected step] — the expectation is only for the reader; the kernel is the oracle.
  const TCP: [string, string][] = [
    [`tcp ${OUTSIDE.a4}:40000 -> 192.0.2.10:22`, 'ssh-admins'],
    [`tcp ${OUTSIDE.b4}:40001 -> 192.0.2.10:22`, 'default'],
    [`tcp ${OUTSIDE.b4}:40002 -> 192.0.2.10:80`, 'http-all'],
    [`tcp ${OUTSIDE.c4}:40003 -> 192.0.2.10:8080`, 'default'],
    [`tcp 192.0.2.10:40004 -> ${OUTSIDE.b4}:443`, 'https-out'],
    [`tcp 192.0.2.10:40005 -> ${OUTSIDE.b4}:7000`, 'default'],
  ];

  it('TCP: the verdict and step of every packet match what the kernel does', async () => {
    const answers = TCP.map(([p]) => fw.explain(`port-${vm.name}`, p));
    const results = await Promise.all(answers.map((a) => {
      const pr = { proto: 'tcp' as const, host: a.packet.dst, port: a.packet.dport!, src: a.packet.src, sport: a.packet.sport! };
      return probe(a.direction === 'ingress' ? h.outside : vm.ns, [pr], 1).then((r) => r[0]!);
    }));
    const lines = answers.map((a, i) => `${packetText(a.packet)} → ${a.why} | kernel: ${results[i]}`);
    console.log(`[${mode}] explain vs kernel:\n  ${lines.join('\n  ')}`);
    answers.forEach((a, i) => {
      expect(a.allowed, lines[i]).toBe(results[i] === 'open' || results[i] === 'refused');
      expect(a.ruleId ?? a.reason, lines[i]).toBe(TCP[i]![1]);
    });
    // Both verdicts occur, so the comparison can fail either way.
    expect(new Set(answers.map((a) => a.allowed)).size).toBe(2);
  });

  it('ICMP: echo from the admitted prefix passes, from another is dropped, as explained', async () => {
    for (const [src, step] of [[OUTSIDE.b4, 'ping-b'], [OUTSIDE.a4, 'default']] as const) {
      const a = fw.explain(`port-${vm.name}`, `icmp ${src} -> ${vm.ip4} type 8 code 0`);
      const replies = await pingCount(h.outside, vm.ip4, { count: 2, src, waitS: 1 });
      expect(a.ruleId ?? a.reason).toBe(step);
      expect(a.allowed, `${a.why}; ${replies} replies`).toBe(replies > 0);
    }
  });

  it('anti-spoof: a source that is not the port\'s is explained as anti-spoof, and a spoofed probe is dropped', async () => {
    const a = fw.explain(`port-${vm.name}`, `tcp 192.0.2.99:40010 -> ${OUTSIDE.b4}:443`, 'egress');
    expect(a).toMatchObject({ allowed: false, reason: 'anti-spoof' });
    vm.ns.exec('ip', ['addr', 'add', '192.0.2.99/32', 'dev', 'eth0']);
    try {
      const [r] = await probe(vm.ns, [{ proto: 'tcp', host: OUTSIDE.b4, port: 443, src: '192.0.2.99' }], 1);
      expect(r).toBe('timeout');
    } finally {
      vm.ns.exec('ip', ['addr', 'del', '192.0.2.99/32', 'dev', 'eth0']);
    }
  });

  it('counters rise with traffic: the admitting rule per connection, the default drop per refused one', async () => {
    const port = `port-${vm.name}`;
    const hits = async () => {
      const c = narrowCounters(await fw.counters(), { port });
      const rule = c.rules.find((r) => r.ruleId === 'ssh-admins');
      const drops = c.steps.filter((x) => x.step === 'no rule allows it' && x.chain.startsWith('ingress')).reduce((n, x) => n + x.packets, 0);
      return { ssh: rule?.packets ?? 0, group: rule?.groupId, drops };
    };
    const before = await hits();
    const allowed = await probe(h.outside, [1, 2, 3].map((i) => ({ proto: 'tcp' as const, host: vm.ip4, port: 22, src: OUTSIDE.a4, sport: 41000 + i })), 1);
    const dropped = await probe(h.outside, [1, 2].map((i) => ({ proto: 'tcp' as const, host: vm.ip4, port: 22, src: OUTSIDE.b4, sport: 42000 + i })), 1);
    expect([...allowed, ...dropped]).toEqual(['open', 'open', 'open', 'timeout', 'timeout']);
    const after = await hits();
    console.log(`[${mode}] counters: ssh-admins ${before.ssh} -> ${after.ssh}, ingress default drops ${before.drops} -> ${after.drops}`);
    expect(after.group).toBe('sg-web');
    expect(after.ssh - before.ssh).toBeGreaterThanOrEqual(3);
    expect(after.drops - before.drops).toBeGreaterThanOrEqual(2);
    const out = tryRun('node', [CLI, 'status', '--netns', h.host.name, '--port', port, '--state', path.join(dir, 'state.json')]);
    expect(out.status, out.out).toBe(0);
    expect(out.out).toMatch(new RegExp(`ssh-admins \\(sg-web\\): ${after.ssh} packets`));
    expect(out.out).toMatch(/shared by 1 port\n/);
    expect(out.out).toMatch(/no rule allows it: \d+ packets/);
  });

  it('the CLI with --state: the same answer, exit 0 allowed and 3 dropped; bad input is exit 1 with the reason', () => {
    const cli = (args: string[]) => tryRun('node', [CLI, 'explain', '--netns', h.host.name, '--state', path.join(dir, 'state.json'), '--port', `port-${vm.name}`, ...args]);
    const ok = cli([`tcp ${OUTSIDE.a4}:40000 -> 192.0.2.10:22`]);
    expect(ok.status, ok.out).toBe(0);
    expect(ok.out).toMatch(/ingress tcp 198\.51\.100\.2:40000 -> 192\.0\.2\.10:22 at port port-exv: ALLOWED: rule ssh-admins of group sg-web/);
    const no = cli([`tcp ${OUTSIDE.b4}:40001 -> 192.0.2.10:22`, '--json']);
    expect(no.status, no.out).toBe(3);
    expect(JSON.parse(no.out.slice(no.out.indexOf('{')))).toMatchObject({ allowed: false, reason: 'default', direction: 'ingress' });
    const bad = cli(['tcp 198.51.100.2 -> 192.0.2.10:22']);
    expect(bad.status).toBe(1);
    expect(bad.out).toContain('tcp needs both ports');
    const neither = cli([`tcp ${OUTSIDE.a4}:1 -> ${OUTSIDE.b4}:2`]);
    expect(neither.status).toBe(1);
    expect(neither.out).toContain('give the direction');
  });
});
