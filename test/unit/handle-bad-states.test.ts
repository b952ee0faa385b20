/**
 * The table of bad states fed to the incremental API: from the example state, each object the bad state adds,
 * changes or removes goes through `upsertGroup` / `upsertPort` / `upsertFloatingIp` / `removePort` /
 * `removeGroup` of a handle (fake binding). Whatever the handle takes must leave a state a whole validation
 * accepts — incremental validation is no looser than a state file's — so the last step of a bad state is never
 * taken. Kinds a handle cannot express one object at a time (a document that is not JSON, duplicate ids within
 * one list, networks or NAT that differ from a valid start) are left to the whole-state tests.
 */
import { isDeepStrictEqual } from 'node:util';
import { describe, expect, test } from 'vitest';

import { Portwall } from '../../src/apply/portwall.js';
import type { StateInput } from '../../src/model/schema.js';
import { validateState } from '../../src/model/validate.js';
import { FakeNft } from '../../src/nft/fake.js';
import { BAD_STATES, exampleState, type JsonObject } from '../helpers/bad-states.js';

type Obj = JsonObject & { id?: unknown };
const LISTS = ['security_groups', 'ports', 'floatingips'] as const;

/** A list's objects by id, or undefined when the list is not a list of objects with distinct ids. */
function byId(list: unknown): Map<unknown, Obj> | undefined {
  if (list === undefined) return new Map();
  if (!Array.isArray(list)) return undefined;
  const out = new Map<unknown, Obj>();
  for (const o of list as unknown[]) {
    if (o === null || typeof o !== 'object' || Array.isArray(o)) return undefined;
    const id = (o as Obj).id;
    if (out.has(id)) return undefined;
    out.set(id, o as Obj);
  }
  return out;
}

/**
 * The handle's steps from `from` to `to` (adds and changes in the order of `lists`, then removals), or undefined
 * when one object at a time cannot express it.
 */
function steps(from: Record<string, unknown>, to: Record<string, unknown>, order: readonly (typeof LISTS)[number][]) {
  const lists = LISTS.map((k) => [byId(from[k]), byId(to[k])] as const);
  if (lists.some(([a, b]) => !a || !b)) return undefined;
  if (Object.keys(to).some((k) => !['networks', 'nat', ...LISTS].includes(k))) return undefined;
  const out: { list: (typeof LISTS)[number]; id: unknown; now: Obj | undefined }[] = [];
  for (const list of order) {
    const [a, b] = lists[LISTS.indexOf(list)]!;
    for (const [id, o] of b!) if (!isDeepStrictEqual(a!.get(id), o)) out.push({ list, id, now: o });
  }
  for (const list of ['floatingips', 'ports', 'security_groups'] as const) {
    const [a, b] = lists[LISTS.indexOf(list)]!;
    for (const id of a!.keys()) if (!b!.has(id)) out.push({ list, id, now: undefined });
  }
  return out;
}

type Step = NonNullable<ReturnType<typeof steps>>[number];

/**
 * Feeds `todo` to a handle holding `start`: every step taken must leave a valid state; returns whether one was
 * refused.
 */
async function feed(kind: string, start: Record<string, unknown>, todo: readonly Step[]): Promise<boolean> {
  const pw = Portwall.open({ binding: new FakeNft(), conntrack: null, profileGc: false });
  await pw.apply(start as unknown as StateInput);
  // What the handle holds, kept alongside: each list by id.
  const held = new Map(LISTS.map((k) => [k, byId(start[k])!]));
  let refused = false;
  for (const s of todo) {
    const id = s.id as string;
    const call = s.now === undefined
      ? { security_groups: () => pw.removeGroup(id), ports: () => pw.removePort(id), floatingips: () => pw.removeFloatingIp(id) }[s.list]
      : { security_groups: () => pw.upsertGroup(s.now as never), ports: () => pw.upsertPort(s.now as never), floatingips: () => pw.upsertFloatingIp(s.now as never) }[s.list];
    try {
      await call();
    } catch (err) {
      expect((err as { code?: string }).code, `${kind}: ${String(err)}`).toBe('ERR_INVALID_STATE');
      refused = true;
      continue;
    }
    if (s.now === undefined) held.get(s.list)!.delete(s.id);
    else held.get(s.list)!.set(s.id, s.now);
    const now = { ...start, ...Object.fromEntries(LISTS.map((k) => [k, [...held.get(k)!.values()]])) };
    expect(() => validateState(now), `${kind}: the handle took ${s.list} ${String(s.id)}, which a state file may not hold`).not.toThrow();
  }
  await pw.close();
  return refused;
}

// Groups first (ports name them); floating IPs after the ports they name, and also before them (so that a port
// may come to hold a floating address as well as the other way round).
const ORDERS = [['security_groups', 'ports', 'floatingips'], ['security_groups', 'floatingips', 'ports']] as const;

describe('bad states through the incremental API', () => {
  test('whatever the handle takes leaves a valid state; the step that would make a bad state is refused', async () => {
    let sequences = 0;
    for (const b of BAD_STATES) {
      let doc: Record<string, unknown>;
      try {
        doc = JSON.parse(b.text) as Record<string, unknown>;
      } catch {
        continue;
      }
      if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) continue;
      // The start: the example with the bad state's networks and NAT, when that is valid.
      const start: Record<string, unknown> = { ...exampleState(), networks: doc.networks, ...(doc.nat === undefined ? {} : { nat: doc.nat }) };
      try {
        validateState(start);
      } catch {
        continue;
      }
      for (const order of ORDERS) {
        const todo = steps(start, doc, order);
        if (!todo || todo.length === 0) continue;
        sequences++;
        expect(await feed(b.kind, start, todo), `${b.kind}: every step taken (${order.join(', ')})`).toBe(true);
      }
    }
    console.log(`[bad states] ${sequences} sequences (of ${BAD_STATES.length} kinds, in two orders) fed to a handle one object at a time, each refused`);
    // Most kinds are about one object: the comparison is not vacuous.
    expect(sequences).toBeGreaterThanOrEqual(120);
  });
});
