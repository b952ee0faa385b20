/**
 * Child process of the security-group benchmark's memory case: one full sync of a workload into a given
 * (empty) namespace, nothing else, then its memory as one JSON line. Run by bench/sg-competitors.ts, which
 * owns the namespace.
 *
 * Usage: node dist/bench/sg-rss.js --netns NAME --ports N [--extra-rules 0] [--mode routed|bridged] [--seed 1]
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

import { Portwall } from '../src/apply/portwall.js';
import { workload, type Mode } from './workload.js';

const { values: args } = parseArgs({
  options: {
    netns: { type: 'string' },
    ports: { type: 'string', default: '1000' },
    'extra-rules': { type: 'string', default: '0' },
    mode: { type: 'string', default: 'routed' },
    seed: { type: 'string', default: '1' },
  },
});
if (!args.netns) throw new Error('--netns is required');

const w = workload({ ports: Number(args.ports), extraRules: Number(args['extra-rules']), mode: args.mode as Mode, seed: Number(args.seed) });
const pw = Portwall.open({ netns: args.netns });
const t0 = performance.now();
await pw.apply(w.state);
const applyMs = performance.now() - t0;
const mem = process.memoryUsage();
const mb = (bytes: number) => Math.round(bytes / 1e5) / 10;
await pw.close();
console.log(JSON.stringify({
  rssMB: mb(mem.rss), maxRssMB: mb(process.resourceUsage().maxRSS * 1024), heapUsedMB: mb(mem.heapUsed), applyMs: Math.round(applyMs),
}));
