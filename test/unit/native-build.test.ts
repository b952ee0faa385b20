/**
 * Building the addon: -Werror only where asked for (CI), and the install-time check that names what a source
 * build lacks (scripts/build-deps.mjs, which node-gyp-build runs when no prebuild loads).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterAll, expect, test } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const temp = (label: string): string => {
  const d = mkdtempSync(path.join(tmpdir(), `pw-${label}-`));
  dirs.push(d);
  return d;
};

test('-Werror is in the compile flags only with PORTWALL_WERROR=1', () => {
  const dir = temp('gyp');
  for (const f of ['binding.gyp', 'package.json']) cpSync(path.join(root, f), path.join(dir, f));
  symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'));
  const nodedir = path.dirname(path.dirname(process.execPath));
  const args = ['configure', '--loglevel=error', ...(existsSync(path.join(nodedir, 'include/node/node_api.h')) ? [`--nodedir=${nodedir}`] : [])];
  const flags = (werror: string | undefined): string => {
    const env = { ...process.env };
    delete env.PORTWALL_WERROR;
    if (werror !== undefined) env.PORTWALL_WERROR = werror;
    execFileSync(path.join(root, 'node_modules/.bin/node-gyp'), args, { cwd: dir, env, stdio: 'pipe', timeout: 60_000 });
    return readFileSync(path.join(dir, 'build/portwall.target.mk'), 'utf8');
  };
  expect(flags(undefined)).not.toContain('-Werror');
  expect(flags('1')).toMatch(/^\s+-Werror$/m);
  expect(flags('0')).not.toContain('-Werror');
}, 120_000);

test('without a loadable prebuild, the install check names the missing tools and -dev packages, and why the prebuild failed', () => {
  const dir = temp('deps');
  mkdirSync(path.join(dir, 'scripts'));
  cpSync(path.join(root, 'scripts/build-deps.mjs'), path.join(dir, 'scripts/build-deps.mjs'));
  const bin = path.join(dir, 'bin');
  mkdirSync(bin);
  symlinkSync(process.execPath, path.join(bin, 'node'));
  const env = { PATH: bin, PORTWALL_INCLUDE_DIR: path.join(dir, 'include') };
  const check = () => spawnSync(path.join(bin, 'node'), [path.join(dir, 'scripts/build-deps.mjs')], { env, encoding: 'utf8', timeout: 30_000 });

  const none = check();
  expect(none.status).toBe(1);
  expect(none.stderr).toContain(`portwall: no prebuilt addon for linux-${process.arch}; building it from source\n`);
  expect(none.stderr).toContain('portwall: building the addon from source needs: apt-get install g++ make python3 pkg-config ' +
    'libmnl-dev libnftnl-dev libipset-dev libnetfilter-conntrack-dev\n');

  // A prebuild that does not load (here not even an ELF file; on a real host, usually a missing library).
  mkdirSync(path.join(dir, 'prebuilds', `linux-${process.arch}`), { recursive: true });
  writeFileSync(path.join(dir, 'prebuilds', `linux-${process.arch}`, 'portwall.node'), 'not an addon');
  const broken = check();
  expect(broken.status).toBe(1);
  expect(broken.stderr).toMatch(new RegExp(`the prebuilt addon prebuilds/linux-${process.arch}/portwall.node does not load: .*`));
  expect(broken.stderr).toContain('it needs these libraries at run time: apt-get install libmnl0 libnftnl11 libipset13 libnetfilter-conntrack3');

  // Everything there (this machine's headers, tools on the real PATH): the check lets the build go ahead.
  const ok = spawnSync(process.execPath, [path.join(root, 'scripts/build-deps.mjs')], { encoding: 'utf8', timeout: 30_000 });
  expect(ok.status).toBe(0);
});

// docs/reliability.md, "Fault injection": the seam is compiled into build-faults/ only.
test('the product addon has no fault-injection seam: no faults export, no portwall::faults symbol', () => {
  const addon = path.join(root, 'build/Release/portwall.node');
  const symbols = execFileSync('nm', ['-C', addon], { encoding: 'utf8', maxBuffer: 64 << 20 });
  expect(symbols).toContain('portwall::nft::encode');
  expect(symbols).not.toContain('portwall::faults');
  expect(symbols).not.toContain('RegisterFaults');
  const exports = execFileSync(process.execPath, ['-p', `Object.keys(require(${JSON.stringify(addon)})).join(' ')`], { encoding: 'utf8' });
  expect(exports).toContain('nftCommit');
  expect(exports.split(/\s+/)).not.toContain('faults');
  const faults = path.join(root, 'build-faults/build/Release/portwall.node');
  if (existsSync(faults)) expect(execFileSync('nm', ['-C', faults], { encoding: 'utf8', maxBuffer: 64 << 20 })).toContain('portwall::faults::arm');
});
