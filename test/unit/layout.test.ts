/**
 * layout(): the structure docs/dataplane.md promises, on small states in both modes (no root). Structure is
 * asserted, not giant snapshots; the rules' nft text is checked through the engine's renderer.
 */
import { describe, expect, test } from 'vitest';

import { layout } from '../../src/compile/layout.js';
import { groupChainName, groupRefSetName, groupSetName, idHash, MAX_NAME, memberNetSetName, memberSetName, zoneSetName } from '../../src/compile/names.js';
import { compilePolicy } from '../../src/compile/policy.js';
import { validateState } from '../../src/model/validate.js';
import { DEFAULT_CONFIG } from '../../src/model/types.js';
import { Transaction } from '../../src/nft/transaction.js';
import type { Chain, Elements, NftObject, NftSet, Rule } from '../../src/nft/types.js';
import { network, port, state, webGroup, type Mode } from '../helpers/states.js';
import { parseInterval } from '../../src/nft/datatypes.js';

function objects(doc: unknown): NftObject[] {
  const model = validateState(doc, DEFAULT_CONFIG);
  return layout(compilePolicy(model, DEFAULT_CONFIG));
}

function text(objs: NftObject[]): string {
  const tx = new Transaction();
  for (const o of objs) tx.add(o);
  if (tx.error) throw tx.error;
  return tx.toString();
}

const chains = (objs: NftObject[], family = 'inet') => objs.filter((o): o is Chain => o.kind === 'chain' && o.family === family);
const sets = (objs: NftObject[], family = 'inet') => objs.filter((o): o is NftSet => o.kind === 'set' && o.family === family);
const rules = (objs: NftObject[], chain: string, family = 'inet') =>
  objs.filter((o): o is Rule => o.kind === 'rule' && o.family === family && o.chain === chain);
const elements = (objs: NftObject[], set: string, family = 'inet') =>
  objs.find((o): o is Elements => o.kind === 'elements' && o.family === family && o.set === set)?.elements ?? [];

// Words nft 1.0.6's scanner reserves that a careless name could hit (a table or chain named so breaks `nft -f`).
const KEYWORDS = new Set(['counter', 'fwd', 'ingress', 'egress', 'input', 'output', 'forward', 'prerouting', 'postrouting',
  'filter', 'nat', 'route', 'accept', 'drop', 'return', 'jump', 'goto', 'ip', 'ip6', 'inet', 'bridge', 'arp', 'meta', 'ct',
  'set', 'map', 'table', 'chain', 'rule', 'element', 'type', 'hook', 'priority', 'policy', 'flags', 'interval', 'log', 'limit']);

describe.each<Mode>(['routed', 'bridged'])('layout, %s', (mode) => {
  const doc = state(mode, [webGroup()], [port(1, ['sg-web']), port(2, ['sg-web']), port(3, [], { port_security_enabled: false })]);
  const objs = objects(doc);
  const k = mode === 'routed' ? 'dev' : 'tag';
  // The same with a member of sg-web that brings a prefix wider than a host (an address pair).
  const pair = { allowed_address_pairs: [{ ip_address: '203.0.113.128/26' }] };
  const withPair = objects(state(mode, [webGroup()], [port(1, ['sg-web']), port(2, ['sg-web'], pair), port(3, [], { port_security_enabled: false })]));

  test('names are plain nft identifiers, length-safe, no keywords', () => {
    const names = [...chains(objs), ...chains(objs, 'bridge'), ...sets(objs), ...sets(objs, 'bridge')].map((o) => o.name);
    for (const n of names) {
      expect(n).toMatch(/^[A-Za-z_][A-Za-z0-9_]*$/);
      expect(n.length).toBeLessThanOrEqual(MAX_NAME);
      expect(KEYWORDS.has(n)).toBe(false);
    }
    expect(new Set(names).size).toBe(names.length);
  });

  test('set order: the sets every port change touches first, per-network and per-group sets last; zone sets in the raw table', () => {
    // The kernel finds an element operation's set by walking its table's sets in creation order.
    const names = sets(withPair).filter((s) => s.table === 'portwall').map((s) => s.name);
    const rawNames = sets(withPair).filter((s) => s.table === 'portwall_raw').map((s) => s.name);
    // The zone and untracking sets are the raw table's alone: a port change's zone messages walk past them only.
    expect(names.filter((n) => /^(z(dev|tag|ip4|ip6|net4|net6)_|zone_|stateless)/.test(n))).toEqual([]);
    expect(rawNames).toEqual(expect.arrayContaining(mode === 'routed' ? ['zone_dev', 'zone_ip4'] : ['zone_br', 'zone_bip4']));
    const perPort = [`ports_${k}`, `profile_${k}`, `spoof4_${k}`, `spoof6_${k}`, `dhcp4_${k}`, `ra6_${k}`].map((n) => names.indexOf(n));
    const perNetworkOrGroup = names.flatMap((n, i) => (/^(m4|m6|n4|n6|[io][46][ta]0|r[io][46][ta]0)_/.test(n) ? [i] : []));
    expect(perPort.every((i) => i >= 0)).toBe(true);
    expect(perNetworkOrGroup.length).toBeGreaterThan(0);
    // Sets that change only with rule profiles: after the per-port ones, before the per-network ones.
    const profileSets = ['profiles', 'prof_in', 'prof_out'].map((n) => names.indexOf(n));
    expect(profileSets.every((i) => i >= 0)).toBe(true);
    expect(Math.max(...perPort)).toBeLessThan(Math.min(...profileSets));
    expect(Math.max(...profileSets)).toBeLessThan(Math.min(...perNetworkOrGroup));
    // Member host sets (all a member joining or leaving touches) ahead of the other per-group sets.
    const memberSets = names.flatMap((n, i) => (/^m[46]_/.test(n) ? [i] : []));
    const otherSets = names.flatMap((n, i) => (/^(n4|n6|[io][46][ta]0|r[io][46][ta]0)_/.test(n) ? [i] : []));
    expect(memberSets.length).toBeGreaterThan(0);
    expect(Math.max(...memberSets)).toBeLessThan(Math.min(...otherSets));
    // Prefix sets (address-pair prefixes: few ports touch them) after the per-group sets of host addresses.
    const prefixSets = names.flatMap((n, i) => (/^(n4|n6)_/.test(n) ? [i] : []));
    expect(prefixSets.length).toBeGreaterThan(0);
    expect(Math.max(...memberSets)).toBeLessThan(Math.min(...prefixSets));
    // In the raw table: the zone maps every port change touches first, then the networks' zone sets (hosts
    // before prefixes).
    const maps = rawNames.flatMap((n, i) => (/^zone_/.test(n) ? [i] : []));
    const netHosts = rawNames.flatMap((n, i) => (/^z(dev|tag|ip4|ip6)_/.test(n) ? [i] : []));
    const netPrefixes = rawNames.flatMap((n, i) => (/^znet[46]_/.test(n) ? [i] : []));
    expect(netHosts.length).toBeGreaterThan(0);
    expect(Math.max(...maps)).toBeLessThan(Math.min(...netHosts));
    if (mode === 'routed') expect(Math.max(...netHosts)).toBeLessThan(Math.min(...netPrefixes));
  });

  test('the skeleton: base chains, port chains ending in the profile\'s chain; jumps only to profile chains', () => {
    const base = chains(objs).filter((c) => c.hook !== undefined).map((c) => `${c.table} ${c.name}:${c.hook}:${c.priority}`);
    expect(base).toEqual(mode === 'routed'
      ? ['portwall fwd_filter:forward:0', 'portwall in_filter:input:0', 'portwall out_filter:output:0', 'portwall_raw raw_pre:prerouting:-300', 'portwall_raw raw_out:output:-300']
      : ['portwall pre_filter:prerouting:0', 'portwall fwd_filter:forward:0', 'portwall out_filter:output:0', 'portwall_raw raw_pre:prerouting:-300', 'portwall_raw raw_out:output:-300']);
    expect(chains(objs).map((c) => c.name)).toEqual(expect.arrayContaining([`egress_${k}`, `ingress_${k}`]));
    // Each port chain ends: the port's profile into the mark, its group through the verdict map of the one group
    // slot its profile fills, "allowed?", drop.
    for (const [c, dir] of [[`egress_${k}`, 'out'], [`ingress_${k}`, 'in']] as const) {
      const tail = rules(objs, c).slice(-4).map((r) => text([r]).trim().replace(/^add rule inet portwall \S+ /, '').replace(/ comment .*$/, ''));
      expect(tail[0]).toContain(`map @profile_${k}`);
      expect(tail.slice(1)).toEqual([`meta mark and 0x7fff vmap @prof_${dir}`, 'meta mark and 0x7fff == 0x7fff return', 'counter drop']);
    }
    // The only verdict maps are the group slots; their elements jump to the groups' chains, and no profile has a
    // chain of its own. A group's chain looks up its own sets, and those of its remote groups (sg-web ssh from
    // members of sg-web: one rule for member hosts; no member has a prefix, so there is no member-prefix set and
    // no rule for one).
    expect(sets(objs).concat(sets(objs, 'bridge')).filter((s) => s.data === 'verdict').map((s) => s.name)).toEqual(['prof_in', 'prof_out']);
    const jumps = objs.flatMap((o) => (o.kind === 'elements' ? o.elements.flatMap((e) => (e.verdict ? [`${o.set} ${e.verdict.code} ${'chain' in e.verdict ? e.verdict.chain : ''}`] : [])) : []));
    expect(jumps).toEqual([`prof_in jump ${groupChainName('sg-web', 'in')}`, `prof_out jump ${groupChainName('sg-web', 'out')}`]);
    expect(chains(objs).map((c) => c.name).filter((n) => n.startsWith('prof_'))).toEqual([]);
    const gi = rules(objs, groupChainName('sg-web', 'in')).map((r) => text([r]));
    // IPv4 and IPv6 protocol rules (one set each), and the remote group's rule.
    expect(gi).toHaveLength(3);
    for (const r of gi) expect(r).toContain('meta mark set 0x7fff return');
    expect(gi.filter((r) => r.includes(`@${memberSetName('sg-web', 4)} `))).toHaveLength(1);
    expect(sets(objs).map((s) => s.name)).not.toContain(memberNetSetName('sg-web', 4));
  });

  test('a remote group with a member prefix wider than a host: its member-prefix set, and a rule looking there', () => {
    const gi = rules(withPair, groupChainName('sg-web', 'in')).map((r) => text([r]));
    expect(gi).toHaveLength(4);
    expect(gi.filter((r) => r.includes(`@${memberSetName('sg-web', 4)} `))).toHaveLength(1);
    expect(gi.filter((r) => r.includes(`@${memberNetSetName('sg-web', 4)} `))).toHaveLength(1);
    expect(elements(withPair, memberNetSetName('sg-web', 4)).map((e) => e.key)).toEqual([['203.0.113.128/26']]);
    // Only the family the group is named in: its rules name it for IPv4 alone.
    expect(sets(withPair).map((s) => s.name)).not.toContain(memberNetSetName('sg-web', 6));
  });

  test('SG rules are elements of their group\'s sets, commented with the rule id; per-element counters', () => {
    // Both filtered ports have the same group: one profile, pointed at by each port.
    const profile = elements(objs, `profile_${k}`);
    expect(profile.map((e) => e.comment)).toEqual(['port-00001', 'port-00002']);
    expect(new Set(profile.map((e) => e.data)).size).toBe(1);
    const id = profile[0]!.data;
    expect(elements(objs, 'profiles').map((e) => [e.key[0], e.comment])).toEqual([[id, 'profile sg-web']]);
    const httpSet = groupSetName('sg-web', 'in', 4, 'l4', 0);
    const http = elements(objs, httpSet);
    // tcp 80 from 198.51.100.0/24 and ping (ICMP type 8, every code) from anywhere: one set, one element each.
    expect(http.map((e) => [e.key, e.comment])).toEqual([[[1, '2048-2303', '0-65535', '0.0.0.0/0'], 'sg-web-ping'], [[6, '0-65535', 80, '198.51.100.0/24'], 'sg-web-http']]);
    expect(sets(objs).find((s) => s.name === httpSet)).toMatchObject({ counter: true, flags: ['interval'], key: ['inet_proto', 'inet_service', 'inet_service', 'ipv4_addr'] });
    const ssh = elements(objs, groupRefSetName('sg-web', 'sg-web', 'in', 4, 'l4', 0));
    expect(ssh.map((e) => [e.key, e.comment])).toEqual([[[6, '0-65535', 22], 'sg-web-ssh']]);
    // Members with host addresses go to a hash set; prefixes (none here) to an interval set.
    expect(elements(objs, memberSetName('sg-web', 4)).map((e) => e.key[0]).sort()).toEqual(['192.0.2.2', '192.0.2.3']);
    expect(sets(objs).find((s) => s.name === memberSetName('sg-web', 4))!.flags ?? []).toEqual([]);
    expect(elements(objs, groupSetName('sg-web', 'out', 4, 'any', 0)).map((e) => e.key)).toEqual([['0.0.0.0/0']]);
  });

  test('anti-spoof: exact addresses in a hash set, prefixes in an interval set', () => {
    expect(sets(objs).find((s) => s.name === `spoof4_${k}`)!.flags ?? []).toEqual([]);
    expect(sets(objs).find((s) => s.name === `spoofnet4_${k}`)!.flags).toEqual(['interval']);
    expect(elements(objs, `spoofnet4_${k}`)).toEqual([]);
  });

  test('the unfiltered port is not dispatched and has no elements', () => {
    expect(elements(objs, `ports_${k}`).map((e) => e.comment)).toEqual(['port-00001', 'port-00002']);
  });

  test('ICMPv6 is matched by layer-4 protocol, never by next header (Incus #4025)', () => {
    const all = objs.filter((o): o is Rule => o.kind === 'rule' && o.family === 'inet');
    const icmp6 = all.filter((r) => r.exprs.some((e) => e.type === 'lookup' && /^[io]6t0_/.test(e.set)));
    expect(icmp6).toHaveLength(1);
    for (const r of all) {
      // ip6 nexthdr is network header byte 6 (one byte); nothing may load it.
      expect(r.exprs.some((e) => e.type === 'payload' && e.base === 'network' && e.offset === 6 && e.len === 1)).toBe(false);
    }
    // ICMPv6 type and code are the transport header's first 16 bits: the ping6 rule is type 128, every code.
    expect(text(objs)).toContain(`meta l4proto . th sport . th dport . ip6 saddr @${groupSetName('sg-web', 'in', 6, 'l4', 0)} meta mark set 0x7fff return`);
    expect(elements(objs, groupSetName('sg-web', 'in', 6, 'l4', 0)).map((e) => e.key)).toEqual([[58, '32768-33023', '0-65535', '::/0']]);
  });

  test('the whole layout prints as nft syntax; anti-spoof before the DHCP allowance', () => {
    const t = text(objs);
    const spoof = t.indexOf(`ether saddr . ip saddr != @spoofnet4_${k} counter drop`);
    const dhcp = t.indexOf('udp sport 68 udp dport 67 return');
    expect(spoof).toBeGreaterThan(0);
    expect(dhcp).toBeGreaterThan(spoof);
    expect(elements(objs, `spoof4_${k}`).map((e) => e.key.slice(1)).sort()).toEqual([
      ['fa:16:3e:00:00:01', '0.0.0.0'], ['fa:16:3e:00:00:01', '192.0.2.2'], ['fa:16:3e:00:00:02', '0.0.0.0'], ['fa:16:3e:00:00:02', '192.0.2.3'],
    ]);
  });

  test(mode === 'bridged' ? 'bridge table: tags, MAC and ARP anti-spoof' : 'no bridge table', () => {
    const bridge = objs.filter((o) => o.family === 'bridge');
    if (mode === 'routed') {
      expect(bridge).toEqual([]);
      return;
    }
    expect(elements(objs, 'port_tag', 'bridge').map((e) => [e.key[0], e.data, e.comment])).toEqual([
      ['tap1', 1, 'port-00001'], ['tap2', 2, 'port-00002'], ['tap3', 3, 'port-00003'],
    ]);
    expect(elements(objs, 'arp_ok', 'bridge').map((e) => e.key).sort()).toEqual([
      ['tap1', 'fa:16:3e:00:00:01', '0.0.0.0'], ['tap1', 'fa:16:3e:00:00:01', '192.0.2.2'],
      ['tap2', 'fa:16:3e:00:00:02', '0.0.0.0'], ['tap2', 'fa:16:3e:00:00:02', '192.0.2.3'],
    ]);
    const t = text(bridge);
    expect(t).toContain('meta mark set iifname map @port_tag');
    expect(t).toContain('meta mark set oifname map @port_tag');
    expect(t).toContain('iifname . arp saddr ether . arp saddr ip != @arp_ok iifname . arp saddr ether . arp saddr ip != @arp_oknet counter drop');
    expect(t).toContain('iifname . ether saddr != @mac_ok counter drop');
  });
});

describe('layout details', () => {
  test('overlapping rules of one port become disjoint elements, each naming its rule', () => {
    const g = { id: 'sg', security_group_rules: [
      { id: 'any80', direction: 'ingress' as const, ethertype: 'IPv4' as const, protocol: 'tcp', port_range_min: 80, port_range_max: 80 },
      { id: 'all-from-24', direction: 'ingress' as const, ethertype: 'IPv4' as const, protocol: 'tcp', port_range_min: 1, port_range_max: 1000, remote_ip_prefix: '198.51.100.0/24' },
      { id: 'dup80', direction: 'ingress' as const, ethertype: 'IPv4' as const, protocol: 'tcp', port_range_min: 80, port_range_max: 80, remote_ip_prefix: '198.51.100.0/25' },
    ] };
    const els = elements(objects(state('routed', [g], [port(1, ['sg'])])), groupSetName('sg', 'in', 4, 'l4', 0));
    expect(els.map((e) => [e.key.slice(2), e.comment])).toEqual([
      [['1-79', '198.51.100.0/24'], 'all-from-24'],
      [[80, '0.0.0.0/0'], 'any80'],
      [['81-1000', '198.51.100.0/24'], 'all-from-24'],
    ]);
  });

  test('comments are clipped to 128 bytes; names of long ids stay short and distinct', () => {
    const long = `sg-${'x'.repeat(200)}`;
    const g = { id: long, security_group_rules: [{ id: `r-${'é'.repeat(100)}`, direction: 'ingress' as const, ethertype: 'IPv4' as const, protocol: 'udp', remote_group_id: long }] };
    const objs = objects(state('routed', [g], [port(1, [long])]));
    for (const o of objs) {
      const comments = o.kind === 'elements' ? o.elements.map((e) => e.comment ?? '') : ['comment' in o ? o.comment ?? '' : ''];
      for (const c of comments) expect(Buffer.byteLength(c)).toBeLessThanOrEqual(128);
    }
    expect(memberSetName(long, 4)).not.toBe(memberSetName(`${long}y`, 4));
    expect(groupChainName(long, 'in')).not.toBe(groupChainName(`${long}y`, 'in'));
    expect(groupChainName(long, 'in').length).toBeLessThanOrEqual(MAX_NAME);
    expect(groupChainName('!!!', 'in')).toMatch(/^gi_[0-9a-f]{12}$/);
    // Chains carry a slug of the id; sets only the hash (the kernel measures every set name it walks past).
    expect(groupChainName('sg-web', 'in')).toBe(`gi_sg_web_${idHash('sg-web')}`);
    expect(memberSetName('sg-web', 4)).toBe(`m4_${idHash('sg-web')}`);
    expect(groupSetName('sg-web', 'in', 4, 'l4', 0)).toBe(`i4t0_${idHash('sg-web')}`);
  });

  test('zones: first match wins — bridges, then bridged addresses not from a bridge, then between routed ports the lower zone, then routed by device and address', () => {
    const doc = {
      networks: [{ id: 'net-r1', zone: 300, mode: 'routed' as const }, { id: 'net-r2', zone: 200, mode: 'routed' as const }, { id: 'net-b', zone: 250, mode: 'bridged' as const, bridge: 'br-b' }],
      security_groups: [], ports: [port(1, [], {}, 'net-r1'), port(2, [], {}, 'net-r2'), port(3, [], {}, 'net-b')],
    };
    const objs = objects(doc);
    const pre = rules(objs, 'raw_pre').map((r) => text([r]).trim().replace(/^add rule inet portwall_raw raw_pre /, '').replace(/ comment .*$/, ''))
      .filter((r) => r.includes('zone'));
    // No stateless port: no untracking rules. Then a constant number of rules whatever the number of networks,
    // one map lookup each; a packet from a routed port looks its device up once and goes to zone_port.
    expect(rules(objs, 'raw_pre').length).toBe(pre.length);
    expect(pre).toEqual([
      'ct zone set iifname map @zone_br',
      'iifname != @raw_bridges ct zone set ip daddr map @zone_bip4',
      'iifname != @raw_bridges ct zone set ip daddr map @zone_bnet4',
      'iifname != @raw_bridges ct zone set ip6 daddr map @zone_bip6',
      'iifname != @raw_bridges ct zone set ip6 daddr map @zone_bnet6',
      'iifname @zone_dev goto zone_port',
      'iifname != @raw_bridges ct zone set ip daddr map @zone_ip4',
      'iifname != @raw_bridges ct zone set ip6 daddr map @zone_ip6',
    ]);
    const inChain = (o: NftObject[], chain: string) => rules(o, chain).map((r) => text([r]).trim().replace(/^add rule inet portwall\S* \S+ /, '').replace(/ comment .*$/, ''));
    expect(inChain(objs, 'zone_port')).toEqual([
      'ip daddr @zone_ip4 jump zone_cross',
      'ip6 daddr @zone_ip6 jump zone_cross',
      'ct zone set iifname map @zone_dev',
    ]);
    // Between routed ports: per network, lowest zone first (device, host addresses; prefix ranges only where a
    // port owns a prefix wider than a host, and none does here).
    const cross = text(rules(objs, 'zone_cross'));
    expect([...cross.matchAll(/ct zone set (\d+)/g)].map((m) => Number(m[1]))).toEqual([200, 200, 200, 300, 300, 300]);
    expect(cross).toContain(`ip daddr @${zoneSetName('net-r2', 'ip4')} ct zone set 200 return`);
    // Each rule returns once it set the zone (the kernel ignores later ones): a packet stops at its lower network.
    expect(inChain(objs, 'zone_cross').every((r) => r.endsWith('ct zone set 200 return') || r.endsWith('ct zone set 300 return'))).toBe(true);
    expect(sets(objs).map((x) => x.name).filter((n) => n.startsWith('znet'))).toEqual([]);
    // A port of net-r2 with an IPv4 prefix pair: that network's IPv4 prefix set, and its rule.
    const paired = { ...doc, ports: [doc.ports[0]!, port(2, [], { allowed_address_pairs: [{ ip_address: '203.0.113.128/26' }] }, 'net-r2'), doc.ports[2]!] };
    const withPair = objects(paired);
    const crossPair = text(rules(withPair, 'zone_cross'));
    expect([...crossPair.matchAll(/ct zone set (\d+)/g)].map((m) => Number(m[1]))).toEqual([200, 200, 200, 200, 300, 300, 300]);
    expect(crossPair).toContain(`ip daddr @${zoneSetName('net-r2', 'net4')} ct zone set 200`);
    expect(sets(withPair).map((x) => x.name).filter((n) => n.startsWith('znet'))).toEqual([zoneSetName('net-r2', 'net4')]);
    // … and the routed IPv4 prefix map, looked up from ports and by address (IPv6 still has none).
    expect(inChain(withPair, 'zone_port')).toEqual([
      'ip daddr @zone_ip4 jump zone_cross',
      'ip daddr @zone_net4 jump zone_cross',
      'ip6 daddr @zone_ip6 jump zone_cross',
      'ct zone set iifname map @zone_dev',
    ]);
    expect(inChain(withPair, 'raw_pre')).toContain('iifname != @raw_bridges ct zone set ip daddr map @zone_net4');
    expect(sets(withPair).map((x) => x.name).filter((n) => /^zone_b?net/.test(n)).sort()).toEqual(['zone_bnet4', 'zone_bnet6', 'zone_net4']);
    expect(elements(withPair, zoneSetName('net-r2', 'net4')).map((e) => e.key)).toEqual([['203.0.113.128/26']]);
    expect(elements(objs, 'zone_br')).toEqual([{ key: ['br-b'], data: 250 }]);
    expect(elements(objs, 'zone_dev').map((e) => [e.key[0], e.data]).sort()).toEqual([['tap1', 300], ['tap2', 200]]);
    expect(elements(objs, 'zone_bip4').map((e) => e.data)).toEqual([250]);
    const maps = sets(objs).filter((x) => x.name.startsWith('zone_'));
    expect(maps.every((m) => m.data === 'ct_zone' && m.typeof !== undefined)).toBe(true);
    expect(text(maps)).toContain('typeof iifname : ct zone');
  });
});

describe('layout: review fixes', () => {
  const v4 = (v: unknown) => parseInterval('ipv4_addr', v as string);
  const covers = (els: { key: unknown[] }[], addr: string, field = 0) => els.some((e) => {
    const r = v4(e.key[field]);
    const a = v4(addr).lo;
    return r.lo <= a && a <= r.hi;
  });
  // A stateful port 192.0.2.10 on net-a; a stateless port of another network with the pair 192.0.2.0/24.
  const sl = { id: 'sg-sl', stateful: false, security_group_rules: [{ id: 's1', direction: 'ingress' as const, ethertype: 'IPv4' as const }] };
  const twoNets = (mode: Mode, zones: [number, number]) => ({
    networks: [network(mode, 'net-a', zones[0], 'br-a'), network(mode, 'net-c', zones[1], 'br-c')],
    security_groups: [webGroup(), sl],
    ports: [port(9, ['sg-web']), port(300, ['sg-sl'], { allowed_address_pairs: [{ ip_address: '192.0.2.0/24' }] }, 'net-c')],
  });

  test.each<Mode>(['routed', 'bridged'])('stateless untracking never covers a more specific address of a stateful port of another network (%s)', (mode) => {
    for (const zones of [[101, 102], [102, 101]] as [number, number][]) {
      const objs = objects(twoNets(mode, zones));
      const s4 = [...elements(objs, 'stateless4'), ...elements(objs, 'statelessnet4')];
      expect(covers(s4, '192.0.2.10')).toBe(false);
      expect(covers(s4, '192.0.2.11')).toBe(true);
      expect(covers(s4, '198.51.100.51')).toBe(true);
      // the address zone entries are disjoint: 192.0.2.10 is net-a's only
      const maps = ['zone_ip4', 'zone_net4', 'zone_bip4', 'zone_bnet4'];
      const zone4 = (zone: number) => maps.flatMap((m) => elements(objs, m)).filter((e) => e.data === zone);
      expect(covers(zone4(zones[0]), '192.0.2.10')).toBe(true);
      expect(covers(zone4(zones[1]), '192.0.2.10')).toBe(false);
    }
  });

  test.each<Mode>(['routed', 'bridged'])('the untracking rules and sets exist only while some port is stateless (%s)', (mode) => {
    const untracking = (o: NftObject[]) => ({
      rules: o.filter((x) => x.kind === 'rule' && (x.chain === 'raw_pre' || x.chain === 'raw_out') && text([x]).includes('notrack')).length,
      sets: sets(o).map((x) => x.name).filter((n) => n.startsWith('stateless')).length,
    });
    const withStateless = untracking(objects(twoNets(mode, [101, 102])));
    expect(withStateless.rules).toBeGreaterThan(0);
    expect(withStateless.sets).toBeGreaterThan(0);
    const doc = twoNets(mode, [101, 102]);
    expect(untracking(objects({ ...doc, ports: [doc.ports[0]!] }))).toEqual({ rules: 0, sets: 0 });
  });

  test('routed ports: non-Ethernet devices are dropped first; 0.0.0.0 only for the DHCP client', () => {
    const t = text(objects(state('routed', [webGroup()], [port(1, ['sg-web'])])).filter((o) => o.kind === 'rule' && o.chain === 'egress_dev'));
    expect(t.split('\n').find((l) => l.includes('egress_dev') || l.includes('iiftype'))).toMatch(/meta iiftype != 1 counter drop/);
    const dhcp = t.indexOf('udp sport 68 udp dport 67 return');
    expect(t.indexOf('ip saddr 0.0.0.0 counter drop')).toBeGreaterThan(dhcp);
  });

  test('bridged: traffic routed or sent by the host to a bridge finds the port tag from its address', () => {
    const objs = objects(state('bridged', [webGroup()], [port(1, ['sg-web'], { allowed_address_pairs: [{ ip_address: '192.0.2.0/28' }] }), port(2, ['sg-web'])]));
    const t = text(objs.filter((o) => o.kind === 'rule'));
    expect(t).toContain('meta mark set oifname . ip daddr map @route_tag4');
    expect(t).toContain('meta mark set oifname . ip6 daddr map @route_tag6');
    expect(t).toMatch(/oifname @bridges iifname \. oifname != @bridge_fwd jump to_bridge/);
    expect(t).toMatch(/oifname @bridges jump to_bridge/);
    // the longest prefix wins: 192.0.2.3 is port 2's, the rest of port 1's pair is port 1's
    expect(t).toContain('meta mark set oifname . ip daddr map @route_tagnet4');
    // Hosts by exact address (hash map), the rest of a pair prefix by range (interval map), disjoint.
    expect(elements(objs, 'route_tag4').map((e) => [e.key[1], e.data]).sort()).toEqual([['192.0.2.2', 1], ['192.0.2.3', 2]]);
    expect(elements(objs, 'route_tagnet4').map((e) => [e.key[1], e.data])).toEqual([['192.0.2.0-192.0.2.2', 1], ['192.0.2.4-192.0.2.15', 1]]);
  });
});

describe('layout: drop log', () => {
  test('log_drops: every port-chain drop goes through a chain that logs it per network (zone, rate, step prefix); without it, plain drops', () => {
    const doc = state('routed', [webGroup()], [port(1, ['sg-web'])]);
    const plain = text(objects(doc));
    expect(plain).not.toMatch(/ log /);
    expect(plain).toMatch(/ip saddr != @spoofnet4_dev counter drop comment "IPv4 anti-spoof"/);
    const logged = text(objects({ ...doc, networks: [{ ...doc.networks![0]!, log_drops: 20 }] }));
    expect(logged).toMatch(/ip saddr != @spoofnet4_dev counter goto egress_dev_d\d+ comment "IPv4 anti-spoof"/);
    expect(logged).toMatch(/add rule inet portwall egress_dev_d\d+ ct zone 101 limit rate 20\/second log prefix "pw 101 IPv4 anti-spoof" group 28791/);
    expect(logged).toMatch(/add rule inet portwall ingress_dev_d\d+ ct zone 101 limit rate 20\/second log prefix "pw 101 no rule allows it" group 28791/);
    // Each log chain ends in the drop; no plain drop is left in the port chains.
    const chainsLogged = logged.split('\n').filter((l) => /^add chain inet portwall (egress|ingress)_dev_d\d+$/.test(l)).length;
    expect(chainsLogged).toBeGreaterThanOrEqual(12);
    expect(logged.split('\n').filter((l) => /portwall (egress|ingress)_dev_d\d+ drop$/.test(l))).toHaveLength(chainsLogged);
    expect(logged.split('\n').filter((l) => /portwall (egress|ingress)_dev .*counter drop/.test(l))).toEqual([]);
  });

  test('log_accepts: dispatch enters each port chain through CHAIN_acc, which jumps to it and logs new connections per network and direction; without it, straight to the port chains', () => {
    for (const mode of ['routed', 'bridged'] as const) {
      const k = mode === 'routed' ? 'dev' : 'tag';
      const doc = state(mode, [webGroup()], [port(1, ['sg-web'])]);
      const plain = text(objects(doc));
      expect(plain).not.toMatch(/_acc\b|accept-/);
      expect(plain).toMatch(new RegExp(`jump ingress_${k}\\b`));
      const logged = text(objects({ ...doc, networks: [{ ...doc.networks![0]!, log_accepts: 7 }] }));
      const lines = logged.split('\n');
      for (const dir of ['egress', 'ingress']) {
        expect(lines).toContain(`add chain inet portwall ${dir}_${k}_acc`);
        expect(lines).toContain(`add rule inet portwall ${dir}_${k}_acc jump ${dir}_${k} comment "the port chain: what returns was allowed"`);
        expect(lines).toContain(`add rule inet portwall ${dir}_${k}_acc ct state new ct zone 101 limit rate 7/second log prefix "pw 101 accept-${dir}" group 28791 comment "log accepts of network net-a"`);
      }
      // Every way into a port chain goes through its _acc chain: no dispatch rule or goto names the port chain itself.
      const entering = lines.filter((l) => new RegExp(`(jump|goto) (egress|ingress)_${k}(_acc)?\\b`).test(l) && !/_acc jump /.test(l));
      expect(entering.length).toBeGreaterThanOrEqual(mode === 'routed' ? 4 : 3);
      for (const l of entering) expect(l).toMatch(new RegExp(`(jump|goto) (egress|ingress)_${k}_acc\\b`));
      // Drops are untouched: log_accepts alone logs no drop.
      expect(logged).not.toMatch(/(egress|ingress)_(dev|tag)_d\d+/);
    }
  });
});
