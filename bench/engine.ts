/**
 * Engine benchmark (issue: native transaction engine). From one run, in fresh network namespaces:
 *  1. loading a Neutron-shaped ruleset (ports × (6 + sgRules) rules + two verdict maps): portwall's native
 *     commit, `nft -f` of the same ruleset (printed by Transaction.toString()), and the replay of the already
 *     encoded netlink batch (the kernel's own cost, the floor);
 *  2. the kernel fact of docs/dataplane.md: in tables of 100 and 5000 per-port chains, the cost of a commit that
 *     appends one `accept` rule, one that appends a verdict-free (counter-only) rule, and one that adds plain
 *     set elements.
 * Prints medians (and p90) and writes bench/reports/engine-<time>.{json,md}.
 *
 * Usage: node dist/bench/engine.js [--ports 1000] [--rules 30] [--reps 5] [--probe-reps 30] [--sizes 100,5000]
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

import { binding } from '../src/native.js';
import { openNft, type Nft } from '../src/nft/client.js';
import { accept, counter, rule } from '../src/nft/match.js';
import type { NftObject, Rule } from '../src/nft/types.js';
import { Netns, run } from '../test/helpers/netns.js';
import { neutronShape, portChain, probeSet } from './ruleset.js';

const { values: args } = parseArgs({
  options: {
    ports: { type: 'string', default: '1000' },
    rules: { type: 'string', default: '30' },
    reps: { type: 'string', default: '5' },
    'probe-reps': { type: 'string', default: '30' },
    sizes: { type: 'string', default: '100,5000' },
  },
});
const PORTS = Number(args.ports);
const SG_RULES = Number(args.rules);
const REPS = Number(args.reps);
const PROBE_REPS = Number(args['probe-reps']);
const SIZES = String(args.sizes).split(',').map(Number);
const TABLE = 'pwbench';

interface Stat { median: number; p90: number; min: number; n: number }
function stat(xs: number[]): Stat {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * (s.length - 1) + 0.5))]!;
  return { median: at(0.5), p90: at(0.9), min: s[0]!, n: s.length };
}
const ms = (x: number) => `${x.toFixed(x < 10 ? 3 : 1)} ms`;

async function timed(fn: () => Promise<unknown> | unknown): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

function txOf(nft: Nft, objs: NftObject[]) {
  const tx = nft.transaction();
  for (const o of objs) tx.add(o);
  return tx;
}

async function dropTable(nft: Nft): Promise<void> {
  await nft.transaction().destroy({ kind: 'table', family: 'inet', name: TABLE }).commit();
}

async function fullLoad(): Promise<Record<string, Stat | number>> {
  const ns = new Netns('bench-load');
  const dir = mkdtempSync(path.join(tmpdir(), 'pw-bench-'));
  try {
    const nft = openNft({ netns: ns.name });
    const objs = neutronShape({ table: TABLE, ports: PORTS, sgRules: SG_RULES });
    const ruleCount = objs.filter((o) => o.kind === 'rule').length;
    console.log(`load: ${PORTS} port chains, ${ruleCount} rules, 2 verdict maps of ${PORTS} jumps`);

    const text = txOf(nft, objs).toString();
    const file = path.join(dir, 'ruleset.nft');
    writeFileSync(file, text);
    const encoded = await binding().nftEncode(txOf(nft, objs).encode());

    const native: number[] = [], build: number[] = [], nftf: number[] = [], replay: number[] = [];
    for (let i = 0; i < REPS; i++) {
      // Side by side in each round, each into an empty namespace state.
      await dropTable(nft);
      let tx!: ReturnType<typeof txOf>;
      const b = await timed(() => { tx = txOf(nft, objs); });
      const c = await timed(() => tx.commit());
      build.push(b);
      native.push(b + c);
      await dropTable(nft);
      nftf.push(await timed(() => run('ip', ['netns', 'exec', ns.name, 'nft', '-f', file], { timeoutMs: 120_000 })));
      await dropTable(nft);
      replay.push(await timed(() => binding().nftSendEncoded(ns.name, encoded)));
    }
    const listed = await nft.list({ family: 'inet', table: TABLE });
    const listedRules = listed.objects.filter((o) => o.kind === 'rule').length;
    if (listedRules !== ruleCount) throw new Error(`kernel holds ${listedRules} rules, expected ${ruleCount}`);
    const r = {
      rules: ruleCount,
      nativeTotal: stat(native), nativeBuildAndEncodeJs: stat(build), nftF: stat(nftf), replay: stat(replay),
      batchBytes: encoded.length,
    };
    console.log(`  portwall native commit (build+encode+kernel): ${ms(r.nativeTotal.median)} (JS build ${ms(r.nativeBuildAndEncodeJs.median)})`);
    console.log(`  nft -f of toString():                          ${ms(r.nftF.median)}  → portwall is ${(r.nftF.median / r.nativeTotal.median).toFixed(2)}× faster`);
    console.log(`  replay of the pre-encoded batch (floor):       ${ms(r.replay.median)}  → portwall is ${(r.nativeTotal.median / r.replay.median).toFixed(2)}× the floor`);
    return r;
  } finally {
    rmSync(dir, { recursive: true, force: true });
    ns.destroy();
  }
}

async function updateCost(chains: number): Promise<Record<string, Stat>> {
  const ns = new Netns(`bench-upd${chains}`);
  try {
    const nft = openNft({ netns: ns.name });
    const { set, use } = probeSet(TABLE);
    const objs = [...neutronShape({ table: TABLE, ports: chains, sgRules: SG_RULES }), set, use];
    await txOf(nft, objs).commit();
    const appendRule = (exprs: Rule['exprs']): Rule =>
      ({ kind: 'rule', family: 'inet', table: TABLE, chain: portChain(0), exprs });
    const acceptRule = appendRule(rule('inet', accept()));
    const counterRule = appendRule(rule('inet', counter()));
    const verdictRule: number[] = [], counterOnly: number[] = [], elements: number[] = [];
    for (let i = 0; i < PROBE_REPS; i++) {
      verdictRule.push(await timed(() => nft.transaction().add(acceptRule).commit()));
      counterOnly.push(await timed(() => nft.transaction().add(counterRule).commit()));
      const elems = { kind: 'elements' as const, family: 'inet' as const, table: TABLE, set: 'probe',
        elements: [{ key: [`203.0.113.${i % 250}`] }, { key: [`198.51.100.${i % 250}`] }] };
      elements.push(await timed(() => nft.transaction().add(elems).commit()));
    }
    const r = { acceptRule: stat(verdictRule), counterRule: stat(counterOnly), setElements: stat(elements) };
    console.log(`update cost at ${chains} chains (${chains * (SG_RULES + 6)} rules):`);
    console.log(`  append one accept rule:        ${ms(r.acceptRule.median)} (p90 ${ms(r.acceptRule.p90)})`);
    console.log(`  append one counter-only rule:  ${ms(r.counterRule.median)} (p90 ${ms(r.counterRule.p90)})`);
    console.log(`  add two plain set elements:    ${ms(r.setElements.median)} (p90 ${ms(r.setElements.p90)})`);
    return r;
  } finally {
    ns.destroy();
  }
}

async function main(): Promise<void> {
  const started = new Date().toISOString();
  const load = await fullLoad();
  const updates: Record<string, Record<string, Stat>> = {};
  for (const n of SIZES) updates[`${n} chains`] = await updateCost(n);
  const report = { started, ports: PORTS, sgRules: SG_RULES, reps: REPS, probeReps: PROBE_REPS, load, updates };
  const dir = path.join('bench', 'reports');
  mkdirSync(dir, { recursive: true });
  const stem = path.join(dir, `engine-${started.replace(/[:.]/g, '-')}`);
  writeFileSync(`${stem}.json`, JSON.stringify(report, null, 2));
  const lines = [`# engine benchmark ${started}`, '', '```', JSON.stringify(report, null, 2), '```', ''];
  writeFileSync(`${stem}.md`, lines.join('\n'));
  console.log(`report: ${stem}.json`);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
