import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';

const DIST = path.resolve(import.meta.dirname, '../../dist/src');

/** The `portwall` command as installed: the bundled CLI that package.json's `bin` names (scripts/bundle-cli.mjs). */
export const CLI = path.join(DIST, 'cli.bundle.js');

// A bundle older than the compiled modules it is made of would test yesterday's command.
const newest = (dir: string): number => Math.max(...readdirSync(dir, { withFileTypes: true }).map((e) => {
  const p = path.join(dir, e.name);
  return e.isDirectory() ? newest(p) : e.name.endsWith('.js') && p !== CLI ? statSync(p).mtimeMs : 0;
}));
let bundled = 0;
try {
  bundled = statSync(CLI).mtimeMs;
} catch {
  /* missing: said below */
}
if (bundled < newest(DIST)) throw new Error(`${CLI} is missing or older than dist/src: run scripts/setup.sh (or npm run build:ts)`);
