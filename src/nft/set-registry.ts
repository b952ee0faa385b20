/**
 * Set definitions by family, table and name, for the lookups every element operation makes (its key types),
 * several times per operation when a batch is checked, sized and encoded. Nested maps keyed by the strings
 * the objects already carry: a lookup builds no key string (a one-port change makes dozens of lookups, and a
 * fresh string per lookup also had to be hashed each time).
 */
import type { Family, NftSet } from './types.js';

export class SetRegistry<V = NftSet> {
  // Made on the first set: a one-port change's batch has a few registries that never hold one.
  #byFamily: Map<Family, Map<string, Map<string, V>>> | undefined;

  get(family: Family, table: string, name: string): V | undefined {
    return this.#byFamily?.get(family)?.get(table)?.get(name);
  }

  set(family: Family, table: string, name: string, value: V): void {
    const byFamily = (this.#byFamily ??= new Map());
    let tables = byFamily.get(family);
    if (!tables) byFamily.set(family, (tables = new Map()));
    let sets = tables.get(table);
    if (!sets) tables.set(table, (sets = new Map()));
    sets.set(name, value);
  }

  delete(family: Family, table: string, name: string): void {
    this.#byFamily?.get(family)?.get(table)?.delete(name);
  }

  /** Forgets every set of a table. */
  dropTable(family: Family, table: string): void {
    this.#byFamily?.get(family)?.delete(table);
  }

  /** Forgets the sets of a family (every family without one) and a table (every table without one) for which `keep` says false. */
  dropWhere(family: Family | undefined, table: string | undefined, keep: (name: string) => boolean): void {
    for (const [f, tables] of this.#byFamily ?? []) {
      if (family !== undefined && f !== family) continue;
      for (const [t, sets] of tables) {
        if (table !== undefined && t !== table) continue;
        for (const name of [...sets.keys()]) if (!keep(name)) sets.delete(name);
      }
    }
  }
}
