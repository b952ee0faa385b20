/**
 * Reading a state file: text → JSON → {@link validateState}. A JSON syntax error is reported like any other
 * problem (ERR_INVALID_STATE), naming the file and the line and column of the mistake. Keys the schema does not
 * know come back as `warnings` (`./unknown-keys.ts`); they never make the state invalid.
 */
import { readFile, stat } from 'node:fs/promises';

import { PortwallError } from '../errors.js';
import { findJsonSyntaxError } from './json-syntax.js';
import { InvalidStateError, ROOT_PATH, type Problem } from './problems.js';
import { DEFAULT_CONFIG, type Model, type PortwallConfig } from './types.js';
import { unknownKeys } from './unknown-keys.js';
import { validateState } from './validate.js';

/** A state read and validated: the document as parsed, its model, and the keys the schema does not know. */
export interface LoadedState {
  doc: unknown;
  model: Model;
  /** `{ path, message }` per unknown key, e.g. `ports[0] (tap1).fixed_ip: unknown key, ignored (did you mean fixed_ips?)`. */
  warnings: Problem[];
}

/**
 * Parses and validates the text of a state file.
 *
 * @param source - names the text in error messages (a file path, "stdin").
 * @throws {@link InvalidStateError} (code `ERR_INVALID_STATE`) for bad JSON or an invalid state.
 */
export function parseState(text: string, config: PortwallConfig = DEFAULT_CONFIG, source = 'state'): Model {
  return readStateText(text, config, source).model;
}

/**
 * {@link parseState} with the document and the warnings.
 *
 * @throws {@link InvalidStateError} as parseState; its `warnings` hold the document's unknown keys.
 */
export function readStateText(text: string, config: PortwallConfig = DEFAULT_CONFIG, source = 'state'): LoadedState {
  const doc = parseJson(text, source);
  const warnings = unknownKeys(doc);
  try {
    return { doc, model: validateState(doc, config, { source }), warnings };
  } catch (e) {
    if (e instanceof InvalidStateError) e.warnings = warnings;
    throw e;
  }
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

/** The largest state file {@link readStateFile} reads (256 MiB; a 10k-port host's state is a few tens of MB). */
export const MAX_STATE_BYTES = 256 * 1024 * 1024;

/**
 * {@link loadStateFile}, keeping the document (the agent keeps it as its desired state) and the warnings.
 *
 * @throws as loadStateFile; an {@link InvalidStateError}'s `warnings` hold the document's unknown keys.
 */
export async function readStateFile(path: string, config: PortwallConfig = DEFAULT_CONFIG, maxBytes = MAX_STATE_BYTES): Promise<LoadedState> {
  let text: string;
  try {
    // Bounded before it is read: a state file is data from an orchestrator, not something to trust blindly.
    const size = (await stat(path)).size;
    if (size > maxBytes) throw new InvalidStateError([{ path: ROOT_PATH, message: `${path} is ${size} bytes, over the limit of ${maxBytes}` }], path);
    text = await readFile(path, 'utf8');
  } catch (e) {
    if (e instanceof InvalidStateError) throw e;
    const err = e as NodeJS.ErrnoException;
    throw new PortwallError('ERR_SYSTEM', `cannot read state file ${path}: ${err.message}`, {
      cause: e,
      ...(typeof err.errno === 'number' ? { errno: Math.abs(err.errno) } : {}),
      ...(err.code === undefined ? {} : { errnoName: err.code }),
    });
  }
  return readStateText(text, config, path);
}
