/**
 * The claim store (src/compile/claims.ts): replacing a unit's claims yields exactly the element changes, slot
 * claims go to the lowest rank, a unit's first claim on a slot is the one that counts — also when the store
 * skips the unchanged head of a unit's list — and a port states its member-set claims last.
 */
import { describe, expect, test } from 'vitest';

import { ClaimStore, own, type Claim, type SetDelta } from '../../src/compile/claims.js';
import { portClaims } from '../../src/compile/layout-units.js';
import { memberSetName } from '../../src/compile/names.js';
import { compilePolicy } from '../../src/compile/policy.js';
import { validateState } from '../../src/model/validate.js';
import { DEFAULT_CONFIG } from '../../src/model/types.js';
import { port, state, webGroup } from '../helpers/states.js';

const el = (set: string, key: string, comment?: string): Claim => own(set, { key: [key], ...(comment ? { comment } : {}) });
const keys = (d: SetDelta | undefined) => ({ added: (d?.added ?? []).map((e) => String(e.key[0])), removed: (d?.removed ?? []).map((e) => String(e.key[0])) });

describe('claim store', () => {
  test('replacing a unit\'s claims changes exactly the elements that differ, before, in and after its head', () => {
    const s = new ClaimStore();
    s.set('p1', [el('a', '1'), el('a', '2'), el('b', '3'), el('b', '4')]);
    s.takeDelta();
    s.set('p1', [el('a', '1'), el('a', '2'), el('b', '4'), el('b', '5')]);
    const d = s.takeDelta();
    expect(d.has('a')).toBe(false);
    expect(keys(d.get('b'))).toEqual({ added: ['5'], removed: ['3'] });
    expect([...s.elements('b').keys()].sort()).toEqual(['4', '5']);
    // The same claims again (new objects, same content): nothing changes.
    s.set('p1', [el('a', '1'), el('a', '2'), el('b', '4'), el('b', '5')]);
    expect(s.takeDelta().size).toBe(0);
    // A changed comment is a changed element; a shorter list drops the rest.
    s.set('p1', [el('a', '1', 'new')]);
    const d2 = s.takeDelta();
    expect(keys(d2.get('a'))).toEqual({ added: ['1'], removed: ['1', '2'] });
    expect(d2.get('a')!.added![0]!.comment).toBe('new');
    expect(keys(d2.get('b'))).toEqual({ added: [], removed: ['4', '5'] });
    // A side with no elements is absent, not an empty list.
    expect(d2.get('b')!.added).toBeUndefined();
    s.set('p1', []);
    expect(s.claims('p1')).toEqual([]);
    expect(s.setIds()).toEqual([]);
  });

  test('an element two units claim stays until both let go', () => {
    const s = new ClaimStore();
    s.set('p1', [el('m', '192.0.2.1'), el('m', '192.0.2.9')]);
    s.set('p2', [el('m', '192.0.2.9')]);
    s.takeDelta();
    s.set('p1', [el('m', '192.0.2.1')]);
    expect(s.takeDelta().size).toBe(0);
    s.set('p2', []);
    expect(keys(s.takeDelta().get('m'))).toEqual({ added: [], removed: ['192.0.2.9'] });
  });

  test('one claim object given to two units is held by each of them (a claim is its own holder)', () => {
    const s = new ClaimStore();
    const shared = el('m', '192.0.2.9');
    const slot: Claim = { slot: 'own4|192.0.2.5', rank: '0', items: [{ setId: 'z', element: { key: ['192.0.2.5'], data: 1 } }] };
    s.set('p1', [shared, slot]);
    s.set('p2', [shared, slot]);
    s.takeDelta();
    s.set('p1', []);
    expect(s.takeDelta().size).toBe(0);
    expect([...s.elements('m').keys()]).toEqual(['192.0.2.9']);
    expect(s.elements('z').get('192.0.2.5')!.data).toBe(1);
    s.set('p2', []);
    const d = s.takeDelta();
    expect(keys(d.get('m'))).toEqual({ added: [], removed: ['192.0.2.9'] });
    expect(keys(d.get('z'))).toEqual({ added: [], removed: ['192.0.2.5'] });
  });

  test('slot claims: the lowest rank wins, the next takes over when it goes', () => {
    const s = new ClaimStore();
    const slot = (rank: string, data: number): Claim => ({ slot: 'own4|192.0.2.5', rank, items: [{ setId: 'z', element: { key: ['192.0.2.5'], data } }] });
    s.set('p2', [el('x', 'p2'), slot('1p2', 2)]);
    s.set('p1', [el('x', 'p1'), slot('0p1', 1)]);
    expect(s.elements('z').get('192.0.2.5')!.data).toBe(1);
    s.takeDelta();
    s.set('p1', [el('x', 'p1')]);
    expect(s.elements('z').get('192.0.2.5')!.data).toBe(2);
  });

  test('a unit\'s first claim on a slot counts, whether the head of its list changed or not', () => {
    const first = (head: Claim[]) => {
      const s = new ClaimStore();
      s.set('p1', [...head, el('b', 'k', 'one'), el('b', 'k', 'two')]);
      return s.elements('b').get('k')!.comment;
    };
    expect(first([])).toBe('one');
    const s = new ClaimStore();
    s.set('p1', [el('a', '1'), el('b', 'k', 'one')]);
    // Unchanged head [a 1, b k one]; a later duplicate on the same slot does not replace it.
    s.set('p1', [el('a', '1'), el('b', 'k', 'one'), el('b', 'k', 'two')]);
    expect(s.elements('b').get('k')!.comment).toBe('one');
    // A changed head: the new first claim counts.
    s.set('p1', [el('a', '2'), el('b', 'k', 'two'), el('b', 'k', 'one')]);
    expect(s.elements('b').get('k')!.comment).toBe('two');
    expect([...s.elements('a').keys()]).toEqual(['2']);
  });
});

describe('port claims', () => {
  test('member-set claims come last, so a port joining or leaving a group leaves the head of its claims alike', () => {
    const group = { ...webGroup('sg-db'), security_group_rules: [{ id: 'r-db', direction: 'ingress' as const, ethertype: 'IPv4' as const, protocol: 'tcp', port_range_min: 5432, port_range_max: 5432, remote_group_id: 'sg-web' }] };
    const claimsOf = (groups: string[]) => {
      const ir = compilePolicy(validateState(state('routed', [webGroup(), group], [port(1, groups), port(2, ['sg-db'])]), DEFAULT_CONFIG), DEFAULT_CONFIG);
      const members = new Map(ir.members.map((m) => [m.groupId, new Set<4 | 6>([4, 6])]));
      return portClaims(ir.ports.find((p) => p.portId === 'port-00001')!, members);
    };
    const inWeb = claimsOf(['sg-web']);
    const out = claimsOf([]);
    const member = memberSetName('sg-web', 4);
    const at = inWeb.findIndex((c) => 'setId' in c && c.setId === `inet:${member}`);
    expect(at).toBeGreaterThan(0);
    expect(inWeb.slice(at).every((c) => 'setId' in c && /^inet:m[46]_/.test(c.setId))).toBe(true);
    // Leaving the group: the claims before the member ones are the same (the store keeps them as they are).
    expect(JSON.stringify(out)).toBe(JSON.stringify(inWeb.slice(0, at)));
  });
});
