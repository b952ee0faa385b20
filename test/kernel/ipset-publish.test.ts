// config.publishIpsets: remote-group memberships published as ipsets next to the nftables policy, with the
// names the iptables renderer uses, kept in step by later applies, and matched by an iptables rule.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { Portwall } from '../../src/apply/portwall.js';
import type { IpsetLike } from '../../src/apply/ipsets.js';
import { compilePolicy } from '../../src/compile/policy.js';
import { validateState } from '../../src/model/validate.js';
import { DEFAULT_CONFIG } from '../../src/model/types.js';
import { IpsetClient } from '../../src/ipset.js';
import { renderIptables } from '../../src/render/iptables.js';
import { memberSetName } from '../../src/render/iptables-syntax.js';
import { Netns, isRoot } from '../helpers/netns.js';
import { port, state, webGroup } from '../helpers/states.js';

const config = { ...DEFAULT_CONFIG, publishIpsets: true };

describe.skipIf(!isRoot)('publishing remote groups as ipsets', () => {
  let ns: Netns;
  beforeAll(() => {
    ns = new Netns('ipsetpub');
  });
  afterAll(() => ns?.destroy());

  const members = (name: string): string[] =>
    ns.exec('ipset', ['list', name]).split('Members:\n')[1]!.split('\n').filter(Boolean).sort();

  test('members appear, follow the state, and nothing changes on a second apply', async () => {
    const pw = Portwall.open({ netns: ns.name, config });
    const set4 = memberSetName('sg-web', 4);
    const two = state('routed', [webGroup()], [port(1, ['sg-web']), port(2, ['sg-web'])]);
    const first = await pw.apply(two);
    // The web group is a remote group only in an IPv4 rule (ssh from members): one set, IPv4 members.
    expect(first.ipsets?.published).toEqual([set4]);
    expect(members(set4)).toEqual(['192.0.2.2', '192.0.2.3']);

    const again = await pw.apply(two);
    expect(again.changed).toBe(false);
    expect(again.ipsets).toEqual({ published: [], destroyed: [], inUse: [] });

    // Port 2 leaves the group: its addresses leave the published sets too.
    const one = state('routed', [webGroup()], [port(1, ['sg-web']), port(2, [])]);
    const third = await pw.apply(one);
    expect(third.ipsets?.published).toEqual([set4]);
    expect(members(set4)).toEqual(['192.0.2.2']);

    // The iptables renderer's rules load against the published sets (no `ipset restore` needed) ...
    const ir = compilePolicy(validateState(one, config), config);
    const rendered = renderIptables(ir);
    expect(rendered.iptables).toContain(`--match-set ${set4}`);
    ns.exec('iptables-legacy-restore', [], { input: rendered.iptables });
    // ... and a set still referenced by an iptables rule is kept when the group stops being a remote group.
    const none = state('routed', [{ id: 'sg-web', security_group_rules: [] }], [port(1, ['sg-web'])]);
    const fourth = await pw.apply(none);
    expect(fourth.ipsets?.inUse).toContain(set4);
    ns.exec('iptables-legacy', ['-F']);
    ns.exec('iptables-legacy', ['-X']);
    ns.exec('iptables-legacy', ['-t', 'raw', '-F']);
    ns.exec('iptables-legacy', ['-t', 'raw', '-X']);
    const fifth = await pw.apply(none);
    expect(fifth.ipsets?.destroyed).toContain(set4);
    expect(ns.exec('ipset', ['list', '-n'])).not.toContain('pw4-');
  });

  test('a handle\'s port edits add and delete just the members they move, listing no set', async () => {
    const client = new IpsetClient({ netns: ns.name });
    let lists = 0;
    const ipsets: IpsetLike = {
      list: (...a) => (lists++, client.list(...a)),
      create: (...a) => client.create(...a), replace: (...a) => client.replace(...a), destroy: (...a) => client.destroy(...a),
      add: (...a) => client.add(...a), del: (...a) => client.del(...a),
    };
    const pw = Portwall.open({ netns: ns.name, config, ipsets, conntrack: null });
    try {
      const set4 = memberSetName('sg-web', 4);
      await pw.apply(state('routed', [webGroup()], [port(1, ['sg-web'])]));
      expect(members(set4)).toEqual(['192.0.2.2']);
      const listed = lists;
      expect((await pw.upsertPort(port(2, ['sg-web']))).ipsets?.published).toEqual([set4]);
      expect(members(set4)).toEqual(['192.0.2.2', '192.0.2.3']);
      await pw.upsertPort(port(2, ['sg-web'], { fixed_ips: [{ ip_address: '192.0.2.77' }] }));
      expect(members(set4)).toEqual(['192.0.2.2', '192.0.2.77']);
      await pw.removePort('port-00001');
      expect(members(set4)).toEqual(['192.0.2.77']);
      // A port joining another group that is no remote group: nothing to publish.
      expect((await pw.upsertPort(port(3, []))).ipsets).toEqual({ published: [], destroyed: [], inUse: [] });
      expect(lists).toBe(listed);
      // A whole state lists and repairs what someone else changed in the set.
      ns.exec('ipset', ['add', set4, '192.0.2.200']);
      await pw.apply(state('routed', [webGroup()], [port(2, ['sg-web'], { fixed_ips: [{ ip_address: '192.0.2.77' }] }), port(3, [])]));
      expect(lists).toBe(listed + 1);
      expect(members(set4)).toEqual(['192.0.2.77']);
    } finally {
      await pw.close();
    }
  });
});
