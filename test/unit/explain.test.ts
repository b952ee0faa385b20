/** explain's packet grammar and its answers on a compiled policy (no kernel: test/kernel/explain.test.ts has the traffic). */
import { describe, expect, test } from 'vitest';

import { compilePolicy } from '../../src/compile/policy.js';
import { explain, packetText, parsePacket } from '../../src/explain.js';
import { validateState } from '../../src/model/validate.js';
import { DEFAULT_CONFIG } from '../../src/model/types.js';

const STATE = {
  networks: [{ id: 'n', zone: 101, mode: 'routed', dhcp_servers: ['169.254.1.1'] }],
  security_groups: [{ id: 'sg', security_group_rules: [
    { id: 'ssh', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 22, port_range_max: 22, remote_ip_prefix: '198.51.100.0/24' },
    { id: 'dns6', direction: 'egress', ethertype: 'IPv6', protocol: 'udp', port_range_min: 53, port_range_max: 53 },
  ] }],
  ports: [{ id: 'p1', network_id: 'n', device: 'tap1', mac_address: 'fa:16:3e:00:00:01', fixed_ips: [{ ip_address: '192.0.2.10' }, { ip_address: '2001:db8:a::10' }], security_groups: ['sg'] }],
};
const ir = compilePolicy(validateState(STATE, DEFAULT_CONFIG), DEFAULT_CONFIG);

describe('parsePacket', () => {
  test('the forms it reads, and packetText writes them back', () => {
    for (const text of ['tcp 198.51.100.7:40000 -> 192.0.2.10:22', 'udp [2001:db8:a::10]:5353 -> [2001:db8::53]:53', 'icmp 198.51.100.7 -> 192.0.2.10 type 8 code 0', 'icmpv6 2001:db8::1 -> 2001:db8:a::10 type 128 code 0', 'proto 47 192.0.2.10 -> 198.51.100.7']) {
      expect(packetText(parsePacket(text))).toBe(text);
    }
    expect(parsePacket('icmp 198.51.100.7 -> 192.0.2.10').icmp).toEqual({ type: 8, code: 0 });
    expect(parsePacket('TCP 192.0.2.10:1 -> 198.51.100.7:2 mac FA:16:3E:00:00:01').srcMac).toBe('fa:16:3e:00:00:01');
  });

  test.each([
    ['gre 192.0.2.1 -> 192.0.2.2', /unknown protocol "gre"/],
    ['tcp 192.0.2.1 -> 192.0.2.2:22', /tcp needs both ports/],
    ['tcp 192.0.2.1:1 192.0.2.2:22', /expected "SRC -> DST"/],
    ['tcp 192.0.2.1:1 -> 2001:db8::1:22', /different families|not an IP/],
    ['tcp 192.0.2.1:70000 -> 192.0.2.2:22', /port must be 0–65535/],
    ['icmp 192.0.2.1:5 -> 192.0.2.2', /has no ports/],
    ['icmp 2001:db8::1 -> 2001:db8::2', /icmp between IPv6/],
    ['udp 192.0.2.1:1 -> 192.0.2.2:2 ttl 5', /unexpected "ttl 5"/],
    ['tcp 192.0.2.300:1 -> 192.0.2.2:2', /192\.0\.2\.300/],
  ])('%s is refused: %s', (text, message) => {
    expect(() => parsePacket(text)).toThrow(message);
  });
});

describe('explain', () => {
  test('the deciding rule, the default drop, a base-policy step, the direction inferred', () => {
    expect(explain(ir, 'p1', 'tcp 198.51.100.7:40000 -> 192.0.2.10:22')).toMatchObject({ allowed: true, direction: 'ingress', reason: 'rule', ruleId: 'ssh', groupId: 'sg' });
    expect(explain(ir, 'p1', 'tcp 203.0.113.7:40000 -> 192.0.2.10:22')).toMatchObject({ allowed: false, reason: 'default', why: 'DROPPED: no ingress rule of group sg admits it (default drop)' });
    expect(explain(ir, 'p1', 'udp [2001:db8:a::10]:5353 -> [2001:db8::53]:53')).toMatchObject({ allowed: true, direction: 'egress', ruleId: 'dns6' });
    expect(explain(ir, 'p1', 'udp 192.0.2.10:67 -> 192.0.2.99:68')).toMatchObject({ allowed: false, reason: 'dhcp' });
    expect(explain(ir, 'p1', 'tcp 192.0.2.10:1 -> 198.51.100.7:22 mac fa:16:3e:00:00:99')).toMatchObject({ allowed: false, reason: 'anti-spoof' });
    expect(explain(ir, 'p1', 'tcp 192.0.2.11:1 -> 198.51.100.7:22', 'egress')).toMatchObject({ allowed: false, reason: 'anti-spoof' });
  });

  test('an unknown port, or a direction it cannot infer, is a named error', () => {
    expect(() => explain(ir, 'p9', 'tcp 198.51.100.7:1 -> 192.0.2.10:22')).toThrow(/unknown port "p9"/);
    expect(() => explain(ir, 'p1', 'tcp 198.51.100.7:1 -> 203.0.113.1:22')).toThrow(/neither 198.51.100.7 nor 203.0.113.1 is port p1's address: give the direction/);
  });
});
