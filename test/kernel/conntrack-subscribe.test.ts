// A closed event subscription releases everything: its netlink socket (so the kernel stops queueing events
// for it), its eventfd and its reader thread.
import { readdirSync } from 'node:fs';

import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { ConntrackClient } from '../../src/conntrack.js';
import { Netns, isRoot } from '../helpers/netns.js';

const openFds = (): number => readdirSync('/proc/self/fd').length;

describe.skipIf(!isRoot)('conntrack event subscriptions', () => {
  let ns: Netns;
  beforeAll(() => {
    ns = new Netns('ctsub');
  });
  afterAll(() => ns?.destroy());

  test('subscribing and closing 20 times leaves no descriptor behind', async () => {
    const ct = new ConntrackClient({ netns: ns.name });
    const warm = await ct.subscribe(() => {});
    await warm.close();
    const before = openFds();
    for (let i = 0; i < 20; i++) {
      const sub = await ct.subscribe(() => {});
      await sub.close();
    }
    expect(openFds()).toBe(before);
  });
});
