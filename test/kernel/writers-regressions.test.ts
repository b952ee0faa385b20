/**
 * Two ways another writer could have been overridden, found by the concurrent-writers test, each reproduced
 * against the kernel in a namespace of its own:
 * - a listing that kept seeing commits between its per-family dumps must not pass for one generation (the
 *   batch computed from it would rest on a stale part) — it reports the oldest, so the kernel refuses that
 *   batch and the handle lists again;
 * - the profile collector is housekeeping: after another writer committed, it collects nothing rather than
 *   adopt and rewrite that writer's state.
 */
import { expect, test } from 'vitest';

import { Portwall } from '../../src/apply/portwall.js';
import { binding, type NftBinding } from '../../src/native.js';
import { Netns } from '../helpers/netns.js';
import { busyGroup, network, port, state, webGroup } from '../helpers/states.js';

const BRIDGE_FAMILY = 7;

test('a listing interrupted between its family dumps never lets a stale part through', async () => {
  const ns = new Netns('listmix');
  const nets = [network('routed'), network('bridged', 'net-b', 102, 'br-b')];
  const S = { networks: nets, security_groups: [webGroup()], ports: [port(1, ['sg-web']), port(2, ['sg-web'], {}, 'net-b')] };
  const A = { networks: nets, security_groups: [busyGroup('sg-a', 3)], ports: [port(10, ['sg-a']), port(11, ['sg-a'], {}, 'net-b')] };
  const other = Portwall.open({ netns: ns.name, conntrack: null, profileGc: false });
  const real = binding();
  let meddled = 0;
  // Another writer adds a routed port (inet elements) right before each bridge-family dump, 4 times.
  const spy: NftBinding = {
    nftSocketOpen: (n) => real.nftSocketOpen!(n),
    nftCommit: (t, b, g) => real.nftCommit(t, b, g),
    nftList: async (t, family, table) => {
      if (family === BRIDGE_FAMILY && meddled < 4) await other.upsertPort(port(100 + meddled++, ['sg-web']));
      return real.nftList(t, family, table);
    },
    nftGenid: (t) => real.nftGenid(t),
    nftEncode: (b) => real.nftEncode(b),
    nftSendEncoded: (t, n) => real.nftSendEncoded(t, n),
  };
  const victim = Portwall.open({ netns: ns.name, conntrack: null, binding: spy, profileGc: false });
  const check = Portwall.open({ netns: ns.name, conntrack: null });
  try {
    await other.apply(S);
    const r = await victim.apply(A);
    expect(meddled).toBe(4);
    expect(r.changed).toBe(true);
    // The kernel holds exactly A: the other writer's ports were not kept beside it.
    expect((await check.plan(A)).operations).toEqual([]);
  } finally {
    await Promise.all([victim.close(), other.close(), check.close()]);
    ns.destroy();
  }
});

test('the profile collector does not rewrite another writer\'s state', async () => {
  const ns = new Netns('gcwriter');
  const A = state('routed', [webGroup(), busyGroup('sg-a', 5)], Array.from({ length: 20 }, (_, i) => port(i, ['sg-web'])));
  const B = state('routed', [busyGroup('sg-b', 5)], Array.from({ length: 20 }, (_, i) => port(i + 100, ['sg-b'])));
  const h1 = Portwall.open({ netns: ns.name, conntrack: null, profileGc: { delayMs: 200, max: 4 } });
  const h2 = Portwall.open({ netns: ns.name, conntrack: null });
  const check = Portwall.open({ netns: ns.name, conntrack: null });
  try {
    await h1.apply(A);
    await h1.upsertPort(port(0, ['sg-a']));
    await h1.upsertPort(port(0, ['sg-web', 'sg-a'])); // leaves the profile {sg-a} unused: the collector is armed
    expect(h1.unusedProfiles).toBe(1);
    await h2.apply(B);
    await new Promise((r) => setTimeout(r, 1000)); // several collector periods
    // The collector's batch was refused (h2 committed since): the kernel is still exactly B.
    expect((await check.plan(B)).operations).toEqual([]);
    // The handle's own next change adopts (and wins, as the latest writer).
    const r = await h1.apply(A);
    expect(r.adopted).toBe(true);
    expect((await check.plan(A)).operations).toEqual([]);
  } finally {
    await Promise.all([h1.close(), h2.close(), check.close()]);
    ns.destroy();
  }
});
