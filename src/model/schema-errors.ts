/**
 * The schema stage of validation: checks a document against `StateSchema` (compiled once) and turns
 * TypeBox's errors into {@link Problem}s with labelled paths and plain-English messages.
 */
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors';
import type { TSchema } from '@sinclair/typebox';

import { pointerToPath, type Problem } from './problems.js';
import { StateSchema, type StateInput } from './schema.js';

// Compiled lazily: the first validation pays for code generation, importing the module does not.
let checker: ReturnType<typeof TypeCompiler.Compile<typeof StateSchema>> | undefined;
const compiled = () => (checker ??= TypeCompiler.Compile(StateSchema));

/** A schema problem with the JSON Pointer it came from (for deciding which objects are usable). */
export interface SchemaProblem extends Problem {
  pointer: string;
}

/** Whether `input` matches the schema exactly (the fast path: no error objects are built). */
export function matchesSchema(input: unknown): input is StateInput {
  return compiled().Check(input);
}

/** Every schema problem of `input`, one per JSON Pointer (TypeBox may report several for one field). */
export function schemaProblems(input: unknown): SchemaProblem[] {
  const seen = new Set<string>();
  const out: SchemaProblem[] = [];
  for (const error of compiled().Errors(input)) {
    if (seen.has(error.path)) continue;
    seen.add(error.path);
    out.push({ pointer: error.path, path: pointerToPath(input, error.path), message: describeError(error) });
  }
  return out;
}

function describeError(e: ValueError): string {
  const s = e.schema as TSchema & Record<string, unknown>;
  switch (e.type) {
    case ValueErrorType.ObjectRequiredProperty:
      return 'is required';
    case ValueErrorType.IntegerMaximum:
    case ValueErrorType.NumberMaximum:
      return `must be at most ${String(s.maximum)}, is ${String(e.value)}`;
    case ValueErrorType.IntegerMinimum:
    case ValueErrorType.NumberMinimum:
      return `must be at least ${String(s.minimum)}, is ${String(e.value)}`;
    case ValueErrorType.StringMinLength:
      return s.minLength === 1 ? 'must not be empty' : `must be at least ${String(s.minLength)} characters`;
    case ValueErrorType.StringMaxLength:
      return `must be at most ${String(s.maxLength)} characters`;
    // Only objects portwall defines itself are closed (l2_guards): a misspelt field there would be a guard
    // silently left off.
    case ValueErrorType.ObjectAdditionalProperties:
      return 'is not a field of this object';
    default:
      return `must be ${expected(s)}, is ${kindOf(e.value)}`;
  }
}

/** What a schema wants, in words: `an integer`, `"ingress" or "egress"`, `a string, an integer or null`. */
function expected(s: TSchema & Record<string, unknown>): string {
  if (Array.isArray(s.anyOf)) {
    const parts = alternatives(s).map(expected);
    return parts.length === 1 ? parts[0]! : `${parts.slice(0, -1).join(', ')} or ${parts.at(-1)!}`;
  }
  if (s.const !== undefined) return JSON.stringify(s.const);
  switch (s.type) {
    case 'integer':
      return 'an integer';
    case 'array':
      return 'an array';
    case 'object':
      return 'an object';
    case 'null':
      return 'null';
    default:
      return `a ${String(s.type)}`;
  }
}

// Nullable(Union([A, B])) nests one anyOf in another; people read one list of choices.
function alternatives(s: TSchema & Record<string, unknown>): (TSchema & Record<string, unknown>)[] {
  if (!Array.isArray(s.anyOf)) return [s];
  return (s.anyOf as (TSchema & Record<string, unknown>)[]).flatMap(alternatives);
}

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : `the number ${value}`;
  if (typeof value === 'string') return value.length > 40 ? 'a string' : JSON.stringify(value);
  if (typeof value === 'object') return 'an object';
  return typeof value === 'undefined' ? 'missing' : `a ${typeof value}`;
}
