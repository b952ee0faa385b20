// docs/state-file.md documents every field of the state file: each property of schema/state.schema.json has a
// table row whose first cell is its dotted path (`ports[].allowed_address_pairs[].mac_address`), and no row
// names a field the schema does not have. A field added to src/model/schema.ts fails here until documented.
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { expect, test } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../..');
const schema = JSON.parse(readFileSync(path.join(ROOT, 'schema/state.schema.json'), 'utf8')) as Schema;
const doc = readFileSync(path.join(ROOT, 'docs/state-file.md'), 'utf8');

interface Schema {
  type?: string;
  properties?: Record<string, Schema>;
  patternProperties?: Record<string, Schema>;
  items?: Schema;
  anyOf?: Schema[];
}

/** Every property's dotted path; `[]` marks the elements of an array. */
function fieldPaths(s: Schema, prefix = ''): string[] {
  const out: string[] = [];
  for (const alt of s.anyOf ?? []) out.push(...fieldPaths(alt, prefix));
  if (s.items) out.push(...fieldPaths(s.items, `${prefix}[]`));
  for (const [name, child] of Object.entries(s.properties ?? {})) {
    const p = prefix === '' ? name : `${prefix}.${name}`;
    out.push(p, ...fieldPaths(child, p));
  }
  for (const pattern of Object.keys(s.patternProperties ?? {})) out.push(`${prefix}.${pattern}`);
  return [...new Set(out)];
}

const paths = fieldPaths(schema);
/** Rows of the field tables: their first cell, a path starting at a top-level field. */
const rows = [...doc.matchAll(/^\| `([a-z_]+(?:\[\])?(?:\.[a-z_0-9]+(?:\[\])?)*)` \|/gm)]
  .map((m) => m[1]!)
  .filter((p) => Object.hasOwn(schema.properties!, p.split(/[.[]/)[0]!));

test('the walk finds the whole schema', () => {
  expect(paths).toContain('networks[].l2_guards.drop_vlan');
  expect(paths).toContain('security_groups[].security_group_rules[].remote_group_id');
  expect(paths).toContain('nat.metadata_port');
  expect(paths.length).toBeGreaterThan(50);
});

test.each(paths)('docs/state-file.md has a row for %s', (p) => {
  expect(rows, `add a table row "| \`${p}\` | type | default | rules | Neutron / origin |" to docs/state-file.md`).toContain(p);
});

test('every row of docs/state-file.md names a field of the schema, once', () => {
  expect(rows.filter((r) => !paths.includes(r))).toEqual([]);
  expect(rows.filter((r, i) => rows.indexOf(r) !== i)).toEqual([]);
});
