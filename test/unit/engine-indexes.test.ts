/**
 * A fresh engine leaves the indexes its first batch does not need (who owns a host address, the uniqueness
 * indexes, the group of a rule) for later: the handle builds them while that batch is in the kernel, and
 * anything that reads or changes them first builds them itself. Either way they answer as if built at once.
 */
import { describe, expect, test } from 'vitest';
import { Engine } from '../../src/apply/engine.js';
import { prefixRange } from '../../src/compile/addr.js';
import { DEFAULT_CONFIG, type Model, type Port } from '../../src/model/types.js';
import { validateState } from '../../src/model/validate.js';
import { busyGroup, port, state, webGroup } from '../helpers/states.js';

const groups = () => [webGroup(), busyGroup('sg-busy', 5)];
const base = () => validateState(state('routed', groups(), [port(1, ['sg-web']), port(2, ['sg-web', 'sg-busy'])]));
const build = (m: Model = base()) => Engine.build(m, DEFAULT_CONFIG);
const owners = (e: Engine, prefix: string) => {
  const r = prefixRange(prefix);
  return e.hostOwners(r.family, r.lo).map((p) => p.portId);
};

// What the three indexes say about the ports and rules of `m`.
function answers(e: Engine, m: Model) {
  const ports = [...m.ports.values()];
  return {
    devices: ports.map((p) => e.portWith('device', p.device)),
    macs: ports.map((p) => e.portWith('mac', `${p.networkId} ${p.mac}`)),
    ips: ports.flatMap((p) => p.fixedIps.map((ip) => e.portWith('ip', `${p.networkId} ${ip}`))),
    rules: [...m.groups.values()].flatMap((g) => g.rules.map((r) => e.groupOfRule(r.id))),
    owners: ports.flatMap((p) => p.fixedIps.map((ip) => owners(e, ip))),
  };
}

describe('the indexes a fresh engine builds later', () => {
  test('are pending after a build, and built by the first question, with the answers of the state', () => {
    const m = base();
    const e = build(m);
    expect(e.indexesPending).toBe(true);
    const got = answers(e, m);
    expect(e.indexesPending).toBe(false);
    const ports = [...m.ports.values()];
    expect(got.devices).toEqual(ports.map((p) => p.id));
    expect(got.macs).toEqual(ports.map((p) => p.id));
    expect(got.ips).toEqual(ports.flatMap((p) => p.fixedIps.map(() => p.id)));
    expect(got.ips.length).toBe(4); // both families of both ports
    expect(got.rules).toEqual([...m.groups.values()].flatMap((g) => g.rules.map(() => g.id)));
    expect(got.owners).toEqual(ports.flatMap((p) => p.fixedIps.map(() => [p.id])));
  });

  test('completeIndexes builds them once; the answers are the same as built on demand', () => {
    const early = build();
    early.completeIndexes();
    expect(early.indexesPending).toBe(false);
    early.completeIndexes();
    expect(answers(early, base())).toEqual(answers(build(), base()));
  });

  test('a change before they are built starts from the state before it: a removed port is gone, a new one is in', () => {
    const m = base();
    const e = build(m);
    const [first, second] = [...m.ports.values()] as [Port, Port];
    const added = validateState(state('routed', groups(), [port(3, ['sg-web'])])).ports.get(port(3, []).id)!;
    e.setPort(first.id, undefined);
    e.setPort(added.id, added);
    expect(e.portWith('device', first.device)).toBeUndefined();
    expect(owners(e, first.fixedIps[0]!)).toEqual([]);
    expect(e.portWith('device', second.device)).toBe(second.id);
    expect(e.portWith('device', added.device)).toBe(added.id);
    expect(owners(e, added.fixedIps[0]!)).toEqual([added.id]);
  });
});
