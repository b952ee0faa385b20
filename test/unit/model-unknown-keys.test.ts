// Keys the schema does not know are warnings naming their path: nested objects and array elements, a
// did-you-mean for a slip, the state file's name for an openstack CLI column; nothing for the schema's own
// fields, its documented extension keys or Neutron's attributes portwall does not read. The loaders carry
// them beside the model, and on the error of an invalid document.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { Type } from '@sinclair/typebox';
import { describe, expect, test } from 'vitest';

import { readStateFile, readStateText } from '../../src/model/load.js';
import { objectUnknownKeys, unknownKeys } from '../../src/model/unknown-keys.js';
import { exampleState, rejection, type JsonObject } from '../helpers/bad-states.js';

const RULES = 'security_groups[0] (sg-web).security_group_rules';

describe('unknownKeys', () => {
  test('the example state and every field of the schema: no warning', () => {
    expect(unknownKeys(exampleState())).toEqual([]);
    const s = exampleState() as unknown as JsonObject;
    Object.assign(s, {
      floatingips: [{ id: 'f1', floating_ip_address: '203.0.113.5', fixed_ip_address: null, port_id: null }],
      nat: { fixed_range: ['192.0.2.0/24'], routing_source_ip: '203.0.113.1', dmz_cidr: [], metadata_host: null, metadata_port: 8775 },
    });
    expect(unknownKeys(s)).toEqual([]);
  });

  test("Neutron's remote_address_group_id: null is quiet; a value still warns here (validation refuses it)", () => {
    const s = exampleState() as unknown as { security_groups: { security_group_rules: Record<string, unknown>[] }[] };
    s.security_groups[0]!.security_group_rules[0]!.remote_address_group_id = null;
    expect(unknownKeys(s)).toEqual([]);
    s.security_groups[0]!.security_group_rules[0]!.remote_address_group_id = 'ag-1';
    expect(unknownKeys(s).map((w) => w.path)).toEqual([expect.stringMatching(/remote_address_group_id$/)]);
  });

  test('a misspelt rule field: its path through the group and the rule, and the field it probably is', () => {
    const s = exampleState();
    const rule = s.security_groups[0]!.security_group_rules![1]! as unknown as JsonObject;
    rule.remote_ip_prefx = rule.remote_group_id!;
    delete rule.remote_group_id;
    expect(unknownKeys(s)).toEqual([
      { path: `${RULES}[1] (r2).remote_ip_prefx`, message: 'unknown key, ignored (did you mean remote_ip_prefix?)' },
    ]);
  });

  test('every level, in document order: network, port, fixed IP, address pair, top level, NAT', () => {
    const s = exampleState() as unknown as JsonObject & { networks: JsonObject[]; ports: (JsonObject & { fixed_ips: JsonObject[]; allowed_address_pairs: JsonObject[] })[] };
    s.security_group = [];
    s.networks[0]!.dhcp_server = ['192.0.2.254'];
    s.ports[0]!.securitygroups = ['sg-web'];
    s.ports[0]!.fixed_ips[0]!.ip = '192.0.2.14';
    s.ports[0]!.allowed_address_pairs[0]!.mac = 'fa:16:3e:00:00:01';
    s.nat = { fixed_range: ['192.0.2.0/24'], routing_source_ip: '203.0.113.1', metadata_prot: 80 };
    expect(unknownKeys(s)).toEqual([
      { path: 'networks[0] (net-a).dhcp_server', message: 'unknown key, ignored (did you mean dhcp_servers?)' },
      { path: 'ports[0] (tap6e3f2eda-32).fixed_ips[0].ip', message: 'unknown key, ignored' },
      { path: 'ports[0] (tap6e3f2eda-32).allowed_address_pairs[0].mac', message: 'unknown key, ignored' },
      { path: 'ports[0] (tap6e3f2eda-32).securitygroups', message: 'unknown key, ignored (did you mean security_groups?)' },
      { path: 'security_group', message: 'unknown key, ignored (did you mean security_groups?)' },
      { path: 'nat.metadata_prot', message: 'unknown key, ignored (did you mean metadata_port?)' },
    ]);
  });

  test("the openstack CLI's names: the state file's name for each", () => {
    const s = exampleState() as unknown as { security_groups: (JsonObject & { security_group_rules: JsonObject[] })[]; ports: JsonObject[] };
    s.security_groups[0]!.security_group_rules.push({
      id: 'r3', 'IP Protocol': 'tcp', 'IP Range': '0.0.0.0/0', 'Port Range': '22:22', 'Remote Security Group': null, Ethertype: 'IPv4', Direction: 'ingress',
    });
    s.ports[0]!['Fixed IP Addresses'] = "ip_address='192.0.2.14'";
    s.ports[0]!['MAC Address'] = 'fa:16:3e:f3:1e:c0';
    s.ports[0]!.security_group_ids = ['sg-web'];
    s.security_groups.push({ id: 'sg-cli', rules: [] } as unknown as JsonObject & { security_group_rules: JsonObject[] });
    const byPath = Object.fromEntries(unknownKeys(s).map((w) => [w.path, w.message]));
    expect(byPath).toEqual({
      [`${RULES}[2] (r3).IP Protocol`]: 'unknown key, ignored ("IP Protocol" is the openstack CLI\'s name; the state file has protocol)',
      [`${RULES}[2] (r3).IP Range`]: 'unknown key, ignored ("IP Range" is the openstack CLI\'s name; the state file has remote_ip_prefix)',
      [`${RULES}[2] (r3).Port Range`]: 'unknown key, ignored ("Port Range" is the openstack CLI\'s name; the state file has port_range_min and port_range_max)',
      [`${RULES}[2] (r3).Remote Security Group`]: 'unknown key, ignored ("Remote Security Group" is the openstack CLI\'s name; the state file has remote_group_id)',
      [`${RULES}[2] (r3).Ethertype`]: 'unknown key, ignored (the state file spells it ethertype)',
      [`${RULES}[2] (r3).Direction`]: 'unknown key, ignored (the state file spells it direction)',
      'ports[0] (tap6e3f2eda-32).Fixed IP Addresses': 'unknown key, ignored ("Fixed IP Addresses" is the openstack CLI\'s name; the state file has fixed_ips)',
      'ports[0] (tap6e3f2eda-32).MAC Address': 'unknown key, ignored (the state file spells it mac_address)',
      'ports[0] (tap6e3f2eda-32).security_group_ids': 'unknown key, ignored ("security_group_ids" is the openstack CLI\'s name; the state file has security_groups)',
      'security_groups[1] (sg-cli).rules': 'unknown key, ignored ("rules" is the openstack CLI\'s name; the state file has security_group_rules)',
    });
  });

  test("Neutron's attributes portwall does not read and its prefix:name extension attributes: no warning", () => {
    const s = exampleState() as unknown as { networks: JsonObject[]; security_groups: (JsonObject & { security_group_rules: JsonObject[] })[]; ports: JsonObject[] };
    const common = { tenant_id: 't', project_id: 't', revision_number: 3, created_at: '2026-01-01T00:00:00Z', updated_at: '2026-01-01T00:00:00Z', tags: [], description: '' };
    Object.assign(s.networks[0]!, common, { mtu: 1450, subnets: ['s1'], 'provider:network_type': 'vxlan', 'router:external': false });
    Object.assign(s.security_groups[0]!, common, { shared: false });
    Object.assign(s.security_groups[0]!.security_group_rules[0]!, common, { security_group_id: 'sg-web', normalized_cidr: '198.51.100.0/24' });
    Object.assign(s.ports[0]!, common, { name: 'vm1', status: 'ACTIVE', admin_state_up: true, device_owner: 'compute:nova', 'binding:host_id': 'h1', 'binding:profile': {} });
    expect(unknownKeys(s)).toEqual([]);
  });

  test("a Neutron attribute of another resource is not quiet: a port's security_group_id is a slip for security_groups", () => {
    const s = exampleState() as unknown as { ports: JsonObject[] };
    s.ports[0]!.security_group_id = 'sg-web';
    expect(unknownKeys(s)).toEqual([{ path: 'ports[0] (tap6e3f2eda-32).security_group_id', message: 'unknown key, ignored (did you mean security_groups?)' }]);
  });

  test('extension keys the schema documents (patternProperties) do not warn; other keys of that object do', () => {
    const schema = Type.Object({ items: Type.Array(Type.Object({ id: Type.String() }, { patternProperties: { '^x-': {} } })) });
    expect(unknownKeys({ items: [{ id: 'a', 'x-vendor': 1, idd: 2 }] }, schema)).toEqual([{ path: 'items[0].idd', message: 'unknown key, ignored (did you mean id?)' }]);
  });

  test('no hint for a key like no field; values of the wrong shape are left to validation', () => {
    expect(unknownKeys({ networks: [{ id: 'n', zone: 1, mode: 'routed', colour: 'red' }] })).toEqual([{ path: 'networks[0] (n).colour', message: 'unknown key, ignored' }]);
    expect(unknownKeys({ networks: 'none', ports: [7, null, ['x']], security_groups: { id: 'g' } })).toEqual([]);
    expect(unknownKeys(null)).toEqual([]);
  });

  test('an API body: the paths its validation errors have', () => {
    expect(objectUnknownKeys('ports', { id: 'p', device: 'tap1', fixed_ip: [] })).toEqual([{ path: 'ports[0] (tap1).fixed_ip', message: 'unknown key, ignored (did you mean fixed_ips?)' }]);
    expect(objectUnknownKeys('floatingips', { id: 'f', 'Floating IP Address': '203.0.113.5', Port: 'p' })).toEqual([
      { path: 'floatingips[0] (f).Floating IP Address', message: 'unknown key, ignored (the state file spells it floating_ip_address)' },
      { path: 'floatingips[0] (f).Port', message: 'unknown key, ignored ("Port" is the openstack CLI\'s name; the state file has port_id)' },
    ]);
  });
});

describe('the loaders', () => {
  test('readStateText and readStateFile: the model and the warnings', () => {
    const s = exampleState() as unknown as { ports: JsonObject[] };
    s.ports[0]!.fixed_ip = [];
    const text = JSON.stringify(s);
    const expected = [{ path: 'ports[0] (tap6e3f2eda-32).fixed_ip', message: 'unknown key, ignored (did you mean fixed_ips?)' }];
    const fromText = readStateText(text);
    expect(fromText.warnings).toEqual(expected);
    expect(fromText.model.ports.size).toBe(1);
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'portwall-warn-')), 'state.json');
    writeFileSync(file, text);
    return readStateFile(file).then((r) => expect(r.warnings).toEqual(expected));
  });

  test('an invalid state: the error carries the warnings (a required field misspelt is both)', () => {
    const s = exampleState() as unknown as { security_groups: { security_group_rules: JsonObject[] }[] };
    const rule = s.security_groups[0]!.security_group_rules[0]!;
    rule.Direction = rule.direction!;
    delete rule.direction;
    const error = rejection(() => readStateText(JSON.stringify(s)));
    expect(error.problems).toEqual([{ path: `${RULES}[0] (r1).direction`, message: 'is required' }]);
    expect(error.warnings).toEqual([{ path: `${RULES}[0] (r1).Direction`, message: 'unknown key, ignored (the state file spells it direction)' }]);
  });
});
