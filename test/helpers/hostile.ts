/**
 * Hostile input for validation, the incremental API and the agent's HTTP API: seeded
 * generators of state documents and single objects that are wrong in every way a caller can be wrong —
 * wrong types, huge arrays, deep nesting, Unicode and control characters, ids whose derived names share a
 * slug (only the hash tells them apart), duplicate and clashing zones, floating IPs and address pairs that
 * overlap — mixed with valid ones, and the oracle every outcome must satisfy: applied, or an
 * InvalidStateError whose every problem names a path and says what is wrong.
 */
import type { FloatingIpInput, PortInput, SecurityGroupInput, StateInput } from '../../src/model/schema.js';
import { mulberry32 } from './prng.js';
import { busyGroup, network, port, webGroup } from './states.js';

/** The seeded generator the cases are drawn from. */
export function rng(seed: number) {
  const next = mulberry32(seed);
  const int = (n: number) => Math.floor(next() * n);
  return {
    next,
    int,
    pick: <T>(xs: readonly T[]): T => xs[int(xs.length)]!,
    chance: (p: number) => next() < p,
  };
}
export type Rng = ReturnType<typeof rng>;

/** Any JSON value, and (library input only) values JSON cannot carry. */
type Value = unknown;

/** Strings that break naive code: control characters, lone surrogates, bidi overrides, emoji, NUL, huge. */
export const NASTY_STRINGS: readonly string[] = [
  '', ' ', '\u0000', 'tap\u0000x', 'a\nb', '\r\n', '\t', '\u007f', '\u001b[31mred', '\ud800', '\udfff', 'x\ud83d',
  '\u202eevil', '\u200b', '\ufeff', 'é', 'e\u0301', '😀', '😀😀😀😀', 'ｔａｐ１', 'Ω'.repeat(8), '..', '.', '/', 'a/b', 'a:b',
  '"quoted"', "it's", '\\', '*', 'tap+', '%2F', '%', '__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty',
  'null', 'undefined', 'NaN', '0', '-1', '1e999', '0x10', 'x'.repeat(256), 'y'.repeat(70_000), '192.0.2.1\u0000',
  '192.0.2.1 ', ' 192.0.2.1', '192.0.2.01', '0300.0.2.1', '192.0.2.1/32/1', '::ffff:192.0.2.1', '2001:db8::1%eth0',
  'fe80::1', 'ff02::1', '0.0.0.0', '255.255.255.255', '2001:DB8::A', 'FA:16:3E:00:00:01', 'fa16.3e00.0001', 'fa-16-3e-00-00-01',
];

/** Values of every JSON type (and some no JSON has), for fields that want one type. */
const WRONG: readonly (() => Value)[] = [
  () => null, () => true, () => false, () => 0, () => -1, () => 1.5, () => 2 ** 53, () => -(2 ** 63), () => 1e308,
  () => [], () => [null], () => ({}), () => ({ id: 'x' }), () => '', () => '65536', () => [[[]]],
];
const NOT_JSON: readonly (() => Value)[] = [
  () => Number.NaN, () => Number.POSITIVE_INFINITY, () => undefined, () => 10n, () => Symbol('s'), () => () => 1,
  () => new Date(0), () => new Map([['a', 1]]), () => Object.create(null), () => new Uint8Array(4), () => [, , 1], // eslint-disable-line no-sparse-arrays
];

/** A value nested `depth` times: `[[[…]]]` or `{"a":{"a":…}}`. */
export function nested(depth: number, object: boolean): Value {
  let v: Value = 'leaf';
  for (let i = 0; i < depth; i++) v = object ? { a: v } : [v];
  return v;
}

/** Ids that look alike to a slug (`derivedName`): the same after `[^A-Za-z0-9]+` → `_` and a cut to 10. */
export const SLUG_TWINS: readonly (readonly string[])[] = [
  ['sg-web', 'sg_web', 'sg web', 'sg.web', 'sg--web', '-sg-web-'],
  ['net-a', 'net_a', 'net a', 'net/a'],
  ['abcdefghij', 'abcdefghijk', 'abcdefghij-1', 'abcdefghij_2', 'abcdefghij' + 'z'.repeat(245)],
  ['', '_', '-', '___', 'ñ', 'ü', '😀'],
];

// ---- a valid base: two networks (routed, bridged), three groups, six ports, floating IPs, NAT ----

/** A valid state with a bit of everything the generators can break. */
export function baseState(): StateInput {
  const groups = [webGroup('sg-web'), busyGroup('sg-busy', 12, 'sg-web'), { id: 'sg-raw', stateful: false, security_group_rules: [] }];
  const ports: PortInput[] = [
    port(1, ['sg-web']), port(2, ['sg-web', 'sg-busy']), port(3, ['sg-busy'], { allowed_address_pairs: [{ ip_address: '192.0.2.128/25' }] }),
    port(4, ['sg-raw'], {}, 'net-b'), port(5, [], { port_security_enabled: false }, 'net-b'), port(6, ['sg-web'], { kind: 'system' }, 'net-b'),
  ];
  const floatingips: FloatingIpInput[] = [
    { id: 'fip-1', floating_ip_address: '203.0.113.201', port_id: 'port-00001', fixed_ip_address: '192.0.2.2' },
    { id: 'fip-2', floating_ip_address: '203.0.113.202', port_id: null },
  ];
  return {
    networks: [network('routed'), network('bridged', 'net-b', 102, 'br-b')],
    security_groups: groups, ports, floatingips,
    nat: { fixed_range: ['192.0.2.0/24'], routing_source_ip: '198.51.100.1', dmz_cidr: ['203.0.113.0/24'] },
  };
}

// ---- mutations ----

type Container = Record<string, Value> | Value[];

// Every (container, key) in a document, root excluded, so one can be replaced.
function slots(doc: Value, out: [Container, string | number][] = [], depth = 0, seen = new Set<object>()): [Container, string | number][] {
  // Typed arrays are values here, not containers: a slot in one cannot be deleted, and writing a nested array
  // into it converts the array to a number (a string first, which a deep nesting overflows).
  if (depth > 8 || typeof doc !== 'object' || doc === null || ArrayBuffer.isView(doc)) return out;
  // Each container once: one shared by many slots (a huge array filled with one object, then a huge array put
  // into that object) would otherwise be walked once per path to it — 5000 × 100 000 paths ran the test's
  // worker out of heap (PW_HOSTILE_SEED=156438).
  if (seen.has(doc)) return out;
  seen.add(doc);
  if (Array.isArray(doc)) doc.forEach((v, i) => (out.push([doc, i]), slots(v, out, depth + 1, seen)));
  else for (const [k, v] of Object.entries(doc)) out.push([doc as Record<string, Value>, k]), slots(v, out, depth + 1, seen);
  return out;
}

/** What kind of wrong a mutation made (counted in the figures). */
export type Harm =
  | 'wrong type' | 'missing field' | 'unknown key' | 'nasty string' | 'huge array' | 'deep nesting' | 'duplicate'
  | 'slug twins' | 'zones' | 'overlap' | 'not JSON' | 'number edge' | 'cycle';

/**
 * One mutation of `doc` in place (or a replacement, returned). `jsonOnly`: only what a JSON body can carry.
 * @returns the document (the same object unless the whole was replaced) and what was done to it.
 */
export function mutate(r: Rng, doc: Value, jsonOnly: boolean): { doc: Value; harm: Harm } {
  const all = slots(doc);
  const at = (): [Container, string | number] | undefined => (all.length ? r.pick(all) : undefined);
  const set = (value: Value): boolean => {
    const s = at();
    if (!s) return false;
    (s[0] as Record<string | number, Value>)[s[1]] = value;
    return true;
  };
  const strings = all.filter(([c, k]) => typeof (c as Record<string | number, Value>)[k] === 'string');
  const arrays = all.filter(([c, k]) => Array.isArray((c as Record<string | number, Value>)[k]));
  const objects = all.filter(([c, k]) => { const v = (c as Record<string | number, Value>)[k]; return typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v); });
  const roll = r.int(100);
  if (roll < 18) return set(r.pick(WRONG)()) ? { doc, harm: 'wrong type' } : { doc: r.pick(WRONG)(), harm: 'wrong type' };
  if (roll < 26 && objects.length) {
    const [c, k] = r.pick(objects);
    const o = (c as Record<string | number, Record<string, Value>>)[k]!;
    const keys = Object.keys(o);
    if (keys.length) delete o[r.pick(keys)];
    return { doc, harm: 'missing field' };
  }
  if (roll < 32 && objects.length) {
    const [c, k] = r.pick(objects);
    const o = (c as Record<string | number, Record<string, Value>>)[k]!;
    const key = r.pick([...NASTY_STRINGS.slice(0, 40), 'remote_ip_prefx', 'IP Range', 'fixed_ip', '__proto__']);
    // `__proto__` as an own key, as JSON.parse makes it (an assignment would set the prototype).
    Object.defineProperty(o, key, { value: r.pick(WRONG)(), enumerable: true, configurable: true, writable: true });
    return { doc, harm: 'unknown key' };
  }
  if (roll < 50 && strings.length) {
    const [c, k] = r.pick(strings);
    const old = (c as Record<string | number, string>)[k]!;
    const nasty = r.pick(NASTY_STRINGS);
    (c as Record<string | number, string>)[k] = r.pick([nasty, old + nasty, nasty + old, old.toUpperCase(), old.normalize('NFD')]);
    return { doc, harm: 'nasty string' };
  }
  // Huge arrays are rare (each costs a second or so to judge); an array of big objects stays at thousands.
  if (roll < 52 && r.chance(0.15) && arrays.length) {
    const [c, k] = r.pick(arrays);
    const a = (c as Record<string | number, Value[]>)[k]!;
    const el = a.length ? a[r.int(a.length)] : 'x';
    const n = (jsonText(el)?.length ?? 0) > 100 ? r.pick([1000, 5000]) : r.pick([1000, 20_000, 100_000]);
    (c as Record<string | number, Value[]>)[k] = r.chance(0.5) ? new Array<Value>(n).fill(el) : Array.from({ length: n }, (_, i) => i);
    return { doc, harm: 'huge array' };
  }
  if (roll < 56) return set(nested(r.pick([50, 2000, 20_000, 200_000]), r.chance(0.5))) ? { doc, harm: 'deep nesting' } : { doc, harm: 'deep nesting' };
  if (roll < 70 && arrays.length) {
    const [c, k] = r.pick(arrays);
    const a = (c as Record<string | number, Value[]>)[k]!;
    if (a.length) a.splice(r.int(a.length + 1), 0, copy(a[r.int(a.length)]));
    return { doc, harm: 'duplicate' };
  }
  if (roll < 77) return { doc: slugTwins(r, doc), harm: 'slug twins' };
  if (roll < 83) return { doc: clashZones(r, doc), harm: 'zones' };
  if (roll < 91) return { doc: overlap(r, doc), harm: 'overlap' };
  if (roll < 96) {
    const numbers = all.filter(([c, k]) => typeof (c as Record<string | number, Value>)[k] === 'number');
    if (numbers.length) {
      const [c, k] = r.pick(numbers);
      (c as Record<string | number, Value>)[k] = r.pick([0, -0, -1, 65535, 65536, 2 ** 31, 2 ** 32, 255, 256, 1.0000001, Number.MAX_SAFE_INTEGER + 2, 1e21]);
    }
    return { doc, harm: 'number edge' };
  }
  if (jsonOnly) return set(r.pick(WRONG)()) ? { doc, harm: 'wrong type' } : { doc, harm: 'wrong type' };
  if (roll < 98 && objects.length) {
    const [c, k] = r.pick(objects);
    const o = (c as Record<string | number, Record<string, Value>>)[k]!;
    o[r.pick(Object.keys(o).length ? Object.keys(o) : ['id'])] = r.chance(0.5) ? o : doc;
    return { doc, harm: 'cycle' };
  }
  return set(r.pick(NOT_JSON)()) ? { doc, harm: 'not JSON' } : { doc, harm: 'not JSON' };
}

// A deep copy where one can be made (not of a cycle, a function or a value nested past the stack), else the value.
function copy(v: Value): Value {
  try {
    return structuredClone(v);
  } catch {
    return v;
  }
}

const asState = (doc: Value): Partial<Record<keyof StateInput, Value[]>> & Record<string, Value> =>
  (typeof doc === 'object' && doc !== null && !Array.isArray(doc) ? doc : {}) as Partial<Record<keyof StateInput, Value[]>>;
const objs = (xs: Value): Record<string, Value>[] => (Array.isArray(xs) ? xs.filter((x): x is Record<string, Value> => typeof x === 'object' && x !== null && !Array.isArray(x)) : []);

// Renames a group or network (and every reference to it) to ids whose derived names share a slug, and adds a
// twin beside it, so two objects differ only in the hash part of their set names.
function slugTwins(r: Rng, doc: Value): Value {
  const s = asState(doc);
  const twins = r.pick(SLUG_TWINS);
  const [a, b] = [r.pick(twins), r.pick(twins)];
  if (r.chance(0.5)) {
    const groups = objs(s.security_groups);
    const g = groups[0];
    if (!g) return doc;
    const old = g.id;
    g.id = a;
    for (const p of objs(s.ports)) if (Array.isArray(p.security_groups)) p.security_groups = p.security_groups.map((x) => (x === old ? a : x));
    for (const x of groups) for (const rule of objs(x.security_group_rules)) if (rule.remote_group_id === old) rule.remote_group_id = a;
    const twin = { ...(copy(g) as Record<string, Value>), id: b, security_group_rules: objs(g.security_group_rules).map((x, i) => ({ ...x, id: `${b}-${i}-${typeof x.id === 'string' || typeof x.id === 'number' ? x.id : 'v'}`, ...(x.remote_group_id === a ? { remote_group_id: b } : {}) })) };
    (s.security_groups as Value[]).push(twin);
    const p = objs(s.ports)[r.int(objs(s.ports).length || 1)];
    if (p && Array.isArray(p.security_groups) && r.chance(0.7)) p.security_groups.push(b);
  } else {
    const nets = objs(s.networks);
    const n = nets[0];
    if (!n) return doc;
    const old = n.id;
    n.id = a;
    for (const p of objs(s.ports)) if (p.network_id === old) p.network_id = a;
    nets.push({ id: b, zone: 150 + r.int(50), mode: 'routed' });
    (s.networks as Value[]).push(nets.at(-1)!);
  }
  return doc;
}

// Two networks on one zone, a zone at or past the range's edges, a bridge shared or named like a port.
function clashZones(r: Rng, doc: Value): Value {
  const s = asState(doc);
  const nets = objs(s.networks);
  if (!nets.length || !Array.isArray(s.networks)) return doc;
  const choice = r.int(5);
  if (choice === 0) s.networks.push({ id: 'net-twin', zone: nets[0]!.zone, mode: 'routed' });
  else if (choice === 1) nets[r.int(nets.length)]!.zone = r.pick([0, 1, 65535, 65536, -5, 101, 102]);
  else if (choice === 2) s.networks.push({ ...(copy(nets[0]!) as Record<string, Value>), zone: 199 });
  else if (choice === 3) s.networks.push({ id: 'net-c', zone: 103, mode: 'bridged', bridge: r.pick(['br-b', 'br-a', 'tap1', 'tap2']) });
  else for (const n of nets) n.zone = 101;
  return doc;
}

// Addresses that meet: a fixed IP another port has, a pair over another port's address, a floating IP that is
// a fixed IP, a pair or another floating IP, a DHCP server as a fixed IP.
function overlap(r: Rng, doc: Value): Value {
  const s = asState(doc);
  const ports = objs(s.ports);
  const fips = objs(s.floatingips);
  const p = ports.length ? r.pick(ports) : undefined;
  const addr = r.pick(['192.0.2.2', '192.0.2.3', '192.0.2.254', '203.0.113.201', '198.51.100.1', '192.0.2.130', '2001:db8:1::1']);
  switch (r.int(6)) {
    case 0:
      if (p) p.fixed_ips = [{ ip_address: addr }, ...(Array.isArray(p.fixed_ips) ? p.fixed_ips : [])];
      break;
    case 1:
      if (p) p.allowed_address_pairs = [{ ip_address: r.pick([addr, '192.0.2.0/24', '0.0.0.0/0', '::/0', '203.0.113.201/32']) }, ...(Array.isArray(p.allowed_address_pairs) ? p.allowed_address_pairs : [])];
      break;
    case 2:
      if (Array.isArray(s.floatingips)) s.floatingips.push({ id: `fip-${r.int(5)}`, floating_ip_address: addr, port_id: p?.id ?? null });
      break;
    case 3:
      if (fips[0]) fips[0].floating_ip_address = r.pick(['203.0.113.202', '192.0.2.2', '198.51.100.1', '192.0.2.130']);
      break;
    case 4:
      if (fips[0] && p) Object.assign(fips[0], { port_id: p.id, fixed_ip_address: r.chance(0.5) ? null : addr });
      break;
    default:
      if (s.nat && typeof s.nat === 'object') (s.nat as unknown as Record<string, Value>).routing_source_ip = r.pick([addr, '203.0.113.201', '0.0.0.0']);
  }
  return doc;
}

/** A hostile whole state: the base, or pure garbage, with 1–4 mutations. */
export function hostileState(r: Rng, jsonOnly = false): { doc: Value; harms: Harm[] } {
  if (r.chance(0.03)) return { doc: r.pick([...WRONG, ...(jsonOnly ? [] : NOT_JSON)])(), harms: ['wrong type'] };
  let doc: Value = baseState();
  const harms: Harm[] = [];
  const n = r.chance(0.1) ? 0 : 1 + r.int(4);
  for (let i = 0; i < n; i++) {
    const m = mutate(r, doc, jsonOnly);
    doc = m.doc;
    harms.push(m.harm);
  }
  return { doc, harms };
}

/** A port, group or floating IP of the base (a valid one, or a new one), to be mutated into a hostile edit. */
export function baseObject(r: Rng, kind: 'port' | 'group' | 'floatingip', i: number): PortInput | SecurityGroupInput | FloatingIpInput {
  if (kind === 'port') return r.chance(0.5) ? structuredClone(r.pick(baseState().ports!)) : port(100 + (i % 150), [r.pick(['sg-web', 'sg-busy'])]);
  if (kind === 'group') return r.chance(0.5) ? structuredClone(r.pick(baseState().security_groups!.slice(0, 2))) : busyGroup(`sg-n${i % 50}`, 1 + r.int(8));
  return r.chance(0.5) ? structuredClone(r.pick(baseState().floatingips!)) : { id: `fip-n${i % 20}`, floating_ip_address: `203.0.113.${210 + (i % 20)}`, port_id: 'port-00002', fixed_ip_address: r.chance(0.5) ? '192.0.2.3' : null };
}

/** One problem as the API and the library give it. */
export interface NamedProblem {
  path: unknown;
  message: unknown;
}

/** Whether every problem names where (a non-empty path) and what (a non-empty message), and there is one. */
export function allNamed(problems: readonly NamedProblem[] | undefined): boolean {
  return Array.isArray(problems) && problems.length > 0
    && problems.every((p) => typeof p.path === 'string' && p.path !== '' && typeof p.message === 'string' && p.message !== '');
}

/** A JSON text of a value, or undefined when it has none (a cycle, a BigInt). */
export function jsonText(v: Value): string | undefined {
  try {
    return JSON.stringify(v);
  } catch {
    return undefined;
  }
}
