/**
 * The long-lived handle's incremental API on the fake binding (no root): validation of one object against the
 * handle's state (the same named errors as a state file, nothing sent), refusals that leave the state as it
 * was, and no listing once the handle has adopted.
 */
import { describe, expect, test } from 'vitest';

import { Portwall } from '../../src/apply/portwall.js';
import { openNft } from '../../src/nft/client.js';
import { FakeNft } from '../../src/nft/fake.js';
import { validateState } from '../../src/model/validate.js';
import { memberNetSetName, zoneSetName } from '../../src/compile/names.js';
import { busyGroup, network, port, state, webGroup } from '../helpers/states.js';

function open(config = {}) {
  const fake = new FakeNft();
  return { fake, pw: Portwall.open({ binding: fake, conntrack: null, profileGc: false, config }) };
}

const base = () => state('routed', [webGroup(), busyGroup('sg-busy', 5)], [port(1, ['sg-web']), port(2, ['sg-web'])]);

describe('the incremental API', () => {
  test('needs a whole state first', async () => {
    const { pw } = open();
    await expect(pw.upsertPort(port(3, ['sg-web']))).rejects.toMatchObject({ code: 'ERR_TRANSACTION_STATE' });
  });

  test('a port is validated against the state: every clash named by field, nothing sent', async () => {
    const { fake, pw } = open();
    await pw.apply(base());
    const commits = fake.commits;
    const clash = port(3, ['sg-web', 'sg-nope'], { device: 'tap1', mac_address: 'fa:16:3e:00:00:01', fixed_ips: [{ ip_address: '192.0.2.2' }] });
    const err = await pw.upsertPort(clash).catch((e: unknown) => e) as { code: string; problems: { path: string }[] };
    expect(err.code).toBe('ERR_INVALID_STATE');
    expect(err.problems.map((p) => p.path)).toEqual(expect.arrayContaining([
      'ports[0] (tap1).security_groups[1]', 'ports[0] (tap1).device', 'ports[0] (tap1).mac_address', 'ports[0] (tap1).fixed_ips[0].ip_address',
    ]));
    expect(fake.commits).toBe(commits);
    // The same port replacing itself is no clash.
    await expect(pw.upsertPort(port(1, ['sg-busy']))).resolves.toMatchObject({ changed: true });
  });

  test('a floating address is no port\'s fixed IP, whichever comes second, as a whole state says', async () => {
    const { fake, pw } = open();
    const fip = (id: string, address: string, portId: string | null = null) => ({ id, floating_ip_address: address, port_id: portId });
    const start = { ...base(), floatingips: [fip('fip-1', '203.0.113.240', 'port-00001')] };
    await pw.apply(start);
    const commits = fake.commits;
    const refusal = (p: Promise<unknown>) => p.then(() => 'accepted', (e: { code: string; problems: { path: string; message: string }[] }) => e);
    // A new port whose fixed IP is the floating address: refused, on the port's field.
    const taking = port(3, ['sg-web'], { fixed_ips: [{ ip_address: '203.0.113.240' }] });
    expect(() => validateState({ ...start, ports: [...start.ports!, taking] })).toThrow(/is a fixed IP of port "port-00003"/);
    expect(await refusal(pw.upsertPort(taking))).toMatchObject({
      code: 'ERR_INVALID_STATE', problems: [{ path: 'ports[0] (tap3).fixed_ips[0].ip_address', message: '"203.0.113.240" is the address of floating IP "fip-1"' }],
    });
    // A port added after the whole state was checked, then a floating IP on its fixed IP: refused as well
    // (the whole state's check must not answer from what it saw of the ports then).
    const later = port(4, ['sg-web'], { fixed_ips: [{ ip_address: '198.51.100.50' }] });
    await pw.upsertPort(later);
    expect(() => validateState({ ...start, ports: [...start.ports!, later], floatingips: [...start.floatingips, fip('fip-2', '198.51.100.50')] }))
      .toThrow(/is a fixed IP of port "port-00004"/);
    expect(await refusal(pw.upsertFloatingIp(fip('fip-2', '198.51.100.50')))).toMatchObject({
      code: 'ERR_INVALID_STATE', problems: [{ path: 'floatingips[0] (fip-2).floating_ip_address', message: '"198.51.100.50" is a fixed IP of port "port-00004"' }],
    });
    expect(fake.commits).toBe(commits + 1);
    // Elsewhere both go through: the checks refuse the clash, not the objects.
    await expect(pw.upsertFloatingIp(fip('fip-2', '203.0.113.241', 'port-00002'))).resolves.toMatchObject({ changed: true });
    await expect(pw.upsertPort(port(5, ['sg-web'], { fixed_ips: [{ ip_address: '198.51.100.51' }] }))).resolves.toMatchObject({ changed: true });
  });

  test('one fixed address has one floating IP on the host, even when ports of two networks hold it', async () => {
    const { fake, pw } = open();
    const fip = (id: string, address: string, portId: string) => ({ id, floating_ip_address: address, port_id: portId });
    // port-00001 (net-a) and port-00003 (net-b) both hold 192.0.2.2 (overlapping tenants).
    const twin = port(3, ['sg-web'], { fixed_ips: [{ ip_address: '192.0.2.2' }] }, 'net-b');
    const start = { ...base(), networks: [network('routed'), network('routed', 'net-b', 102, 'br-b')], floatingips: [fip('fip-1', '203.0.113.240', 'port-00001')] };
    await pw.apply({ ...start, ports: [...start.ports!, twin] });
    const commits = fake.commits;
    const second = fip('fip-2', '203.0.113.241', 'port-00003');
    const message = '"192.0.2.2/32" is also port "port-00001"\'s (another network), which has floating IP "fip-1": the host\'s NAT maps a fixed IP to one floating IP';
    await expect(pw.upsertFloatingIp(second)).rejects.toMatchObject({
      code: 'ERR_INVALID_STATE', problems: [{ path: 'floatingips[0] (fip-2).fixed_ip_address', message }],
    });
    expect(fake.commits).toBe(commits);
    expect(() => validateState({ ...start, ports: [...start.ports!, twin], floatingips: [...start.floatingips, second] })).toThrow(/is also port "port-00001"'s \(another network\)/);
    // Once the first is disassociated, the other network's port may have it.
    await pw.upsertFloatingIp({ ...fip('fip-1', '203.0.113.240', 'port-00001'), port_id: null });
    await expect(pw.upsertFloatingIp(second)).resolves.toMatchObject({ changed: true });
  });

  test('a port change that would strand a floating IP is refused, naming each one; moved or disassociated, it is not', async () => {
    const { fake, pw } = open();
    const fip = (id: string, address: string, portId: string | null, fixed?: string) =>
      ({ id, floating_ip_address: address, port_id: portId, ...(fixed ? { fixed_ip_address: fixed } : {}) });
    const ips = (...a: string[]) => ({ fixed_ips: a.map((ip_address) => ({ ip_address })) });
    const ports = [port(1, ['sg-web'], ips('192.0.2.70', '192.0.2.71')), port(2, ['sg-web'], ips('192.0.2.72', '192.0.2.73'))];
    await pw.apply({ ...state('routed', [webGroup()], ports),
      floatingips: [fip('fip-1', '203.0.113.240', 'port-00001', '192.0.2.70'), fip('fip-2', '203.0.113.241', 'port-00001', '192.0.2.71'),
        fip('fip-3', '203.0.113.242', 'port-00002', '192.0.2.72')] });
    const commits = fake.commits;
    const refusal = (p: Promise<unknown>) => p.then(() => 'accepted', (e: { code: string; problems: { path: string; message: string }[] }) => e);
    const onPort1 = ['fip-1', 'fip-2'].map((id) => expect.objectContaining({ message: expect.stringContaining(`floating IP "${id}" maps`) as unknown }));
    const removed = await refusal(pw.removePort('port-00001')) as { code: string; problems: { path: string }[] };
    expect(removed).toMatchObject({ code: 'ERR_INVALID_STATE' });
    expect(removed.problems).toEqual(expect.arrayContaining(onPort1));
    expect(removed.problems.map((p) => p.path)).toEqual(['ports (port-00001)', 'ports (port-00001)']);
    // The fixed IP they map taken away: refused on the port's fixed_ips.
    const moved = await refusal(pw.upsertPort(port(1, ['sg-web'], ips('192.0.2.77')))) as { problems: { path: string }[] };
    expect(moved.problems).toEqual(expect.arrayContaining(onPort1));
    expect(moved.problems.map((p) => p.path)).toEqual(['ports (port-00001).fixed_ips', 'ports (port-00001).fixed_ips']);
    expect(fake.commits).toBe(commits);
    // fip-1 moved to port 2 and fip-2 disassociated: port 1 goes, and port 2 (now holding two) does not.
    await pw.upsertFloatingIp(fip('fip-1', '203.0.113.240', 'port-00002', '192.0.2.73'));
    await pw.upsertFloatingIp(fip('fip-2', '203.0.113.241', null));
    await expect(pw.removePort('port-00001')).resolves.toMatchObject({ changed: true });
    const left = await refusal(pw.removePort('port-00002')) as { problems: { message: string }[] };
    expect(left.problems.map((p) => /floating IP "([^"]+)"/.exec(p.message)![1]).sort()).toEqual(['fip-1', 'fip-3']);
  });

  test('policy() follows a group change: a group that becomes a remote group has members there', async () => {
    const { pw } = open();
    const doc = (remote: boolean) => state('routed', [webGroup(), busyGroup('sg-busy', 5, remote ? 'sg-web' : undefined)],
      [port(1, ['sg-web']), port(2, ['sg-busy'])]);
    await pw.apply(doc(false));
    const families = () => pw.policy()!.members.map((m) => `${m.groupId}/${m.family}`);
    expect(families()).toEqual(['sg-web/4']);
    // sg-busy's IPv6 rules now name sg-web: explain and the published ipsets read these members.
    await pw.upsertGroup(busyGroup('sg-busy', 5, 'sg-web'));
    expect(families()).toEqual(['sg-web/4', 'sg-web/6']);
    expect(pw.policy()!.members).toEqual((await pw.plan(doc(true))).ir.members);
  });

  test('the profile collector waits for a quiet period, then collects at most `max` profiles per batch', async () => {
    const fake = new FakeNft();
    const delayMs = 400;
    const pw = Portwall.open({ binding: fake, conntrack: null, profileGc: { delayMs, max: 1 } });
    const groups = [webGroup(), webGroup('sg-b'), webGroup('sg-c')];
    // Three profiles in use (sg-web; sg-web + sg-b; sg-web + sg-c), then two of them unused.
    await pw.apply(state('routed', groups, [port(1, ['sg-web']), port(2, ['sg-web', 'sg-b']), port(3, ['sg-web', 'sg-c'])]));
    await pw.removePort('port-00002');
    await pw.removePort('port-00003');
    const commits = fake.commits;
    expect(pw.unusedProfiles).toBe(2);
    // A change within the quiet period starts the wait again.
    await new Promise((r) => setTimeout(r, delayMs / 2));
    await pw.upsertPort(port(4, ['sg-web']));
    await new Promise((r) => setTimeout(r, delayMs / 2));
    expect(pw.unusedProfiles).toBe(2);
    const afterChange = fake.commits;
    expect(afterChange).toBe(commits + 1);
    // Then one profile per batch: two batches, bounded in time.
    const deadline = Date.now() + 5000;
    while (pw.unusedProfiles > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(pw.unusedProfiles).toBe(0);
    expect(fake.commits - afterChange).toBe(2);
    await pw.close();
  });

  test('group slots: a profile of more groups than any before adds a slot map, the last such collected removes it', async () => {
    const { fake, pw } = open();
    const groups = [webGroup(), busyGroup('sg-busy', 3), webGroup('sg-c')];
    const start = state('routed', groups, [port(1, ['sg-web']), port(2, ['sg-web', 'sg-busy'])]);
    await pw.apply(start);
    const slotMaps = async () => (await openNft({ binding: fake }).list({ table: 'portwall' })).objects
      .flatMap((o) => (o.kind === 'set' && /^prof_(in|out)/.test(o.name) ? [o.name] : [])).sort();
    expect(await slotMaps()).toEqual(['prof_in', 'prof_in_s1', 'prof_out', 'prof_out_s1']);
    // Three groups: a third slot, its elements jumping to each group's chain in turn.
    const r = await pw.upsertPort(port(3, ['sg-web', 'sg-busy', 'sg-c']));
    expect(r.plan).toMatch(/create set inet portwall prof_in_s2/);
    expect(await slotMaps()).toEqual(['prof_in', 'prof_in_s1', 'prof_in_s2', 'prof_out', 'prof_out_s1', 'prof_out_s2']);
    // The port gone, its profile is unused but not collected: the slot stays until it is.
    await pw.removePort('port-00003');
    expect(await slotMaps()).toContain('prof_in_s2');
    expect(await pw.collectProfiles()).toBe(1);
    expect(await slotMaps()).toEqual(['prof_in', 'prof_in_s1', 'prof_out', 'prof_out_s1']);
    // As a fresh handle lays the state out.
    expect((await Portwall.open({ binding: fake, conntrack: null, profileGc: false }).plan(start)).operations).toEqual([]);
  });

  test('groups: rule ids stay unique, a group in use cannot go, a kind change may not mix a port', async () => {
    const { fake, pw } = open();
    await pw.apply(base());
    const commits = fake.commits;
    const stealing = { id: 'sg-new', security_group_rules: [{ ...webGroup().security_group_rules![0]! }] };
    await expect(pw.upsertGroup(stealing)).rejects.toMatchObject({ code: 'ERR_INVALID_STATE', message: expect.stringContaining('duplicate rule id') });
    await expect(pw.upsertGroup({ id: 'sg-x', security_group_rules: [{ id: 'x1', direction: 'ingress', ethertype: 'IPv4', remote_group_id: 'sg-gone' }] }))
      .rejects.toMatchObject({ field: 'security_groups[0] (sg-x).security_group_rules[0] (x1).remote_group_id' });
    await expect(pw.removeGroup('sg-web')).rejects.toMatchObject({ message: expect.stringContaining('in use by port') });
    await pw.upsertPort(port(2, ['sg-web', 'sg-busy']));
    await expect(pw.upsertGroup({ ...busyGroup('sg-busy', 5), stateful: false })).rejects.toMatchObject({ field: 'security_groups[0] (sg-busy).stateful' });
    expect(fake.commits).toBe(commits + 1);
    await pw.removePort('port-00002');
    await expect(pw.removeGroup('sg-busy')).resolves.toMatchObject({ changed: true });
    await expect(pw.removePort('port-00002')).rejects.toMatchObject({ code: 'ERR_INVALID_STATE' });
  });

  test('a change refused half way (no tag left) leaves the state as it was', async () => {
    // markMask 0x7: the flag is 0x4, three tags (1-3) for bridged ports.
    const { pw } = open({ markMask: 0x7 });
    await pw.apply(state('bridged', [webGroup()], [port(1, ['sg-web']), port(2, ['sg-web']), port(3, ['sg-web'])]));
    await expect(pw.upsertPort(port(4, ['sg-web']))).rejects.toMatchObject({ code: 'ERR_INVALID_STATE', message: expect.stringContaining('has only 3 tags') });
    expect(pw.policy()!.ports.map((p) => p.portId).sort()).toEqual(['port-00001', 'port-00002', 'port-00003']);
    await pw.removePort('port-00003');
    await expect(pw.upsertPort(port(4, ['sg-web']))).resolves.toMatchObject({ changed: true });
    expect((await pw.plan(state('bridged', [webGroup()], [port(1, ['sg-web']), port(2, ['sg-web']), port(4, ['sg-web'])]))).operations).toEqual([]);
  });

  test('after adopting, changes list nothing; another writer makes the next change adopt once', async () => {
    const { fake, pw } = open();
    await pw.apply(base());
    const lists = () => [...fake.lists.values()].reduce((a, b) => a + b, 0);
    const before = lists();
    await pw.upsertPort(port(3, ['sg-web']));
    await pw.removePort('port-00003');
    await pw.upsertGroup(busyGroup('sg-busy', 7));
    // A whole state on a trusted handle: computed against its memory too, no listing.
    const whole = { ...base(), security_groups: [webGroup(), busyGroup('sg-busy', 7)], ports: [...base().ports!, port(5, ['sg-busy'])] };
    await expect(pw.apply(whole)).resolves.toMatchObject({ changed: true, adopted: false });
    await pw.removePort('port-00005');
    expect(lists()).toBe(before);
    // Someone else commits (through their own handle): ours is refused once, re-lists, and still applies.
    const other = Portwall.open({ binding: fake, conntrack: null, profileGc: false });
    await other.apply(base());
    await other.upsertPort(port(9, ['sg-web']));
    const r = await pw.upsertPort(port(3, ['sg-web']));
    expect(r.adopted).toBe(true);
    expect(lists()).toBeGreaterThan(before);
    const mine = base();
    mine.security_groups = [webGroup(), busyGroup('sg-busy', 7)];
    mine.ports = [...mine.ports!, port(3, ['sg-web'])];
    expect((await pw.plan(mine)).operations).toEqual([]);
  });

  test('batch: one commit for several edits; each checked after the ones before it; the invalid ones left out', async () => {
    const { fake, pw } = open();
    await pw.apply(base());
    const commits = fake.commits;
    const fresh = { id: 'sg-fresh', security_group_rules: [{ id: 'f1', direction: 'ingress' as const, ethertype: 'IPv4' as const, protocol: 'tcp', port_range_min: 7, port_range_max: 7 }] };
    const r = await pw.batch([
      { op: 'upsertGroup', group: fresh },
      { op: 'upsertPort', port: port(3, ['sg-fresh']) },            // valid only after the group above
      { op: 'upsertPort', port: port(4, ['sg-nope']) },             // unknown group: left out
      { op: 'removePort', id: 'port-00002' },
      { op: 'removePort', id: 'port-00077' },                       // unknown port: left out
    ]);
    expect(fake.commits).toBe(commits + 1);
    expect(r.changed).toBe(true);
    expect(r.refused.map((x) => x?.code)).toEqual([undefined, undefined, 'ERR_INVALID_STATE', undefined, 'ERR_INVALID_STATE']);
    expect(r.refused[2]!.problems[0]!.path).toContain('security_groups');
    const want = base();
    want.security_groups = [...want.security_groups!, fresh];
    want.ports = [port(1, ['sg-web']), port(3, ['sg-fresh'])];
    expect((await pw.plan(want)).operations).toEqual([]);
    // Its plan is the batch's, written out when first read (a getter until then: an agent never reads it).
    expect(Object.getOwnPropertyDescriptor(r, 'plan')?.get).toBeTypeOf('function');
    expect(r.plan).toMatch(/^add chain inet portwall gi_sg_fresh_/m);
    // Nothing valid: nothing sent.
    const none = await pw.batch([{ op: 'removePort', id: 'port-00077' }]);
    expect(none.changed).toBe(false);
    expect(fake.commits).toBe(commits + 1);
  });

  test('resync lists the kernel and repairs what someone else changed, even at the same generation count', async () => {
    const { fake, pw } = open();
    await pw.apply(base());
    const other = Portwall.open({ binding: fake, conntrack: null, profileGc: false });
    await other.apply(state('routed', [webGroup()], [port(1, ['sg-web'])]));
    const r = await pw.resync();
    expect(r.adopted).toBe(true);
    expect(r.changed).toBe(true);
    expect((await pw.plan(base())).operations).toEqual([]);
    expect((await pw.resync()).changed).toBe(false);
  });

  test('a prefix wider than a host: a member-prefix set and a rule for its groups, a zone prefix set for its network; all go with it', async () => {
    const { fake, pw } = open();
    await pw.apply(base());
    // A second handle plans against what the first programmed: no operation = what a fresh apply programs.
    const fresh = Portwall.open({ binding: fake, conntrack: null, profileGc: false });
    const groups = [webGroup(), busyGroup('sg-busy', 5)];
    const plain = port(3, ['sg-web']);
    const paired = port(3, ['sg-web'], { allowed_address_pairs: [{ ip_address: '203.0.113.128/26' }] });
    const net = memberNetSetName('sg-web', 4);
    await pw.upsertPort(paired);
    const withPair = state('routed', groups, [port(1, ['sg-web']), port(2, ['sg-web']), paired]);
    expect((await fresh.plan(withPair)).operations).toEqual([]);
    expect((await fresh.plan(base())).text).toContain(`delete set inet portwall ${net}`);
    await pw.upsertPort(plain);
    expect((await fresh.plan(state('routed', groups, [port(1, ['sg-web']), port(2, ['sg-web']), plain]))).operations).toEqual([]);
    await pw.upsertPort(paired);
    await pw.removePort(paired.id);
    expect((await fresh.plan(base())).operations).toEqual([]);
    expect((await fresh.plan(withPair)).text).toContain(`create set inet portwall ${net}`);
    // A port in no group owning a prefix: its network's zone set of prefix ranges alone comes and goes.
    const zoned = port(4, [], { allowed_address_pairs: [{ ip_address: '203.0.113.192/26' }] });
    const znet = zoneSetName('net-a', 'net4');
    await pw.upsertPort(zoned);
    expect((await fresh.plan(state('routed', groups, [port(1, ['sg-web']), port(2, ['sg-web']), zoned]))).operations).toEqual([]);
    expect((await fresh.plan(base())).text).toContain(`delete set inet portwall_raw ${znet}`);
    await pw.removePort(zoned.id);
    // (Its rule profile, of no group, stays until profiles are collected; the zone set is gone.)
    expect((await fresh.plan(base())).text).not.toContain(znet);
  });

  test('the untracking rules and sets come with the first stateless port and go with the last', async () => {
    const { fake, pw } = open();
    const fresh = Portwall.open({ binding: fake, conntrack: null, profileGc: false });
    const sl = { id: 'sg-sl', stateful: false, security_group_rules: [{ id: 'sl1', direction: 'ingress' as const, ethertype: 'IPv4' as const }] };
    const groups = (stateful: boolean) => [webGroup(), busyGroup('sg-busy', 5), { ...sl, stateful }];
    const ports = [port(1, ['sg-web']), port(2, ['sg-web'])];
    const slPort = port(3, ['sg-sl']);
    const without = state('routed', groups(false), ports);
    await pw.apply(without);
    expect((await fresh.plan(without)).operations).toEqual([]);
    expect((await fresh.plan(state('routed', groups(false), [...ports, slPort]))).text).toContain('create set inet portwall_raw stateless_dev');
    await pw.upsertPort(slPort);
    expect((await fresh.plan(state('routed', groups(false), [...ports, slPort]))).operations).toEqual([]);
    expect((await fresh.plan(without)).text).toContain('delete set inet portwall_raw stateless_dev');
    // The group turning stateful makes its port stateful: nothing is stateless any more.
    await pw.upsertGroup({ ...sl, stateful: true });
    expect((await fresh.plan(state('routed', groups(true), [...ports, slPort]))).operations).toEqual([]);
    await pw.upsertGroup(sl);
    await pw.removePort(slPort.id);
    await pw.collectProfiles();
    expect((await fresh.plan(without)).operations).toEqual([]);
  });

  test('current(): true while nobody else committed since the handle last did', async () => {
    const { fake, pw } = open();
    expect(await pw.current()).toBe(false);
    await pw.apply(base());
    expect(await pw.current()).toBe(true);
    await pw.upsertPort(port(3, ['sg-web']));
    expect(await pw.current()).toBe(true);
    const other = Portwall.open({ binding: fake, conntrack: null, profileGc: false });
    await other.apply(base());
    expect(await pw.current()).toBe(false);
  });
});

