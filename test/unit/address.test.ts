import { describe, expect, it } from 'vitest';

import { formatAddress, parsePrefix } from '../../src/address.js';

describe('parsePrefix', () => {
  it('parses addresses and prefixes of both families and clears host bits', () => {
    const v4 = parsePrefix('192.0.2.77/24', 'x');
    expect(v4).toMatchObject({ family: 'ipv4', length: 24 });
    expect(Array.from(v4.bytes.subarray(0, 4))).toEqual([192, 0, 2, 0]);
    expect(parsePrefix('192.0.2.1', 'x').length).toBe(32);
    const v6 = parsePrefix('2001:db8::1:2/112', 'x');
    expect(formatAddress('ipv6', v6.bytes)).toBe('2001:db8::1:0');
    expect(formatAddress('ipv6', parsePrefix('::ffff:192.0.2.1', 'x').bytes)).toBe('::ffff:c000:201');
    expect(formatAddress('ipv6', parsePrefix('fe80::1%eth0', 'x').bytes)).toBe('fe80::1');
  });

  it('rejects bad input with ERR_INVALID_VALUE naming the field', () => {
    for (const bad of ['192.0.2.256', '192.0.2.0/33', '2001:db8::/129', 'host', '192.0.2.0/', '192.0.2.0/-1'])
      expect(() => parsePrefix(bad, 'members[0]')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_VALUE', field: 'members[0]' }));
  });

  it('formats like ip(8)', () => {
    const b = new Uint8Array(16);
    expect(formatAddress('ipv6', b)).toBe('::');
    b[15] = 1;
    expect(formatAddress('ipv6', b)).toBe('::1');
    expect(formatAddress('ipv6', parsePrefix('2001:db8:0:1:0:0:0:1', 'x').bytes)).toBe('2001:db8:0:1::1');
  });
});
