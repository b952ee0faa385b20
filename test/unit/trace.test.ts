/**
 * The live trace's pure parts (src/trace.ts; the kernel test is test/kernel/explain-live.test.ts): the trace
 * rule's objects, trace records → named steps (hooks from base chains, rules by comment or rendering, the
 * kernel's end-of-rules marker left out), the verdict, and the printed path with the static answer.
 */
import { describe, expect, it } from 'vitest';

import type { Explanation } from '../../src/explain.js';
import type { NativeTraceEvent } from '../../src/native.js';
import { F, eq, inSet, jump, counter, drop, rule, ret } from '../../src/nft/match.js';
import type { NftObject } from '../../src/nft/types.js';
import { formatTrace, indexRules, traceObjects, traceSteps, traceVerdict, type LiveTraceResult } from '../../src/trace.js';
import { parsePacket } from '../../src/explain.js';
import { renderOperations } from '../../src/nft/render.js';

const T = 'portwall';
const objects: NftObject[] = [
  { kind: 'chain', family: 'inet', table: T, name: 'fwd', hook: 'forward', priority: 0, type: 'filter', policy: 'accept' },
  { kind: 'chain', family: 'inet', table: T, name: 'port_in' },
  { kind: 'set', family: 'inet', table: T, name: 'ports', key: ['ifname'] },
  { kind: 'rule', family: 'inet', table: T, chain: 'fwd', handle: 7n, comment: 'to ports', exprs: rule('inet', inSet(F.meta.oifname, 'ports'), jump('port_in')) },
  { kind: 'rule', family: 'inet', table: T, chain: 'port_in', handle: 9n, exprs: rule('inet', eq(F.tcp.dport, 22), ret()) },
  { kind: 'rule', family: 'inet', table: T, chain: 'port_in', handle: 10n, comment: 'no rule allows it', exprs: rule('inet', counter(), drop()) },
];
const ev = (e: Partial<NativeTraceEvent>): NativeTraceEvent => ({ id: 0xabc, type: 3, family: 1, nfproto: 2, table: T, chain: 'fwd', iif: 0, oif: 0, mark: 0, ...e });

const accepted: NativeTraceEvent[] = [
  ev({ chain: 'fwd', handle: 7n, verdict: -3, target: 'port_in', iif: 3, oif: 5 }),
  ev({ chain: 'port_in', handle: 9n, verdict: -5 }),
  ev({ chain: 'fwd', verdict: -1 }), // the kernel's end-of-rules marker: no handle
  ev({ type: 1, chain: 'fwd', policy: 1 }),
];
const dropped: NativeTraceEvent[] = [
  ev({ chain: 'fwd', handle: 7n, verdict: -3, target: 'port_in' }),
  ev({ chain: 'port_in', handle: 10n, verdict: 0 }),
];

describe('trace records → path', () => {
  const index = indexRules(objects);

  it('names each step: the hook of the base chain, the rule by comment or nft rendering, the verdict and jump target', () => {
    const steps = traceSteps(accepted, index);
    expect(steps.map((s) => [s.kind, s.chain, s.hook, s.verdict, s.target, s.comment, s.text])).toEqual([
      ['rule', 'fwd', 'forward', 'jump', 'port_in', 'to ports', 'oifname @ports jump port_in'],
      ['rule', 'port_in', 'forward', 'return', undefined, undefined, 'tcp dport 22 return'],
      ['policy', 'fwd', 'forward', 'accept', undefined, undefined, undefined],
    ]);
    expect(steps[1]).toMatchObject({ base: false, handle: 9 });
    expect(traceVerdict(steps)).toBe('accepted');
    expect(traceVerdict(traceSteps(dropped, index))).toBe('dropped');
  });

  it('prints the path, the verdict and the static answer, and flags a disagreement', () => {
    const packet = parsePacket('tcp 198.51.100.2:40000 -> 192.0.2.10:22');
    const steps = traceSteps(accepted, index);
    const result: LiveTraceResult = { packet, timedOut: false, ms: 40, trace: { id: 0xabc, steps, verdict: traceVerdict(steps) } };
    const allowed = { portId: 'p1', direction: 'ingress', packet, allowed: true, reason: 'rule', why: 'ALLOWED: rule ssh of group sg' } as Explanation;
    expect(formatTrace(result, allowed)).toBe([
      'live trace of ingress tcp 198.51.100.2:40000 -> 192.0.2.10:22 at port p1 (trace id 0x00000abc):',
      '  forward     inet portwall fwd: rule "to ports" (oifname @ports jump port_in) → jump port_in',
      '              inet portwall port_in: rule handle 9 (tcp dport 22 return) → return',
      '  forward     inet portwall fwd: policy accept',
      '  => ACCEPTED',
      'static: ALLOWED: rule ssh of group sg',
      'live and static agree',
      '',
    ].join('\n'));
    const wrong = formatTrace(result, { ...allowed, allowed: false, why: 'DROPPED: default' });
    expect(wrong).toMatch(/DISAGREE: the kernel accepted the packet, the static explanation says dropped\n$/);
    expect(formatTrace({ packet, timedOut: true, ms: 2000 }, allowed)).toBe(
      'live: no packet ingress tcp 198.51.100.2:40000 -> 192.0.2.10:22 at port p1 came within 2.0 s\nstatic: ALLOWED: rule ssh of group sg\n');
  });
});

describe('the trace tables', () => {
  it('inet prerouting and output chains at -350 matching the 5-tuple and setting nftrace; bridge too for bridged ports; a routed egress by its device', () => {
    const p = parsePacket('tcp 198.51.100.2:40000 -> 192.0.2.10:22');
    // The renderer has no spelling for `meta nftrace set 1`: the matches are rendered, the statement compared.
    const NFTRACE = [{ type: 'immediate', dreg: 1, data: Uint8Array.of(1) }, { type: 'meta', key: 'nftrace', sreg: 1 }];
    const text = (o: NftObject[]) => renderOperations(o.map((object) => {
      if (object.kind !== 'rule') return { verb: 'add' as const, object };
      expect(object.exprs.slice(-2)).toEqual(NFTRACE);
      return { verb: 'add' as const, object: { ...object, exprs: object.exprs.slice(0, -2) } };
    }));
    expect(text(traceObjects(p))).toBe([
      'add table inet portwall_trace',
      'add chain inet portwall_trace trace_pre { type filter hook prerouting priority -350; policy accept; }',
      'add rule inet portwall_trace trace_pre ip saddr 198.51.100.2 ip daddr 192.0.2.10 tcp sport 40000 tcp dport 22 comment "portwall explain --live"',
      'add chain inet portwall_trace trace_out { type filter hook output priority -350; policy accept; }',
      'add rule inet portwall_trace trace_out ip saddr 198.51.100.2 ip daddr 192.0.2.10 tcp sport 40000 tcp dport 22 comment "portwall explain --live"',
      '',
    ].join('\n'));
    const bridged = traceObjects(p, { bridged: true, tables: { inet: 'pw', bridge: 'pwb' } });
    expect(bridged.filter((o) => o.kind === 'table')).toEqual([{ kind: 'table', family: 'inet', name: 'pw_trace' }, { kind: 'table', family: 'bridge', name: 'pwb_trace' }]);
    expect(bridged.filter((o) => o.kind === 'chain').map((o) => `${o.family} ${o.table} ${o.name}`)).toEqual(['inet pw_trace trace_pre', 'inet pw_trace trace_out', 'bridge pwb_trace trace_pre']);
    const egress = text(traceObjects(parsePacket('icmp 192.0.2.10 -> 198.51.100.2'), { iifname: 'tap1' }));
    expect(egress).toContain('add rule inet portwall_trace trace_pre iifname "tap1" ip saddr 192.0.2.10 ip daddr 198.51.100.2 meta l4proto icmp ');
    expect(egress).not.toContain('trace_out');
  });
});
