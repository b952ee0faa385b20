/**
 * Child process of the security-group benchmark's memory case: one full sync of a workload into a given
 * (empty) namespace, then its memory as one JSON line. Run by bench/sg-competitors.ts, which owns the
 * namespace. With `--changes N` the handle also holds the state through a re-apply of the same state and N
 * one-port adds and removes (the "programmed, held and re-applied" case; each port has the groups of a port of
 * its tenant), timed, with the RSS after each phase.
 *
 * Usage: node dist/bench/sg-rss.js --netns NAME --ports N [--extra-rules 0] [--changes 0] [--mode routed|bridged] [--seed 1]
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

import { Portwall } from '../src/apply/portwall.js';
import { WARM_UP_ROUNDS, quantile } from './sg-harness.js';
import type { PortInput } from '../src/model/schema.js';
import { workload, type Mode } from './workload.js';

const { values: args } = parseArgs({
  options: {
    netns: { type: 'string' },
    ports: { type: 'string', default: '1000' },
    'extra-rules': { type: 'string', default: '0' },
    changes: { type: 'string', default: '0' },
    mode: { type: 'string', default: 'routed' },
    seed: { type: 'string', default: '1' },
  },
});
if (!args.netns) throw new Error('--netns is required');

const w = workload({ ports: Number(args.ports), extraRules: Number(args['extra-rules']), mode: args.mode as Mode, seed: Number(args.seed) });
const changes = Number(args.changes);
const mb = (bytes: number) => Math.round(bytes / 1e5) / 10;
const rss = () => mb(process.memoryUsage().rss);
const pw = Portwall.open({ netns: args.netns });
let t0 = performance.now();
await pw.apply(w.state);
const applyMs = performance.now() - t0;
const heapUsedMB = mb(process.memoryUsage().heapUsed);
const rssMB = rss();
const held: Record<string, number> = {};
if (changes > 0) {
  t0 = performance.now();
  await pw.apply(w.state);
  held.reapplyMs = Math.round(performance.now() - t0);
  held.reapplyRssMB = rss();
  // A port like those the host has: the groups of a port of its tenant, so it joins an existing rule profile (a
  // new group combination costs a new profile chain, which the kernel validates with the whole ruleset).
  const tenantPorts = w.opts.portsPerTenant;
  const like = (r: number): PortInput => {
    const port = w.extraPort(r);
    const peer = w.state.ports![(r % w.tenants) * tenantPorts + 1] ?? w.state.ports![0]!;
    return { ...port, security_groups: peer.security_groups ?? [] };
  };
  // Untimed rounds first (ports the timed loop does not use), as many as the one-port cases of the updates
  // section run: the flat ratio compares this add with theirs, so both must run equally warm code.
  for (let k = 0; k < WARM_UP_ROUNDS; k++) {
    const port = like(999 - k);
    await pw.upsertPort(port);
    await pw.removePort(port.id);
  }
  const adds: number[] = [];
  const removes: number[] = [];
  for (let r = 0; r < changes; r++) {
    const port = like(r % (1000 - WARM_UP_ROUNDS));
    t0 = performance.now();
    await pw.upsertPort(port);
    adds.push(performance.now() - t0);
    t0 = performance.now();
    await pw.removePort(port.id);
    removes.push(performance.now() - t0);
  }
  const ms = (xs: number[], q: number) => Math.round(quantile([...xs].sort((a, b) => a - b), q) * 1000) / 1000;
  Object.assign(held, { addP50Ms: ms(adds, 0.5), addP99Ms: ms(adds, 0.99), removeP50Ms: ms(removes, 0.5), removeP99Ms: ms(removes, 0.99), heldRssMB: rss() });
}
await pw.close();
console.log(JSON.stringify({
  rssMB, maxRssMB: mb(process.resourceUsage().maxRSS * 1024), heapUsedMB, applyMs: Math.round(applyMs), ...held,
}));
