// Runs at `npm install` only when no prebuilt addon loads (node-gyp-build calls it before building from
// source). It says why the prebuild did not load and which Debian packages a source build needs, instead of
// letting node-gyp fail on a missing header half-way through a compile.
import { accessSync, existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// import.meta.dirname is newer than the oldest Node.js 20 the package supports.
const root = fileURLToPath(new URL('..', import.meta.url));
const require = createRequire(import.meta.url);

// What the addon links against at run time, and what building it needs on top (Debian/Ubuntu names).
const RUNTIME = ['libmnl0', 'libnftnl11', 'libipset13', 'libnetfilter-conntrack3'];
const HEADERS = [
  ['libmnl/libmnl.h', 'libmnl-dev'],
  ['libnftnl/table.h', 'libnftnl-dev'],
  ['libipset/session.h', 'libipset-dev'],
  ['libnetfilter_conntrack/libnetfilter_conntrack.h', 'libnetfilter-conntrack-dev'],
];
const TOOLS = [['g++', 'g++'], ['make', 'make'], ['python3', 'python3'], ['pkg-config', 'pkg-config']];
// Where the headers are looked for; a test points it at an empty directory.
const INCLUDE = process.env.PORTWALL_INCLUDE_DIR ?? '/usr/include';

const say = (line) => process.stderr.write(`portwall: ${line}\n`);

const prebuilds = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
if (existsSync(prebuilds)) {
  for (const f of readdirSync(prebuilds).filter((n) => n.endsWith('.node'))) {
    try {
      require(path.join(prebuilds, f));
    } catch (err) {
      say(`the prebuilt addon ${path.relative(root, path.join(prebuilds, f))} does not load: ${err.message.split('\n')[0]}`);
      say(`it needs these libraries at run time: apt-get install ${RUNTIME.join(' ')}`);
    }
  }
} else {
  say(`no prebuilt addon for ${process.platform}-${process.arch}; building it from source`);
}

const onPath = (tool) => (process.env.PATH ?? '').split(path.delimiter).some((dir) => {
  try {
    accessSync(path.join(dir, tool), 1);
    return true;
  } catch {
    return false;
  }
});
const missing = [
  ...TOOLS.filter(([tool]) => !onPath(tool)).map(([, pkg]) => pkg),
  ...HEADERS.filter(([header]) => !existsSync(path.join(INCLUDE, header))).map(([, pkg]) => pkg),
];
if (missing.length > 0) {
  say(`building the addon from source needs: apt-get install ${missing.join(' ')}`);
  process.exit(1);
}
