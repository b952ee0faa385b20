/**
 * The JSON Schema of the state file, generated from the TypeBox `StateSchema` (the single source), and
 * shipped as `schema/state.schema.json`. `test/unit/model-schema.test.ts` keeps the shipped file equal to
 * this output; after changing `./schema.ts`, regenerate it with
 * `PORTWALL_UPDATE_SCHEMA=1 npx vitest run test/unit/model-schema.test.ts`.
 */
import { StateSchema } from './schema.js';

/** The state file's JSON Schema (draft-07) as stable, pretty-printed text ending in a newline. */
export function stateJsonSchema(): string {
  // JSON.stringify drops TypeBox's symbol-keyed metadata, leaving plain JSON Schema.
  const schema = { $schema: 'http://json-schema.org/draft-07/schema#', ...StateSchema };
  return `${JSON.stringify(schema, null, 2)}\n`;
}
