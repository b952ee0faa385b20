// Every kind of bad state file in the table (test/helpers/bad-states.ts) fed to `portwall apply` against a
// namespace that already holds the example state: exit 1, the field named on stderr, and the kernel's full
// dump unchanged.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { run } from '../../src/cli.js';
import { BAD_STATES, EXAMPLE_STATE_FILE } from '../helpers/bad-states.js';
import { Netns, isRoot } from '../helpers/netns.js';

async function apply(netns: string, file: string): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await run(['apply', '--netns', netns, file], { out: (t) => { out += t; }, err: (t) => { err += t; }, stdin: [] });
  return { code, out, err };
}

describe.skipIf(!isRoot)('portwall apply of bad state files', () => {
  let ns: Netns;
  let dir: string;
  let before: string;
  beforeAll(async () => {
    ns = new Netns('badstates');
    ns.exec('ip', ['link', 'add', 'br-a', 'type', 'bridge']);
    dir = mkdtempSync(path.join(tmpdir(), 'pw-bad-'));
    expect((await apply(ns.name, EXAMPLE_STATE_FILE)).code).toBe(0);
    before = ns.nftText();
    expect(before).toContain('table inet portwall');
  });
  afterAll(() => {
    ns?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test(`the table holds at least 30 kinds of mistake (${BAD_STATES.length})`, () => {
    expect(BAD_STATES.length).toBeGreaterThanOrEqual(30);
  });

  test.each(BAD_STATES.map((b, i) => [i, b.kind] as const))('#%i %s: rejected, field named, kernel unchanged', async (i) => {
    const bad = BAD_STATES[i]!;
    const file = path.join(dir, `bad-${i}.json`);
    writeFileSync(file, bad.text);
    const r = await apply(ns.name, file);
    expect(r.code).not.toBe(0);
    expect(r.out).toBe('');
    expect(r.err).toContain('ERR_INVALID_STATE');
    for (const p of bad.paths) expect(r.err).toContain(p);
    expect(ns.nftText()).toBe(before);
  });
});
