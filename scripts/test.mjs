// `npm test`: the suite's two lanes (vitest.config.ts: "traffic" and "control") side by side, one vitest
// process each, one test file at a time in each, so that the two cores are both used and two of the suite's
// files that send packets never run at once. `--memory` (`npm run test:all`, the README's test command) runs
// the memory checks (scripts/memcheck.sh asan, then valgrind) in the control lane once its files are done.
//
// Every output line is prefixed with its lane; the closing lines give each step's outcome and add up both
// lanes' `Tests:` lines. Other arguments go to both vitest runs (`npm test -- test/kernel/apply.test.ts`); a
// lane that holds none of the named files passes. The exit code is non-zero if any step failed.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';

const root = path.resolve(import.meta.dirname, '..');
const vitest = path.join(root, 'node_modules/vitest/vitest.mjs');
const args = process.argv.slice(2);
const memory = args.includes('--memory');
const vitestArgs = args.filter((a) => a !== '--memory');

/** A step: what it is called in the summary, and its command. */
const vitestStep = (project) => ({ name: `vitest --project ${project}`, suite: true, argv: [process.execPath, vitest, 'run', '--project', project, '--passWithNoTests', ...vitestArgs] });
const memcheck = (what) => ({ name: `memcheck ${what}`, suite: false, argv: ['bash', path.join(root, 'scripts/memcheck.sh'), what] });
const lanes = {
  traffic: [vitestStep('traffic')],
  control: [vitestStep('control'), ...(memory ? [memcheck('asan'), memcheck('valgrind')] : [])],
};
const width = Math.max(...Object.keys(lanes).map((l) => l.length));
const env = process.stdout.isTTY ? { ...process.env, FORCE_COLOR: '1' } : process.env;

const running = new Set();
let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    stopping = true;
    for (const c of running) c.kill(sig);
  });
}

/** Runs one step with its output prefixed; resolves with its outcome and the `Tests:` counts it printed. */
function runStep(lane, step) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    let counts;
    // The lane's letter ends its namespaces' prefix (test/helpers/global-setup.ts).
    const child = spawn(step.argv[0], step.argv.slice(1), { cwd: root, env: { ...env, PORTWALL_TEST_LANE: lane[0] }, stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    const prefix = `${lane.padEnd(width)} │ `;
    for (const [stream, out] of [[child.stdout, process.stdout], [child.stderr, process.stderr]]) {
      createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
        const m = /^Tests: (\d+) passed, (\d+) failed, (\d+) skipped$/.exec(line);
        if (m) counts = m.slice(1).map(Number);
        out.write(`${prefix}${line}\n`);
      });
    }
    child.on('close', (code, signal) => {
      running.delete(child);
      resolve({ lane, step, ok: code === 0, how: signal ?? `exit ${code}`, s: (Date.now() - t0) / 1000, counts });
    });
  });
}

/** A lane's steps one after the other; a failed step does not stop the next (its output is worth having). */
async function runLane(lane) {
  const results = [];
  for (const step of lanes[lane]) if (!stopping) results.push(await runStep(lane, step));
  return results;
}

const results = (await Promise.all(Object.keys(lanes).map(runLane))).flat();
const total = (suite) => {
  const sum = [0, 0, 0];
  for (const r of results) if (r.step.suite === suite && r.counts) r.counts.forEach((n, i) => (sum[i] += n));
  return `${sum[0]} passed, ${sum[1]} failed, ${sum[2]} skipped`;
};
process.stdout.write('\n');
for (const r of results) {
  const counts = r.counts ? ` (${r.counts[0]} passed, ${r.counts[1]} failed, ${r.counts[2]} skipped)` : '';
  process.stdout.write(`${r.lane.padEnd(width)}: ${r.step.name}: ${r.ok ? 'passed' : `FAILED (${r.how})`} in ${r.s.toFixed(0)} s${counts}\n`);
}
if (memory) process.stdout.write(`Memory checks: ${total(false)}\n`);
process.stdout.write(`Tests: ${total(true)}\n`);
// Interrupted, some steps never ran: that is no pass either.
process.exitCode = !stopping && results.every((r) => r.ok) ? 0 : 1;
