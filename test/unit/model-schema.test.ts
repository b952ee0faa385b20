// The shipped schema/state.schema.json is exactly what StateSchema generates, so the two never drift.
// Regenerate after a schema change: PORTWALL_UPDATE_SCHEMA=1 npx vitest run test/unit/model-schema.test.ts
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { expect, test } from 'vitest';

import { stateJsonSchema } from '../../src/model/emit-schema.js';

const SHIPPED = path.resolve(import.meta.dirname, '../../schema/state.schema.json');

test('schema/state.schema.json equals the schema generated from StateSchema', () => {
  if (process.env.PORTWALL_UPDATE_SCHEMA === '1') writeFileSync(SHIPPED, stateJsonSchema());
  expect(readFileSync(SHIPPED, 'utf8')).toBe(stateJsonSchema());
});

test('the generated schema is plain draft-07 JSON Schema of the state file', () => {
  const schema = JSON.parse(stateJsonSchema()) as Record<string, unknown>;
  expect(schema.$schema).toBe('http://json-schema.org/draft-07/schema#');
  expect(schema.type).toBe('object');
  expect(schema.required).toEqual(['networks']);
  expect(Object.keys(schema.properties as object)).toEqual(['networks', 'security_groups', 'ports', 'floatingips', 'nat']);
});
