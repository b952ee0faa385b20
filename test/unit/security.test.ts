/**
 * The claims of docs/security.md that a scan or a unit test can prove (the others are proven where the
 * behaviour lives; docs/security.md names each test).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, test, vi } from 'vitest';

import SummaryReporter from '../helpers/summary-reporter.js';
import { readStateFile } from '../../src/model/load.js';
import { InvalidStateError } from '../../src/model/problems.js';

const ROOT = path.resolve(import.meta.dirname, '../..');

function files(dir: string, ext: RegExp): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    return statSync(p).isDirectory() ? files(p, ext) : ext.test(name) ? [p] : [];
  });
}

describe('security claims', () => {
  test('the product path starts no process and evaluates no code: src/ has no child_process, eval or Function', () => {
    const src = files(path.join(ROOT, 'src'), /\.ts$/);
    expect(src.length).toBeGreaterThan(50);
    const found = src.flatMap((f) => {
      const text = readFileSync(f, 'utf8');
      return [/\bchild_process\b/, /\beval\s*\(/, /\bnew Function\s*\(/, /\bworker_threads\b/].filter((re) => re.test(text)).map((re) => `${path.relative(ROOT, f)}: ${re}`);
    });
    expect(found).toEqual([]);
  });

  test('the native addon starts no process: no system, popen, fork or exec* in native/', () => {
    const native = files(path.join(ROOT, 'native'), /\.(cc|h)$/);
    expect(native.length).toBeGreaterThan(10);
    const found = native.flatMap((f) => {
      const text = readFileSync(f, 'utf8').replace(/\/\/.*$/gm, '');
      return [/\bsystem\s*\(/, /\bpopen\s*\(/, /\bfork\s*\(/, /\bvfork\s*\(/, /\bexec[lv]p?e?\s*\(/, /\bposix_spawn/].filter((re) => re.test(text)).map((re) => `${path.relative(ROOT, f)}: ${re}`);
    });
    expect(found).toEqual([]);
  });

  test('a state file over the size limit is refused before it is read, naming the file and the limit', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pw-sec-'));
    try {
      const file = path.join(dir, 'big.json');
      writeFileSync(file, JSON.stringify({ networks: [], pad: 'x'.repeat(2000) }));
      const err = await readStateFile(file, undefined, 1000).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidStateError);
      expect((err as InvalidStateError).problems[0]!.message).toMatch(/big\.json is \d+ bytes, over the limit of 1000/);
      await expect(readStateFile(file, undefined, 1_000_000)).resolves.toBeDefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a run without root says loudly that the kernel tests were skipped', () => {
    const fake = (state: string) => ({ result: () => ({ state }) });
    const modules = [{ children: { allTests: () => [fake('passed'), fake('skipped'), fake('skipped')] } }];
    const out: string[] = [];
    const write = vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => (out.push(String(s)), true));
    const uid = vi.spyOn(process, 'getuid').mockReturnValue(1000);
    try {
      new SummaryReporter().onTestRunEnd(modules as never);
      uid.mockReturnValue(0);
      new SummaryReporter().onTestRunEnd(modules as never);
    } finally {
      write.mockRestore();
      uid.mockRestore();
    }
    expect(out.filter((l) => l.includes('NOT ROOT'))).toHaveLength(1);
    expect(out.join('')).toContain('*** NOT ROOT: 2 tests were skipped, among them every kernel test');
  });
});
