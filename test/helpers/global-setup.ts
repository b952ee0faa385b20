// One prefix per test run for every namespace the tests create; at the end, nothing of it may remain. The lanes
// that scripts/test.mjs runs side by side end theirs with their own letter, so they can never share one.
import { randomBytes } from 'node:crypto';

export function setup(): void {
  process.env.PORTWALL_TEST_RUN = `pw${randomBytes(2).toString('hex')}${process.env.PORTWALL_TEST_LANE ?? ''}`;
}

export async function teardown(): Promise<void> {
  const { leftoverNamespaces, run } = await import('./netns.js');
  const left = leftoverNamespaces();
  for (const n of left) run('ip', ['netns', 'del', n]);
  if (left.length) throw new Error(`tests left network namespaces behind: ${left.join(', ')}`);
}
