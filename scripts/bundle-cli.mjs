#!/usr/bin/env node
// Bundles the compiled CLI (dist/src/cli.js and everything it imports, npm packages included) into one file,
// dist/src/cli.bundle.js: the `portwall` command. Loading ~300 small modules one by one through Node's ESM
// loader was ~40% of every command's start and ~0.1 s of the agent's (README, "Architecture"). The library
// (dist/src/index.js) stays unbundled. The demo and the benchmark stay outside: they are harnesses of the
// source checkout, imported from dist/ when asked for.
import { build } from 'esbuild';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

await build({
  entryPoints: [path.join(root, 'dist/src/cli.js')],
  outfile: path.join(root, 'dist/src/cli.bundle.js'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // Beside cli.js, so that paths found from the file's own place (the package.json, the addon) are the same.
  external: ['../demo/*', '../bench/*'],
  // CommonJS packages (pino, prom-client, node-gyp-build) call require(): give the ES module one.
  banner: { js: "import { createRequire as pwCreateRequire } from 'node:module';\nconst require = pwCreateRequire(import.meta.url);" },
  // Readable stack traces: no minifying, so functions keep their own names (bar a few esbuild renames where two
  // modules use one name, e.g. `rule2`). Not `keepNames`: it wraps every closure the code creates in a call that
  // redefines the closure's name — 47 000 such calls in an agent's start at 5000 ports (README, "Architecture").
  minify: false,
  keepNames: false,
  logLevel: 'warning',
});
