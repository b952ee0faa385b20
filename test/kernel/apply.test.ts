/**
 * Portwall.apply against the kernel, in fresh namespaces (root): the example state in both modes lists
 * cleanly with its rule ids and is idempotent; the layout promise (a one-port change at 2000 ports is an
 * element-only batch, flat in host size) with timings; a full 1000 ports × 20 rules sync, timed; and one real
 * flow through a routed port.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { IN_PLACE_MAX_LOST, IN_PLACE_MAX_SET } from '../../src/apply/engine.js';
import { idHash } from '../../src/compile/names.js';
import { Portwall, type ApplyResult } from '../../src/apply/portwall.js';
import { binding, type NftBinding } from '../../src/native.js';
import type { StateInput } from '../../src/model/schema.js';
import { openNft } from '../../src/nft/client.js';
import type { NftObject } from '../../src/nft/types.js';
import { decodeOperations } from '../../src/nft/wire.js';
import { readRecords } from '../../src/nft/wire-records.js';
import { diff } from '../../src/apply/diff.js';
import { comparable } from '../helpers/compare.js';
import { Netns, isRoot, startTcpServer, tcpConnect, veth } from '../helpers/netns.js';
import { probe, type ProbeResult } from '../helpers/probes.js';
import { traceLive } from '../../src/trace.js';
import { busyGroup, network, port, state, webGroup, type Mode } from '../helpers/states.js';

const EXAMPLE = JSON.parse(readFileSync(new URL('../../examples/state.json', import.meta.url), 'utf8')) as StateInput;

/** The example state as a bridged or a routed network. */
function example(mode: Mode): StateInput {
  const doc = structuredClone(EXAMPLE);
  const net = doc.networks[0]!;
  net.mode = mode;
  if (mode === 'routed') delete net.bridge;
  return doc;
}

/** The example's devices: its port as a veth "tap" (the peer stays on the host), and br-a when bridged. */
function devices(ns: Netns, mode: Mode): void {
  const dev = EXAMPLE.ports![0]!.device;
  ns.exec('ip', ['link', 'add', dev, 'type', 'veth', 'peer', 'name', 'vm0']);
  if (mode === 'bridged') {
    ns.exec('ip', ['link', 'add', 'br-a', 'type', 'bridge']);
    ns.exec('ip', ['link', 'set', dev, 'master', 'br-a']);
    ns.exec('ip', ['link', 'set', 'br-a', 'up']);
  }
  for (const d of [dev, 'vm0']) ns.exec('ip', ['link', 'set', d, 'up']);
}

const ms = (t: number): string => `${t.toFixed(2)} ms`;

describe.skipIf(!isRoot)('Portwall.apply in a namespace', () => {
  describe.each<Mode>(['bridged', 'routed'])('examples/state.json, %s', (mode) => {
    let ns: Netns;
    beforeAll(() => {
      ns = new Netns(`ex-${mode.slice(0, 3)}`);
      devices(ns, mode);
    });
    afterAll(() => ns?.destroy());

    test('lists cleanly with the rule ids, reloads with nft -f, and a second apply changes nothing', async () => {
      const pw = Portwall.open({ netns: ns.name });
      const first = await pw.apply(example(mode));
      expect(first.changed).toBe(true);
      const listed = ns.tryExec('nft', ['list', 'ruleset']);
      expect(listed.status).toBe(0);
      expect(listed.out).toContain('comment "r1"');
      expect(listed.out).toContain('comment "r2"');
      expect(listed.out).toContain(`table ${mode === 'bridged' ? 'bridge' : 'inet'} portwall`);

      // What nft prints, nft reads back (names are identifiers, no keywords), in a namespace of its own.
      const fresh = new Netns('reload');
      const dir = mkdtempSync(path.join(tmpdir(), 'pw-apply-'));
      try {
        writeFileSync(path.join(dir, 'ruleset.nft'), listed.out);
        const loaded = fresh.tryExec('nft', ['-f', path.join(dir, 'ruleset.nft')]);
        expect(loaded.out).toBe('');
        expect(loaded.status).toBe(0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
        fresh.destroy();
      }

      const nft = openNft({ netns: ns.name });
      const genid = await nft.genid();
      const second = await pw.apply(example(mode));
      expect(second).toMatchObject({ changed: false, operations: 0 });
      expect(await nft.genid()).toBe(genid);
      // A new handle (a restarted agent) adopts what is there: nothing to do either.
      expect((await Portwall.open({ netns: ns.name }).plan(example(mode))).operations).toEqual([]);
    });
  });

  describe.each<Mode>(['routed', 'bridged'])('the layout promise at 2000 ports, %s', (mode) => {
    let ns: Netns;
    beforeAll(() => {
      ns = new Netns(`big-${mode.slice(0, 3)}`);
    });
    afterAll(() => ns?.destroy());

    test('one port added, changed or removed sends hash-set elements only; a group rule removed deletes from an interval set only in place in a small group set, else takes a new version; no listing', async () => {
      const groups = [webGroup(), busyGroup('sg-busy', 20, 'sg-web')];
      // Two rule profiles in use: a port can move from one to the other without making one.
      const ports = Array.from({ length: 2000 }, (_, i) => port(i, i % 2 ? ['sg-web'] : ['sg-web', 'sg-busy']));
      const base = state(mode, groups, ports);
      // The addon, with every batch and every listing request recorded on the way.
      const real = binding();
      const batches: Buffer[] = [];
      let lists = 0;
      const spy: NftBinding = {
        nftSocketOpen: (netns) => real.nftSocketOpen!(netns),
        nftCommit: (target, batch, genid) => (batches.push(batch), real.nftCommit(target, batch, genid)),
        nftList: (target, family, table) => (lists++, real.nftList(target, family, table)),
        nftGenid: (target) => real.nftGenid(target),
        nftEncode: (batch) => real.nftEncode(batch),
        nftSendEncoded: (target, netlink) => real.nftSendEncoded(target, netlink),
      };
      const pw = Portwall.open({ netns: ns.name, binding: spy, profileGc: false });
      const full = await pw.apply(base);
      const status = await pw.status();
      console.log(`[${mode}] 2000 ports x 26 rules: full apply ${ms(full.timings.compile + full.timings.list + full.timings.diff + full.timings.commit)} ` +
        `(compile+layout ${ms(full.timings.compile)}, commit ${ms(full.timings.commit)}), ${full.operations} operations, ` +
        `${status.counts.elements} elements, ${status.counts.rules} rules`);

      const nft = openNft({ netns: ns.name });
      for (const table of ['portwall', 'portwall_raw']) await nft.list({ table });
      const newcomer = port(2500, ['sg-web', 'sg-busy']);
      // The group every port has: a rule added (elements in place), then its first rule taken away (its small
      // set loses one element in place). A group with a set too big for that (more than IN_PLACE_MAX_SET
      // elements) takes a new version of its sets when it loses a rule: adds, a chain refilled, the old sets
      // deleted whole.
      const web = webGroup();
      const https = { id: 'sg-web-8443', direction: 'ingress' as const, ethertype: 'IPv4' as const, protocol: 'tcp', port_range_min: 8443, port_range_max: 8443 };
      const webMore = { ...web, security_group_rules: [...web.security_group_rules!, https] };
      const webLess = { ...web, security_group_rules: [...web.security_group_rules!.slice(1), https] };
      const wide = (n: number) => ({ id: 'sg-wide', stateful: true, security_group_rules: Array.from({ length: n }, (_, i) => (
        { id: `sg-wide-r${i}`, direction: 'ingress' as const, ethertype: 'IPv4' as const, protocol: 'tcp', port_range_min: 1000 + i, port_range_max: 1000 + i })) });
      // A port's change: elements of hash sets and maps only. A rule added to a group: elements of that group's
      // own sets only.
      type Kind = 'hash elements' | 'group elements' | 'in place' | 'new version';
      // The web and wide groups' own chains and sets: every name derived from a group's id ends in its hash.
      const ownHash = new RegExp(`_(${idHash('sg-web')}|${idHash('sg-wide')})\\b`);
      const moreIps = { ...newcomer, fixed_ips: [...newcomer.fixed_ips!, { ip_address: '2001:db8:2::1' }] };
      const steps: [string, () => Promise<ApplyResult>, Kind][] = [
        ['add a port', () => pw.upsertPort(newcomer), 'hash elements'],
        ['add a fixed IP', () => pw.upsertPort(moreIps), 'hash elements'],
        ['move it to the other profile', () => pw.upsertPort({ ...moreIps, security_groups: ['sg-web'] }), 'hash elements'],
        ['and back, its groups in another order', () => pw.upsertPort({ ...moreIps, security_groups: ['sg-busy', 'sg-web'] }), 'hash elements'],
        ['remove it', () => pw.removePort(newcomer.id), 'hash elements'],
        ['add a rule to the group of 2000 ports', () => pw.upsertGroup(webMore), 'group elements'],
        ['remove a rule from it', () => pw.upsertGroup(webLess), 'in place'],
        ['add a group of many rules', () => pw.upsertGroup(wide(IN_PLACE_MAX_SET + 2)), 'new version'],
        ['remove a rule from it', () => pw.upsertGroup(wide(IN_PLACE_MAX_SET + 1)), 'new version'],
      ];
      for (const [what, step, kind] of steps) {
        const before = { batches: batches.length, lists };
        const r = await step();
        expect(r.changed).toBe(true);
        expect(lists, `${what}: no listing`).toBe(before.lists);
        expect(batches.length - before.batches).toBe(1);
        const ops = decodeOperations(batches.at(-1)!, (f, t, n) => nft.knownSet(f, t, n));
        // Elements only, none with a verdict (or its group's own sets and chains only). Element deletes from an
        // interval set (pipapo or rbtree) only in place: at most IN_PLACE_MAX_LOST, from a group's own set of at
        // most IN_PLACE_MAX_SET elements.
        const own = (op: (typeof ops)[number]) => ownHash.test(JSON.stringify(op.object, (_k, v: unknown) => (typeof v === 'bigint' ? 0 : v)));
        if (kind === 'new version') expect(ops.every(own), what).toBe(true);
        else expect(ops.every((op) => op.object.kind === 'elements' && op.object.elements.every((e) => !e.verdict)), what).toBe(true);
        if (kind === 'in place' || kind === 'group elements') expect(ops.every(own), what).toBe(true);
        const setOf = (op: (typeof ops)[number]) => op.object.kind === 'elements'
          ? nft.knownSet('inet', op.object.table, op.object.set) ?? nft.knownSet('bridge', op.object.table, op.object.set)
          : undefined;
        // A port's own data: no interval set at all, adds included.
        if (kind === 'hash elements') for (const op of ops) expect(setOf(op)?.flags ?? [], `${what}: ${op.verb} in ${op.object.kind === 'elements' ? op.object.set : ''}`).not.toContain('interval');
        let intervalDeletes = 0;
        for (const op of ops) {
          if (op.verb !== 'delete' || op.object.kind !== 'elements') continue;
          if (!(setOf(op)?.flags ?? []).includes('interval')) continue;
          intervalDeletes += op.object.elements.length;
          expect(kind, `${what}: delete from ${op.object.set}`).toBe('in place');
          expect(op.object.set, what).toMatch(new RegExp(`_${idHash('sg-web')}$`)); // the web group's own set, of 2 elements
        }
        if (kind === 'in place') expect(intervalDeletes, what).toBeGreaterThan(0);
        expect(intervalDeletes, what).toBeLessThanOrEqual(IN_PLACE_MAX_LOST);
        const n = ops.reduce((a, op) => a + (op.object.kind === 'elements' ? op.object.elements.length : 0), 0);
        console.log(`[${mode}] ${what}: ${r.operations} element operations (${n} elements), commit ${ms(r.timings.commit)}, ` +
          `compile ${ms(r.timings.compile)}, diff ${ms(r.timings.diff)}, cleanup ${ms(r.timings.cleanup)}`);
      }
      // Same groups, same profile: nothing was left to collect, and the kernel equals a fresh layout of the state.
      expect(pw.unusedProfiles).toBe(0);
      expect((await Portwall.open({ netns: ns.name, conntrack: null }).plan({ ...base, security_groups: [webLess, groups[1]!, wide(IN_PLACE_MAX_SET + 1)] })).operations).toEqual([]);
      await pw.close();
    });
  });

  test('a set rebuilt under its own name (deleted and created in one batch) is filled again through its batch id', async () => {
    const ns = new Netns('rebuild');
    try {
      devices(ns, 'routed');
      const pw = Portwall.open({ netns: ns.name, conntrack: null });
      await pw.apply(example('routed'));
      await pw.close();
      const nft = openNft({ netns: ns.name });
      const before = await nft.list({ family: 'inet', table: 'portwall' });
      // What portwall wants (as listed, without the kernel's handles and counters' values).
      const listed = before.objects.filter((o) => o.kind !== 'elements' || o.elements.length > 0)
        .map((o) => { const { handle: _h, ...rest } = o as NftObject & { handle?: bigint }; return rest as NftObject; });
      // The diff believes the kernel's ports_dev has another definition: it flushes the chains that use it,
      // deletes it, creates it again and fills it, all in one batch.
      const current = listed.map((o) => (o.kind === 'set' && o.name === 'ports_dev' ? { ...o, comment: 'edited' } : o));
      const ops = diff(listed, current).operations;
      const lines = ops.map((op) => `${op.verb} ${op.object.kind} ${'name' in op.object ? op.object.name : 'set' in op.object ? op.object.set : ''}`);
      const at = lines.indexOf('create set ports_dev');
      expect(lines.indexOf('delete set ports_dev')).toBeGreaterThanOrEqual(0);
      expect(lines.slice(at, at + 2)).toEqual(['create set ports_dev', 'add elements ports_dev']);
      const tx = nft.transaction();
      for (const op of ops) tx.canonical(op.verb, op.object);
      // Its one element list names it by batch id alone (no other set is created here).
      const lists = readRecords(tx.encode()).flatMap((r) => (r.kind === 'elements' ? [[r.set, r.setId]] : []));
      expect(lists.filter(([, id]) => id !== undefined)).toEqual([[undefined, 1]]);
      expect(lists.some(([name]) => name === 'ports_dev')).toBe(false);
      await tx.commit({ genid: before.genid });
      const after = await nft.list({ family: 'inet', table: 'portwall' });
      expect(comparable(after.objects)).toEqual(comparable(before.objects));
      expect(ns.exec('nft', ['list', 'set', 'inet', 'portwall', 'ports_dev'])).toContain(`"${EXAMPLE.ports![0]!.device}"`);
    } finally {
      ns.destroy();
    }
  });

  test('a state using every part of the layout lists, reloads with nft -f into an empty namespace, and the reload lists the same', async () => {
    // Routed and bridged networks, drop logging, an address-pair prefix, a stateless group, a port without port
    // security, NAT with a floating IP: every table, chain kind and set kind portwall makes.
    const doc: StateInput = {
      networks: [{ ...network('routed', 'net-r', 101), log_drops: 10 }, network('bridged', 'net-b', 102, 'br-x')],
      security_groups: [webGroup(), {
        id: 'sg-sl', stateful: false, security_group_rules: [
          { id: 'sl-dns', direction: 'ingress', ethertype: 'IPv4', protocol: 'udp', port_range_min: 53, port_range_max: 53 },
          { id: 'sl-out', direction: 'egress', ethertype: 'IPv4' },
        ],
      }],
      ports: [
        port(1, ['sg-web'], {}, 'net-r'),
        port(2, ['sg-web'], { allowed_address_pairs: [{ ip_address: '198.51.100.0/28' }] }, 'net-r'),
        port(3, ['sg-sl'], { allowed_address_pairs: [{ ip_address: '203.0.113.64/28' }] }, 'net-b'),
        port(4, [], { port_security_enabled: false }, 'net-b'),
      ],
      nat: { fixed_range: ['192.0.2.0/24'], routing_source_ip: '198.51.100.1', metadata_host: '192.0.2.253', metadata_port: 8775 },
      floatingips: [{ id: 'fip-1', floating_ip_address: '203.0.113.240', port_id: 'port-00001' }],
    };
    const ns = new Netns('richlist');
    const fresh = new Netns('richload');
    const dir = mkdtempSync(path.join(tmpdir(), 'pw-reload-'));
    try {
      await Portwall.open({ netns: ns.name, conntrack: null }).apply(doc);
      const listed = ns.exec('nft', ['list', 'ruleset']);
      for (const t of ['table inet portwall', 'table bridge portwall', 'table ip portwall_nat']) expect(listed).toContain(t);
      writeFileSync(path.join(dir, 'ruleset.nft'), listed);
      expect(fresh.tryExec('nft', ['-f', path.join(dir, 'ruleset.nft')])).toMatchObject({ status: 0, out: '' });
      // The same objects, element for element (a hash set lists its elements in the order of its own hash).
      const objects = (n: Netns) => {
        const items = (JSON.parse(n.exec('nft', ['-j', 'list', 'ruleset'])) as { nftables: Record<string, Record<string, unknown>>[] }).nftables;
        return items.filter((x) => !x.metainfo).map((x) => {
          const [kind, body] = Object.entries(x)[0]!;
          const { handle: _h, ...rest } = body;
          if (Array.isArray(rest.elem)) rest.elem = rest.elem.map((e) => JSON.stringify(e)).sort();
          return `${kind} ${JSON.stringify(rest)}`;
        }).sort();
      };
      const mine = objects(ns);
      console.log(`[reload] ${mine.length} objects listed, the same after nft -f`);
      expect(mine.length).toBeGreaterThan(100);
      expect(objects(fresh)).toEqual(mine);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      fresh.destroy();
      ns.destroy();
    }
  });

  test('full sync of 1000 ports x 20 rules, timed', async () => {
    const ns = new Netns('sync');
    try {
      const doc = state('routed', [busyGroup('sg-busy', 20)], Array.from({ length: 1000 }, (_, i) => port(i, ['sg-busy'])));
      const pw = Portwall.open({ netns: ns.name });
      const t0 = performance.now();
      const r = await pw.apply(doc);
      const total = performance.now() - t0;
      const s = await pw.status();
      console.log(`[routed] 1000 ports x 20 rules, full apply from empty: ${ms(total)} (compile+layout ${ms(r.timings.compile)}, list ${ms(r.timings.list)}, ` +
        `diff ${ms(r.timings.diff)}, commit ${ms(r.timings.commit)}); ${s.counts.elements} elements, ${s.counts.rules} rules`);
      expect(r.changed).toBe(true);
      const again = await pw.apply(doc);
      console.log(`[routed] 1000 x 20, second apply (adopt + diff, no commit): ${ms(again.timings.list + again.timings.compile + again.timings.diff)}`);
      expect(again.changed).toBe(false);
    } finally {
      ns.destroy();
    }
  });

  test('routed traffic: tcp 80 from 198.51.100.0/24 reaches the VM, tcp 81 does not', async () => {
    const client = new Netns('cli');
    const host = new Netns('host');
    const vm = new Netns('vm');
    const servers: { kill(): void }[] = [];
    try {
      veth(client, 'eth0', host, 'uplink', { a: ['198.51.100.2/24'], b: ['198.51.100.1/24'] });
      veth(host, 'tapvm0', vm, 'eth0', { a: ['203.0.113.1/24'] });
      vm.exec('ip', ['link', 'set', 'eth0', 'down']);
      vm.exec('ip', ['link', 'set', 'eth0', 'address', 'fa:16:3e:00:00:10']);
      vm.exec('ip', ['addr', 'add', '203.0.113.10/24', 'dev', 'eth0']);
      vm.exec('ip', ['link', 'set', 'eth0', 'up']);
      vm.exec('ip', ['route', 'add', 'default', 'via', '203.0.113.1']);
      client.exec('ip', ['route', 'add', 'default', 'via', '198.51.100.1']);
      host.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
      servers.push(await startTcpServer(vm, '0.0.0.0', 80), await startTcpServer(vm, '0.0.0.0', 81));
      expect(tcpConnect(client, '203.0.113.10', 81)).toBe(true); // reachable before portwall

      const doc: StateInput = {
        networks: [{ id: 'net-r', zone: 201, mode: 'routed' }],
        security_groups: [{ id: 'sg-http', security_group_rules: [
          { id: 'http-in', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 80, port_range_max: 80, remote_ip_prefix: '198.51.100.0/24' },
        ] }],
        ports: [{ id: 'vm-port', network_id: 'net-r', device: 'tapvm0', mac_address: 'fa:16:3e:00:00:10', fixed_ips: [{ ip_address: '203.0.113.10' }], security_groups: ['sg-http'] }],
      };
      await Portwall.open({ netns: host.name }).apply(doc);
      expect(tcpConnect(client, '203.0.113.10', 80)).toBe(true);
      expect(tcpConnect(client, '203.0.113.10', 81)).toBe(false);
      const ct = host.exec('conntrack', ['-L', '-p', 'tcp', '--dport', '80']);
      expect(ct).toContain('zone=201');
      // The port's profile goes into the mark, its chain is found through the verdict map, the group's chain
      // looks the packet up in the group's own set (nft as the oracle: it prints and reads all of it).
      expect(host.nftText()).toMatch(/meta mark set oifname map @profile_dev/);
      expect(host.nftText()).toMatch(/meta mark & 0x00007fff vmap @prof_in/);
      expect(host.nftText()).toMatch(/meta l4proto \. th sport \. th dport \. ip saddr @i4t0_\w+ meta mark set 0x00007fff return/);
    } finally {
      for (const s of servers) s.kill();
      for (const ns of [client, host, vm]) ns.destroy();
    }
  });

  test('routed ports of two networks: their flows live in the lower zone both ways, whichever side starts', async () => {
    const host = new Netns('host');
    const vms = [new Netns('vm1'), new Netns('vm2')];
    const servers: { kill(): void }[] = [];
    try {
      const nets = [{ id: 'net-hi', zone: 302, gw: '203.0.113.1', ip: '203.0.113.10' }, { id: 'net-lo', zone: 301, gw: '192.0.2.1', ip: '192.0.2.10' }];
      for (const [i, vm] of vms.entries()) {
        veth(host, `tapvm${i}`, vm, 'eth0', { a: [`${nets[i]!.gw}/24`] });
        vm.exec('ip', ['link', 'set', 'eth0', 'down']);
        vm.exec('ip', ['link', 'set', 'eth0', 'address', `fa:16:3e:00:00:2${i}`]);
        vm.exec('ip', ['addr', 'add', `${nets[i]!.ip}/24`, 'dev', 'eth0']);
        vm.exec('ip', ['link', 'set', 'eth0', 'up']);
        vm.exec('ip', ['route', 'add', 'default', 'via', nets[i]!.gw]);
        servers.push(await startTcpServer(vm, '0.0.0.0', 80), await startTcpServer(vm, '0.0.0.0', 81));
      }
      host.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
      const doc: StateInput = {
        networks: nets.map((n) => ({ id: n.id, zone: n.zone, mode: 'routed' as const })),
        security_groups: [{ id: 'sg-web', security_group_rules: [
          { id: 'web-in', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 80, port_range_max: 80 },
          { id: 'all-out', direction: 'egress', ethertype: 'IPv4' },
        ] }],
        ports: nets.map((n, i) => ({
          id: `port-${i}`, network_id: n.id, device: `tapvm${i}`, mac_address: `fa:16:3e:00:00:2${i}`, fixed_ips: [{ ip_address: n.ip }], security_groups: ['sg-web'],
        })),
      };
      await Portwall.open({ netns: host.name }).apply(doc);
      // Each network's device zone alone would track a direction in each zone: the replies would be INVALID
      // and dropped. The connections work, and every entry is in the lower zone.
      expect(tcpConnect(vms[0]!, '192.0.2.10', 80)).toBe(true);
      expect(tcpConnect(vms[1]!, '203.0.113.10', 80)).toBe(true);
      expect(tcpConnect(vms[0]!, '192.0.2.10', 81)).toBe(false);
      const ct = host.exec('conntrack', ['-L', '-p', 'tcp', '--dport', '80']).split('\n').filter((l) => l.includes('dport=80'));
      expect(ct).toHaveLength(2);
      for (const line of ct) expect(line).toContain('zone=301');
      // Traced live: a packet from the higher network's port to the lower one's address meets one rule in
      // zone_cross — the lower network's, which sets the zone and returns — not also the rules of the networks
      // after it (its own device matches there too: without the return it is two rules, and a packet between
      // two ports looked up the sets of every network).
      let sent: Promise<ProbeResult[]> | undefined;
      const live = await traceLive({ family: 4, protocol: 6, src: '203.0.113.10', dst: '192.0.2.10', dport: 82 }, {
        netns: host.name, iifname: 'tapvm0', timeoutMs: 8000,
        onArmed: () => { sent = probe(vms[0]!, [{ proto: 'tcp', host: '192.0.2.10', port: 82 }], 1); },
      });
      await sent;
      expect(live.timedOut).toBe(false);
      const cross = live.trace!.steps.filter((x) => x.table === 'portwall_raw' && x.chain === 'zone_cross');
      expect(cross.map((x) => [x.kind, x.verdict, x.comment])).toEqual([['rule', 'return', 'zone of network net-lo']]);
    } finally {
      for (const s of servers) s.kill();
      for (const ns of [host, ...vms]) ns.destroy();
    }
  });
});
