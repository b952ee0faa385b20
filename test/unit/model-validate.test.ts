// validateState: The example state file becomes the expected Model; every spelling normalises to one form;
// defaults are filled; every problem is collected; parseState/loadStateFile report JSON and I/O errors.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { describe, expect, test } from 'vitest';

import { PortwallError } from '../../src/errors.js';
import { loadStateFile, parseState } from '../../src/model/load.js';
import { MAX_PROBLEMS } from '../../src/model/problems.js';
import { DEFAULT_CONFIG, type Model, type SgRule } from '../../src/model/types.js';
import { validateState } from '../../src/model/validate.js';
import { EXAMPLE_STATE_FILE, exampleState, rejection, type ExampleState, type JsonObject } from '../helpers/bad-states.js';

const EXPECTED: Model = {
  networks: new Map([
    ['net-a', { id: 'net-a', zone: 101, mode: 'bridged', bridge: 'br-a', dhcpServers: ['192.0.2.254/32'], routers: ['fe80::1/128'] }],
  ]),
  groups: new Map([
    ['sg-web', {
      id: 'sg-web', stateful: true, rules: [
        { id: 'r1', groupId: 'sg-web', direction: 'ingress', family: 4, protocol: 6, ports: { min: 80, max: 80 }, remotePrefix: '198.51.100.0/24' },
        { id: 'r2', groupId: 'sg-web', direction: 'ingress', family: 4, protocol: 6, ports: { min: 22, max: 22 }, remoteGroupId: 'sg-web' },
      ],
    }],
  ]),
  ports: new Map([
    ['6e3f2eda-3230-45e8-9be5-f382af5b83ea', {
      id: '6e3f2eda-3230-45e8-9be5-f382af5b83ea', networkId: 'net-a', device: 'tap6e3f2eda-32', mac: 'fa:16:3e:f3:1e:c0',
      fixedIps: ['192.0.2.14/32'], groupIds: ['sg-web'], portSecurity: true, kind: 'user',
      addressPairs: [{ prefix: '192.0.2.100/32', family: 4, mac: 'fa:16:3e:00:00:01' }], index: 0,
    }],
  ]),
};

/** The example with its first rule replaced by `fields` (plus id and direction). */
function withRule(fields: JsonObject, ethertype = 'IPv4'): ExampleState {
  const s = exampleState();
  s.security_groups[0]!.security_group_rules = [{ id: 'r', direction: 'egress', ethertype, ...fields }];
  return s;
}

/** The canonical form of one rule given as `fields`. */
function canonicalRule(fields: JsonObject, ethertype = 'IPv4'): SgRule {
  return validateState(withRule(fields, ethertype)).groups.get('sg-web')!.rules[0]!;
}

describe('the example state', () => {
  test('validates into the expected model', () => {
    expect(validateState(exampleState())).toEqual(EXPECTED);
  });

  test('loads from examples/state.json', async () => {
    expect(await loadStateFile(EXAMPLE_STATE_FILE)).toEqual(EXPECTED);
  });
});

describe('normalisation', () => {
  test('host bits are cleared, host addresses get /32 or /128, IPv6 is compressed lowercase', () => {
    expect(canonicalRule({ remote_ip_prefix: '198.51.100.77/24' }).remotePrefix).toBe('198.51.100.0/24');
    expect(canonicalRule({ remote_ip_prefix: '203.0.113.9' }).remotePrefix).toBe('203.0.113.9/32');
    expect(canonicalRule({ remote_ip_prefix: '2001:DB8:0:0:0:0:0:1' }, 'IPv6').remotePrefix).toBe('2001:db8::1/128');
    expect(canonicalRule({ remote_ip_prefix: '2001:db8:ffff::1/32' }, 'IPv6').remotePrefix).toBe('2001:db8::/32');

    const s = exampleState();
    s.ports[0]!.fixed_ips = [{ ip_address: '2001:0DB8::0010' }, { ip_address: '192.0.2.14' }];
    s.ports[0]!.allowed_address_pairs = [{ ip_address: '192.0.2.129/25' }];
    s.networks[0]!.dhcp_servers = ['192.0.2.254', '2001:db8::fe', '2001:DB8::FE'];
    s.networks[0]!.routers = ['FE80::0001'];
    const model = validateState(s);
    const port = model.ports.get('6e3f2eda-3230-45e8-9be5-f382af5b83ea')!;
    expect(port.fixedIps).toEqual(['2001:db8::10/128', '192.0.2.14/32']);
    expect(port.addressPairs).toEqual([{ prefix: '192.0.2.128/25', family: 4, mac: 'fa:16:3e:f3:1e:c0' }]);
    expect(model.networks.get('net-a')!.dhcpServers).toEqual(['192.0.2.254/32', '2001:db8::fe/128']);
    expect(model.networks.get('net-a')!.routers).toEqual(['fe80::1/128']);
  });

  test('a /0 remote prefix is the same as any remote', () => {
    expect(canonicalRule({ remote_ip_prefix: '0.0.0.0/0' })).toEqual(canonicalRule({}));
    expect(canonicalRule({ remote_ip_prefix: '::/0' }, 'IPv6')).toEqual(canonicalRule({}, 'IPv6'));
  });

  test('MACs become lowercase colon form from any Neutron spelling', () => {
    for (const spelling of ['FA:16:3E:F3:1E:C0', 'fa-16-3e-f3-1e-c0', 'fa16.3ef3.1ec0']) {
      const s = exampleState();
      s.ports[0]!.mac_address = spelling;
      s.ports[0]!.allowed_address_pairs[0]!.mac_address = spelling.replace(/c0$/i, 'c1');
      const port = [...validateState(s).ports.values()][0]!;
      expect(port.mac).toBe('fa:16:3e:f3:1e:c0');
      expect(port.addressPairs[0]!.mac).toBe('fa:16:3e:f3:1e:c1');
    }
  });

  test('protocols become numbers, whatever the spelling', () => {
    const tcp = canonicalRule({ protocol: 'tcp', port_range_min: 80, port_range_max: 80 });
    for (const p of ['TCP', 6, '6']) expect(canonicalRule({ protocol: p, port_range_min: 80, port_range_max: 80 })).toEqual(tcp);
    expect(canonicalRule({ protocol: 'udplite' }).protocol).toBe(136);
    expect(canonicalRule({ protocol: 'icmpv6' }, 'IPv6').protocol).toBe(58);
    for (const any of [null, 'any', 'ANY', 0, '0']) expect(canonicalRule({ protocol: any }).protocol).toBeUndefined();
    expect(canonicalRule({}).protocol).toBeUndefined();
  });

  test('icmp in an IPv6 rule is ICMPv6, as in Neutron', () => {
    for (const p of ['icmp', 1, '1', 'ipv6-icmp', 58]) {
      expect(canonicalRule({ protocol: p, port_range_min: 128 }, 'IPv6')).toMatchObject({ protocol: 58, icmp: { type: 128 } });
    }
  });

  test('ICMP type and code come from port_range_min and port_range_max', () => {
    expect(canonicalRule({ protocol: 'icmp', port_range_min: 8, port_range_max: 0 }).icmp).toEqual({ type: 8, code: 0 });
    expect(canonicalRule({ protocol: 'icmp', port_range_min: 3 }).icmp).toEqual({ type: 3 });
    const any = canonicalRule({ protocol: 'icmp' });
    expect(any.icmp).toBeUndefined();
    expect(any.ports).toBeUndefined();
  });

  test('port ranges: a lone minimum is one port; 1-65535 is the same as no range', () => {
    expect(canonicalRule({ protocol: 'udp', port_range_min: 53 }).ports).toEqual({ min: 53, max: 53 });
    expect(canonicalRule({ protocol: 'sctp', port_range_min: 1000, port_range_max: 2000 }).ports).toEqual({ min: 1000, max: 2000 });
    expect(canonicalRule({ protocol: 'tcp', port_range_min: 1, port_range_max: 65535 })).toEqual(canonicalRule({ protocol: 'tcp' }));
  });

  test('two spellings of one rule are one rule', () => {
    const a = canonicalRule({ protocol: 'TCP', port_range_min: 22, remote_ip_prefix: '198.51.100.200/24' });
    const b = canonicalRule({ protocol: '6', port_range_min: 22, port_range_max: 22, remote_ip_prefix: '198.51.100.0/24' });
    expect(a).toEqual(b);
  });

  test('defaults: stateful, port security, user kind, the port MAC for pairs, no groups or IPs', () => {
    const s = exampleState() as unknown as { networks: JsonObject[]; security_groups: JsonObject[]; ports: JsonObject[] };
    s.security_groups = [{ id: 'sg-min' }];
    s.ports = [{ id: 'p', network_id: 'net-a', device: 'veth0', mac_address: 'fa:16:3e:00:00:09', allowed_address_pairs: [{ ip_address: '198.51.100.0/24', mac_address: null }] }];
    const model = validateState(s);
    expect(model.groups.get('sg-min')).toEqual({ id: 'sg-min', stateful: true, rules: [] });
    expect(model.ports.get('p')).toEqual({
      id: 'p', networkId: 'net-a', device: 'veth0', mac: 'fa:16:3e:00:00:09', fixedIps: [], groupIds: [], portSecurity: true,
      kind: 'user', addressPairs: [{ prefix: '198.51.100.0/24', family: 4, mac: 'fa:16:3e:00:00:09' }], index: 0,
    });
  });

  test('a group listed twice on a port is that group once; unknown fields are ignored', () => {
    const s = exampleState();
    s.ports[0]!.security_groups = ['sg-web', 'sg-web'];
    Object.assign(s.ports[0]!, { tenant_id: 't', 'binding:host_id': 'h', revision_number: 3 });
    expect(validateState(s).ports.get('6e3f2eda-3230-45e8-9be5-f382af5b83ea')!.groupIds).toEqual(['sg-web']);
  });

  test('a stateless group, a routed network, a system port and a port without port security', () => {
    const s = exampleState() as unknown as { networks: JsonObject[]; security_groups: JsonObject[]; ports: JsonObject[] };
    s.networks.push({ id: 'net-r', zone: 7, mode: 'routed' });
    s.security_groups.push({ id: 'sg-raw', stateful: false, security_group_rules: [] });
    s.ports.push(
      { id: 'sys', network_id: 'net-r', device: 'veth-sys', mac_address: '02:00:00:00:00:01', kind: 'system', security_groups: ['sg-raw'] },
      { id: 'open', network_id: 'net-r', device: 'veth-open', mac_address: '02:00:00:00:00:02', port_security_enabled: false },
    );
    const model = validateState(s);
    expect(model.networks.get('net-r')).toEqual({ id: 'net-r', zone: 7, mode: 'routed', dhcpServers: [], routers: [] });
    expect(model.groups.get('sg-raw')!.stateful).toBe(false);
    expect(model.ports.get('sys')).toMatchObject({ kind: 'system', groupIds: ['sg-raw'], index: 1 });
    expect(model.ports.get('open')).toMatchObject({ portSecurity: false, groupIds: [], index: 2 });
  });

  test('overlapping addresses on different networks are fine (tenants, scenario S2)', () => {
    const s = exampleState();
    s.networks.push({ id: 'net-b', zone: 102, mode: 'routed' });
    s.ports.push({ ...s.ports[0]!, id: 'p2', network_id: 'net-b', device: 'tap-b' });
    expect(validateState(s).ports.size).toBe(2);
  });
});

describe('problems', () => {
  test('every problem is reported at once, in file order, with the first as `field`', () => {
    const s = exampleState();
    s.networks[0]!.zone = 'x';
    s.security_groups[0]!.security_group_rules[0]!.remote_ip_prefix = '198.51.100.0/99';
    s.ports[0]!.mac_address = 'nope';
    s.ports[0]!.allowed_address_pairs[0]!.ip_address = 'nope';
    const err = rejection(() => validateState(s));
    expect(err).toBeInstanceOf(PortwallError);
    expect(err.code).toBe('ERR_INVALID_STATE');
    expect(err.problems.map((p) => p.path)).toEqual([
      'networks[0] (net-a).zone',
      'security_groups[0] (sg-web).security_group_rules[0] (r1).remote_ip_prefix',
      'ports[0] (tap6e3f2eda-32).mac_address',
      'ports[0] (tap6e3f2eda-32).allowed_address_pairs[0].ip_address',
    ]);
    expect(err.field).toBe('networks[0] (net-a).zone');
    expect(err.message.split('\n')).toHaveLength(5);
  });

  test('an object that fails the schema still defines its id (no cascade of unknown references)', () => {
    const s = exampleState();
    s.networks[0]!.mode = 'nat';
    s.security_groups[0]!.stateful = 'yes';
    expect(rejection(() => validateState(s)).problems.map((p) => p.path)).toEqual([
      'networks[0] (net-a).mode',
      'security_groups[0] (sg-web).stateful',
    ]);
  });

  test('zones must lie in the configured range', () => {
    const config = { ...DEFAULT_CONFIG, zoneRange: { min: 1000, max: 1999 } };
    const err = rejection(() => validateState(exampleState(), config));
    expect(err.problems).toEqual([{ path: 'networks[0] (net-a).zone', message: 'zone 101 is outside the configured zone range 1000-1999' }]);
  });

  test('parseState names the source and the JSON error position', () => {
    const err = rejection(() => parseState('{\n  "networks": [\n    { "id": "n", }\n  ]\n}\n', undefined, '/etc/portwall/state.json'));
    expect(err.message).toBe(
      '/etc/portwall/state.json: 1 problem\n  (root): not valid JSON at line 3, column 18: unexpected "}", expected a string key',
    );
    expect(rejection(() => parseState('')).problems[0]!.message).toMatch(/line 1, column 1: unexpected end of text, expected a value/);
    expect(rejection(() => parseState('{"networks": []} x')).problems[0]!.message).toMatch(/column 18: .*expected the end of the text/);
    expect(rejection(() => parseState('{"networks": ["\t"]}')).problems[0]!.message).toMatch(/column 15: .*a string with legal escapes/);
    expect(rejection(() => parseState('{"networks" []}')).problems[0]!.message).toMatch(/column 13: unexpected "\[", expected ':'/);
    // A byte-order mark is tolerated.
    expect(parseState(`\uFEFF${JSON.stringify(exampleState())}`)).toEqual(EXPECTED);
  });

  test('loadStateFile: a missing file is ERR_SYSTEM with the errno; a bad file names its path', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'portwall-state-'));
    await expect(loadStateFile(path.join(dir, 'missing.json'))).rejects.toMatchObject({ code: 'ERR_SYSTEM', errnoName: 'ENOENT' });
    const file = path.join(dir, 'bad.json');
    writeFileSync(file, '{"networks": 1}');
    await expect(loadStateFile(file)).rejects.toMatchObject({
      code: 'ERR_INVALID_STATE',
      field: 'networks',
      message: `${file}: 1 problem\n  networks: must be an array, is 1`,
    });
  });
});

describe('flavour and layer-2 guards', () => {
  const net = (fields: JsonObject, mode = 'bridged') => {
    const s = exampleState();
    Object.assign(s.networks[0]!, fields);
    if (mode === 'routed') {
      s.networks[0]!.mode = 'routed';
      delete s.networks[0]!.bridge;
    }
    return validateState(s).networks.get('net-a')!;
  };
  const ALL = { arp: true, dhcpSnooping: true, broadcast: true, dropIpv6: true, dropVlan: true };

  test('neutron is the default and has no guards; "neutron" spelt out is the same network', () => {
    expect(net({})).toEqual(EXPECTED.networks.get('net-a'));
    expect(net({ flavor: 'neutron' })).toEqual(EXPECTED.networks.get('net-a'));
  });

  test('cloudstack turns every guard on; a guard given overrides the default', () => {
    expect(net({ flavor: 'cloudstack' })).toMatchObject({ flavor: 'cloudstack', l2Guards: ALL });
    expect(net({ flavor: 'cloudstack', l2_guards: { drop_ipv6: false } }).l2Guards).toEqual({ ...ALL, dropIpv6: false });
    const off = { arp: false, dhcp_snooping: false, broadcast: false, drop_ipv6: false, drop_vlan: false };
    expect(net({ flavor: 'cloudstack', l2_guards: off })).not.toHaveProperty('l2Guards');
  });

  test('a neutron network takes the guards it names', () => {
    expect(net({ l2_guards: { arp: true, dhcp_snooping: true } }).l2Guards).toEqual({
      arp: true, dhcpSnooping: true, broadcast: false, dropIpv6: false, dropVlan: false,
    });
  });

  test('a routed cloudstack network keeps the flavour and has no guards (there is no bridge port to guard)', () => {
    const n = net({ flavor: 'cloudstack' }, 'routed');
    expect(n.flavor).toBe('cloudstack');
    expect(n).not.toHaveProperty('l2Guards');
    expect(rejection(() => net({ l2_guards: { broadcast: true } }, 'routed')).problems).toEqual([
      { path: 'networks[0] (net-a).l2_guards', message: 'layer-2 guards need a bridged network (a routed port is no bridge port)' },
    ]);
    // All off on a routed network says nothing wrong.
    expect(net({ l2_guards: { broadcast: false } }, 'routed')).not.toHaveProperty('l2Guards');
  });
});

describe('problems', () => {
  test('a state with millions of problems lists the first 1000 and how many more (listing all ran a process out of memory)', () => {
    // 100 000 copies of a group of five rules: every copy and every rule a duplicate.
    const s = exampleState();
    s.security_groups = new Array(100_000).fill(s.security_groups[0]);
    const err = rejection(() => validateState(s));
    expect(err.problems).toHaveLength(MAX_PROBLEMS + 1);
    expect(err.problems.slice(0, 2).map((p) => p.path)).toEqual(['security_groups[1] (sg-web).id', 'security_groups[1] (sg-web).security_group_rules[0] (r1).id']);
    expect(err.problems.at(-1)).toEqual({
      path: expect.stringMatching(/^security_groups\[\d+\] \(sg-web\)\./),
      message: expect.stringMatching(/^and \d{6,} more problems from here on, not listed \(at most 1000 are\)$/),
    });
    expect(err.message.length).toBeLessThan(200_000);
  });
});
