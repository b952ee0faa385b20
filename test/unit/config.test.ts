/** The configuration file's checks that the CLI tests do not reach (test/unit/cli-usage.test.ts has the rest). */
import { describe, expect, test } from 'vitest';

import { parseConfig } from '../../src/model/config.js';

describe('config', () => {
  test('the inet and bridge table names leave room for the tables portwall names after them (_raw, _trace); nat keeps the kernel\'s limit', () => {
    expect(parseConfig({ tables: { inet: 'a'.repeat(249) } }).tables.inet).toHaveLength(249);
    expect(() => parseConfig({ tables: { inet: 'a'.repeat(250) } })).toThrow(/tables\.inet: longer than 249 bytes \(portwall also names tables after it with "_raw" and "_trace"\)/);
    // The bridge table's name names the bridge trace table (`explain --live` on a bridged port) as well.
    expect(() => parseConfig({ tables: { bridge: 'b'.repeat(250) } })).toThrow(/tables\.bridge: longer than 249 bytes \(portwall also names tables after it with "_trace"\)/);
    expect(parseConfig({ tables: { bridge: 'b'.repeat(249), nat: 'n'.repeat(255) } }).tables).toMatchObject({ bridge: 'b'.repeat(249), nat: 'n'.repeat(255) });
  });
});
