/** The drop log's records from NFLOG packets (the kernel test, test/kernel/droplog.test.ts, has real drops). */
import { describe, expect, test } from 'vitest';

import { acceptPrefix, dropPrefix, dropRecord, packetTuple } from '../../src/droplog.js';
import { validateState } from '../../src/model/validate.js';
import { DEFAULT_CONFIG } from '../../src/model/types.js';

const ipv4 = (proto: number, src: number[], dst: number[], l4: number[]) => Uint8Array.from([0x45, 0, 0, 40, 0, 0, 0, 0, 64, proto, 0, 0, ...src, ...dst, ...l4]);
const ipv6 = (proto: number, l4: number[]) => {
  const b = new Uint8Array(40 + l4.length);
  b[0] = 0x60;
  b[6] = proto;
  b.set([0x20, 0x01, 0x0d, 0xb8, 0, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10], 8); // 2001:db8:a::10
  b.set([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01], 24); // 2001:db8::1
  b.set(l4, 40);
  return b;
};

const model = validateState({
  networks: [{ id: 'net-a', zone: 101, mode: 'routed', log_drops: 10 }],
  security_groups: [],
  ports: [{ id: 'p1', network_id: 'net-a', device: 'tap1', mac_address: 'fa:16:3e:00:00:01', fixed_ips: [{ ip_address: '192.0.2.10' }, { ip_address: '2001:db8:a::10' }] }],
}, DEFAULT_CONFIG);

describe('drop log records', () => {
  test('the 5-tuple of TCP, UDP, ICMP over IPv4 and IPv6', () => {
    expect(packetTuple(ipv4(6, [198, 51, 100, 7], [192, 0, 2, 10], [0x9c, 0x40, 0, 22]))).toEqual({ family: 4, protocol: 6, src: '198.51.100.7', dst: '192.0.2.10', sport: 40000, dport: 22 });
    expect(packetTuple(ipv4(1, [192, 0, 2, 10], [198, 51, 100, 7], [8, 0]))).toEqual({ family: 4, protocol: 1, src: '192.0.2.10', dst: '198.51.100.7', icmp: { type: 8, code: 0 } });
    expect(packetTuple(ipv6(17, [0x14, 0xe9, 0, 53]))).toEqual({ family: 6, protocol: 17, src: '2001:db8:a::10', dst: '2001:db8::1', sport: 5353, dport: 53 });
    expect(packetTuple(Uint8Array.from([0x45, 0]))).toBeUndefined();
  });

  test('port, network, direction and step from the prefix and the addresses; other prefixes are not ours', () => {
    const inbound = dropRecord({ prefix: dropPrefix(101, 'no rule allows it'), payload: ipv4(6, [198, 51, 100, 7], [192, 0, 2, 10], [0x9c, 0x40, 0, 22]), hwProtocol: 0x800 }, model);
    expect(inbound).toMatchObject({ event: 'drop', step: 'no rule allows it', zone: 101, network: 'net-a', port: 'p1', direction: 'ingress', dport: 22 });
    const spoof = dropRecord({ prefix: 'pw 101 IPv6 anti-spoof', payload: ipv6(17, [0x14, 0xe9, 0, 53]), hwProtocol: 0x86dd }, model);
    expect(spoof).toMatchObject({ step: 'IPv6 anti-spoof', port: 'p1', direction: 'egress', src: '2001:db8:a::10' });
    expect(dropRecord({ prefix: 'other ', payload: ipv4(6, [1, 2, 3, 4], [5, 6, 7, 8], [0, 1, 0, 2]), hwProtocol: 0x800 }, model)).toBeUndefined();
    const unknownZone = dropRecord({ prefix: 'pw 999 x', payload: ipv4(6, [1, 2, 3, 4], [5, 6, 7, 8], [0, 1, 0, 2]), hwProtocol: 0x800 }, model)!;
    expect(unknownZone.zone).toBe(999);
    expect('network' in unknownZone || 'port' in unknownZone).toBe(false);
  });

  test('log_accepts is validated like log_drops: each bad value named by network and field', () => {
    const bad = { networks: [{ id: 'net-a', zone: 101, mode: 'routed', log_accepts: -3 }, { id: 'net-b', zone: 102, mode: 'routed', log_accepts: 10001, log_drops: 1.5 }], security_groups: [], ports: [] };
    expect(() => validateState(bad, DEFAULT_CONFIG)).toThrow(/networks\[0\] \(net-a\)\.log_accepts: must be at least 0, is -3[^]*networks\[1\] \(net-b\)\.log_drops: must be an integer[^]*networks\[1\] \(net-b\)\.log_accepts: must be at most 10000/);
    const ok = validateState({ networks: [{ id: 'net-a', zone: 101, mode: 'routed', log_accepts: 3 }], security_groups: [], ports: [] }, DEFAULT_CONFIG);
    expect(ok.networks.get('net-a')).toMatchObject({ logAccepts: 3 });
    expect(model.networks.get('net-a')).not.toHaveProperty('logAccepts');
  });

  test('accepts (log_accepts): verdict accept, the direction from the prefix, the port owning the source (egress) or destination (ingress)', () => {
    const inbound = dropRecord({ prefix: acceptPrefix(101, 'ingress'), payload: ipv4(6, [198, 51, 100, 7], [192, 0, 2, 10], [0x9c, 0x40, 0, 22]), hwProtocol: 0x800 }, model);
    expect(inbound).toEqual({ event: 'accept', verdict: 'accept', zone: 101, network: 'net-a', port: 'p1', direction: 'ingress', family: 4, protocol: 6, src: '198.51.100.7', dst: '192.0.2.10', sport: 40000, dport: 22 });
    const outbound = dropRecord({ prefix: 'pw 101 accept-egress', payload: ipv6(17, [0x14, 0xe9, 0, 53]), hwProtocol: 0x86dd }, model);
    expect(outbound).toMatchObject({ event: 'accept', verdict: 'accept', port: 'p1', direction: 'egress', src: '2001:db8:a::10' });
    // An ingress accept whose destination is no port of the network names no port (never the source's).
    const stray = dropRecord({ prefix: 'pw 101 accept-ingress', payload: ipv4(6, [192, 0, 2, 10], [198, 51, 100, 7], [0, 1, 0, 2]), hwProtocol: 0x800 }, undefined)!;
    expect(stray).toMatchObject({ event: 'accept', direction: 'ingress' });
    expect(dropRecord({ prefix: 'pw 101 accept-ingress', payload: ipv4(6, [192, 0, 2, 10], [198, 51, 100, 7], [0, 1, 0, 2]), hwProtocol: 0x800 }, model)).not.toHaveProperty('port');
    expect(dropRecord({ prefix: dropPrefix(101, 'no rule allows it'), payload: ipv4(6, [198, 51, 100, 7], [192, 0, 2, 10], [0, 1, 0, 2]), hwProtocol: 0x800 }, model)).toMatchObject({ event: 'drop', verdict: 'drop' });
  });
});
