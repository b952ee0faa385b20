/**
 * Typed objects as `nft -f` text, for logs, plans and golden tests (portwall never feeds it to nft itself).
 *
 * Rules are printed by raising their expressions back to statements (`./raise.ts`), so what is printed is
 * what the kernel runs: loading the text with `nft -f` builds the same expressions (the kernel tests check it).
 * Element keys are printed through their set's datatypes; sets come from earlier `add set` operations or from
 * the `knownSets` argument. `destroy` needs nft ≥ 1.0.8; everything else parses with nft 1.0.6.
 */
import { PortwallError } from '../errors.js';
import { nftValueText } from './datatypes.js';
import { fieldOf, type Operand } from './fields.js';
import type { Part } from './match.js';
import { raiseRule } from './raise.js';
import type { Chain, Element, Elements, Family, NftSet, Operation, Rule, Table, Verdict } from './types.js';

function fail(message: string, opIndex?: number, object?: unknown): PortwallError {
  return new PortwallError('ERR_RENDER', message, { ...(opIndex === undefined ? {} : { opIndex }), object });
}

/** A name as nft reads it: bare when it is an identifier, else quoted (which nft < 1.0.7 may refuse). */
function ident(name: string): string {
  if (/^[A-Za-z_.][A-Za-z0-9_./-]*$/.test(name)) return name;
  if (/["\n\0]/.test(name)) throw fail(`name ${JSON.stringify(name)} cannot be written in nft syntax`);
  return `"${name}"`;
}

/** A quoted string (comments, log prefixes); nft has no escapes, so quotes and newlines cannot be printed. */
function quoted(text: string): string {
  if (/["\n\0]/.test(text)) throw fail(`string ${JSON.stringify(text)} cannot be written in nft syntax`);
  return `"${text}"`;
}

function verdictText(v: Verdict): string {
  if (v.code === 'jump' || v.code === 'goto') return `${v.code} ${ident(v.chain)}`;
  if (v.code === 'break') throw fail('the break verdict has no nft syntax');
  return v.code;
}

function operandText(o: Operand): string {
  const f = fieldOf(o);
  if (!('mask' in o)) return f.name;
  if (o.or === undefined) return `${f.name} and ${nftValueText(f.type, o.mask)}`;
  const all = (1n << BigInt(f.len * 8)) - 1n;
  const plain = BigInt(o.mask as number) === (all ^ BigInt(o.or as number));
  return `${f.name} ${plain ? '' : `and ${nftValueText(f.type, o.mask)} `}or ${nftValueText(f.type, o.or)}`;
}

const OP_TEXT = { eq: '', ne: '!= ', lt: '< ', le: '<= ', gt: '> ', ge: '>= ' } as const;

/** One rule part as nft syntax. */
export function partText(p: Part): string {
  switch (p.kind) {
    case 'match': {
      const f = fieldOf(p.left);
      // `field and mask value` does not parse; a masked equality needs its `==`.
      const op = p.op === 'eq' && 'mask' in p.left ? '== ' : OP_TEXT[p.op];
      return `${operandText(p.left)} ${op}${nftValueText(f.type, p.value)}`;
    }
    case 'lookup':
      return `${p.keys.map(operandText).join(' . ')} ${p.vmap ? 'vmap ' : p.negate ? '!= ' : ''}@${ident(p.set)}`;
    case 'counter':
    case 'notrack':
      return p.kind;
    case 'verdict':
      return verdictText(p.verdict);
    case 'set': {
      const v = p.value;
      const text = typeof v !== 'object' ? nftValueText(p.field.type, v)
        : 'kind' in v ? `${v.keys.map(operandText).join(' . ')} map @${ident(v.map)}`
        : operandText(v);
      return `${p.field.name} set ${text}`;
    }
    case 'log': {
      const words = ['log'];
      if (p.prefix !== undefined) words.push(`prefix ${quoted(p.prefix)}`);
      if (p.level !== undefined) words.push(`level ${p.level}`);
      if (p.group !== undefined) words.push(`group ${p.group}`);
      if (p.snaplen !== undefined) words.push(`snaplen ${p.snaplen}`);
      if (p.qthreshold !== undefined) words.push(`queue-threshold ${p.qthreshold}`);
      return words.join(' ');
    }
    case 'limit': {
      const over = p.over ? 'over ' : '';
      if (p.bytes) return `limit rate ${over}${p.rate} bytes/${p.per}${p.burst ? ` burst ${p.burst} bytes` : ''}`;
      return `limit rate ${over}${p.rate}/${p.per}${(p.burst ?? 5) !== 5 ? ` burst ${p.burst} packets` : ''}`;
    }
    case 'nat': {
      if (typeof p.addr === 'object') return `${p.nat} ${p.family} to ${p.addr.keys.map(operandText).join(' . ')} map @${ident(p.addr.map)}`;
      const addr = String(p.addr);
      if (p.family === 'ip6' && p.port !== undefined && addr.includes('-')) throw fail('nat to an IPv6 range with ports');
      const to = p.port === undefined ? addr : `${p.family === 'ip6' ? `[${addr}]` : addr}:${p.port}`;
      return `${p.nat} ${p.family} to ${to}${p.flags?.length ? ` ${p.flags.join(',')}` : ''}`;
    }
    case 'masquerade':
      return `masquerade${p.flags?.length ? ` ${p.flags.join(',')}` : ''}`;
  }
}

/** The verbs nft has for each kind of object. */
const VERBS: Record<Operation['object']['kind'], readonly string[]> = {
  table: ['add', 'create', 'delete', 'destroy', 'flush'],
  chain: ['add', 'create', 'delete', 'destroy', 'flush'],
  set: ['add', 'create', 'delete', 'destroy', 'flush'],
  elements: ['add', 'create', 'delete', 'destroy', 'flush'],
  rule: ['add', 'insert', 'replace', 'delete', 'destroy'],
};

type SetKey = string;
const setKey = (family: Family, table: string, name: string): SetKey => `${family}\0${table}\0${name}`;

function tableText(verb: string, t: Table): string {
  const head = `${verb} table ${t.family} ${ident(t.name)}`;
  return (verb === 'add' || verb === 'create') && t.flags ? `${head} { flags dormant; }` : head;
}

function chainText(verb: string, c: Chain): string {
  const head = `${verb} chain ${c.family} ${ident(c.table)} ${ident(c.name)}`;
  if (verb !== 'add' && verb !== 'create') return head;
  const body: string[] = [];
  if (c.hook !== undefined) {
    const device = c.device === undefined ? '' : ` device ${quoted(c.device)}`;
    body.push(`type ${c.type ?? 'filter'} hook ${c.hook}${device} priority ${c.priority ?? 0};`);
    if (c.policy !== undefined) body.push(`policy ${c.policy};`);
  }
  if (c.comment !== undefined) body.push(`comment ${quoted(c.comment)};`);
  return body.length ? `${head} { ${body.join(' ')} }` : head;
}

function ruleText(verb: string, r: Rule, sets: Map<SetKey, NftSet>): string {
  const head = `${verb} rule ${r.family} ${ident(r.table)} ${ident(r.chain)}`;
  if (verb === 'delete' || verb === 'destroy' || verb === 'replace') {
    if (r.handle === undefined) throw fail(`${verb} rule needs a handle`);
    if (verb !== 'replace') return `${head} handle ${r.handle}`;
  }
  const where = verb === 'replace' ? ` handle ${r.handle}` : r.position !== undefined ? ` position ${r.position}` : '';
  const interval = (name: string): boolean | undefined =>
    sets.get(setKey(r.family, r.table, name))?.flags?.includes('interval');
  const text = raiseRule(r.family, r.exprs, interval).map(partText).join(' ');
  if (text === '') throw fail('a rule without expressions has no nft syntax');
  return `${head}${where} ${text}${r.comment === undefined ? '' : ` comment ${quoted(r.comment)}`}`;
}

function setText(verb: string, s: NftSet): string {
  const kind = s.data === undefined ? 'set' : 'map';
  const head = `${verb} ${kind} ${s.family} ${ident(s.table)} ${ident(s.name)}`;
  if (verb !== 'add' && verb !== 'create') return head;
  const body = [s.typeof !== undefined ? `typeof ${s.typeof} : ct zone;` : `type ${s.key.join(' . ')}${s.data === undefined ? '' : ` : ${s.data}`};`];
  const flags = (s.flags ?? []).flatMap((f) => (f === 'eval' ? ['dynamic'] : f === 'map' || f === 'concat' ? [] : [f]));
  if (flags.length) body.push(`flags ${flags.join(', ')};`);
  if (s.timeout !== undefined) body.push(`timeout ${s.timeout}ms;`);
  if (s.size !== undefined) body.push(`size ${s.size};`);
  if (s.counter) body.push('counter;');
  if (s.comment !== undefined) body.push(`comment ${quoted(s.comment)};`);
  return `${head} { ${body.join(' ')} }`;
}

function elementText(set: NftSet, e: Element, keysOnly: boolean): string {
  if (e.key.length !== set.key.length) throw fail(`element of @${set.name} has ${e.key.length} key values`);
  let text = e.key.map((v, i) => nftValueText(set.key[i]!, v, true)).join(' . ');
  if (keysOnly) return text;
  if (e.timeout !== undefined) text += ` timeout ${e.timeout}ms`;
  if (e.comment !== undefined) text += ` comment ${quoted(e.comment)}`;
  if (e.verdict) text += ` : ${verdictText(e.verdict)}`;
  else if (e.data !== undefined && set.data !== undefined) text += ` : ${nftValueText(set.data, e.data, true)}`;
  return text;
}

function elementsText(verb: string, o: Elements, sets: Map<SetKey, NftSet>, opIndex: number): string {
  const set = sets.get(setKey(o.family, o.table, o.set));
  if (!set) {
    throw new PortwallError('ERR_UNKNOWN_SET', `elements of ${o.family} ${o.table} ${o.set}: the set is not known`, {
      opIndex, object: o, field: 'set',
    });
  }
  const kind = set.data === undefined ? 'set' : 'map';
  if (verb === 'flush') return `flush ${kind} ${o.family} ${ident(o.table)} ${ident(o.set)}`;
  const head = `${verb} element ${o.family} ${ident(o.table)} ${ident(o.set)}`;
  // nft has no syntax for an empty element list; keep the line visible as a comment.
  if (o.elements.length === 0) return `# ${head}: no elements`;
  const keysOnly = verb === 'delete' || verb === 'destroy';
  return `${head} { ${o.elements.map((e) => elementText(set, e, keysOnly)).join(', ')} }`;
}

/**
 * The operations as an `nft -f` script, one line per operation. Throws ERR_RENDER for a rule or name that has
 * no nft spelling and ERR_UNKNOWN_SET for elements of a set that is neither added earlier nor in `knownSets`
 * (errors carry the operation's index).
 */
export function renderOperations(ops: Operation[], knownSets: NftSet[] = []): string {
  const sets = new Map<SetKey, NftSet>(knownSets.map((s) => [setKey(s.family, s.table, s.name), s]));
  const lines = ops.map((op, i) => {
    const o = op.object;
    try {
      if (!VERBS[o.kind].includes(op.verb)) throw fail(`${op.verb} ${o.kind} has no nft syntax`);
      switch (o.kind) {
        case 'table':
          return tableText(op.verb, o);
        case 'chain':
          return chainText(op.verb, o);
        case 'rule':
          return ruleText(op.verb, o, sets);
        case 'set':
          if (op.verb === 'add' || op.verb === 'create') sets.set(setKey(o.family, o.table, o.name), o);
          return setText(op.verb, o);
        case 'elements':
          return elementsText(op.verb, o, sets, i);
      }
    } catch (e) {
      if (e instanceof PortwallError && e.opIndex === undefined) {
        const message = `operation ${i} (${op.verb} ${o.kind}): ${e.message}`;
        throw new PortwallError(e.code, message, { opIndex: i, object: o, cause: e });
      }
      throw e;
    }
  });
  return lines.length ? `${lines.join('\n')}\n` : '';
}
