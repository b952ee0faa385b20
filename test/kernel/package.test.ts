/**
 * The npm package as a user gets it: `npm pack` of a copy of the source tree (its prepack builds the prebuilt
 * N-API addon with prebuildify), the tarball's contents, then `npm ci` of it into an empty project whose PATH
 * holds node, npm and sh only — no compiler, no make — from npm's cache (offline). The installed package
 * loads the prebuild, imports, and its CLI programs a namespace. A tarball without the prebuild refuses to
 * install, naming what a build from source needs.
 */
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { Netns, isRoot, run } from '../helpers/netns.js';
import { port, state, webGroup } from '../helpers/states.js';

const root = path.resolve(import.meta.dirname, '../..');
// What `npm pack` and its prepack need from a checkout (dist/ with its timestamps: prepack recompiles only if stale).
const TREE = ['package.json', 'package-lock.json', 'binding.gyp', 'tsconfig.json', 'LICENSE', 'README.md', 'native', 'src', 'bench', 'demo',
  'test/helpers', 'test/fixtures', 'schema', 'systemd', 'scripts', 'dist'];
const COMPILERS = ['cc', 'gcc', 'c++', 'g++', 'clang', 'make'];

interface Lock { packages: Record<string, { dev?: boolean }> }

describe.skipIf(!isRoot)('npm package', () => {
  let dir: string;
  let tarball: string;
  let files: string[];
  let bin: string;
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string> };

  beforeAll(() => {
    expect(existsSync(path.join(root, 'dist/src/index.js')), 'run scripts/setup.sh first (builds dist/)').toBe(true);
    dir = mkdtempSync(path.join(tmpdir(), 'pw-package-'));
    const src = path.join(dir, 'src');
    for (const f of TREE) cpSync(path.join(root, f), path.join(src, f), { recursive: true, preserveTimestamps: true });
    symlinkSync(path.join(root, 'node_modules'), path.join(src, 'node_modules'));
    mkdirSync(path.join(dir, 'out'));
    const packed = run('npm', ['pack', '--json', '--pack-destination', path.join(dir, 'out')], { cwd: src, timeoutMs: 400_000 });
    // Lifecycle scripts may print before npm's JSON.
    const info = JSON.parse(packed.slice(packed.search(/^\[\s*\{/m))) as { filename: string; files: { path: string }[] }[];
    tarball = path.join(dir, 'out', info[0]!.filename);
    files = info[0]!.files.map((f) => f.path);

    // A PATH with node, npm and sh (npm runs install scripts with sh) and nothing else.
    bin = path.join(dir, 'bin');
    mkdirSync(bin);
    symlinkSync(process.execPath, path.join(bin, 'node'));
    symlinkSync(run('sh', ['-c', 'readlink -f "$(command -v npm)"']).trim(), path.join(bin, 'npm'));
    symlinkSync('/bin/sh', path.join(bin, 'sh'));
  }, 420_000);
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the tarball: the prebuilt addon, the compiled library, LICENSE and the schema; no test or bench output; every source map resolves', () => {
    expect(files).toContain(`prebuilds/linux-${process.arch}/portwall.node`);
    for (const f of ['LICENSE', 'README.md', 'package.json', 'dist/src/index.js', 'dist/src/cli.js', 'dist/src/cli.bundle.js', 'schema/state.schema.json', 'binding.gyp', 'scripts/build-deps.mjs']) {
      expect(files).toContain(f);
    }
    expect(files.filter((f) => /^(dist\/(test|bench|demo)|test|bench|demo|build)\//.test(f))).toEqual([]);
    const inTarball = new Set(files);
    for (const map of files.filter((f) => f.endsWith('.map'))) {
      const { sources } = JSON.parse(run('tar', ['-xzOf', tarball, `package/${map}`])) as { sources: string[] };
      for (const s of sources) expect(inTarball.has(path.posix.join(path.posix.dirname(map), s)), `${map} -> ${s}`).toBe(true);
    }
    const manifest = JSON.parse(run('tar', ['-xzOf', tarball, 'package/package.json'])) as Record<string, unknown>;
    expect(manifest).toMatchObject({ os: ['linux'], license: 'Apache-2.0', repository: { type: 'git' } });
    expect(manifest.exports).toMatchObject({ './package.json': './package.json', './state.schema.json': './schema/state.schema.json' });
  });

  test('installed into an empty project without compilers on PATH, it loads the prebuild, imports, and its CLI programs a namespace', () => {
    const project = consumer('app', tarball);
    for (const c of COMPILERS) expect(existsSync(path.join(bin, c))).toBe(false);
    const env = { PATH: bin, HOME: process.env.HOME ?? '/root' };
    const started = performance.now();
    run('npm', ['ci', '--offline', '--no-audit', '--no-fund'], { cwd: project, env, timeoutMs: 120_000 });
    const installMs = performance.now() - started;
    const installed = path.join(project, 'node_modules/portwall');
    expect(existsSync(path.join(installed, 'build')), 'nothing was compiled').toBe(false);

    const script = `
      import { createRequire } from 'node:module';
      const require = createRequire(import.meta.url);
      const addon = require('node-gyp-build').resolve(${JSON.stringify(installed)});
      const { Portwall, openNft } = await import('portwall');
      const schema = require('portwall/state.schema.json');
      const { version } = require('portwall/package.json');
      console.log(JSON.stringify({ addon, api: typeof Portwall.open, nft: typeof openNft, schema: schema.$id, version }));`;
    const imported = JSON.parse(run('node', ['--input-type=module', '-e', script], { cwd: project, env }).trim());
    expect(imported).toMatchObject({ api: 'function', nft: 'function', version: pkg.version });
    expect(imported.addon).toBe(path.join(installed, `prebuilds/linux-${process.arch}/portwall.node`));
    expect(imported.schema).toBe(JSON.parse(readFileSync(path.join(root, 'schema/state.schema.json'), 'utf8')).$id);

    const cli = path.join(project, 'node_modules/.bin/portwall');
    expect(run(cli, ['--version'], { env }).trim()).toBe(pkg.version);
    const ns = new Netns('package');
    try {
      const file = path.join(project, 'state.json');
      writeFileSync(file, JSON.stringify(state('routed', [webGroup()], [port(1, ['sg-web'])])));
      expect(run(cli, ['apply', '--netns', ns.name, file], { env })).toMatch(/applied \d+ operations/);
      expect(JSON.parse(run(cli, ['status', '--netns', ns.name, '--json'], { env })).tables).toEqual([{ family: 'inet', name: 'portwall' }, { family: 'inet', name: 'portwall_raw' }]);
      expect(ns.nftText()).toContain('table inet portwall');
    } finally {
      ns.destroy();
    }
    console.log(`npm ci of the tarball: ${installMs.toFixed(0)} ms`);
  });

  test('without a prebuild for this machine and without compilers, the install stops naming what a source build needs', () => {
    // The same tarball less its prebuilds/ directory.
    const unpacked = path.join(dir, 'noprebuild');
    mkdirSync(unpacked);
    run('tar', ['-xzf', tarball, '-C', unpacked]);
    rmSync(path.join(unpacked, 'package/prebuilds'), { recursive: true });
    const bare = path.join(dir, 'out', 'portwall-noprebuild.tgz');
    run('tar', ['-czf', bare, '-C', unpacked, 'package']);
    const project = consumer('bare', bare);
    let failure = '';
    try {
      run('npm', ['ci', '--offline', '--no-audit', '--no-fund', '--foreground-scripts'], { cwd: project, env: { PATH: bin, HOME: process.env.HOME ?? '/root' }, timeoutMs: 120_000 });
    } catch (e) {
      const err = e as { stdout?: string; stderr?: string };
      failure = `${err.stdout ?? ''}${err.stderr ?? ''}`;
    }
    expect(failure).toContain(`no prebuilt addon for linux-${process.arch}`);
    expect(failure).toMatch(/building the addon from source needs: apt-get install g\+\+ make python3 pkg-config/);
  });

  /**
   * An empty project depending on the tarball, with a lockfile whose other packages are the repository's own
   * runtime dependencies (so `npm ci --offline` finds each in npm's cache by its integrity).
   */
  function consumer(name: string, file: string): string {
    const project = path.join(dir, name);
    mkdirSync(project);
    const spec = `file:${path.relative(project, file)}`;
    const manifest = JSON.parse(run('tar', ['-xzOf', file, 'package/package.json'])) as Record<string, unknown>;
    const lock = JSON.parse(readFileSync(path.join(root, 'package-lock.json'), 'utf8')) as Lock;
    const packages: Record<string, unknown> = {
      '': { name, version: '1.0.0', dependencies: { portwall: spec } },
      'node_modules/portwall': {
        version: manifest.version, resolved: spec, integrity: `sha512-${createHash('sha512').update(readFileSync(file)).digest('base64')}`,
        license: manifest.license, os: manifest.os, hasInstallScript: true, dependencies: manifest.dependencies, engines: manifest.engines, bin: manifest.bin,
      },
    };
    for (const [at, entry] of Object.entries(lock.packages)) if (at !== '' && !entry.dev) packages[at] = entry;
    expect(Object.keys(packages)).toEqual(expect.arrayContaining(Object.keys(pkg.dependencies).map((d) => `node_modules/${d}`)));
    writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name, version: '1.0.0', private: true, type: 'module', dependencies: { portwall: spec } }));
    writeFileSync(path.join(project, 'package-lock.json'), JSON.stringify({ name, version: '1.0.0', lockfileVersion: 3, requires: true, packages }));
    expect(readdirSync(project).sort()).toEqual(['package-lock.json', 'package.json']);
    return project;
  }
});
