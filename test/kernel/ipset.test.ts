import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { IpsetClient } from '../../src/ipset.js';
import { PortwallError } from '../../src/errors.js';
import { Netns, Topology, isRoot, ping, startTcpServer, tcpConnect } from '../helpers/netns.js';

if (!isRoot) console.warn(`skipping ipset kernel tests: ${!isRoot}`);

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(PortwallError);
    return (e as PortwallError).code;
  }
  return undefined;
}

function oracleMembers(ns: Netns, name: string): string[] {
  const text = ns.exec('ipset', ['list', name]);
  return text.slice(text.indexOf('Members:\n') + 9).split('\n').filter(Boolean).sort();
}

// Every case twice: a socket per call, and one socket held across the client's calls (closed at the end).
describe.skipIf(!isRoot).each([false, true])('ipset in a namespace (persistent %s)', (persistent) => {
  let ns: Netns;
  let sets: IpsetClient;

  beforeAll(() => {
    ns = new Netns('t');
    sets = new IpsetClient({ netns: ns.name, persistent });
  });
  afterAll(async () => {
    await sets?.close();
    ns.destroy();
  });

  it('creates sets that live only in the namespace', async () => {
    await sets.create('pw-v4', { type: 'hash:net' });
    await sets.create('pw-v6', { type: 'hash:ip', family: 'ipv6', maxelem: 4096, counters: true });
    expect(ns.exec('ipset', ['list', '-n']).split('\n')).toEqual(expect.arrayContaining(['pw-v4', 'pw-v6']));
    expect(execFileSync('ipset', ['list', '-n'], { encoding: 'utf8' })).not.toContain('pw-v4');
    const [v6] = await sets.list('pw-v6', { headersOnly: true });
    expect(v6).toMatchObject({ name: 'pw-v6', type: 'hash:ip', family: 'ipv6', maxelem: 4096, counters: true, entries: 0 });
    expect(v6!.members).toBeUndefined();
  });

  it('changes many members in one call, visible to `ipset list`', async () => {
    const members = Array.from({ length: 1000 }, (_, i) => `198.51.100.${i % 250}`).concat(['203.0.113.0/24']);
    await sets.add('pw-v4', members);
    const expected = [...new Set(members)].map((m) => (m.includes('/') ? m : m)).sort();
    expect(oracleMembers(ns, 'pw-v4')).toEqual(expected);
    await sets.del('pw-v4', ['198.51.100.1', '198.51.100.2', '192.0.2.99']); // the absent one is fine
    expect(oracleMembers(ns, 'pw-v4')).toHaveLength(expected.length - 2);
    expect(await sets.test('pw-v4', ['198.51.100.1', '198.51.100.3', '203.0.113.77', '192.0.2.1'])).toEqual([false, true, true, false]);
    const [info] = await sets.list('pw-v4');
    expect(info!.entries).toBe(expected.length - 2);
    expect(info!.members).toContain('203.0.113.0/24');
  });

  it('handles IPv6 and hash:net,iface members', async () => {
    await sets.add('pw-v6', ['2001:db8::1', '2001:db8::2']);
    expect(oracleMembers(ns, 'pw-v6').map((l) => l.split(' ')[0])).toEqual(['2001:db8::1', '2001:db8::2']);
    await sets.create('pw-iface', { type: 'hash:net,iface', family: 'ipv6' });
    await sets.add('pw-iface', [{ ip: '2001:db8:1::/48', iface: 'eth0' }]);
    expect((await sets.list('pw-iface'))[0]!.members).toEqual([{ ip: '2001:db8:1::/48', iface: 'eth0' }]);
  });

  it('replaces, swaps and renames atomically', async () => {
    await sets.create('pw-a', { type: 'hash:ip' });
    await sets.add('pw-a', ['192.0.2.1', '192.0.2.2']);
    await sets.replace('pw-a', ['192.0.2.3']);
    expect(oracleMembers(ns, 'pw-a')).toEqual(['192.0.2.3']);
    expect(ns.exec('ipset', ['list', '-n'])).not.toMatch(/pw-tmp-/);
    await sets.create('pw-b', { type: 'hash:ip' });
    await sets.add('pw-b', ['192.0.2.9']);
    await sets.swap('pw-a', 'pw-b');
    expect(oracleMembers(ns, 'pw-a')).toEqual(['192.0.2.9']);
    await sets.rename('pw-b', 'pw-c');
    expect(oracleMembers(ns, 'pw-c')).toEqual(['192.0.2.3']);
    await sets.destroy('pw-c');
    expect(ns.exec('ipset', ['list', '-n'])).not.toContain('pw-c');
  });

  it('rejects bad input with a code and changes nothing', async () => {
    const before = ns.exec('ipset', ['save']);
    expect(await codeOf(sets.add('pw-missing', ['192.0.2.1']))).toBe('ERR_SET_NOT_FOUND');
    expect(await codeOf(sets.add('pw-v4', ['192.0.2.1', '2001:db8::1']))).toBe('ERR_FAMILY_MISMATCH');
    expect(await codeOf(sets.add('pw-v4', ['192.0.2.1', '192.0.2.300']))).toBe('ERR_INVALID_VALUE');
    expect(await codeOf(sets.add('pw-v4', ['192.0.2.0/33']))).toBe('ERR_INVALID_VALUE');
    expect(await codeOf(sets.create('pw-v4', { type: 'hash:net' }))).toBe('ERR_SET_EXISTS');
    expect(await codeOf(sets.create('x'.repeat(32), { type: 'hash:net' }))).toBe('ERR_INVALID_VALUE');
    expect(await codeOf(sets.create('pw-bad', { type: 'bitmap:port' as never }))).toBe('ERR_INVALID_VALUE');
    expect(await codeOf(sets.add('pw-iface', ['2001:db8::1']))).toBe('ERR_INVALID_VALUE');
    expect(await codeOf(sets.destroy('pw-missing'))).toBe('ERR_SET_NOT_FOUND');
    expect(await codeOf(sets.rename('pw-v4', 'pw-v6'))).toBe('ERR_SET_EXISTS');
    expect(ns.exec('ipset', ['save'])).toBe(before);
    const err = await sets.add('pw-v4', ['192.0.2.1', '2001:db8::1']).catch((e: PortwallError) => e);
    expect(err).toMatchObject({ field: 'members[1]' });
  });

  it('a bulk add the kernel stops half way leaves nothing behind for the next call', async () => {
    await sets.create('pw-small', { type: 'hash:ip', maxelem: 2 });
    // Enough members for several netlink messages: the kernel refuses the first message past the limit.
    const many = Array.from({ length: 600 }, (_, i) => `198.18.${i >> 8}.${i & 255}`);
    expect(await codeOf(sets.add('pw-small', many))).toBe('ERR_KERNEL');
    const held = oracleMembers(ns, 'pw-small');
    expect(held.length).toBeLessThanOrEqual(2);
    // The next calls (on the same socket, when held) send only their own members.
    await sets.create('pw-next', { type: 'hash:ip' });
    await sets.add('pw-next', ['198.51.100.50']);
    expect(oracleMembers(ns, 'pw-next')).toEqual(['198.51.100.50']);
    expect(oracleMembers(ns, 'pw-small')).toEqual(held);
  });

  it('fails with ERR_NETNS for a namespace that does not exist', async () => {
    const gone = new IpsetClient({ netns: 'pw-no-such-netns', persistent });
    expect(await codeOf(gone.list())).toBe('ERR_NETNS');
    await gone.close();
  });
});

describe.skipIf(!isRoot)('a persistent ipset client', () => {
  it('holds one socket: no socket is opened or closed per call, and close() releases it', async () => {
    const ns = new Netns('tp');
    const sets = new IpsetClient({ netns: ns.name, persistent: true });
    try {
      await sets.create('pw-p', { type: 'hash:ip' });
      const fds = () => readdirSync('/proc/self/fd').length;
      const open = fds();
      for (let i = 1; i <= 20; i++) await sets.add('pw-p', [`192.0.2.${i}`]);
      await sets.del('pw-p', ['192.0.2.1']);
      expect(fds()).toBe(open);
      expect(oracleMembers(ns, 'pw-p')).toHaveLength(19);
      await sets.close();
      expect(fds()).toBe(open - 1);
      // Still usable: a later call opens a socket again.
      expect((await sets.list('pw-p'))[0]!.entries).toBe(19);
    } finally {
      await sets.close();
      ns.destroy();
    }
  });
});

describe.skipIf(!isRoot)('ipset matched by iptables with real traffic', () => {
  let topo: Topology;
  beforeAll(() => {
    topo = new Topology();
  });
  afterAll(() => topo.remove());

  it('accepts and drops pings by set membership', async () => {
    const sets = new IpsetClient({ netns: topo.server.name });
    await sets.create('pw-allow', { type: 'hash:net' });
    topo.server.exec('iptables', ['-A', 'INPUT', '-p', 'icmp', '-m', 'set', '!', '--match-set', 'pw-allow', 'src', '-j', 'DROP']);
    expect(ping(topo.client, topo.serverAddr, { count: 2 })).toBe(false);
    await sets.add('pw-allow', ['198.51.100.0/24']);
    expect(ping(topo.client, topo.serverAddr, { count: 2 })).toBe(true);
    await sets.replace('pw-allow', ['192.0.2.0/24']);
    expect(ping(topo.client, topo.serverAddr, { count: 2 })).toBe(false);
    expect(await codeOf(sets.destroy('pw-allow'))).toBe('ERR_KERNEL'); // still referenced by the rule
  });
});
