/**
 * The CloudStack flavour and the layer-2 guards (docs/dataplane.md, "Flavours", "Layer-2 guards") on small
 * states, no root: the compiled rules, the evaluator, the nft layout (constant rules, per-port hash elements),
 * the iptables rendering, and a port change through the handle staying an element-only batch.
 */
import { describe, expect, test } from 'vitest';

import { Portwall } from '../../src/apply/portwall.js';
import { evaluate } from '../../src/compile/evaluate.js';
import { layout } from '../../src/compile/layout.js';
import { GUARD_SETS, groupSetName } from '../../src/compile/names.js';
import { compilePolicy } from '../../src/compile/policy.js';
import type { NetworkInput } from '../../src/model/schema.js';
import { validateState } from '../../src/model/validate.js';
import { DEFAULT_CONFIG } from '../../src/model/types.js';
import { FakeNft } from '../../src/nft/fake.js';
import { Transaction } from '../../src/nft/transaction.js';
import type { Elements, NftObject, Rule } from '../../src/nft/types.js';
import { renderIptables } from '../../src/render/iptables.js';
import { network, port, state, webGroup, type Mode } from '../helpers/states.js';

type Group = NonNullable<ReturnType<typeof state>['security_groups']>[number];
const ingressOnly: Group = {
  id: 'sg-in', security_group_rules: [{ id: 'ssh', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 22, port_range_max: 22 }],
};
const withEgress = (): Group => ({
  id: 'sg-in', security_group_rules: [...ingressOnly.security_group_rules!,
    { id: 'web-out', direction: 'egress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 443, port_range_max: 443 }],
});

/** A state with one network of the given flavour (and extra network fields), ports 1 and 2 in sg-in. */
function csState(mode: Mode, groups: Group[] = [ingressOnly], net: Partial<NetworkInput> = { flavor: 'cloudstack' }) {
  const s = state(mode, groups, [port(1, ['sg-in']), port(2, ['sg-in'])]);
  Object.assign(s.networks[0]!, net);
  return s;
}
const compile = (doc: unknown) => compilePolicy(validateState(doc), DEFAULT_CONFIG);
const tcp = (dst: string, dport: number) => ({ family: 4 as const, protocol: 6, src: '192.0.2.2', dst, sport: 40000, dport });
const udp = (src: string, dst: string, sport: number, dport: number) => ({ family: 4 as const, protocol: 17, src, dst, sport, dport });

describe('the CloudStack flavour', () => {
  test('no egress rule: egress allowed; ingress only by rule; DNS always; a Neutron port with the same group sends nothing', () => {
    const ir = compile(csState('routed'));
    const p = ir.ports[0]!;
    expect(evaluate(ir, p, 'egress', tcp('203.0.113.9', 8080))).toEqual({ allowed: true, reason: 'rule', ruleId: '@cloudstack:egress4' });
    expect(evaluate(ir, p, 'egress', { family: 6, protocol: 17, src: '2001:db8:1::1', dst: '2001:db8:ff::9', sport: 4000, dport: 9 }).allowed).toBe(true);
    expect(evaluate(ir, p, 'ingress', { ...tcp('192.0.2.2', 22), src: '203.0.113.9' }).ruleId).toBe('ssh');
    expect(evaluate(ir, p, 'ingress', { ...tcp('192.0.2.2', 80), src: '203.0.113.9' })).toEqual({ allowed: false, reason: 'default' });
    const neutron = compile(csState('routed', [ingressOnly], {}));
    expect(evaluate(neutron, neutron.ports[0]!, 'egress', tcp('203.0.113.9', 8080))).toEqual({ allowed: false, reason: 'default' });
    expect(evaluate(neutron, neutron.ports[0]!, 'egress', udp('192.0.2.2', '203.0.113.53', 4000, 53)).allowed).toBe(false);
  });

  test('one egress rule in any of the port\'s groups restricts egress to the rules; DNS stays open (udp and tcp, both families)', () => {
    const ir = compile(csState('routed', [withEgress()]));
    const p = ir.ports[0]!;
    expect(evaluate(ir, p, 'egress', tcp('203.0.113.9', 8080))).toEqual({ allowed: false, reason: 'default' });
    expect(evaluate(ir, p, 'egress', tcp('203.0.113.9', 443)).ruleId).toBe('web-out');
    expect(evaluate(ir, p, 'egress', udp('192.0.2.2', '203.0.113.53', 4000, 53)).ruleId).toBe('@cloudstack:dns-udp4');
    expect(evaluate(ir, p, 'egress', tcp('203.0.113.53', 53)).ruleId).toBe('@cloudstack:dns-tcp4');
    expect(evaluate(ir, p, 'egress', { family: 6, protocol: 17, src: '2001:db8:1::1', dst: '2001:db8:ff::53', sport: 4000, dport: 53 }).ruleId).toBe('@cloudstack:dns-udp6');
    expect(p.rules.map((r) => r.ruleId).filter((id) => id.startsWith('@'))).toEqual(
      ['@cloudstack:dns-udp4', '@cloudstack:dns-tcp4', '@cloudstack:dns-udp6', '@cloudstack:dns-tcp6']);
  });

  test('a CloudStack and a Neutron port with the same groups have different profiles, each labelled by its groups', () => {
    const s = csState('routed');
    s.networks.push({ ...network('routed', 'net-b', 102) });
    s.ports!.push(port(3, ['sg-in'], {}, 'net-b'));
    const ir = compile(s);
    expect(ir.profiles.map((p) => p.groupIds)).toEqual([['@cloudstack', 'sg-in'], ['sg-in']]);
    expect(ir.ports[0]!.profile).toBe(ir.ports[1]!.profile);
    expect(ir.ports[2]!.profile).not.toBe(ir.ports[0]!.profile);
    const comments = elementsOf(layout(ir), 'profiles').map((e) => e.comment);
    expect(comments).toEqual(['profile @cloudstack,sg-in', 'profile sg-in']);
  });

  test('system ports of a CloudStack network are not filtered and get no guards', () => {
    const s = csState('bridged');
    s.ports![1]!.kind = 'system';
    const ir = compile(s);
    expect(evaluate(ir, ir.ports[1]!, 'ingress', { ...tcp('192.0.2.3', 80), src: '203.0.113.9' }).reason).toBe('unfiltered');
    for (const name of Object.values(GUARD_SETS)) expect(elementsOf(layout(ir), name, 'bridge').map((e) => e.key)).toEqual([['tap1']]);
  });

  test('the iptables rendering carries the built-in rules with their ids', () => {
    const { iptables, ip6tables } = renderIptables(compile(csState('routed')));
    expect(iptables).toContain('-A portwall-o-tap1 -p udp -m udp --dport 53 -m comment --comment "@cloudstack:dns-udp4" -j RETURN');
    expect(iptables).toContain('-A portwall-o-tap1 -m comment --comment "@cloudstack:egress4" -j RETURN');
    expect(ip6tables).toContain('-A portwall-o-tap1 -p tcp -m tcp --dport 53 -m comment --comment "@cloudstack:dns-tcp6" -j RETURN');
    expect(renderIptables(compile(csState('routed', [withEgress()]))).iptables).not.toContain('@cloudstack:egress4');
  });
});

function elementsOf(objs: NftObject[], set: string, family = 'inet') {
  return objs.filter((o): o is Elements => o.kind === 'elements' && o.family === family && o.set === set).flatMap((o) => o.elements);
}
const bridgeRules = (objs: NftObject[], chain: string) => objs.filter((o): o is Rule => o.kind === 'rule' && o.family === 'bridge' && o.chain === chain);
function text(objs: NftObject[]): string {
  const tx = new Transaction();
  for (const o of objs) tx.add(o);
  if (tx.error) throw tx.error;
  return tx.toString();
}

describe('layer-2 guards', () => {
  test('constant rules in the bridge table, per-port hash elements; a Neutron network without guards adds no element', () => {
    const guarded = layout(compile(csState('bridged')));
    const plain = layout(compile(csState('bridged', [ingressOnly], {})));
    const ruleText = (objs: NftObject[]) => ['from_port', 'to_port', 'bcast_v4'].map((c) => text(bridgeRules(objs, c))).join('');
    // The same rules whichever guards the ports have: only elements differ.
    expect(ruleText(guarded)).toBe(ruleText(plain));
    const t = ruleText(guarded);
    expect(t).toContain('iifname @guard_arp arp operation != @arp_ops counter drop');
    expect(t).toContain('iifname @guard_dhcp ether type ip udp sport 67 counter drop');
    expect(t).toContain('oifname @guard_dhcp ether type ip udp dport 67 counter drop');
    expect(t).toContain('iifname @guard_bcast ether type ip jump bcast_v4');
    expect(t).toContain('ip daddr 224.0.0.0/4 counter drop');
    expect(t).toContain('oifname @guard_ip6 ether type ip6 counter drop');
    expect(t).toContain('iifname @guard_vlan ether type @tagged_types counter drop');
    for (const name of Object.values(GUARD_SETS)) {
      expect(elementsOf(guarded, name, 'bridge').map((e) => e.key)).toEqual([['tap1'], ['tap2']]);
      expect(elementsOf(plain, name, 'bridge')).toEqual([]);
    }
    // Every guard set is a plain hash set (no interval: deletes stay cheap).
    for (const name of Object.values(GUARD_SETS)) {
      const set = guarded.find((o) => o.kind === 'set' && o.family === 'bridge' && o.name === name);
      expect(set).toMatchObject({ key: ['ifname'] });
      expect(set).not.toHaveProperty('flags');
    }
  });

  test('a Neutron network takes only the guards it names', () => {
    const objs = layout(compile(csState('bridged', [ingressOnly], { l2_guards: { dhcp_snooping: true } })));
    expect(elementsOf(objs, GUARD_SETS.dhcpSnooping, 'bridge')).toHaveLength(2);
    expect(elementsOf(objs, GUARD_SETS.arp, 'bridge')).toEqual([]);
  });

  test('the evaluator drops what the guards drop and passes DHCP', () => {
    const ir = compile(csState('bridged'));
    const p = ir.ports[0]!;
    expect(evaluate(ir, p, 'egress', udp('192.0.2.2', '192.0.2.3', 67, 68))).toEqual({ allowed: false, reason: 'l2-guard' });
    expect(evaluate(ir, p, 'egress', udp('192.0.2.2', '192.0.2.3', 5000, 68)).reason).toBe('l2-guard');
    expect(evaluate(ir, p, 'ingress', udp('0.0.0.0', '255.255.255.255', 68, 67)).reason).toBe('l2-guard');
    expect(evaluate(ir, p, 'egress', udp('192.0.2.2', '255.255.255.255', 5000, 5000)).reason).toBe('l2-guard');
    expect(evaluate(ir, p, 'egress', udp('192.0.2.2', '239.1.2.3', 5000, 5000)).reason).toBe('l2-guard');
    expect(evaluate(ir, p, 'egress', udp('0.0.0.0', '255.255.255.255', 68, 67))).toEqual({ allowed: true, reason: 'dhcp' });
    expect(evaluate(ir, p, 'ingress', udp('192.0.2.254', '255.255.255.255', 67, 68))).toEqual({ allowed: true, reason: 'dhcp' });
    expect(evaluate(ir, p, 'egress', { family: 6, protocol: 17, src: '2001:db8:1::1', dst: '2001:db8:ff::53', sport: 4000, dport: 53 }).reason).toBe('l2-guard');
    // Routed ports have no guards, whatever the flavour.
    const routed = compile(csState('routed'));
    expect(evaluate(routed, routed.ports[0]!, 'egress', udp('192.0.2.2', '255.255.255.255', 5000, 5000)).allowed).toBe(true);
  });

  test('the iptables rendering mirrors the IP-level guards first in the port chains', () => {
    const { iptables, ip6tables } = renderIptables(compile(csState('bridged')));
    const lines = (t: string, chain: string) => t.split('\n').filter((l) => l.startsWith(`-A ${chain} `));
    expect(lines(iptables, 'portwall-o-tap1').slice(0, 3)).toEqual([
      '-A portwall-o-tap1 -p udp -m udp --sport 67 -m comment --comment "portwall: l2 guard: DHCP snooping" -j DROP',
      '-A portwall-o-tap1 -p udp -m udp --dport 68 -m comment --comment "portwall: l2 guard: DHCP snooping" -j DROP',
      '-A portwall-o-tap1 -d 255.255.255.255/32 ! -p udp -m comment --comment "portwall: l2 guard: IPv4 broadcast and multicast" -j DROP',
    ]);
    expect(lines(iptables, 'portwall-i-tap1')[0]).toBe('-A portwall-i-tap1 -p udp -m udp --dport 67 -m comment --comment "portwall: l2 guard: DHCP snooping" -j DROP');
    expect(lines(ip6tables, 'portwall-i-tap1')[0]).toBe('-A portwall-i-tap1 -m comment --comment "portwall: l2 guard: no IPv6" -j DROP');
    expect(renderIptables(compile(csState('bridged', [ingressOnly], {}))).iptables).not.toContain('l2 guard');
  });

  test('through the handle, a guarded port added, re-addressed and removed is an element-only batch', async () => {
    const fake = new FakeNft();
    const pw = Portwall.open({ binding: fake, conntrack: null, profileGc: false });
    await pw.apply(csState('bridged'));
    const kinds = (plan: string) => new Set(plan.split('\n').filter(Boolean).map((l) => l.split(' ').slice(0, 2).join(' ')));
    const added = await pw.upsertPort(port(3, ['sg-in']));
    expect(added.adopted).toBe(false);
    expect(kinds(added.plan)).toEqual(new Set(['add element']));
    expect(added.plan).toMatch(/add element bridge portwall guard_arp \(1\)/);
    const moved = await pw.upsertPort(port(3, ['sg-in'], { fixed_ips: [{ ip_address: '192.0.2.77' }] }));
    expect([...kinds(moved.plan)].every((k) => k === 'add element' || k === 'delete element')).toBe(true);
    expect(moved.plan).toMatch(/arp_ok/);
    expect(moved.plan).not.toMatch(/guard_/); // the guards follow the device, which did not change
    const gone = await pw.removePort('port-00003');
    expect(kinds(gone.plan)).toEqual(new Set(['delete element']));
    expect(gone.plan).toMatch(/delete element bridge portwall guard_vlan \(1\)/);
    expect((await pw.plan(csState('bridged'))).operations).toEqual([]);
    await pw.close();
  });

  test('through the handle, a group gaining its first egress rule closes the open egress of its CloudStack ports, as a fresh apply does', async () => {
    const fake = new FakeNft();
    const pw = Portwall.open({ binding: fake, conntrack: null, profileGc: false });
    await pw.apply(csState('bridged'));
    const r = await pw.upsertGroup(withEgress());
    expect(r.adopted).toBe(false);
    // The group's egress rule goes to its own set; the CloudStack profile's chain loses its open egress rule.
    expect(r.plan).toContain(`add element inet portwall ${groupSetName('sg-in', 'out', 4, 'l4', 0)} `);
    expect(r.plan).toMatch(/flush chain inet portwall prof_out_\d+/);
    await pw.collectProfiles();
    expect((await pw.plan(csState('bridged', [withEgress()]))).operations).toEqual([]);
    const back = await pw.upsertGroup(ingressOnly);
    expect(back.plan).toMatch(/add rule inet portwall prof_out_\d+ \(\d\)/);
    expect(back.plan).toContain(`delete set inet portwall ${groupSetName('sg-in', 'out', 4, 'l4', 0)}`);
    await pw.close();
  });
});
