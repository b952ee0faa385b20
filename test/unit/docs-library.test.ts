// docs/library.md's reference is generated from src/index.ts's exports and their TSDoc; it must not go stale.
// Regenerate after changing the public API or its TSDoc: npm run docs:api
import { readFileSync } from 'node:fs';

import { expect, test } from 'vitest';

import { DOC, renderApi, withApi } from '../../scripts/api-doc.mjs';

// One compiler run (seconds) for both tests.
const api = renderApi();

test('docs/library.md holds the reference generated from the current TSDoc (npm run docs:api)', () => {
  const doc = readFileSync(DOC, 'utf8');
  expect(withApi(doc, api), 'docs/library.md is stale: run npm run docs:api').toBe(doc);
});

test('the reference names every runtime export of the package', async () => {
  const exports = Object.keys(await import('../../src/index.js'));
  expect(exports.length).toBeGreaterThan(50);
  for (const name of exports) expect(api, name).toContain(`#### \`${name}\` (`);
});
