import { defineConfig } from 'vitest/config';

/**
 * Kernel test files that send no packets: they program and list the kernel, pack the package, inject faults or
 * generate input. They share the "control" lane with the unit tests; every other kernel file (and any new one)
 * is in the "traffic" lane.
 */
export const CONTROL_KERNEL_TESTS = [
  'agent-events',
  'agent-warnings',
  'bad-states-cli',
  'cleanup',
  'concurrent-writers',
  'engine-batch',
  'engine-roundtrip',
  'faults',
  'hostile-input',
  'ipset-publish',
  'match-vs-nft',
  'native-guards',
  'netlink-limits',
  'package',
  'status',
  'writers-regressions',
];
const control = CONTROL_KERNEL_TESTS.map((t) => `test/kernel/${t}.test.ts`);

// Two lanes, each one file at a time. `npm test` (scripts/test.mjs) runs them side by side, a lane a core, so
// two of the suite's files that send packets never run at once; `npx vitest run` runs them one after the other.
export default defineConfig({
  test: {
    reporters: ['default', './test/helpers/summary-reporter.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    projects: [
      { extends: true, test: { name: 'traffic', include: ['test/kernel/**/*.test.ts'], exclude: control } },
      { extends: true, test: { name: 'control', include: ['test/unit/**/*.test.ts', ...control] } },
    ],
  },
});
