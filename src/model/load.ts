/**
 * Reading a state file: text → JSON → {@link validateState}. A JSON syntax error is reported like any other
 * problem (ERR_INVALID_STATE), naming the file and the line and column of the mistake.
 */
import { readFile } from 'node:fs/promises';

import { PortwallError } from '../errors.js';
import { findJsonSyntaxError } from './json-syntax.js';
import { InvalidStateError, ROOT_PATH } from './problems.js';
import { DEFAULT_CONFIG, type Model, type PortwallConfig } from './types.js';
import { validateState } from './validate.js';

/**
 * Parses and validates the text of a state file.
 *
 * @param source - names the text in error messages (a file path, "stdin").
 * @throws {@link InvalidStateError} (code `ERR_INVALID_STATE`) for bad JSON or an invalid state.
 */
export function parseState(text: string, config: PortwallConfig = DEFAULT_CONFIG, source = 'state'): Model {
  return validateState(parseJson(text, source), config, { source });
}

/** The JSON document of a state file's text; bad JSON is an InvalidStateError naming line and column. */
function parseJson(text: string, source: string): unknown {
  // A byte-order mark is an editor's habit, not JSON; JSON.parse would call it a syntax error.
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  try {
    return JSON.parse(body);
  } catch (e) {
    const at = findJsonSyntaxError(body);
    const message = at === undefined
      ? `not valid JSON: ${e instanceof Error ? e.message : String(e)}`
      : `not valid JSON at line ${at.line}, column ${at.column}: ${at.message}`;
    throw new InvalidStateError([{ path: ROOT_PATH, message }], source);
  }
}

/**
 * Reads, parses and validates a state file.
 *
 * @throws PortwallError `ERR_INVALID_STATE` for bad JSON or an invalid state, `ERR_SYSTEM` when the file
 *   cannot be read (with the errno).
 */
export async function loadStateFile(path: string, config: PortwallConfig = DEFAULT_CONFIG): Promise<Model> {
  return (await readStateFile(path, config)).model;
}

/** {@link loadStateFile}, keeping the document as well (the agent keeps it as its desired state). */
export async function readStateFile(path: string, config: PortwallConfig = DEFAULT_CONFIG): Promise<{ doc: unknown; model: Model }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new PortwallError('ERR_SYSTEM', `cannot read state file ${path}: ${err.message}`, {
      cause: e,
      ...(typeof err.errno === 'number' ? { errno: Math.abs(err.errno) } : {}),
      ...(err.code === undefined ? {} : { errnoName: err.code }),
    });
  }
  const doc = parseJson(text, path);
  return { doc, model: validateState(doc, config, { source: path }) };
}
