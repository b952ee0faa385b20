// A table of bad objects, each with the field the error must name.
import { describe, expect, test } from 'vitest';

import { PortwallError } from '../../src/errors.js';
import { Transaction } from '../../src/nft/transaction.js';
import type { Chain, Expr, NftObject, NftSet, Rule, Verb } from '../../src/nft/types.js';

const s4: NftSet = { kind: 'set', family: 'inet', table: 'pw', name: 's4', key: ['ipv4_addr'] };
const iv4: NftSet = { kind: 'set', family: 'inet', table: 'pw', name: 'iv4', key: ['ipv4_addr'], flags: ['interval'] };
const vmap: NftSet = { kind: 'set', family: 'inet', table: 'pw', name: 'vm', key: ['ipv4_addr'], data: 'verdict' };
const KNOWN = [s4, iv4, vmap];

const chain = (c: Partial<Chain>): Chain => ({ kind: 'chain', family: 'inet', table: 'pw', name: 'c', ...c });
const rule = (exprs: Expr[], r: Partial<Rule> = {}): Rule => ({ kind: 'rule', family: 'inet', table: 'portwall', chain: 'ingress', exprs, ...r });
const set = (s: Partial<NftSet>): NftSet => ({ kind: 'set', family: 'inet', table: 'pw', name: 'x', key: ['ipv4_addr'], ...s });
const elems = (set: string, elements: unknown[]): NftObject =>
  ({ kind: 'elements', family: 'inet', table: 'pw', set, elements }) as NftObject;
const cmp4: Expr = { type: 'cmp', sreg: 1, op: 'eq', data: new Uint8Array(4) };

type Case = [name: string, verb: Verb, object: NftObject, field: string, code?: string];

const CASES: Case[] = [
  ['empty table name', 'add', { kind: 'table', family: 'inet', name: '' }, 'name'],
  ['table name over 255 bytes', 'add', { kind: 'table', family: 'inet', name: 'a'.repeat(256) }, 'name'],
  ['table name with a space', 'add', { kind: 'table', family: 'inet', name: 'a b' }, 'name'],
  ['unknown family', 'add', { kind: 'table', family: 'ipx' as 'ip', name: 't' }, 'family'],
  ['unknown table flags', 'add', { kind: 'table', family: 'inet', name: 't', flags: 8 }, 'flags'],
  ['hook without priority', 'add', chain({ hook: 'input', type: 'filter' }), 'priority'],
  ['type without hook', 'add', chain({ type: 'filter', priority: 0 }), 'hook'],
  ['arp has no prerouting', 'add', chain({ family: 'arp', hook: 'prerouting', priority: 0, type: 'filter' }), 'hook'],
  ['ip has no ingress', 'add', chain({ family: 'ip', hook: 'ingress', priority: 0, type: 'filter', device: 'lo' }), 'hook'],
  ['netdev has no input', 'add', chain({ family: 'netdev', hook: 'input', priority: 0, type: 'filter', device: 'lo' }), 'hook'],
  ['policy on a regular chain', 'add', chain({ policy: 'drop' }), 'policy'],
  ['netdev chain without device', 'add', chain({ family: 'netdev', hook: 'ingress', priority: 0, type: 'filter' }), 'device'],
  ['device on an input chain', 'add', chain({ hook: 'input', priority: 0, type: 'filter', device: 'lo' }), 'device'],
  ['nat chain in bridge', 'add', chain({ family: 'bridge', hook: 'prerouting', priority: 0, type: 'nat' }), 'type'],
  ['route chain on input', 'add', chain({ family: 'ip', hook: 'input', priority: 0, type: 'route' }), 'hook'],
  ['non-integer priority', 'add', chain({ hook: 'input', priority: 1.5, type: 'filter' }), 'priority'],
  ['chain comment over 128 bytes', 'add', chain({ comment: 'é'.repeat(65) }), 'comment'],
  ['register out of range', 'add', rule([cmp4, cmp4, cmp4, { type: 'cmp', sreg: 30, op: 'eq', data: new Uint8Array(4) }]), 'exprs[3].sreg'],
  ['register too small for its data', 'add', rule([{ type: 'cmp', sreg: 22, op: 'eq', data: new Uint8Array(16) }]), 'exprs[0].sreg'],
  ['cmp data over 16 bytes', 'add', rule([{ type: 'cmp', sreg: 1, op: 'eq', data: new Uint8Array(17) }]), 'exprs[0].data'],
  ['unknown cmp op', 'add', rule([{ type: 'cmp', sreg: 1, op: 'like' as 'eq', data: new Uint8Array(1) }]), 'exprs[0].op'],
  ['bitwise mask shorter than len', 'add', rule([cmp4, { type: 'bitwise', sreg: 1, dreg: 1, len: 4, mask: new Uint8Array(2), xor: new Uint8Array(4) }]), 'exprs[1].mask'],
  ['payload loads and stores', 'add', rule([{ type: 'payload', base: 'network', offset: 0, len: 4, dreg: 1, sreg: 2 }]), 'exprs[0].sreg'],
  ['meta neither loads nor stores', 'add', rule([{ type: 'meta', key: 'mark' }]), 'exprs[0].dreg'],
  ['unknown meta key', 'add', rule([{ type: 'meta', key: 'colour' as 'mark', dreg: 1 }]), 'exprs[0].key'],
  ['verdict outside register 0', 'add', rule([{ type: 'immediate', dreg: 1 as 0, verdict: { code: 'accept' } }]), 'exprs[0].dreg'],
  ['jump to a bad chain name', 'add', rule([{ type: 'immediate', dreg: 0, verdict: { code: 'jump', chain: 'a b' } }]), 'exprs[0].verdict.chain'],
  ['unknown verdict', 'add', rule([{ type: 'immediate', dreg: 0, verdict: { code: 'maybe' as 'accept' } }]), 'exprs[0].verdict.code'],
  ['lookup of a bad set name', 'add', rule([{ type: 'lookup', sreg: 1, set: '' }]), 'exprs[0].set'],
  ['log level and group together', 'add', rule([{ type: 'log', level: 4, group: 1 }]), 'exprs[0].level'],
  ['log flags with a group', 'add', rule([{ type: 'log', group: 1, flags: 1 }]), 'exprs[0].flags'],
  ['log snaplen without a group', 'add', rule([{ type: 'log', snaplen: 64 }]), 'exprs[0].snaplen'],
  ['unknown expression type', 'add', rule([{ type: 'quota' } as unknown as Expr]), 'exprs[0].type'],
  ['dump-only expression', 'add', rule([{ type: 'other', name: 'quota', data: new Uint8Array() }]), 'exprs[0].type'],
  ['rule comment over 128 bytes', 'add', rule([], { comment: 'x'.repeat(129) }), 'comment'],
  ['replace without handle', 'replace', rule([]), 'handle'],
  ['delete rule without handle', 'delete', rule([]), 'handle'],
  ['add rule with a handle', 'add', rule([], { handle: 4n }), 'handle'],
  ['replace with a position', 'replace', rule([], { handle: 4n, position: 2n }), 'position'],
  ['negative handle', 'delete', rule([], { handle: -1n }), 'handle'],
  ['insert a table', 'insert', { kind: 'table', family: 'inet', name: 't' } as unknown as Rule, 'kind'],
  ['create a rule', 'create', rule([]), 'kind'],
  ['flush a rule', 'flush', rule([]), 'kind'],
  ['flush elements', 'flush', elems('s4', [{ key: ['192.0.2.1'] }]), 'kind'],
  ['set without key', 'add', set({ key: [] }), 'key'],
  ['set key of six fields', 'add', set({ key: ['ipv4_addr', 'inet_service', 'inet_proto', 'ifname', 'mark', 'mark'] }), 'key'],
  ['verdict as a key', 'add', set({ key: ['verdict'] }), 'key[0]'],
  ['unknown key datatype', 'add', set({ key: ['ipv4_addr', 'ipv9_addr' as 'ipv4_addr'] }), 'key[1]'],
  ['unknown data datatype', 'add', set({ data: 'colour' as 'mark' }), 'data'],
  ['unknown set flag', 'add', set({ flags: ['fast' as 'interval'] }), 'flags[0]'],
  ['map flag without data', 'add', set({ flags: ['map'] }), 'flags'],
  ['set timeout without the flag', 'add', set({ timeout: 1000 }), 'timeout'],
  ['set size zero', 'add', set({ size: 0 }), 'size'],
  ['element not an address', 'add', elems('s4', [{ key: ['192.0.2.300'] }]), 'elements[0].key[0]', 'ERR_INVALID_VALUE'],
  ['element with two values for one field', 'add', elems('s4', [{ key: ['192.0.2.1', 80] }]), 'elements[0].key'],
  ['range in a non-interval set', 'add', elems('s4', [{ key: ['192.0.2.0/24'] }]), 'elements[0].key', 'ERR_INVALID_VALUE'],
  ['data in a plain set', 'add', elems('s4', [{ key: ['192.0.2.1'], data: 1 }]), 'elements[0].data'],
  ['verdict map element without verdict', 'add', elems('vm', [{ key: ['192.0.2.1'] }]), 'elements[0].verdict.code'],
  ['element timeout without the set flag', 'add', elems('iv4', [{ key: ['192.0.2.1'], timeout: 5 }]), 'elements[0].timeout'],
  ['element comment over 128 bytes', 'add', elems('iv4', [{ key: ['192.0.2.1'], comment: 'y'.repeat(200) }]), 'elements[0].comment'],
  ['no elements', 'add', elems('s4', []), 'elements'],
  ['elements of an unknown set', 'add', elems('nope', [{ key: ['192.0.2.1'] }]), 'set', 'ERR_UNKNOWN_SET'],
];

describe('validation', () => {
  test.each(CASES)('%s → %s', (_name, verb, object, field, code = 'ERR_INVALID_OBJECT') => {
    const tx = new Transaction({ resolveSet: (f, t, n) => KNOWN.find((s) => s.family === f && s.table === t && s.name === n) });
    (tx[verb] as (o: NftObject) => Transaction).call(tx, object);
    expect(tx.size).toBe(0);
    expect(tx.error).toBeInstanceOf(PortwallError);
    expect(tx.error).toMatchObject({ code, field, object, opIndex: 0 });
  });

  test('the message names the object, the field and the problem', () => {
    const tx = new Transaction().add(rule([cmp4, cmp4, cmp4, { type: 'cmp', sreg: 30, op: 'eq', data: new Uint8Array(4) }]));
    expect(tx.error?.message).toBe('rule inet/portwall/ingress: exprs[3].sreg: register 30 out of range');
  });

  test('values are canonicalised, so two spellings of one element are equal', () => {
    const tx = new Transaction({ resolveSet: () => iv4 })
      .add(elems('iv4', [{ key: ['192.0.2.5/24'] }, { key: ['198.51.100.0-198.51.100.255'] }, { key: ['203.0.113.9/32'] }]));
    expect(tx.error).toBeUndefined();
    expect(tx.operations[0]!.object).toEqual(
      elems('iv4', [{ key: ['192.0.2.0/24'] }, { key: ['198.51.100.0/24'] }, { key: ['203.0.113.9'] }]),
    );
  });

  test('implied set flags and zero optionals are dropped from the canonical form', () => {
    const tx = new Transaction()
      .add(set({ key: ['ipv4_addr', 'inet_service'], data: 'verdict', flags: ['concat', 'map', 'interval'], counter: false }))
      .add(rule([{ type: 'payload', base: 'network', offset: 12, len: 4, dreg: 1, sreg: 0, csumType: 0 }, { type: 'counter', packets: 0n }]));
    expect(tx.error).toBeUndefined();
    expect(tx.operations.map((o) => o.object)).toEqual([
      { kind: 'set', family: 'inet', table: 'pw', name: 'x', key: ['ipv4_addr', 'inet_service'], data: 'verdict', flags: ['interval'] },
      rule([{ type: 'payload', base: 'network', offset: 12, len: 4, dreg: 1 }, { type: 'counter' }]),
    ]);
  });

  test('canonical chains, sets and rules hold exactly their given fields, in one order, none undefined', () => {
    const keysOf = (o: object) => Object.keys(o).join(',');
    const tx = new Transaction({ resolveSet: () => undefined })
      .add(chain({ hook: 'input', priority: 0, type: 'filter', policy: undefined, comment: 'c' }))
      .add(chain({ handle: 7n, device: undefined }))
      .add(chain({ family: 'netdev', hook: 'ingress', priority: -5, type: 'filter', policy: 'drop', device: 'lo', handle: 3n }))
      .add(set({ data: undefined, size: 64, counter: true, timeout: 5000, flags: ['timeout'], comment: 'k', handle: 9n }))
      .delete(set({ flags: ['interval'], size: 8 }))
      .delete(rule([], { handle: 4n }))
      .destroy(rule([], { handle: 5n, comment: 'gone' }));
    expect(tx.error).toBeUndefined();
    const objects = tx.operations.map((o) => o.object);
    expect(objects.map(keysOf)).toEqual([
      'kind,family,table,name,hook,priority,type,comment',
      'kind,family,table,name,handle',
      'kind,family,table,name,handle,hook,priority,type,policy,device',
      'kind,family,table,name,handle,key,flags,counter,comment,size,timeout',
      'kind,family,table,name,key',
      'kind,family,table,chain,handle,exprs',
      'kind,family,table,chain,handle,exprs',
    ]);
    for (const o of objects) expect(Object.values(o)).not.toContain(undefined);
    expect(objects[3]).toStrictEqual({
      kind: 'set', family: 'inet', table: 'pw', name: 'x', handle: 9n, key: ['ipv4_addr'], flags: ['timeout'], counter: true, comment: 'k', size: 64, timeout: 5000,
    });
    expect(objects[4]).toStrictEqual({ kind: 'set', family: 'inet', table: 'pw', name: 'x', key: [] });
  });

  test('validation does not keep references to the caller\'s objects', () => {
    const data = Uint8Array.of(1, 2, 3, 4);
    const tx = new Transaction().add(rule([{ type: 'cmp', sreg: 1, op: 'eq', data }]));
    data[0] = 9;
    expect((tx.operations[0]!.object as Rule).exprs[0]).toEqual({ type: 'cmp', sreg: 1, op: 'eq', data: Uint8Array.of(1, 2, 3, 4) });
  });
});
