import { describe, expect, it } from 'vitest';

import { ENTRY_BYTES, FILTER_BYTES, decodeEntries, encodeEntries, encodeFilters } from '../../src/conntrack.js';

describe('encodeFilters', () => {
  it('writes a 64-byte record with a field mask', () => {
    const buf = encodeFilters({ zone: 7, protocol: 'tcp', src: '198.51.100.9/24', dport: [80, 443], mark: 1, markMask: 0xff });
    expect(buf.length).toBe(FILTER_BYTES);
    expect(buf.readUInt32LE(0)).toBe(1 | 2 | 4 | 8 | 16 | 128);
    expect(buf.readUInt16LE(4)).toBe(7);
    expect([buf[6], buf[7], buf[16]]).toEqual([4, 6, 24]);
    expect(Array.from(buf.subarray(20, 24))).toEqual([198, 51, 100, 0]);
    expect([buf.readUInt16LE(56), buf.readUInt16LE(58)]).toEqual([80, 443]);
    expect([buf.readUInt32LE(8), buf.readUInt32LE(12)]).toEqual([1, 0xff]);
    expect(encodeFilters([{}, { zone: 1 }]).length).toBe(2 * FILTER_BYTES);
  });

  it('rejects out-of-range and inconsistent filters', () => {
    expect(() => encodeFilters({ zone: 65536 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_VALUE', field: 'zone' }));
    expect(() => encodeFilters([{ zone: 1 }, { dport: [9, 3] }])).toThrow(expect.objectContaining({ field: 'filters[1].dport' }));
    expect(() => encodeFilters({ src: '192.0.2.1', dst: '2001:db8::1' })).toThrow(expect.objectContaining({ code: 'ERR_FAMILY_MISMATCH', field: 'dst' }));
    expect(() => encodeFilters({ protocol: 'gre' as never })).toThrow(expect.objectContaining({ field: 'protocol' }));
    expect(() => encodeFilters({ protocol: 'icmp', sport: 1 })).toThrow(expect.objectContaining({ field: 'sport' }));
  });
});

describe('entry records', () => {
  it('round-trip through decodeEntries with a derived reply tuple left to the kernel', () => {
    const buf = encodeEntries([
      { zone: 9, protocol: 'tcp', src: '192.0.2.1', dst: '192.0.2.2', sport: 1000, dport: 22, mark: 5 },
      { protocol: 'icmpv6', src: '2001:db8::1', dst: '2001:db8::2', icmp: { id: 3 }, timeout: 30, assured: false },
    ]);
    expect(buf.length).toBe(2 * ENTRY_BYTES);
    const [tcp, icmp] = decodeEntries(buf);
    expect(tcp).toMatchObject({ family: 'ipv4', protocol: 6, zone: 9, mark: 5, timeout: 120, tcpState: 'established', status: 6,
      orig: { src: '192.0.2.1', dst: '192.0.2.2', sport: 1000, dport: 22 }, reply: { src: '0.0.0.0' } });
    expect(icmp).toMatchObject({ family: 'ipv6', protocol: 58, timeout: 30, status: 0, icmp: { type: 128, code: 0, id: 3 } });
    expect(icmp!.orig).toEqual({ src: '2001:db8::1', dst: '2001:db8::2' });
  });

  it('rejects prefixes, missing ports and bad states with the entry index', () => {
    expect(() => encodeEntries([{ protocol: 'udp', src: '192.0.2.0/24', dst: '192.0.2.1', sport: 1, dport: 2 }])).toThrow(expect.objectContaining({ field: 'entries[0].src' }));
    expect(() => encodeEntries([{ protocol: 'udp', src: '192.0.2.1', dst: '192.0.2.2', sport: 1 }])).toThrow(expect.objectContaining({ field: 'entries[0].dport' }));
    expect(() => encodeEntries([{ protocol: 'udp', src: '192.0.2.1', dst: '192.0.2.2', sport: 1, dport: 2, tcpState: 'close' }])).toThrow(expect.objectContaining({ field: 'entries[0].tcpState' }));
  });
});
