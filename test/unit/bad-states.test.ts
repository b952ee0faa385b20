// Every kind of mistake in the table is rejected with ERR_INVALID_STATE naming exactly the bad object and
// field; and thousands of randomly broken states are either valid or rejected that way — never another throw.
import { describe, expect, test } from 'vitest';

import { PortwallError } from '../../src/errors.js';
import { parseState } from '../../src/model/load.js';
import { InvalidStateError } from '../../src/model/problems.js';
import { validateState } from '../../src/model/validate.js';
import { BAD_STATES, exampleState, rejection, type Json } from '../helpers/bad-states.js';
import { mulberry32 } from '../helpers/prng.js';

describe('the table of bad states', () => {
  test('has at least forty distinct kinds, all starting from a valid example', () => {
    expect(new Set(BAD_STATES.map((b) => b.kind)).size).toBe(BAD_STATES.length);
    expect(BAD_STATES.length).toBeGreaterThanOrEqual(40);
    expect(() => validateState(exampleState())).not.toThrow();
  });

  test.each(BAD_STATES.map((b) => [b.kind, b] as const))('%s', (_kind, b) => {
    const err = rejection(() => parseState(b.text, undefined, 'bad.json'));
    expect(err).toBeInstanceOf(PortwallError);
    expect(err.code).toBe('ERR_INVALID_STATE');
    expect(err.problems.map((p) => p.path)).toEqual(b.paths);
    expect(err.field).toBe(b.paths[0]);
    expect(err.problems[0]!.message).toMatch(b.message);
    expect(err.message).toContain(`bad.json: ${b.paths.length} problem`);
    for (const p of err.problems) expect(err.message).toContain(`${p.path}: ${p.message}`);
  });
});

// ---- generated malformed states -------------------------------------------------------------------------


type Container = Json[] | { [key: string]: Json };

/** Every (container, key) in a document, so a mutation can pick any field or element. */
function slots(doc: Json, out: [Container, string | number][] = []): [Container, string | number][] {
  if (Array.isArray(doc)) doc.forEach((v, i) => (out.push([doc, i]), slots(v, out)));
  else if (doc !== null && typeof doc === 'object') for (const [k, v] of Object.entries(doc)) out.push([doc, k]), slots(v, out);
  return out;
}

/** A richer base than the example: more objects of every kind, so mutations reach more checks. */
function richState(): Json {
  const s = exampleState();
  s.networks.push({ id: 'net-b', zone: 202, mode: 'routed', dhcp_servers: ['2001:db8::2', '198.51.100.1'] });
  s.security_groups.push({
    id: 'sg-icmp', stateful: true, security_group_rules: [
      { id: 'r3', direction: 'ingress', ethertype: 'IPv6', protocol: 'icmp', port_range_min: 128, port_range_max: 0 },
      { id: 'r4', direction: 'egress', ethertype: 'IPv4', protocol: 47, remote_ip_prefix: '203.0.113.0/24' },
      { id: 'r5', direction: 'egress', ethertype: 'IPv6', protocol: 'udp', port_range_min: 53, remote_group_id: 'sg-web' },
    ],
  });
  s.ports.push({
    id: 'p2', network_id: 'net-b', device: 'veth-b2', mac_address: 'fa:16:3e:00:00:02', kind: 'system',
    fixed_ips: [{ ip_address: '2001:db8::10' }, { ip_address: '203.0.113.10' }], security_groups: ['sg-icmp', 'sg-web'],
    allowed_address_pairs: [{ ip_address: '0.0.0.0/0' }, { ip_address: '2001:db8:1::/48', mac_address: 'fa:16:3e:00:00:03' }],
  });
  return s as unknown as Json;
}

const WEIRD: Json[] = [
  null, true, false, 0, -1, 1.5, 65536, 2 ** 53, -(2 ** 31), '', ' ', 'x'.repeat(300), '0', '256', 'tcp', 'any',
  'ICMP', '::', '0.0.0.0/0', '192.0.2.1/33', 'fe80::1%eth0', 'ff:ff:ff:ff:ff:ff', 'net-a', 'sg-web', 'br-a',
  'tap6e3f2eda-32', 'IPv6', 'egress', 'routed', [], [null], {}, { id: 'x' },
];

function mutate(doc: Json, rand: () => number): void {
  const all = slots(doc);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const [container, key] = pick(all);
  const c = container as Record<string | number, Json>;
  const op = rand();
  if (op < 0.3) {
    if (Array.isArray(container)) container.splice(key as number, 1);
    else delete c[key];
  } else if (op < 0.7) {
    c[key] = pick(WEIRD);
  } else if (op < 0.85) {
    const v = c[key];
    c[key] = typeof v === 'number' ? pick([v + 1, v - 1, -v, v * 1000, 0, 255, 256, 65535, 65536]) : pick(WEIRD);
  } else {
    // Copy another value of the document here: duplicates ids, zones, devices, MACs, addresses.
    const [other, otherKey] = pick(all);
    c[key] = structuredClone((other as Record<string | number, Json>)[otherKey] ?? null);
  }
}

describe('generated malformed states', () => {
  test('each is valid or rejected with ERR_INVALID_STATE naming a field; nothing else is thrown', () => {
    let valid = 0;
    let rejected = 0;
    for (let seed = 1; seed <= 3000; seed++) {
      const rand = mulberry32(seed);
      const doc = seed % 2 === 0 ? richState() : (exampleState() as unknown as Json);
      const mutations = 1 + Math.floor(rand() * 3);
      for (let m = 0; m < mutations; m++) mutate(doc, rand);
      try {
        validateState(doc);
        valid++;
      } catch (e) {
        if (!(e instanceof InvalidStateError)) throw new Error(`seed ${seed}: unexpected ${String(e)}`, { cause: e });
        expect(e.code, `seed ${seed}`).toBe('ERR_INVALID_STATE');
        expect(e.problems.length, `seed ${seed}`).toBeGreaterThan(0);
        expect(e.field, `seed ${seed}`).toBe(e.problems[0]!.path);
        for (const p of e.problems) {
          expect(p.path, `seed ${seed}: ${p.message}`).toMatch(/^(?:\(root\)|networks|security_groups|ports)\b/);
          expect(p.message.length, `seed ${seed}: ${p.path}`).toBeGreaterThan(0);
        }
        rejected++;
      }
    }
    // Both outcomes must be common, or the generator is not exercising the validator.
    expect(rejected).toBeGreaterThan(1000);
    expect(valid).toBeGreaterThan(100);
  });

  test('values that JSON cannot carry are rejected, not crashed on', () => {
    const s = exampleState() as unknown as Record<string, unknown>;
    for (const v of [undefined, NaN, Infinity, 10n, Symbol('x'), () => 1, new Date(0)]) {
      const doc = { ...s, networks: [{ ...(s.networks as object[])[0], zone: v }] };
      const err = rejection(() => validateState(doc));
      expect(err.problems[0]!.path).toBe('networks[0] (net-a).zone');
    }
    expect(rejection(() => validateState(undefined)).problems[0]!.path).toBe('(root)');
  });
});
