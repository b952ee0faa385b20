// The README's first command runs this demo; it must keep working (and clean up after itself).
import { afterEach, describe, expect, test, vi } from 'vitest';

import { runDemo } from '../../demo/run.js';
import { isRoot, leftoverNamespaces } from '../helpers/netns.js';

describe.skipIf(!isRoot)('the built-in demo', () => {
  afterEach(() => vi.restoreAllMocks());

  test('every check comes out as expected, the narration shows the agent at work, no namespace is left', async () => {
    const write = vi.spyOn(process.stdout, 'write');
    expect(await runDemo()).toBe(true);
    const out = write.mock.calls.map((c) => String(c[0])).join('');
    write.mockRestore();
    expect(leftoverNamespaces()).toEqual([]);

    expect(out).not.toContain('UNEXPECTED');
    expect(out).toMatch(/^demo: OK — \d+ checks as expected/m);
    for (const n of [1, 2, 3, 4, 5, 6]) expect(out).toMatch(new RegExp(`^== ${n}\\. `, 'm'));
    // The API through curl, answered with the generation and the agent's timings.
    expect(out).toMatch(/\$ curl --unix-socket \$S -X PUT -H 'Content-Type: application\/json'/);
    expect(out).toMatch(/^ {3}200 in [\d.]+ ms: genid \d+, changed, .*commit [\d.]+/m);
    // The running ping cut by the removal of its rule.
    expect(out).toMatch(/running ping: [1-9]\d* replies before the PUT, 0 after its answer .* — as expected/);
    // Drift repaired, timed from outside and from the agent's own log line.
    expect(out).toMatch(/agent log: \{.*"event":"drift".*"msg":"drift repaired in [\d.]+ ms"\}/);
    expect(out).toMatch(/drift repaired [\d.]+ ms after nft was started \([\d.]+ ms inside the agent.*\) — as expected/);
    // The restart: no lost packet; at most one new generation, the adopt record (written once the agent was quiet,
    // or else as it stopped), and none from the start.
    expect(out).toMatch(/ping through the restart: (\d+)\/\1 replies, 0 lost — as expected/);
    const gens = /generation (\d+) before and (\d+) after: (the adopt record the agent wrote once quiet|the stopping agent's adopt record), then nothing — the restart adopted from it \(record\) and committed nothing — as expected/.exec(out);
    expect(gens).not.toBeNull();
    expect(Number(gens![2])).toBe(Number(gens![1]) + (gens![3]!.startsWith('the stopping') ? 1 : 0));
    // Invalid input: 400 with one line per problem.
    expect(out).toMatch(/^ {3}400 in [\d.]+ ms: ERR_INVALID_STATE, 2 problems:\n {5}.*mac_address: .*\n {5}.*security_groups\[0\]: /m);
  });
});
