/**
 * Validation of transaction operations, object by object, as they are added (knftables style): a bad object
 * is reported with the field that is wrong, before any byte goes to the kernel.
 *
 * Validation also returns the object's canonical form — values canonicalised through their datatypes, zero
 * optionals dropped, implied set flags removed — which is exactly what a dump of the object decodes to
 * (apart from kernel-assigned handles and counters), so desired and listed objects compare equal.
 */
import { PortwallError } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import {
  CHAIN_POLICIES,
  CHAIN_TYPE_FAMILIES,
  FAMILIES,
  HOOKS,
  NFT_DATA_VALUE_MAXLEN,
  NFT_NAME_MAXLEN,
  NFT_SET_MAX_FIELDS,
  SET_FLAGS,
  UDATA,
} from './constants.js';
import { DATATYPES, canonicalValue, encodeKey, setKeyType } from './datatypes.js';
import { TYPEOF_KEY_TYPE } from './userdata.js';
import { RULE_MAX_EXPRS, checkVerdict, validateExpr } from './validate-exprs.js';
import type { Fail } from './validate-exprs.js';
import { canonicalExpr, canonicalVerdict } from './wire-exprs.js';
import { IDENTITY_ONLY } from './wire.js';
import type { SetResolver } from './wire.js';
import type { Chain, Element, Elements, Expr, NftObject, NftSet, Operation, Rule, Table, Verb } from './types.js';

/** The verbs each kind accepts (docs/wire.md lists what each sends). */
const VERBS: Readonly<Record<NftObject['kind'], readonly Verb[]>> = {
  table: ['add', 'create', 'delete', 'flush', 'destroy'],
  chain: ['add', 'create', 'delete', 'flush', 'destroy'],
  rule: ['add', 'insert', 'replace', 'delete', 'destroy'],
  set: ['add', 'create', 'delete', 'flush', 'destroy'],
  elements: ['add', 'create', 'delete', 'destroy'],
};

// nft's unquoted identifier (scanner.l `string`), so every name portwall writes lists and parses back.
const NAME_RE = /^[A-Za-z_.][A-Za-z0-9/_.-]*$/;
// Interface names: IFNAMSIZ − 1 bytes, no '/', no whitespace (dev_valid_name()).
const IFNAME_RE = /^[^/\s:]{1,15}$/;
const HANDLE_MAX = 2n ** 64n - 1n;

/** "rule inet/portwall/ingress" — how errors name an object. */
export function describeObject(o: NftObject): string {
  if (typeof o !== 'object' || o === null) return String(o);
  const v = o as unknown as Record<string, unknown>;
  const path = [v.family, v.table, o.kind === 'elements' ? v.set : o.kind === 'rule' ? v.chain : v.name];
  return `${String(v.kind)} ${path.filter((p) => p !== undefined).map(String).join('/')}`;
}

/**
 * Validates one operation and returns its canonical form. Throws PortwallError ERR_INVALID_OBJECT (with
 * `field`, `object`, `opIndex`), ERR_INVALID_VALUE for element values, ERR_UNKNOWN_SET for elements of a set
 * that `resolveSet` cannot find. `canonicalElements`: the element list is already canonical (portwall's own
 * layout made it); only its set and shape are checked here — its values are parsed when the batch is encoded.
 */
export function validateOperation(verb: Verb, object: NftObject, opIndex: number, resolveSet: SetResolver, canonicalElements = false): Operation {
  const fail: Fail = (field, message) => {
    throw error('ERR_INVALID_OBJECT', object, opIndex, field, message);
  };
  if (typeof object !== 'object' || object === null || !(object.kind in VERBS)) {
    fail('kind', `unknown object kind ${JSON.stringify((object as { kind?: unknown } | null)?.kind)}`);
  }
  if (!VERBS[object.kind].includes(verb)) fail('kind', `cannot ${verb} a ${object.kind}`);
  if (!FAMILIES.has(object.family)) fail('family', `unknown family ${JSON.stringify(object.family)}`);
  const identityOnly = IDENTITY_ONLY.has(verb);
  switch (object.kind) {
    case 'table':
      return { verb, object: table(fail, object, identityOnly) };
    case 'chain':
      return { verb, object: chain(fail, object, identityOnly) };
    case 'rule':
      return { verb, object: rule(fail, verb, object) };
    case 'set':
      return { verb, object: set(fail, object, identityOnly) };
    case 'elements': {
      name(fail, 'table', object.table);
      name(fail, 'set', object.set);
      const found = resolveSet(object.family, object.table, object.set);
      if (!found) {
        throw error('ERR_UNKNOWN_SET', object, opIndex, 'set', 'unknown set (add it to the transaction or list it first)');
      }
      if (canonicalElements) return { verb, object: sameShape(fail, object, found) };
      return { verb, object: elements(fail, object, found, identityOnly, opIndex) };
    }
  }
}

function error(code: ErrorCode, object: NftObject, opIndex: number, field: string, message: string, cause?: unknown) {
  const where = field === '' ? '' : `${field}: `;
  return new PortwallError(code, `${describeObject(object)}: ${where}${message}`, { object, field, opIndex, cause });
}

// Tables, chains and sets are named again in every rule and element operation: remember valid names.
const validNames = new Set<string>();

function name(fail: Fail, field: string, v: unknown): asserts v is string {
  if (typeof v === 'string' && validNames.has(v)) return;
  if (typeof v !== 'string' || v.length === 0) fail(field, 'must be a non-empty string');
  if (Buffer.byteLength(v) > NFT_NAME_MAXLEN) fail(field, `longer than ${NFT_NAME_MAXLEN} bytes`);
  if (!NAME_RE.test(v)) fail(field, `${JSON.stringify(v)} is not a valid name (letters, digits, _ . - /)`);
  if (validNames.size >= 65_536) validNames.clear();
  validNames.add(v);
}

// nft's 128-byte limit; it also keeps every userdata blob portwall builds (at most 143 bytes) within the
// kernel's NFT_USERDATA_MAXLEN of 256.
function comment(fail: Fail, v: unknown): void {
  if (v === undefined) return;
  if (typeof v !== 'string' || v.includes('\0')) fail('comment', 'must be a string without NUL');
  const len = Buffer.byteLength(v);
  if (len > UDATA.COMMENT_MAXLEN) fail('comment', `${len} bytes, longer than ${UDATA.COMMENT_MAXLEN}`);
}

function handle(fail: Fail, field: string, v: unknown): void {
  if (v !== undefined && (typeof v !== 'bigint' || v < 0n || v > HANDLE_MAX)) fail(field, 'must be a u64 bigint');
}

const isInt = (v: unknown, min: number, max: number): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;

// Canonical objects hold only the fields given, in one order, none undefined: built field by field (`delete`
// would turn them into slow dictionary-mode objects, and spreading one object into another costs V8
// microseconds each: docs/dataplane.md, "The JavaScript of a full sync").
function table(fail: Fail, t: Table, identityOnly: boolean): Table {
  name(fail, 'name', t.name);
  handle(fail, 'handle', t.handle);
  const out: Table = { kind: 'table', family: t.family, name: t.name };
  if (t.handle !== undefined) out.handle = t.handle;
  if (identityOnly) return out;
  // NFT_TABLE_F_DORMANT | NFT_TABLE_F_OWNER
  if (t.flags !== undefined && !isInt(t.flags, 0, 3)) fail('flags', 'only dormant (1) and owner (2) are known');
  if (t.flags) out.flags = t.flags;
  return out;
}

function chain(fail: Fail, c: Chain, identityOnly: boolean): Chain {
  name(fail, 'table', c.table);
  name(fail, 'name', c.name);
  handle(fail, 'handle', c.handle);
  const out: Chain = { kind: 'chain', family: c.family, table: c.table, name: c.name };
  if (c.handle !== undefined) out.handle = c.handle;
  if (identityOnly) return out;
  const base = [c.hook, c.priority, c.type].filter((v) => v !== undefined).length;
  if (base !== 0 && base !== 3) {
    const missing = c.hook === undefined ? 'hook' : c.priority === undefined ? 'priority' : 'type';
    fail(missing, 'a base chain needs hook, priority and type together');
  }
  if (base === 0) {
    if (c.policy !== undefined) fail('policy', 'only base chains have a policy');
    if (c.device !== undefined) fail('device', 'only base chains have a device');
  } else {
    if (!HOOKS[c.family].has(c.hook)) {
      const hooks = HOOKS[c.family].names.join(', ');
      fail('hook', `${JSON.stringify(c.hook)} is not a hook of family ${c.family} (${hooks})`);
    }
    if (!isInt(c.priority, -(2 ** 31), 2 ** 31 - 1)) fail('priority', 'must be a 32-bit integer');
    const families = CHAIN_TYPE_FAMILIES[c.type!] as readonly string[] | undefined;
    if (!families) fail('type', `unknown chain type ${JSON.stringify(c.type)}`);
    if (!families.includes(c.family)) fail('type', `family ${c.family} has no ${c.type} chains`);
    if (c.type === 'route' && c.hook !== 'output') fail('hook', 'route chains hook output');
    if (c.type === 'nat' && (c.hook === 'forward' || c.hook === 'ingress')) {
      fail('hook', `nat chains cannot hook ${c.hook}`);
    }
    if (c.policy !== undefined && !CHAIN_POLICIES.has(c.policy)) fail('policy', `must be 'accept' or 'drop'`);
    const needsDevice = c.family === 'netdev' || c.hook === 'ingress';
    if (needsDevice && c.device === undefined) fail('device', `a ${c.family} ${c.hook} chain needs a device`);
    if (!needsDevice && c.device !== undefined) fail('device', 'only netdev and ingress chains have a device');
    if (c.device !== undefined && (typeof c.device !== 'string' || !IFNAME_RE.test(c.device))) {
      fail('device', `${JSON.stringify(c.device)} is not an interface name`);
    }
  }
  comment(fail, c.comment);
  if (c.hook !== undefined) out.hook = c.hook;
  if (c.priority !== undefined) out.priority = c.priority;
  if (c.type !== undefined) out.type = c.type;
  if (c.policy !== undefined) out.policy = c.policy;
  if (c.device !== undefined) out.device = c.device;
  if (c.comment !== undefined) out.comment = c.comment;
  return out;
}

function rule(fail: Fail, verb: Verb, r: Rule): Rule {
  name(fail, 'table', r.table);
  name(fail, 'chain', r.chain);
  handle(fail, 'handle', r.handle);
  handle(fail, 'position', r.position);
  const needsHandle = verb === 'replace' || verb === 'delete' || verb === 'destroy';
  if (needsHandle && r.handle === undefined) fail('handle', `${verb} of a rule needs its handle`);
  if (!needsHandle && r.handle !== undefined) fail('handle', 'the kernel assigns handles; use replace to change a rule');
  if (verb !== 'add' && verb !== 'insert' && r.position !== undefined) fail('position', 'only add and insert take one');
  if (verb === 'delete' || verb === 'destroy') {
    const { family, table, chain } = r;
    return r.handle === undefined ? { kind: 'rule', family, table, chain, exprs: [] } : { kind: 'rule', family, table, chain, handle: r.handle, exprs: [] };
  }
  comment(fail, r.comment);
  if (!Array.isArray(r.exprs)) fail('exprs', 'must be an array');
  if (r.exprs.length > RULE_MAX_EXPRS) fail('exprs', `${r.exprs.length} expressions, more than ${RULE_MAX_EXPRS}`);
  let i = 0;
  const at: Fail = (field, message) => fail(field === '' ? `exprs[${i}]` : `exprs[${i}].${field}`, message);
  const setName = (field: string, v: unknown) => name(at, field, v);
  const exprs = new Array<Expr>(r.exprs.length);
  for (; i < r.exprs.length; i++) {
    validateExpr(at, r.exprs[i]!, setName);
    exprs[i] = canonicalExpr(r.exprs[i]!);
  }
  // Rules are the bulk of large batches: built field by field, as every canonical object is.
  const out: Rule = { kind: 'rule', family: r.family, table: r.table, chain: r.chain, exprs };
  if (r.handle !== undefined) out.handle = r.handle;
  if (r.position !== undefined) out.position = r.position;
  if (r.comment !== undefined) out.comment = r.comment;
  return out;
}

function set(fail: Fail, s: NftSet, identityOnly: boolean): NftSet {
  name(fail, 'table', s.table);
  name(fail, 'name', s.name);
  handle(fail, 'handle', s.handle);
  const { family, table } = s;
  const out: NftSet = s.handle === undefined ? { kind: 'set', family, table, name: s.name, key: [] } : { kind: 'set', family, table, name: s.name, handle: s.handle, key: [] };
  if (identityOnly) return out; // the kernel needs no key to delete or flush
  if (!Array.isArray(s.key) || s.key.length === 0) fail('key', 'must be a non-empty array of datatypes');
  if (s.key.length > NFT_SET_MAX_FIELDS) fail('key', `${s.key.length} fields, more than ${NFT_SET_MAX_FIELDS}`);
  s.key.forEach((t, i) => {
    if (!Object.hasOwn(DATATYPES, t)) fail(`key[${i}]`, `unknown datatype ${JSON.stringify(t)}`);
    if (t === 'verdict') fail(`key[${i}]`, 'verdict is only map data');
  });
  if (s.data !== undefined && !Object.hasOwn(DATATYPES, s.data)) fail('data', `unknown datatype ${JSON.stringify(s.data)}`);
  let keyLen = 0;
  try {
    keyLen = setKeyType(s.key).keyLen;
    if (s.data !== undefined && s.data !== 'verdict') setKeyType([s.data]);
  } catch (e) {
    fail(s.data !== undefined && keyLen > 0 ? 'data' : 'key', (e as Error).message);
  }
  if (keyLen > NFT_DATA_VALUE_MAXLEN) fail('key', `${keyLen} bytes, longer than ${NFT_DATA_VALUE_MAXLEN}`);
  const flags = s.flags ?? [];
  if (!Array.isArray(flags)) fail('flags', 'must be an array');
  flags.forEach((f, i) => {
    if (!SET_FLAGS.has(f)) fail(`flags[${i}]`, `unknown set flag ${JSON.stringify(f)}`);
    if (flags.indexOf(f) !== i) fail(`flags[${i}]`, `duplicate flag ${f}`);
  });
  if (flags.includes('map') && s.data === undefined) fail('flags', `'map' needs data`);
  if (flags.includes('concat') && s.key.length < 2) fail('flags', `'concat' needs a key of several fields`);
  if (s.counter !== undefined && typeof s.counter !== 'boolean') fail('counter', 'must be a boolean');
  if (s.size !== undefined && !isInt(s.size, 1, 2 ** 32 - 1)) fail('size', 'must be a positive u32');
  if (s.timeout !== undefined) {
    if (!isInt(s.timeout, 1, Number.MAX_SAFE_INTEGER)) fail('timeout', 'must be a positive number of milliseconds');
    if (!flags.includes('timeout')) fail('timeout', `needs the 'timeout' flag`);
  }
  comment(fail, s.comment);
  if (s.data === 'ct_zone' || s.typeof !== undefined) {
    if (s.data !== 'ct_zone') fail('typeof', 'only maps of ct_zone data are declared by typeof');
    if (s.typeof === undefined || !Object.hasOwn(TYPEOF_KEY_TYPE, s.typeof)) {
      fail('typeof', `a ct_zone map needs the key's expression: one of ${Object.keys(TYPEOF_KEY_TYPE).join(', ')}`);
    }
    if (s.key.length !== 1 || s.key[0] !== TYPEOF_KEY_TYPE[s.typeof]) fail('typeof', `${s.typeof} is not a key of type ${s.key.join(' . ')}`);
  }
  // map and concat follow from data and key; the canonical form leaves them implied (as dumps decode).
  const kept = SET_FLAGS.names.filter((f) => f !== 'map' && f !== 'concat' && flags.includes(f));
  out.key = [...s.key];
  if (s.data !== undefined) out.data = s.data;
  if (s.typeof !== undefined) out.typeof = s.typeof;
  if (kept.length > 0) out.flags = kept;
  if (s.counter) out.counter = true;
  if (s.comment !== undefined) out.comment = s.comment;
  if (s.size !== undefined) out.size = s.size;
  if (s.timeout !== undefined) out.timeout = s.timeout;
  return out;
}

// Canonical elements: a non-empty list whose keys have the set's number of fields (values are checked by encode).
function sameShape(fail: Fail, o: Elements, s: NftSet): Elements {
  if (!Array.isArray(o.elements) || o.elements.length === 0) fail('elements', 'must be a non-empty array');
  o.elements.forEach((el, i) => {
    if (el?.key?.length !== s.key.length) fail(`elements[${i}].key`, `must be an array of ${s.key.length} value(s) (${s.key.join(' . ')})`);
  });
  return { kind: 'elements', family: o.family, table: o.table, set: o.set, elements: o.elements };
}

function elements(fail: Fail, o: Elements, s: NftSet, identityOnly: boolean, opIndex: number): Elements {
  if (!Array.isArray(o.elements) || o.elements.length === 0) fail('elements', 'must be a non-empty array');
  const interval = s.flags?.includes('interval') ?? false;
  const timeouts = s.flags?.includes('timeout') ?? false;
  const out = o.elements.map((el, i) => {
    const at = `elements[${i}]`;
    const f: Fail = (field, message) => fail(`${at}.${field}`, message);
    if (typeof el !== 'object' || el === null) fail(at, 'must be an element object');
    if (!Array.isArray(el.key) || el.key.length !== s.key.length) {
      f('key', `must be an array of ${s.key.length} value(s) (${s.key.join(' . ')})`);
    }
    const key = el.key.map((v, j) => value(o, opIndex, `${at}.key[${j}]`, () => canonicalValue(s.key[j]!, v)));
    value(o, opIndex, `${at}.key`, () => encodeKey(s.key, key, interval));
    const c: Element = { key };
    if (identityOnly) return c;
    if (s.data === 'verdict') {
      if (el.data !== undefined) f('data', 'a verdict map takes `verdict`, not `data`');
      checkVerdict(f, 'verdict', el.verdict, (field, v) => name(f, field, v));
      c.verdict = canonicalVerdict(el.verdict!);
    } else if (s.data !== undefined) {
      if (el.verdict !== undefined) f('verdict', `a ${s.data} map takes \`data\`, not \`verdict\``);
      if (el.data === undefined) f('data', `a map element needs data (${s.data})`);
      const dataType = s.data;
      c.data = value(o, opIndex, `${at}.data`, () => canonicalValue(dataType, el.data!));
    } else if (el.data !== undefined || el.verdict !== undefined) {
      f(el.data !== undefined ? 'data' : 'verdict', 'the set is not a map');
    }
    comment(f, el.comment);
    if (el.comment !== undefined) c.comment = el.comment;
    if (el.timeout !== undefined) {
      if (!isInt(el.timeout, 1, Number.MAX_SAFE_INTEGER)) f('timeout', 'must be a positive number of milliseconds');
      if (!timeouts) f('timeout', `the set has no 'timeout' flag`);
      // The kernel does not report a timeout equal to the set's default, so neither does the canonical form.
      if (el.timeout !== s.timeout) c.timeout = el.timeout;
    }
    return c;
  });
  return { kind: 'elements', family: o.family, table: o.table, set: o.set, elements: out };
}

// Runs a datatype conversion, turning its ERR_INVALID_VALUE into one that names the object and field.
function value<T>(o: NftObject, opIndex: number, field: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    const code: ErrorCode = e instanceof PortwallError ? e.code : 'ERR_INVALID_VALUE';
    throw error(code, o, opIndex, field, (e as Error).message, e);
  }
}
