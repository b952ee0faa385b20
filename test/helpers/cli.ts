import path from 'node:path';

/** The `portwall` command as installed: the bundled CLI that package.json's `bin` names (scripts/bundle-cli.mjs). */
export const CLI = path.resolve(import.meta.dirname, '../../dist/src/cli.bundle.js');
