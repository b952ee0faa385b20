// Prints one plain closing line, `Tests: N passed, N failed, N skipped`, after vitest's own summary, so a
// CI log can be read without parsing vitest's coloured output.
import type { Reporter, TestModule } from 'vitest/node';

export default class SummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const count = { passed: 0, failed: 0, skipped: 0 };
    for (const m of modules) {
      for (const t of m.children.allTests()) {
        const state = t.result().state;
        if (state === 'passed') count.passed++;
        else if (state === 'failed') count.failed++;
        else count.skipped++;
      }
    }
    process.stdout.write(`\nTests: ${count.passed} passed, ${count.failed} failed, ${count.skipped} skipped\n`);
    // Without root the kernel tests skip themselves: say so loudly, so a green unit run is not read as proof.
    if (process.getuid?.() !== 0) {
      process.stdout.write(`\n*** NOT ROOT: ${count.skipped} tests were skipped, among them every kernel test (network namespaces, real\n` +
        '*** packets). This run proves the unit tests only; run `npm test` as root for the rest. ***\n');
    }
  }
}
