// Every error code is documented in the README's table, and nothing undocumented hides there.
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { expect, test } from 'vitest';

import { ERROR_CODES, PortwallError, isPortwallError } from '../../src/errors.js';

test('every error code has a row in the README, and every row is a code', () => {
  const readme = readFileSync(path.resolve(import.meta.dirname, '../../README.md'), 'utf8');
  const documented = [...readme.matchAll(/^\| `(ERR_[A-Z_]+)` \|/gm)].map((m) => m[1]);
  expect(documented.sort()).toEqual(Object.keys(ERROR_CODES).sort());
});

test('isPortwallError knows a PortwallError made by another copy of the module, and nothing else', () => {
  // What the demo's own copy of src/errors.js throws, seen from the bundled command: same name and code, another class.
  class Copy extends Error {
    readonly code = 'ERR_KERNEL';
    constructor(message: string) {
      super(message);
      this.name = 'PortwallError';
    }
  }
  expect(isPortwallError(new PortwallError('ERR_KERNEL', 'x'))).toBe(true);
  expect(isPortwallError(new Copy('x'))).toBe(true);
  expect(isPortwallError(new Error('x'))).toBe(false);
  expect(isPortwallError(Object.assign(new Error('x'), { name: 'PortwallError', code: 'ERR_NOT_A_CODE' }))).toBe(false);
  expect(isPortwallError({ name: 'PortwallError', code: 'ERR_KERNEL', message: 'x' })).toBe(false);
});
