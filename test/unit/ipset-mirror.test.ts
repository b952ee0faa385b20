/**
 * The published ipsets (config `publishIpsets`) of a long-lived handle, on the fake binding and an in-memory
 * ipset: after every change — single edits, batches, whole states, groups that start or stop being remote
 * groups, an address two ports share on two networks — the sets hold exactly what a whole publish of the state
 * would make them hold, and an edit that moves members only lists nothing: it adds and deletes those members.
 * Seeded (PW_IPSET_SEED); the kernel side is test/kernel/ipset-publish.test.ts.
 */
import { describe, expect, test } from 'vitest';

import { Portwall, type Edit } from '../../src/apply/portwall.js';
import type { IpsetLike } from '../../src/apply/ipsets.js';
import { InvalidStateError } from '../../src/model/problems.js';
import type { StateInput } from '../../src/model/schema.js';
import { FakeNft } from '../../src/nft/fake.js';
import { memberSetName } from '../../src/render/iptables-syntax.js';
import { rng } from '../helpers/hostile.js';
import { testSeed } from '../helpers/prng.js';
import { busyGroup, ip4, ip6, network, port, webGroup } from '../helpers/states.js';

const SEED = testSeed('PW_IPSET_SEED', 4242);
const STEPS = 300;

type Port = NonNullable<StateInput['ports']>[number];
type Group = NonNullable<StateInput['security_groups']>[number];

/** ipsets in memory, counting the calls that list them. */
class MemoryIpsets implements IpsetLike {
  readonly sets = new Map<string, Set<string>>();
  lists = 0;
  changes = 0;
  async list(): Promise<never[]> {
    this.lists++;
    return [...this.sets].map(([name, m]) => ({ name, type: 'hash:net', family: name.startsWith('pw6') ? 'ipv6' : 'ipv4', revision: 0, counters: false, comment: false, references: 0, entries: m.size, members: [...m] })) as never[];
  }
  async create(name: string): Promise<void> {
    this.sets.set(name, new Set());
  }
  async replace(name: string, members: readonly unknown[]): Promise<void> {
    this.changes++;
    this.sets.set(name, new Set(members as string[]));
  }
  async destroy(name: string): Promise<void> {
    this.sets.delete(name);
  }
  async add(name: string, members: readonly unknown[]): Promise<void> {
    this.changes++;
    const s = this.sets.get(name);
    if (!s) throw new Error(`add: no set ${name}`);
    for (const m of members as string[]) s.add(m);
  }
  async del(name: string, members: readonly unknown[]): Promise<void> {
    this.changes++;
    const s = this.sets.get(name);
    if (!s) throw new Error(`del: no set ${name}`);
    for (const m of members as string[]) s.delete(m);
  }
}

const NETWORKS = [network('routed'), network('routed', 'net-b', 102)];
const GROUP_IDS = ['sg-web', 'sg-b', 'sg-c'] as const;
/** sg-c names sg-web as a remote group (IPv6) in one version and not in the other. */
const groupC = (remote: boolean): Group => busyGroup('sg-c', 4, remote ? 'sg-web' : undefined);

/** The sets a whole publish of `doc` makes, as `ipset list` prints their members. */
async function expected(pw: Portwall, doc: StateInput): Promise<Map<string, string[]>> {
  const { ir } = await pw.plan(doc);
  return new Map(ir.members.map((m) => [memberSetName(m.groupId, m.family), m.prefixes.map((p) => p.replace(m.family === 4 ? /\/32$/ : /\/128$/, '')).sort()]));
}
const held = (ipsets: MemoryIpsets): Map<string, string[]> => new Map([...ipsets.sets].map(([n, m]) => [n, [...m].sort()]));

describe('published ipsets follow a handle\'s changes', () => {
  test(`${STEPS} random changes: the sets always equal a whole publish; member moves list nothing (seed ${SEED})`, async () => {
    const r = rng(SEED);
    const ipsets = new MemoryIpsets();
    const pw = Portwall.open({ binding: new FakeNft(), conntrack: null, profileGc: false, config: { publishIpsets: true }, ipsets });
    const ports = new Map<string, Port>();
    const groups = new Map<string, Group>([['sg-web', webGroup()], ['sg-b', webGroup('sg-b')], ['sg-c', groupC(false)]]);
    const doc = (): StateInput => ({ networks: NETWORKS, security_groups: [...groups.values()], ports: [...ports.values()] });
    // A port n on either network; its IPv4 address sometimes another port's (the same address on the other
    // network is allowed, and both then give the member).
    const somePort = (n: number): Port => {
      const net = r.chance(0.5) ? 'net-a' : 'net-b';
      const v4 = ip4(r.chance(0.3) ? r.int(6) : n)!;
      const ids = GROUP_IDS.filter(() => r.chance(0.5));
      return port(n, ids, { fixed_ips: [{ ip_address: v4 }, { ip_address: ip6(n) }] }, net);
    };
    const someEdit = (): { edit: Edit; then: () => void } => {
      const roll = r.int(10);
      if (roll < 6) {
        const p = somePort(r.int(12));
        return { edit: { op: 'upsertPort', port: p }, then: () => void ports.set(p.id, p) };
      }
      if (roll < 9 && ports.size) {
        const id = r.pick([...ports.keys()]);
        return { edit: { op: 'removePort', id }, then: () => void ports.delete(id) };
      }
      const g = groupC(r.chance(0.5));
      return { edit: { op: 'upsertGroup', group: g }, then: () => void groups.set(g.id, g) };
    };
    await pw.apply(doc());
    const tally = { edits: 0, quiet: 0, whole: 0, refused: 0 };
    for (let step = 0; step < STEPS; step++) {
      const what = `seed ${SEED}, step ${step} (PW_IPSET_SEED=${SEED} reproduces it)`;
      const lists = ipsets.lists;
      const kind = r.int(10);
      if (kind === 0) {
        // A whole state: listed and published whole.
        for (const id of [...ports.keys()]) if (r.chance(0.3)) ports.delete(id);
        await pw.apply(doc());
        tally.whole++;
        expect(ipsets.lists, what).toBe(lists + 1);
      } else {
        const edits = Array.from({ length: kind < 3 ? 3 : 1 }, someEdit);
        try {
          const result = await pw.batch(edits.map((e) => e.edit));
          result.refused.forEach((refusal, i) => (refusal ? tally.refused++ : edits[i]!.then()));
        } catch (e) {
          if (!(e instanceof InvalidStateError)) throw e;
          tally.refused++;
          continue;
        }
        tally.edits++;
        if (ipsets.lists === lists) tally.quiet++;
      }
      expect(held(ipsets), what).toEqual(await expected(pw, doc()));
    }
    console.log(`[ipsets] seed ${SEED}: ${tally.edits} edit batches (${tally.quiet} without a listing), ${tally.whole} whole states, ${tally.refused} refused edits`);
    // Most edits move members only; a listing is for a group that became or stopped being a remote group.
    expect(tally.quiet).toBeGreaterThan(tally.edits / 2);
  });

  test('a member two ports give stays until both have let it go; only the moved members are sent', async () => {
    const ipsets = new MemoryIpsets();
    const pw = Portwall.open({ binding: new FakeNft(), conntrack: null, profileGc: false, config: { publishIpsets: true }, ipsets });
    const shared = (n: number, net: string) => port(n, ['sg-web'], { fixed_ips: [{ ip_address: '192.0.2.99' }] }, net);
    await pw.apply({ networks: NETWORKS, security_groups: [webGroup()], ports: [port(1, ['sg-web']), shared(2, 'net-a'), shared(3, 'net-b')] });
    const set4 = memberSetName('sg-web', 4);
    expect([...ipsets.sets.get(set4)!].sort()).toEqual([ip4(1), '192.0.2.99'].sort());
    const lists = ipsets.lists;
    const calls = ipsets.changes;
    await pw.removePort('port-00002');
    expect(ipsets.changes, 'nothing to send: port 3 still gives 192.0.2.99').toBe(calls);
    expect(ipsets.sets.get(set4)!.has('192.0.2.99')).toBe(true);
    const r = await pw.removePort('port-00003');
    expect(r.ipsets).toEqual({ published: [set4], destroyed: [], inUse: [] });
    expect([...ipsets.sets.get(set4)!]).toEqual([ip4(1)]);
    const added = await pw.upsertPort(port(4, ['sg-web']));
    expect(added.ipsets?.published).toEqual([set4]);
    expect([...ipsets.sets.get(set4)!].sort()).toEqual([ip4(1), ip4(4)].sort());
    expect(ipsets.lists).toBe(lists);
  });
});
