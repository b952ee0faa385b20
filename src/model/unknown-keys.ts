/**
 * Keys the schema does not know, reported as warnings so that nothing in a state document is dropped without
 * a word: a misspelt `remote_ip_prefx` or the `openstack` CLI's `"IP Range"` would otherwise leave a rule
 * open to any address. Warnings never make a document invalid; they are {@link Problem}s (path and message)
 * like the errors, with the same labelled paths.
 *
 * The known keys are read from the schema itself (`properties`, and `patternProperties` for documented
 * extensions), so a field added to `./schema.ts` is known at once. Besides those, Neutron's own attributes that
 * portwall does not read are accepted quietly: the ones every resource carries (`tenant_id`, `revision_number`,
 * …), a few per resource (a rule's `security_group_id`, a port's `device_owner`, …), and API extension
 * attributes, which Neutron spells `prefix:name` (`binding:host_id`, `provider:network_type`).
 */
import type { TSchema } from '@sinclair/typebox';

import { elementPath, type Problem } from './problems.js';
import { FloatingIpSchema, NetworkSchema, PortSchema, RuleSchema, StateSchema } from './schema.js';

/** Attributes Neutron gives every resource; portwall reads none of them. */
const NEUTRON_COMMON = new Set([
  'tenant_id', 'project_id', 'name', 'description', 'tags', 'created_at', 'updated_at', 'revision_number', 'status',
  'admin_state_up', 'shared',
]);

/** Neutron attributes of one resource that portwall does not read and whose absence changes no filtering. */
const NEUTRON_IGNORED = new Map<TSchema, ReadonlySet<string>>([
  [NetworkSchema, new Set(['mtu', 'subnets', 'availability_zones', 'availability_zone_hints', 'ipv4_address_scope', 'ipv6_address_scope',
    'dns_domain', 'is_default', 'l2_adjacency', 'qos_policy_id', 'vlan_transparent', 'segments'])],
  [RuleSchema, new Set(['security_group_id', 'normalized_cidr', 'belongs_to_default_sg'])],
  [PortSchema, new Set(['device_id', 'device_owner', 'dns_name', 'dns_assignment', 'dns_domain', 'extra_dhcp_opts', 'qos_policy_id',
    'qos_network_policy_id', 'ip_allocation', 'propagate_uplink_status', 'data_plane_status', 'resource_request'])],
  [FloatingIpSchema, new Set(['router_id', 'floating_network_id', 'port_details', 'port_forwardings', 'dns_domain', 'dns_name',
    'qos_policy_id', 'qos_network_policy_id'])],
]);

/** A Neutron API extension attribute (`binding:host_id`): no state-file field has a colon. */
const EXTENSION_ATTRIBUTE = /^[A-Za-z][\w-]*:[\w:-]+$/;

/**
 * The `openstack` CLI's names for state-file fields (its table columns and its renamed JSON keys), normalised
 * by {@link normalise}: a document made from its output names its fields this way.
 */
const OPENSTACK_CLI: ReadonlyMap<string, readonly string[]> = new Map([
  ['ip_protocol', ['protocol']],
  ['ip_range', ['remote_ip_prefix']],
  ['port_range', ['port_range_min', 'port_range_max']],
  ['remote_security_group', ['remote_group_id']],
  ['fixed_ip_addresses', ['fixed_ips']],
  ['security_group_ids', ['security_groups']],
  ['rules', ['security_group_rules']],
  ['port', ['port_id']],
]);

/**
 * Every key of `doc` that the state file's schema does not know, as warnings naming the key's path
 * (`security_groups[0] (sg-web).security_group_rules[3] (r4).remote_ip_prefx`) with a hint: the field it
 * is probably a misspelling of, or the state file's name for an `openstack` CLI name. Any value is accepted;
 * parts that are not the schema's shape (an array where an object belongs) are left to validation.
 *
 * @param schema - the schema `doc` should match (default: the whole state file's).
 */
export function unknownKeys(doc: unknown, schema: TSchema = StateSchema): Problem[] {
  const out: Problem[] = [];
  walk(doc, schema, undefined, out);
  return out;
}

/**
 * The warnings of one object of a collection (an API body), with the paths its errors have: `ports[0] (tap1).…`.
 *
 * @param collection - the state file's array the object belongs in.
 */
export function objectUnknownKeys(collection: 'ports' | 'security_groups' | 'floatingips', body: unknown): Problem[] {
  return unknownKeys({ networks: [], [collection]: [body] });
}

/**
 * Where a value sits: its parent, and its key there (with its index and element when it is an array's
 * element). Spelt out as a path only when a key below is reported, so a document without unknown keys costs
 * no path text (a 5000-port state has ~50 000 objects).
 */
interface Where {
  up: Where | undefined;
  key: string;
  /** The index in the array `key`, or -1 for a plain field. */
  index: number;
  element: unknown;
}

function pathOf(w: Where | undefined): string {
  if (w === undefined) return '';
  const parent = pathOf(w.up);
  return w.index < 0 ? join(parent, w.key) : elementPath(parent, w.key, w.index, w.element);
}

// Checks the keys of an object against `schema` and descends into the fields it knows.
function walk(value: unknown, schema: TSchema, where: Where | undefined, out: Problem[]): void {
  const s = shapeFor(value, schema);
  if (s?.type !== 'object') return;
  const properties = (s.properties ?? {}) as Record<string, TSchema>;
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    const child = record[key];
    const field = Object.hasOwn(properties, key) ? properties[key]! : undefined;
    if (field === undefined) {
      // Neutron sends remote_address_group_id: null on every rule; a non-null one is refused by validation.
      const nullAddressGroup = key === 'remote_address_group_id' && child === null;
      if (!nullAddressGroup && !quietlyAccepted(s, key)) out.push({ path: join(pathOf(where), key), message: `unknown key, ignored${hint(key, Object.keys(properties))}` });
      continue;
    }
    const f = shapeFor(child, field);
    if (f?.type === 'array' && Array.isArray(child)) {
      const items = f.items as TSchema;
      for (let i = 0; i < child.length; i++) walk(child[i], items, { up: where, key, index: i, element: child[i] }, out);
    } else if (f !== undefined) walk(child, field, { up: where, key, index: -1, element: undefined }, out);
  }
}

// The alternative of a (possibly nested) union that has the value's JSON type: object, array, or neither.
function shapeFor(value: unknown, schema: TSchema): TSchema | undefined {
  if (Array.isArray(schema.anyOf)) {
    for (const alt of schema.anyOf as TSchema[]) {
      const s = shapeFor(value, alt);
      if (s !== undefined) return s;
    }
    return undefined;
  }
  const kind = Array.isArray(value) ? 'array' : typeof value === 'object' && value !== null ? 'object' : undefined;
  return kind !== undefined && schema.type === kind ? schema : undefined;
}

function quietlyAccepted(schema: TSchema, key: string): boolean {
  const patterns = Object.keys((schema.patternProperties ?? {}) as Record<string, unknown>);
  return patterns.some((p) => new RegExp(p, 'u').test(key))
    || NEUTRON_COMMON.has(key) || (NEUTRON_IGNORED.get(schema)?.has(key) ?? false) || EXTENSION_ATTRIBUTE.test(key);
}

function join(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

// Column titles and key spellings compared alike: "IP Range", "ip-range" and "ip_range" are one name.
function normalise(key: string): string {
  return key.trim().toLowerCase().replace(/[\s-]+/g, '_');
}

/** What an unknown key probably meant, among the fields of its object: ` (did you mean …?)`, or nothing. */
function hint(key: string, known: readonly string[]): string {
  const name = normalise(key);
  const cli = OPENSTACK_CLI.get(name);
  if (cli !== undefined && cli.every((f) => known.includes(f))) {
    return ` (${JSON.stringify(key)} is the openstack CLI's name; the state file has ${cli.join(' and ')})`;
  }
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const field of known) {
    const d = editDistance(name, field);
    if (d < bestDistance) [best, bestDistance] = [field, d];
  }
  if (best === undefined) return '';
  // Keys are case-sensitive: "Ethertype" and "MAC Address" are the openstack CLI's columns for known fields.
  if (bestDistance === 0) return ` (the state file spells it ${best})`;
  // Close enough to be a slip: one edit in a short name, about one in four in a long one.
  return bestDistance <= Math.max(1, Math.floor(best.length / 4)) ? ` (did you mean ${best}?)` : '';
}

/** Levenshtein distance: insertions, deletions and substitutions of one character each cost 1. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = row;
  }
  return previous[b.length]!;
}
