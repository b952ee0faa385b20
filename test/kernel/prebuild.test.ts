// The prebuild path: `prebuildify --napi --strip` builds the addon, and a copy of the package that has only
// that prebuild (no build/ directory) loads it through node-gyp-build and programs a namespace with it.
import { cpSync, existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterAll, describe, expect, test } from 'vitest';

import { Netns, isRoot, run } from '../helpers/netns.js';

const root = path.resolve(import.meta.dirname, '../..');
const nodedir = path.dirname(path.dirname(process.execPath));

describe.skipIf(!isRoot)('prebuild', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('a package with only the prebuild loads it and commits through it', () => {
    expect(existsSync(path.join(root, 'dist/src/index.js')), 'run scripts/setup.sh first (builds dist/)').toBe(true);
    const src = mkdtempSync(path.join(tmpdir(), 'pw-prebuild-src-'));
    const pkg = mkdtempSync(path.join(tmpdir(), 'pw-prebuild-pkg-'));
    dirs.push(src, pkg);
    for (const f of ['package.json', 'binding.gyp', 'native']) cpSync(path.join(root, f), path.join(src, f), { recursive: true });
    symlinkSync(path.join(root, 'node_modules'), path.join(src, 'node_modules'));
    const env = { ...process.env, ...(existsSync(path.join(nodedir, 'include/node/node_api.h')) ? { npm_config_nodedir: nodedir } : {}) };
    run(path.join(root, 'node_modules/.bin/prebuildify'), ['--napi', '--strip'], { timeoutMs: 300_000, cwd: src, env });

    // The package as installed from a tarball with prebuilds: no build/ directory, no compiler needed.
    for (const f of ['package.json', 'prebuilds', 'dist']) {
      cpSync(path.join(f === 'prebuilds' ? src : root, f), path.join(pkg, f), { recursive: true });
    }
    symlinkSync(path.join(root, 'node_modules'), path.join(pkg, 'node_modules'));
    expect(existsSync(path.join(pkg, 'build'))).toBe(false);

    const ns = new Netns('prebuild');
    try {
      const script = `
        const gyp = require('node-gyp-build');
        const file = gyp.resolve(process.cwd());
        import('./dist/src/index.js').then(async ({ openNft }) => {
          const nft = openNft({ netns: process.argv[1] });
          const { genid } = await nft.transaction().add({ kind: 'table', family: 'inet', name: 'from_prebuild' }).commit();
          console.log(JSON.stringify({ file, genid }));
        });`;
      const out = JSON.parse(run(process.execPath, ['-e', script, ns.name], { cwd: pkg, timeoutMs: 60_000 }).trim());
      expect(out.file).toContain(`${path.sep}prebuilds${path.sep}`);
      expect(ns.nftText()).toContain('table inet from_prebuild');
    } finally {
      ns.destroy();
    }
  });
});
