import { describe, expect, it } from 'vitest';

import { formatAddress, parseGeneral, parsePrefix } from '../../src/address.js';
import { prefixRange } from '../../src/compile/addr.js';
import { parseInterval } from '../../src/nft/datatypes.js';
import { mulberry32 } from '../helpers/prng.js';

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

describe('parsePrefix fast path', () => {
  // Seeded spellings, valid and not: each must parse (or fail) exactly as the general parser does.
  const random = mulberry32(7);
  const rnd = (n: number) => Math.floor(random() * n);
  const pick = <T>(xs: readonly T[]): T => xs[rnd(xs.length)]!;
  const octet = () => (rnd(4) ? String(rnd(256)) : pick([String(rnd(300)), '0', '00', '01', '255', '256', '', 'a']));
  const group = () => (rnd(6) ? rnd(0x10000).toString(16) : pick([rnd(0x10000).toString(16).toUpperCase(), '0', '0000', '00000', '12345', 'g', '']));
  const len = (max: number) => (rnd(2) ? pick(['', `/${rnd(max + 1)}`]) : pick(['/0', `/${max}`, `/0${rnd(9)}`, '/', '/-1', '/ 8', `/${max + 1}`]));
  const v4 = () => `${octet()}.${octet()}.${octet()}.${octet()}${rnd(4) ? '' : '.1'}${len(32)}`;
  const v6 = () => {
    const groups = Array.from({ length: rnd(9) + 1 }, group);
    const at = rnd(groups.length + 2);
    const text = at <= groups.length && rnd(2) ? [...groups.slice(0, at), '', ...groups.slice(at)].join(':').replace(/^:(?!:)/, '::').replace(/(?<!:):$/, '::') : groups.join(':');
    return `${text}${rnd(2) ? '' : pick(['%eth0', '.1', ':192.0.2.1'])}${len(128)}`;
  };
  const outcome = (f: () => { family: string; bytes: Uint8Array; length: number }) => {
    try {
      const p = f();
      return { family: p.family, bytes: Array.from(p.bytes), length: p.length };
    } catch (e) {
      return { error: (e as { code?: string }).code };
    }
  };
  it('agrees with the general parser on 20000 seeded spellings', () => {
    const fixed = ['::', '::1', '1::', '1:2:3:4:5:6:7::', '::2:3:4:5:6:7:8', '1:2:3:4::5:6:7:8', ':::', '1:::2', ':1', '1:', '2001:db8::1/64', '0.0.0.0/0', '192.0.2.1/32'];
    let valid = 0;
    for (const text of [...fixed, ...Array.from({ length: 20000 }, () => (rnd(2) ? v4() : v6()))]) {
      const a = outcome(() => parsePrefix(text, 'x'));
      expect([text, a]).toEqual([text, outcome(() => parseGeneral(text, 'x'))]);
      if (!('error' in a)) valid++;
    }
    expect(valid).toBeGreaterThan(2000); // the corpus is not all garbage
  });
});

describe('prefixRange', () => {
  // Its fast path reads the common spellings from bytes; every valid spelling must give the range the general
  // parser gives (host bits set, upper-case hex, `::` anywhere, a trailing dotted quad, which only the general
  // path reads), and an invalid one must still be refused.
  const random = mulberry32(11);
  const rnd = (n: number) => Math.floor(random() * n);
  const v4 = () => `${rnd(256)}.${rnd(256)}.${rnd(256)}.${rnd(256)}${rnd(2) ? '' : `/${rnd(33)}`}`;
  const v6 = () => {
    const groups = Array.from({ length: 8 }, () => (rnd(3) ? rnd(0x10000) : 0).toString(16)).map((g) => (rnd(8) ? g : g.toUpperCase()));
    const at = rnd(8);
    const cut = rnd(4);
    const text = cut === 0 ? groups.join(':') : `${groups.slice(0, at).join(':')}::${groups.slice(Math.min(8, at + cut)).join(':')}`;
    return `${text}${rnd(2) ? '' : `/${rnd(129)}`}`;
  };
  const general = (text: string) => {
    const family = text.includes(':') ? 6 : 4;
    const iv = parseInterval(family === 4 ? 'ipv4_addr' : 'ipv6_addr', text);
    return { family, lo: iv.lo, hi: iv.hi };
  };
  it('gives the general parser\'s range for 20000 seeded spellings', () => {
    const fixed = ['::', '::/0', '0.0.0.0/0', '::1', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128', '192.0.2.77/24', '2001:db8::1:2/112',
      '::ffff:192.0.2.1', '64:ff9b::198.51.100.7/120', '2001:db8:1:2:3:4:192.0.2.1'];
    for (const text of [...fixed, ...Array.from({ length: 20000 }, () => (rnd(2) ? v4() : v6()))]) {
      expect([text, prefixRange(text)]).toEqual([text, general(text)]);
    }
  });

  it('still refuses what is no address', () => {
    for (const bad of ['192.0.2.256', '192.0.2.0/33', '2001:db8::/129', '1:::2', '01.2.3.4']) expect(() => prefixRange(bad)).toThrow();
  });
});
