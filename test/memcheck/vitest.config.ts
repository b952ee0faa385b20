// `npm run test:asan` (scripts/memcheck.sh asan): the kernel tests that drive the addon, in workers that load
// the AddressSanitizer + UBSan build with LeakSanitizer on. The vitest process itself is not instrumented:
// only its workers get libasan preloaded (through `env`), so only processes that load the addon are checked.
import { execFileSync } from 'node:child_process';
import path from 'node:path';

import { defineConfig } from 'vitest/config';

const root = path.resolve(import.meta.dirname, '../..');
const here = path.join(root, 'test/memcheck');
const libasan = execFileSync('gcc', ['-print-file-name=libasan.so'], { encoding: 'utf8' }).trim();

/** The tests run under the sanitizers: every kernel test whose subject is a call into the addon. */
export const ASAN_TESTS = [
  'native-guards',
  'engine-batch',
  'engine-roundtrip',
  'engine-socket',
  'conntrack',
  'conntrack-count',
  'conntrack-socket',
  'conntrack-subscribe',
  'ipset',
  'nft-events',
  'droplog',
  'explain-live',
  'adopt-record',
];

export default defineConfig({
  root,
  test: {
    include: ASAN_TESTS.map((t) => `test/kernel/${t}.test.ts`),
    reporters: ['default', './test/helpers/summary-reporter.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    setupFiles: [path.join(here, 'setup.ts')],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    env: {
      LD_PRELOAD: libasan,
      PORTWALL_ADDON: path.join(root, 'build-asan/build/Release/portwall.node'),
      // Any report ends the worker (abort_on_error), which fails its test file.
      ASAN_OPTIONS: `log_path=${process.env.PORTWALL_SANITIZER_LOG ?? '/tmp/portwall-asan'}:detect_leaks=1:abort_on_error=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1`,
      LSAN_OPTIONS: `suppressions=${path.join(here, 'lsan.supp')}:print_suppressions=1`,
      UBSAN_OPTIONS: 'halt_on_error=1:abort_on_error=1:print_stacktrace=1',
    },
  },
});
