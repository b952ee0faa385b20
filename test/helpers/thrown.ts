// The PortwallError a call throws, checked for its code (any other outcome fails the test).
import { expect } from 'vitest';

import { PortwallError } from '../../src/errors.js';

export function thrown(fn: () => unknown, code: string): PortwallError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(PortwallError);
    expect((e as PortwallError).code).toBe(code);
    return e as PortwallError;
  }
  throw new Error(`expected a PortwallError ${code}`);
}
