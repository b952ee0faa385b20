/**
 * Portwall.summary() counts from the handle's memory (Engine.counts: no element is listed or built) while the
 * generation is its own. On the fake binding, after every one of many seeded random changes — ports joining,
 * moving and leaving, a group starting and stopping to name a remote group, address-pair prefixes that bring
 * sets and rules into the skeleton and take them away, stateless ports — its counts equal those of a listing
 * (status()). Seeded (PW_SUMMARY_SEED); the kernel side is test/kernel/status.test.ts.
 * The same changes keep the engine's digest (the adopt record's) by deltas: after each, it equals the digest of
 * every object hashed afresh.
 */
import { describe, expect, test, vi } from 'vitest';

import { digestOf } from '../../src/apply/adopt-record.js';
import { Engine } from '../../src/apply/engine.js';
import { Portwall, type Edit } from '../../src/apply/portwall.js';
import { InvalidStateError } from '../../src/model/problems.js';
import type { StateInput } from '../../src/model/schema.js';
import { FakeNft } from '../../src/nft/fake.js';
import { rng } from '../helpers/hostile.js';
import { testSeed } from '../helpers/prng.js';
import { busyGroup, ip4, ip6, network, port, webGroup, type Mode } from '../helpers/states.js';

const SEED = testSeed('PW_SUMMARY_SEED', 5150);
const STEPS = 80;

type Port = NonNullable<StateInput['ports']>[number];
type Group = NonNullable<StateInput['security_groups']>[number];

describe.each<Mode>(['routed', 'bridged'])('summary from memory, %s', (mode) => {
  test(`${STEPS} random changes: always the counts of a listing, never a listing; the digest kept by deltas (seed ${SEED})`, async () => {
    const r = rng(SEED);
    // The handle's engine (the one each commit settles), and whether its digest() hashed every object again.
    const settled = vi.spyOn(Engine.prototype, 'settle');
    const listed = vi.spyOn(Engine.prototype, 'objects');
    const engine = () => settled.mock.contexts.at(-1) as Engine;
    let byDelta = 0;
    // No record timer: a record's commit between summary() and status() would move the generation under them.
    const pw = Portwall.open({ binding: new FakeNft(), conntrack: null, profileGc: false, recordIdleMs: false });
    const networks = [network(mode), network(mode, 'net-b', 102, 'br-b')];
    const ports = new Map<string, Port>();
    const groups = new Map<string, Group>([['sg-web', webGroup()], ['sg-b', busyGroup('sg-b', 6)], ['sg-c', busyGroup('sg-c', 4)]]);
    const doc = (): StateInput => ({ networks, security_groups: [...groups.values()], ports: [...ports.values()] });
    const somePort = (n: number): Port => {
      const extra: Partial<Port> = { fixed_ips: [{ ip_address: ip4(n)! }, { ip_address: ip6(n) }] };
      // An address pair wider than a host: prefix sets and the rules naming them come and go with it.
      if (r.chance(0.15)) extra.allowed_address_pairs = [{ ip_address: `203.0.113.${16 * r.int(4)}/28` }];
      return port(n, ['sg-web', 'sg-b', 'sg-c'].filter(() => r.chance(0.5)), extra, r.chance(0.5) ? 'net-a' : 'net-b');
    };
    const someEdit = (): { edit: Edit; then: () => void } => {
      const roll = r.int(10);
      if (roll < 6) {
        const p = somePort(r.int(16));
        return { edit: { op: 'upsertPort', port: p }, then: () => void ports.set(p.id, p) };
      }
      if (roll < 8 && ports.size) {
        const id = r.pick([...ports.keys()]);
        return { edit: { op: 'removePort', id }, then: () => void ports.delete(id) };
      }
      // sg-c names sg-web as a remote group, or not; sometimes stateless.
      const g = { ...busyGroup('sg-c', 4 + r.int(3), r.chance(0.5) ? 'sg-web' : undefined), stateful: r.chance(0.7) };
      return { edit: { op: 'upsertGroup', group: g }, then: () => void groups.set(g.id, g) };
    };
    try {
      await pw.apply(doc());
      engine().digest();
      let refused = 0;
      for (let step = 0; step < STEPS; step++) {
        const what = `seed ${SEED}, step ${step} (PW_SUMMARY_SEED=${SEED} reproduces it)`;
        const edits = Array.from({ length: 1 + r.int(3) }, someEdit);
        try {
          const result = await pw.batch(edits.map((e) => e.edit));
          result.refused.forEach((refusal, i) => (refusal ? refused++ : edits[i]!.then()));
        } catch (e) {
          if (!(e instanceof InvalidStateError)) throw e;
          refused++;
        }
        const quick = await pw.summary();
        expect(quick.listed, what).toBe(false);
        const status = await pw.status();
        expect({ tables: quick.tables, counts: quick.counts, genid: quick.genid }, what).toEqual({ tables: status.tables, counts: status.counts, genid: status.genid });
        const e = engine();
        const calls = listed.mock.calls.length;
        const kept = e.digest();
        if (listed.mock.calls.length === calls) byDelta++;
        expect(kept, what).toBe(digestOf(e.objects()));
      }
      expect(refused, 'most edits are taken').toBeLessThan(STEPS);
      expect(byDelta, 'most digests come from deltas (a skeleton change hashes afresh)').toBeGreaterThan(STEPS / 2);
    } finally {
      settled.mockRestore();
      listed.mockRestore();
      await pw.close();
    }
  });
});
