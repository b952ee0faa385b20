/** The configuration file's checks that the CLI tests do not reach (test/unit/cli-usage.test.ts has the rest). */
import { describe, expect, test } from 'vitest';

import { parseConfig } from '../../src/model/config.js';

describe('config', () => {
  test('the inet table name leaves room for the tables portwall names after it (<inet>_raw, <inet>_trace)', () => {
    expect(parseConfig({ tables: { inet: 'a'.repeat(249) } }).tables.inet).toHaveLength(249);
    expect(() => parseConfig({ tables: { inet: 'a'.repeat(250) } })).toThrow(/tables\.inet: longer than 249 bytes \(portwall also names tables after it with "_raw" and "_trace"\)/);
    // The other tables keep the kernel's limit.
    expect(parseConfig({ tables: { bridge: 'b'.repeat(255) } }).tables.bridge).toHaveLength(255);
  });
});
