// Stateless security groups (docs/requirements.md): no conntrack state for the port's traffic, so the rules must allow both
// directions themselves — with rules both ways traffic passes and leaves no conntrack entry; with only the
// ingress rule the replies are dropped (nothing "established" lets them out).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Portwall } from '../../src/apply/portwall.js';
import { ComputeHost, MODES, OUTSIDE, group, openFirewall, pingCount, state, type Vm } from '../helpers/hosts.js';
import { isRoot } from '../helpers/netns.js';

const PING_IN = { direction: 'ingress' as const, ethertype: 'IPv4' as const, protocol: 'icmp', remote_ip_prefix: `${OUTSIDE.a4}/32` };
const PING_OUT = { direction: 'egress' as const, ethertype: 'IPv4' as const, protocol: 'icmp', remote_ip_prefix: `${OUTSIDE.a4}/32` };

describe.skipIf(!isRoot).each(MODES)('stateless groups (%s)', (mode) => {
  let h: ComputeHost;
  let fw: Portwall;
  let vm: Vm;
  const apply = (rules: (typeof PING_IN | typeof PING_OUT)[]) =>
    fw.apply(state([h.networkState('net-a')], [group('sg-nostate', rules, false)], [h.port(vm, { security_groups: ['sg-nostate'] })]));

  beforeAll(() => {
    h = new ComputeHost(mode, [{ id: 'net-a', zone: 101, bridge: 'br-a', macByte: 20 }]);
    vm = h.addVm('vm1', { n: 21 });
    fw = openFirewall(h);
  });
  afterAll(async () => {
    await fw?.close();
    h?.destroy();
  });

  it('with rules both ways a ping passes and no conntrack entry exists for it', async () => {
    await apply([PING_IN, PING_OUT]);
    expect(await pingCount(h.outside, vm.ip4, { count: 3, src: mode === 'bridged' ? OUTSIDE.a4 : undefined })).toBe(3);
    const entries = h.host.exec('conntrack', ['-L', '-p', 'icmp', '-d', vm.ip4]).split('\n').filter((l) => l.includes('src='));
    expect(entries).toEqual([]);
  });

  it('with the ingress rule only, the replies are dropped (no state lets them back out)', async () => {
    await apply([PING_IN]);
    expect(await pingCount(h.outside, vm.ip4, { count: 2, src: mode === 'bridged' ? OUTSIDE.a4 : undefined })).toBe(0);
  });
});
