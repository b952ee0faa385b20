/**
 * What the semantic checks share: where problems go, the configuration, and which objects passed the
 * schema. Objects that failed it are skipped (their problems are already listed) but their ids still count
 * as defined, so one typo does not also surface as a cascade of "unknown network" problems.
 */
import type { Problems } from './problems.js';
import type { SchemaProblem } from './schema-errors.js';
import type { PortwallConfig } from './types.js';

export interface CheckContext {
  problems: Problems;
  config: PortwallConfig;
  /**
   * Whether the object at JSON Pointer `pointer` matched the schema. Problems inside its `nested` array
   * field (a group's rules) do not count: those elements are judged on their own.
   */
  sound(pointer: string, nested?: string): boolean;
}

/** A `sound` predicate over the pointers of the schema problems found (counts, so each call is O(1)). */
export function soundness(found: readonly SchemaProblem[]): CheckContext['sound'] {
  if (found.length === 0) return () => true;
  // Problems at or under each pointer, and exactly at it.
  const atOrUnder = new Map<string, number>();
  const exact = new Map<string, number>();
  const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
  for (const { pointer } of found) {
    bump(exact, pointer);
    for (let a = pointer; ; a = a.slice(0, a.lastIndexOf('/'))) {
      bump(atOrUnder, a);
      if (a === '') break;
    }
  }
  return (pointer, nested) => {
    const all = atOrUnder.get(pointer) ?? 0;
    if (all === 0 || nested === undefined) return all === 0;
    const child = `${pointer}/${nested}`;
    return all === (atOrUnder.get(child) ?? 0) - (exact.get(child) ?? 0);
  };
}

/** The elements of an array field, or none when the field is absent or not an array (a schema problem). */
export function elements(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

/** The string `id` (or other field) of a raw element, when it has one. */
export function stringField(element: unknown, field: string): string | undefined {
  if (typeof element !== 'object' || element === null) return undefined;
  const v = (element as Record<string, unknown>)[field];
  return typeof v === 'string' ? v : undefined;
}
