import { describe, expect, test } from 'vitest';

import { parseHostAddress, parseUnicastMac } from '../../src/model/values.js';
import { mulberry32 } from '../helpers/prng.js';

describe('parseUnicastMac', () => {
  // The oracle: the 48-bit value of any accepted spelling, judged and printed here independently.
  const oracle = (text: string) => {
    const hex = /^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}$/i.test(text)
      ? text.replace(/[:-]/g, '')
      : /^[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}$/i.test(text) ? text.replace(/\./g, '') : undefined;
    if (hex === undefined) return 'bad';
    const n = BigInt(`0x${hex}`);
    if (n === 0n || (n >> 40n) & 1n) return 'bad';
    return hex.toLowerCase().match(/../g)!.join(':');
  };

  test('agrees with an independent reading on seeded spellings (canonical, upper case, dashes, Cisco, odd)', () => {
    const random = mulberry32(11);
    const rnd = (n: number) => Math.floor(random() * n);
    const octets = () => Array.from({ length: 6 }, () => (rnd(5) ? rnd(256) : [0, 1, 0xff][rnd(3)]!).toString(16).padStart(2, '0'));
    let ok = 0;
    for (let i = 0; i < 5000; i++) {
      const o = octets();
      const text = [
        o.join(':'), o.join(':').toUpperCase(), o.join('-'), `${o[0]}${o[1]}.${o[2]}${o[3]}.${o[4]}${o[5]}`,
        o.join(':').slice(1), `${o.join(':')}0`, o.join(':').replace(':', '.'), o.join(':').replace(/^./, 'g'),
        rnd(2) ? '00:00:00:00:00:00' : '01:00:5e:00:00:01',
      ][rnd(9)]!;
      const r = parseUnicastMac(text);
      expect([text, r.value ?? 'bad']).toEqual([text, oracle(text)]);
      if (r.value !== undefined) ok++;
    }
    expect(ok).toBeGreaterThan(800); // about half the valid spellings are unicast
  });
});

describe('parseHostAddress', () => {
  test('a host address becomes its /32 or /128 prefix; the unspecified, multicast, reserved and loopback ones are refused', () => {
    const cases: [string, string][] = [
      ['192.0.2.7', '192.0.2.7/32'], ['0.0.0.1', '0.0.0.1/32'], ['2001:DB8:0:0::7', '2001:db8::7/128'], ['::2', '::2/128'],
      ['::ffff:192.0.2.1', '::ffff:c000:201/128'], ['1::', '1::/128'],
      ['0.0.0.0', 'unspecified'], ['::', 'unspecified'], ['224.0.0.1', 'multicast'], ['239.255.255.255', 'multicast'],
      ['ff02::1', 'multicast'], ['240.0.0.1', 'reserved'], ['255.255.255.255', 'reserved'], ['127.0.0.1', 'loopback'],
      ['127.255.0.9', 'loopback'], ['::1', 'loopback'], ['192.0.2.7/32', 'not an IP address'], ['fe80::1%eth0', 'not an IP address'],
      ['192.0.2.256', 'not an IP address'],
    ];
    for (const [text, want] of cases) {
      const r = parseHostAddress(text);
      expect([text, r.value?.prefix ?? r.problem]).toEqual([text, want.includes('/') ? want : expect.stringContaining(want)]);
    }
  });
});

