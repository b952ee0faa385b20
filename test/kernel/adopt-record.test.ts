// The adopt record: a handle that committed leaves, as it closes, the generation and a digest of what it
// programmed; a new handle given the same state adopts from it with a look at set definitions and a few small
// sets (no full listing, nothing committed), in both modes — and lists in full, then repairs, whenever the
// record cannot vouch: another writer committed, the state differs (in size or only in a rule), no record.
import { afterEach, beforeEach, describe, expect, test } from 'vitest';

import { Portwall, type PortwallOptions } from '../../src/apply/portwall.js';
import { binding, type NftBinding } from '../../src/native.js';
import { openNft } from '../../src/nft/client.js';
import type { NftObject } from '../../src/nft/types.js';
import { realBinding } from '../helpers/bindings.js';
import { sleep } from '../helpers/probes.js';
import { Netns, isRoot, ping, veth } from '../helpers/netns.js';
import { ip4, mac, port, state, webGroup, type Mode } from '../helpers/states.js';
import type { StateInput } from '../../src/model/schema.js';
import { ConntrackClient } from '../../src/conntrack.js';
import type { ConntrackLike } from '../../src/apply/cleanup.js';

/** A binding that records, per listing, whether it was the cheap look (`elementsOf`) or a full one. */
function spying(): { binding: NftBinding; lists: ('look' | 'full')[] } {
  const real = binding();
  const lists: ('look' | 'full')[] = [];
  const nftList: NftBinding['nftList'] = (target, family, table, elementsOf, namedSetsOnly) =>
    (lists.push(elementsOf ? 'look' : 'full'), real.nftList(target, family, table, elementsOf, namedSetsOnly));
  return { lists, binding: realBinding({ nftList }) };
}

/** A handle on `netns` (no conntrack, no collector timer) for `fn`, closed afterwards whatever happens. */
async function withHandle<T>(netns: string, fn: (pw: Portwall) => Promise<T>, options: PortwallOptions = {}): Promise<T> {
  const pw = Portwall.open({ netns, conntrack: null, profileGc: false, ...options });
  try {
    return await fn(pw);
  } finally {
    await pw.close();
  }
}

function doc(mode: Mode, extraPorts: number[] = []): StateInput {
  const d = state(mode, [webGroup(), webGroup('sg-db')], [port(1, ['sg-web']), port(2, ['sg-web', 'sg-db']), port(3, ['sg-db']), ...extraPorts.map((n) => port(n, ['sg-web']))]);
  d.floatingips = [{ id: 'fip-1', floating_ip_address: '203.0.113.10', port_id: 'port-00001' }];
  return d;
}

describe.skipIf(!isRoot).each(['routed', 'bridged'] as Mode[])('adopt record, %s', (mode) => {
  let ns: Netns;
  beforeEach(() => {
    ns = new Netns(`adoptrec-${mode}`);
  });
  afterEach(() => ns?.destroy());

  /** Programs `doc(mode)` with some history (a port added, one removed, a port's groups changed), then closes. */
  async function program(): Promise<void> {
    await withHandle(ns.name, async (pw) => {
      await pw.apply(doc(mode, [9]));
      await pw.upsertPort(port(7, ['sg-db']));
      await pw.removePort('port-00007');
      await pw.removePort('port-00009');
      await pw.upsertPort(port(3, ['sg-web']));
      await pw.upsertPort(port(3, ['sg-db']));
      await pw.collectProfiles();
    });
  }

  const record = (): string => ns.exec('nft', ['list', 'set', 'inet', 'portwall', 'adopt_record']);
  const genid = (): Promise<number> => binding().nftGenid(ns.name);

  test('the same state adopts from the record: no full listing, nothing committed; then changes apply as usual', async () => {
    await program();
    // The nft oracle: one element whose comment names the kernel's current generation.
    const g = await genid();
    expect(record()).toMatch(new RegExp(`comment "gen ${g} ns [0-9a-f]{16} ports 3 groups 2 digest [0-9a-f]+-[0-9a-f]{16}"`));

    const spy = spying();
    await withHandle(ns.name, async (pw) => {
      const r = await pw.apply(doc(mode));
      expect(r).toMatchObject({ adopted: true, adoptedFrom: 'record', changed: false, operations: 0 });
      expect(spy.lists.length).toBeGreaterThan(0);
      expect(spy.lists.every((l) => l === 'look')).toBe(true);
      expect(await genid()).toBe(g);
      // The handle vouches for the kernel: a change is incremental and lands (no listing either).
      const before = spy.lists.length;
      const add = await pw.upsertPort(port(4, ['sg-web']));
      expect(add).toMatchObject({ adopted: false, changed: true });
      expect(spy.lists.length).toBe(before);
    }, { binding: spy.binding });
    // An independent judge: a handle that never trusts a record lists, diffs, and finds nothing to do.
    await withHandle(ns.name, async (judge) => {
      expect((await judge.plan(doc(mode, [4]))).operations).toEqual([]);
    }, { adoptRecord: false });
    // The adopting handle committed (port 4), so its close rewrote the record for the generation it left; the
    // judge committed nothing and wrote none.
    expect(record()).toMatch(new RegExp(`gen ${await genid()} ns [0-9a-f]{16} ports 4 groups 2 `));
  });

  test.runIf(mode === 'routed')('packets after adopting from the record: a port added then is filtered as programmed', async () => {
    await program();
    const vm = new Netns('adoptrec-vm');
    try {
      await withHandle(ns.name, async (pw) => {
        expect((await pw.apply(doc(mode))).adoptedFrom).toBe('record');
        veth(ns, 'tap4', vm, 'eth0', { a: ['192.0.2.254/24'], b: [`${ip4(4)}/24`] });
        vm.exec('ip', ['link', 'set', 'eth0', 'address', mac(4)]);
        await pw.upsertPort(port(4, ['sg-web']));
        // sg-web lets ping in; a group without rules does not.
        expect(ping(ns, ip4(4)!, { count: 1, waitS: 2 })).toBe(true);
        await pw.upsertGroup({ id: 'sg-none', stateful: true, security_group_rules: [] });
        await pw.upsertPort(port(4, ['sg-none']));
        expect(ping(ns, ip4(4)!, { count: 1, waitS: 1 })).toBe(false);
      });
    } finally {
      vm.destroy();
    }
  });

  test('the look: every set\'s definition (or the named ones only), the elements of the named sets only, no chains or rules', async () => {
    await program();
    const nft = openNft({ netns: ns.name });
    const full = await nft.list({ table: 'portwall' });
    const look = await nft.list({ table: 'portwall', elementsOf: ['profiles', 'adopt_record'] });
    expect(look.genid).toBe(full.genid);
    const sets = (os: NftObject[]) => os.filter((o) => o.kind === 'set').map((o) => `${o.family} ${(o as { name: string }).name}`).sort();
    expect(sets(look.objects)).toEqual(sets(full.objects));
    expect(look.objects.filter((o) => o.kind === 'chain' || o.kind === 'rule')).toEqual([]);
    expect(full.objects.some((o) => o.kind === 'rule')).toBe(true);
    const listed = look.objects.flatMap((o) => (o.kind === 'elements' ? [o.set] : [])).sort();
    expect(listed).toEqual(['adopt_record', 'profiles']);
    const profiles = (os: NftObject[]) => os.find((o) => o.kind === 'elements' && o.set === 'profiles');
    expect(profiles(look.objects)).toEqual(profiles(full.objects));
    // A peek: the named sets alone, definitions and elements.
    const peek = await nft.list({ table: 'portwall', elementsOf: ['profiles'], namedSetsOnly: true });
    expect(peek.objects.filter((o) => o.kind !== 'table').map((o) => o.kind).sort()).toEqual(['elements', 'set']);
    expect(profiles(peek.objects)).toEqual(profiles(full.objects));
    // Names only (the adopting handle's look): every set named, only the named sets defined, and a fresh client
    // learns only those definitions from it.
    const fresh = openNft({ netns: ns.name });
    const names = await fresh.list({ table: 'portwall', elementsOf: ['profiles', 'adopt_record'], namesOnly: true });
    expect(sets(names.objects)).toEqual(sets(full.objects));
    const defined = (os: NftObject[]) => os.flatMap((o) => (o.kind === 'set' && o.key.length > 0 ? [o] : []));
    expect(defined(names.objects).map((o) => o.name).sort()).toEqual(['adopt_record', 'profiles']);
    expect(defined(names.objects)).toEqual(defined(full.objects).filter((o) => o.name === 'profiles' || o.name === 'adopt_record'));
    expect(profiles(names.objects)).toEqual(profiles(full.objects));
    expect(fresh.knownSet('inet', 'portwall', 'profiles')).toBeDefined();
    expect(fresh.knownSet('inet', 'portwall', 'ports_dev')).toBeUndefined();
  });

  test('another writer since the record: a full listing, and the foreign element goes', async () => {
    await program();
    ns.exec('nft', ['add', 'element', 'inet', 'portwall', 'nd_in', '{ echo-request }']);
    const spy = spying();
    await withHandle(ns.name, async (pw) => {
      const r = await pw.apply(doc(mode));
      expect(r).toMatchObject({ adopted: true, adoptedFrom: 'listing', changed: true });
      expect(spy.lists).toContain('full');
      expect(ns.exec('nft', ['list', 'set', 'inet', 'portwall', 'nd_in'])).not.toContain('echo-request');
    }, { binding: spy.binding });
  });

  test('a different state: of another size, or the same size with one rule changed — a full listing that finds the change', async () => {
    await program();
    await withHandle(ns.name, async (pw) => {
      expect(await pw.apply(doc(mode, [5]))).toMatchObject({ adoptedFrom: 'listing', changed: true });
    }, { binding: spying().binding });
    // Same counts, one rule's port changed: only the digest tells.
    const changed = doc(mode, [5]);
    changed.security_groups![0]!.security_group_rules![0]!.port_range_min = 81;
    changed.security_groups![0]!.security_group_rules![0]!.port_range_max = 81;
    const spy = spying();
    await withHandle(ns.name, async (pw) => {
      const r = await pw.apply(changed);
      expect(r).toMatchObject({ adoptedFrom: 'listing', changed: true });
      expect(spy.lists).toEqual(expect.arrayContaining(['look', 'full']));
      expect(ns.exec('nft', ['list', 'ruleset'])).toMatch(/\b81\b/);
    }, { binding: spy.binding });
  });

  test('a record restored into another namespace (nft -f of a saved ruleset) is not trusted, even at its generation', async () => {
    await program();
    const g = await genid();
    const saved = ns.exec('nft', ['list', 'ruleset']);
    const other = new Netns(`adoptrec-copy-${mode}`);
    try {
      other.exec('nft', ['-f', '-'], { input: saved });
      // The copy differs from what the record describes (an element added by hand) …
      other.exec('nft', ['add', 'element', 'inet', 'portwall', 'nd_in', '{ echo-request }']);
      // … and is brought to the record's generation, as a coincidence could.
      for (let i = 0; i < 1000 && (await binding().nftGenid(other.name)) < g; i++) other.exec('nft', [i % 2 ? 'delete' : 'add', 'table', 'ip', 'bump']);
      expect(await binding().nftGenid(other.name)).toBe(g);
      expect(other.exec('nft', ['list', 'set', 'inet', 'portwall', 'adopt_record'])).toContain(`gen ${g} `);
      await withHandle(other.name, async (pw) => {
        expect(await pw.apply(doc(mode))).toMatchObject({ adoptedFrom: 'listing', changed: true });
        expect(other.exec('nft', ['list', 'set', 'inet', 'portwall', 'nd_in'])).not.toContain('echo-request');
      });
    } finally {
      other.destroy();
    }
  });

  test('no record without a commit, none trusted with adoptRecord false, and listings never show it', async () => {
    await program();
    const g = await genid();
    // A handle that commits nothing writes nothing (adopting an unchanged kernel commits nothing at all).
    await withHandle(ns.name, (idle) => idle.apply(doc(mode)));
    expect(await genid()).toBe(g);
    const spy = spying();
    await withHandle(ns.name, async (off) => {
      expect(await off.apply(doc(mode))).toMatchObject({ adoptedFrom: 'listing', changed: false });
      expect(spy.lists.every((l) => l === 'full')).toBe(true);
      const status = await off.status();
      expect(status.objects.some((o) => (o.kind === 'set' && o.name === 'adopt_record') || (o.kind === 'elements' && o.set === 'adopt_record'))).toBe(false);
    }, { binding: spy.binding, adoptRecord: false });
  });

  test('a handle never closed (a process killed) leaves the record once quiet; it still vouches after writing it; recordIdleMs false waits for close', async () => {
    /** Polls the kernel's generation until it is `want` (bounded), then returns it. */
    const reach = async (want: number): Promise<number> => {
      for (const t0 = Date.now(); Date.now() - t0 < 5000; await sleep(20)) if ((await genid()) >= want) break;
      return genid();
    };
    const changed = doc(mode);
    changed.ports = changed.ports!.map((p) => (p.id === 'port-00003' ? port(3, ['sg-web']) : p));
    const spy = spying();
    // Left open until the end, as a process killed with SIGKILL leaves its handle: only the quiet period writes.
    const open = Portwall.open({ netns: ns.name, conntrack: null, profileGc: false, recordIdleMs: 150, binding: spy.binding });
    try {
      await open.apply(doc(mode, [9]));
      await open.removePort('port-00009');
      const committed = await genid();
      // One commit after the quiet period, of the record alone, naming the generation it leaves.
      expect(await reach(committed + 1)).toBe(committed + 1);
      expect(record()).toContain(`comment "gen ${committed + 1} `);
      // Its writer still vouches for the kernel: the next change commits from memory (no listing), and the
      // record follows it after another quiet period.
      const listed = spy.lists.length;
      expect(await open.upsertPort(port(3, ['sg-web']))).toMatchObject({ adopted: false, changed: true, genid: committed + 2 });
      // (Port 3's old rule profile is unused now: collected, or a successor's compile would differ.)
      await open.collectProfiles();
      expect(spy.lists.length).toBe(listed);
      const last = await genid();
      expect(await reach(last + 1)).toBe(last + 1);
      expect(record()).toContain(`comment "gen ${last + 1} `);
      // A successor (the open handle never closed) adopts from that record: nothing listed in full, committed.
      const next = spying();
      await withHandle(ns.name, async (pw) => {
        expect(await pw.apply(changed)).toMatchObject({ adoptedFrom: 'record', changed: false });
      }, { binding: next.binding });
      expect(next.lists.every((l) => l === 'look')).toBe(true);
      expect(await genid()).toBe(last + 1);
    } finally {
      await open.close();
    }
    // With recordIdleMs false, a handle's commits are not followed by a record until it closes.
    await withHandle(ns.name, async (pw) => {
      expect((await pw.apply(changed)).adoptedFrom).toBe('record');
      const r = await pw.upsertPort(port(3, ['sg-db']));
      await sleep(400);
      expect(await genid()).toBe(r.genid);
      expect(record()).not.toContain(`gen ${r.genid} `);
    }, { recordIdleMs: false });
    expect(record()).toContain(`comment "gen ${await genid()} `);
  });

  test('conntrack after adopting: no full pass from a record whose writer owed none; one when it skipped a cleanup or had no conntrack; a profile collection owes none', async () => {
    // A client whose dumps are counted (each cleanup pass lists; a namespace tracking nothing is only counted).
    const ct = new ConntrackClient({ netns: ns.name, persistent: true });
    let dumps = 0;
    const spy: ConntrackLike = { list: (f) => (dumps++, ct.list(f)), deleteEntries: (e) => ct.deleteEntries(e), count: () => ct.count() };
    const flows = () => ns.exec('conntrack', ['-L', '-w', '101']).split('\n').filter((l) => l.includes('src=')).map((l) => /dport=(\d+)/.exec(l)![1]).sort();
    try {
      // The writer adopts an empty namespace (its full pass finds nothing) and cleans its changes: clean.
      await withHandle(ns.name, async (pw) => {
        await pw.apply(doc(mode, [9]));
        await pw.removePort('port-00009');
      }, { conntrack: ct });
      expect(record()).toMatch(/ clean"/);
      // Tracked since: a flow to port 1 the web group admits (tcp 80 from 198.51.100.0/24), one it refuses.
      const to1 = { zone: 101, protocol: 'tcp' as const, src: '198.51.100.77', dst: ip4(1)!, sport: 40000, timeout: 600 };
      await ct.create([{ ...to1, dport: 80 }, { ...to1, sport: 40001, dport: 9999 }]);
      expect(flows()).toEqual(['80', '9999']);

      // Adopted from a clean record: nothing owed, nothing dumped (the hand-made flow is outside the contract).
      await withHandle(ns.name, async (pw) => {
        const r = await pw.apply(doc(mode));
        expect(r).toMatchObject({ adoptedFrom: 'record', cleanup: { examined: 0, deleted: 0 } });
        expect(dumps).toBe(0);
        // A change committed without its cleanup: the record it leaves does not say clean.
        await pw.upsertPort(port(4, ['sg-web']), { cleanup: false });
      }, { conntrack: spy });
      expect(record()).not.toMatch(/clean/);
      expect(flows()).toEqual(['80', '9999']);

      // From that record: a full pass, which deletes the refused flow and keeps the admitted one.
      await withHandle(ns.name, async (pw) => {
        const r = await pw.apply(doc(mode, [4]));
        expect(r.adoptedFrom).toBe('record');
        expect(r.cleanup.examined).toBeGreaterThanOrEqual(2);
        expect(r.cleanup.deleted).toBe(1);
        expect(dumps).toBeGreaterThan(0);
      }, { conntrack: spy });
      expect(flows()).toEqual(['80']);

      // A handle that cleans what it changes writes clean again; a profile collection (a commit made without a
      // cleanup, taking no permission away) keeps it so.
      expect(record()).not.toMatch(/clean/); // it committed nothing: the record is still the one before
      const later = doc(mode, [4, 5]);
      later.ports = later.ports!.map((p) => (p.id === 'port-00002' ? port(2, ['sg-web']) : p));
      await withHandle(ns.name, async (pw) => {
        await pw.apply(doc(mode, [4, 5]));
        await pw.upsertPort(port(2, ['sg-web'])); // its profile (sg-web + sg-db) now unused
        expect(await pw.collectProfiles()).toBe(1);
      }, { conntrack: ct });
      expect(record()).toMatch(/ clean"/);
      // A handle without conntrack never writes clean, not even after adopting from a clean record.
      await withHandle(ns.name, async (pw) => {
        expect(await pw.apply(later)).toMatchObject({ adoptedFrom: 'record' });
        await pw.removePort('port-00005');
      });
      expect(record()).not.toMatch(/clean/);
    } finally {
      await ct.close();
    }
  });
});
