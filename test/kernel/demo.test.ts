// The README's first command runs this demo; it must keep working (and clean up after itself).
import { describe, expect, test } from 'vitest';

import { runDemo } from '../../demo/run.js';
import { isRoot, leftoverNamespaces } from '../helpers/netns.js';

describe.skipIf(!isRoot)('the built-in demo', () => {
  test('every check comes out as expected and no namespace is left', async () => {
    expect(await runDemo()).toBe(true);
    expect(leftoverNamespaces()).toEqual([]);
  });
});
