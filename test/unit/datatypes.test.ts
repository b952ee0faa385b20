import { describe, expect, test } from 'vitest';

import {
  DATATYPES, canonicalValue, dataTypeOf, isIfname, decodeKey, decodeValue, encodeKey, encodeValue, keyTypeNames, mapDataType,
  nftValueText, parseInterval, setKeyType, toBytes,
} from '../../src/nft/datatypes.js';
import { PortwallError } from '../../src/errors.js';
import type { DataTypeName, Value } from '../../src/nft/types.js';
import { thrown } from '../helpers/thrown.js';

const hex = (b: Uint8Array | undefined): string | undefined => (b ? Buffer.from(b).toString('hex') : undefined);
const bytes = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h, 'hex'));

const invalid = (fn: () => unknown, code = 'ERR_INVALID_VALUE'): PortwallError => thrown(fn, code);

// encodeKey's message for a range or prefix given where a single value belongs.
const notSingle = (type: DataTypeName, v: Value): string =>
  `${type}: ${typeof v === 'string' ? `"${v}"` : String(v)} is not a single value (ranges and prefixes need an interval)`;

describe('datatype table', () => {
  test('ids are nft enum datatypes (include/datatype.h)', () => {
    const ids = Object.fromEntries(Object.values(DATATYPES).map((t) => [t.name, t.id]));
    expect(ids).toEqual({
      verdict: 1, nf_proto: 2, integer: 4, ipv4_addr: 7, ipv6_addr: 8, ether_addr: 9, ether_type: 10, arp_op: 11,
      inet_proto: 12, inet_service: 13, icmp_type: 14, mark: 19, ct_state: 26, icmpv6_type: 29, icmp_code: 32,
      icmpv6_code: 33, ifname: 41,
      ct_zone: 4, // integer data of 2 bytes, declared through typeof (not an nft datatype of its own)
    });
  });

  test('byte orders: big for addresses and ports, host for marks and conntrack state', () => {
    expect(DATATYPES.ipv4_addr.order).toBe('big');
    expect(DATATYPES.inet_service.order).toBe('big');
    expect(DATATYPES.ether_type.order).toBe('big');
    expect(DATATYPES.mark.order).toBe('host');
    expect(DATATYPES.ct_state.order).toBe('host');
  });

  test('dataTypeOf maps numbers back, including NFT_DATA_VERDICT', () => {
    expect(dataTypeOf(13)).toBe('inet_service');
    expect(dataTypeOf(0xffffff00)).toBe('verdict');
    invalid(() => dataTypeOf(5), 'ERR_WIRE');
  });
});

describe('set key types', () => {
  test('a single type is its id and size', () => {
    expect(setKeyType(['ipv4_addr'])).toEqual({ keyType: 7, keyLen: 4, fieldLens: [4] });
    expect(setKeyType(['inet_service'])).toEqual({ keyType: 13, keyLen: 2, fieldLens: [2] });
  });

  test('concatenations shift ids by TYPE_BITS and pad fields to 4 bytes (values sent by nft 1.0.6)', () => {
    expect(setKeyType(['ifname', 'inet_proto', 'inet_service', 'ipv4_addr'])).toEqual({ keyType: 10797895, keyLen: 28, fieldLens: [16, 1, 2, 4] });
    expect(setKeyType(['ifname', 'inet_proto'])).toEqual({ keyType: 2636, keyLen: 20, fieldLens: [16, 1] });
    expect(setKeyType(['ifname', 'inet_proto', 'icmp_type', 'icmp_code', 'ipv6_addr']).keyType).toBe(691070984);
  });

  test('keyTypeNames is the inverse and checks the length', () => {
    const types: DataTypeName[] = ['ifname', 'inet_proto', 'inet_service', 'ipv6_addr'];
    const { keyType, keyLen } = setKeyType(types);
    expect(keyTypeNames(keyType, keyLen)).toEqual(types);
    expect(keyTypeNames(19, 4)).toEqual(['mark']);
    invalid(() => keyTypeNames(keyType, keyLen + 4), 'ERR_WIRE');
  });

  test('keys of 0, 6 fields or with verdicts are refused', () => {
    invalid(() => setKeyType([]), 'ERR_INVALID_OBJECT');
    invalid(() => setKeyType(['mark', 'mark', 'mark', 'mark', 'mark', 'mark']), 'ERR_INVALID_OBJECT');
    invalid(() => setKeyType(['verdict']), 'ERR_INVALID_OBJECT');
  });

  test('map data of verdict maps is NFT_DATA_VERDICT', () => {
    expect(mapDataType('verdict')).toEqual({ dataType: 0xffffff00, dataLen: 0 });
    expect(mapDataType('mark')).toEqual({ dataType: 19, dataLen: 4 });
  });
});

describe('canonicalValue', () => {
  const cases: [DataTypeName, Value, Value][] = [
    ['ipv4_addr', '192.0.2.1', '192.0.2.1'],
    ['ipv4_addr', '192.0.2.5/24', '192.0.2.0/24'],
    ['ipv4_addr', '192.0.2.1/32', '192.0.2.1'],
    ['ipv4_addr', '0.0.0.0/0', '0.0.0.0/0'],
    ['ipv4_addr', '192.0.2.0-192.0.2.255', '192.0.2.0/24'],
    ['ipv4_addr', '192.0.2.1-192.0.2.9', '192.0.2.1-192.0.2.9'],
    ['ipv4_addr', '192.0.2.7-192.0.2.7', '192.0.2.7'],
    ['ipv6_addr', '2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['ipv6_addr', '2001:db8:0:1:0:0:0:1', '2001:db8:0:1::1'],
    ['ipv6_addr', '1:0:0:2:0:0:0:3', '1:0:0:2::3'],
    ['ipv6_addr', '2001:db8::1:0:0:1', '2001:db8::1:0:0:1'],
    ['ipv6_addr', '2001:db8:1:1:1:1:0:1', '2001:db8:1:1:1:1:0:1'],
    ['ipv6_addr', '::', '::'],
    ['ipv6_addr', '::ffff:192.0.2.1', '::ffff:c000:201'],
    ['ipv6_addr', '2001:db8::5/32', '2001:db8::/32'],
    ['ipv6_addr', 'fe80::1-fe80::9', 'fe80::1-fe80::9'],
    ['ether_addr', 'FA:16:3E:00:00:01', 'fa:16:3e:00:00:01'],
    ['ifname', 'tap6e3f2eda-32', 'tap6e3f2eda-32'],
    ['ifname', 'tap*', 'tap*'],
    ['inet_service', 80, 80],
    ['inet_service', '443', 443],
    ['inet_service', '1000-2000', '1000-2000'],
    ['inet_service', '22-22', 22],
    ['inet_proto', 'tcp', 6],
    ['inet_proto', 'icmpv6', 58],
    ['inet_proto', 'ipv6-icmp', 58],
    ['inet_proto', 132, 132],
    ['icmp_type', 'echo-request', 8],
    ['icmp_type', 'echo-reply-echo-request', '0-8'],
    ['icmpv6_type', 'nd-neighbor-solicit', 135],
    ['icmp_code', 'port-unreachable', 3],
    ['ct_state', 'established,related', 6],
    ['ct_state', 'invalid', 1],
    ['mark', '0x10', 16],
    ['mark', '0x10-0x20', '16-32'],
    ['ether_type', 'ip6', 0x86dd],
    ['ether_type', 'vlan', 0x8100],
    ['nf_proto', 'ipv4', 2],
    ['arp_op', 'reply', 2],
    ['integer', 4294967295, 4294967295],
    ['verdict', 'jump sg-web', 'jump sg-web'],
  ];
  test.each(cases)('%s %j → %j', (type, input, out) => {
    expect(canonicalValue(type, input)).toEqual(out);
  });

  const bad: [DataTypeName, Value][] = [
    ['ipv4_addr', '192.0.2'], ['ipv4_addr', '256.0.0.1'], ['ipv4_addr', '010.0.0.1'], ['ipv4_addr', '192.0.2.0/33'],
    ['ipv4_addr', '192.0.2.9-192.0.2.1'], ['ipv4_addr', 3221225985], ['ipv4_addr', '192.0.2.0/024'],
    ['ipv6_addr', '2001:db8:::1'], ['ipv6_addr', '1:2:3:4:5:6:7:8:9'], ['ipv6_addr', 'fe80::1%eth0'], ['ipv6_addr', '::/129'],
    ['ether_addr', 'fa-16-3e-00-00-01'], ['ether_addr', 'fa:16:3e:00:00'],
    ['ifname', ''], ['ifname', 'tap6e3f2eda-3230-45e8'], ['ifname', 'a/b'], ['ifname', 'a b'], ['ifname', 'eth:0'],
    ['ifname', '..'], ['ifname', '*'], ['ifname', 'ta*p'], ['ifname', 'a"b'], ['ifname', 7],
    ['inet_service', 65536], ['inet_service', -1], ['inet_service', 1.5], ['inet_service', 'http'], ['inet_service', '2000-1000'],
    ['inet_proto', 256], ['inet_proto', 'nope'], ['mark', 2 ** 32], ['ct_state', 'established|related'],
    ['verdict', 'maybe'], ['verdict', 1],
  ];
  test.each(bad)('%s %j is refused', (type, input) => {
    const e = invalid(() => canonicalValue(type, input, 'ports[0].device'));
    expect(e.message.startsWith(`${type}: `)).toBe(true);
    expect(e.field).toBe('ports[0].device');
  });

  test('the message names the type and the value', () => {
    expect(invalid(() => canonicalValue('inet_service', 'http')).message).toMatch(/^inet_service: "http" is not /);
  });
});

describe('values as bytes', () => {
  test('host-order types are little endian, the rest big endian', () => {
    expect(hex(encodeValue('mark', 0x10))).toBe('10000000');
    expect(hex(encodeValue('ct_state', 'established'))).toBe('02000000');
    expect(hex(encodeValue('inet_service', 80))).toBe('0050');
    expect(hex(encodeValue('ipv4_addr', '192.0.2.1'))).toBe('c0000201');
    expect(hex(encodeValue('ipv6_addr', '2001:db8::1'))).toBe('20010db8000000000000000000000001');
    expect(hex(encodeValue('ether_addr', 'fa:16:3e:00:00:01'))).toBe('fa163e000001');
    expect(hex(encodeValue('ifname', 'tap0'))).toBe('74617030000000000000000000000000');
    expect(hex(encodeValue('inet_proto', 'udp'))).toBe('11');
  });

  test('decodeValue is the inverse, canonical', () => {
    expect(decodeValue('mark', bytes('10000000'))).toBe(16);
    expect(decodeValue('ifname', bytes('74617030000000000000000000000000'))).toBe('tap0');
    expect(decodeValue('ipv6_addr', bytes('20010db8000000000000000000000001'))).toBe('2001:db8::1');
    expect(decodeValue('integer', bytes('0500'))).toBe(5);
    invalid(() => decodeValue('ipv4_addr', bytes('c00002')), 'ERR_WIRE');
  });

  test('a range is no single value', () => {
    invalid(() => encodeValue('inet_service', '1-2'));
    invalid(() => encodeValue('verdict', 'accept'));
  });
});

describe('element keys', () => {
  // Bytes nft 1.0.6 sends for the same elements (see the kernel test, which checks these against nft).
  test('concatenated interval keys: start and inclusive end, fields padded, big endian', () => {
    const types: DataTypeName[] = ['ifname', 'inet_proto', 'inet_service', 'ipv4_addr'];
    const k = encodeKey(types, ['tap*', 'tcp', 80, '192.0.2.0/24'], true);
    expect(hex(k.key)).toBe('746170000000000000000000000000000600000000500000c0000200');
    expect(hex(k.keyEnd)).toBe('746170ffffffffffffffffffffffffff0600000000500000c00002ff');
    expect(decodeKey(types, k.key, k.keyEnd)).toEqual(['tap*', 6, 80, '192.0.2.0/24']);
  });

  test('single values of interval sets have keyEnd = key; marks turn big endian there', () => {
    const k = encodeKey(['mark', 'ipv4_addr'], [16, '192.0.2.1'], true);
    expect(hex(k.key)).toBe('00000010c0000201');
    expect(hex(k.keyEnd)).toBe(hex(k.key));
    expect(decodeKey(['mark', 'ipv4_addr'], k.key, k.keyEnd)).toEqual([16, '192.0.2.1']);
    expect(hex(encodeKey(['mark'], ['32-48'], true).keyEnd)).toBe('00000030');
  });

  test('hash sets keep host order and have no keyEnd', () => {
    const k = encodeKey(['mark', 'ipv4_addr'], [16, '192.0.2.1'], false);
    expect(hex(k.key)).toBe('10000000c0000201');
    expect(k.keyEnd).toBeUndefined();
    expect(decodeKey(['mark', 'ipv4_addr'], k.key)).toEqual([16, '192.0.2.1']);
    expect(hex(encodeKey(['inet_service'], [22], false).key)).toBe('0016');
  });

  test('single addresses and interface names decode from their bytes as the general path prints them', () => {
    // The decoder reads these straight from the bytes; the integer path (a one-element range) must agree.
    const cases: [DataTypeName, Value[]][] = [
      ['ipv4_addr', ['0.0.0.0', '192.0.2.1', '255.255.255.255', '198.18.0.10']],
      ['ipv6_addr', ['::', '::1', '2001:db8::1', '2001:db8:0:1:1:1:1:1', 'fe80::f816:3eff:fe00:0', '2001:db8:1::1:0:0', '1:0:0:2::3']],
      ['ifname', ['tap0', 'tapb66976d3-10', 'a', 'abcdefghijklmno', 'ä-port']],
    ];
    for (const [type, values] of cases) {
      for (const v of values) {
        const single = encodeKey([type], [v], false).key;
        const ranged = encodeKey([type], [v], true);
        expect(decodeKey([type], single)).toEqual([v]);
        expect(decodeKey([type], ranged.key, ranged.keyEnd)).toEqual([v]);
        expect(decodeKey(['ifname', type], ...Object.values(encodeKey(['ifname', type], ['tap1', v], true)) as [Uint8Array, Uint8Array])).toEqual(['tap1', v]);
      }
    }
    // Wildcards and prefixes still go the general way.
    const w = encodeKey(['ifname'], ['tap*'], true);
    expect(decodeKey(['ifname'], w.key, w.keyEnd)).toEqual(['tap*']);
    const p = encodeKey(['ipv6_addr'], ['2001:db8::/32'], true);
    expect(decodeKey(['ipv6_addr'], p.key, p.keyEnd)).toEqual(['2001:db8::/32']);
  });

  test('every spelling encodes as its parsed interval: the short path for common ones writes the same bytes', () => {
    // encodeKey writes numbers, plain and prefixed addresses, MACs and plain interface names without parsing them
    // into an interval first. The reference here is the interval itself; invalid values must fail alike.
    let seed = 7; // mulberry32: a seeded generator whose low bits are as random as its high ones
    const rnd = (n: number): number => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return Math.floor((((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * n);
    };
    const pick = <T>(xs: readonly T[]): T => xs[rnd(xs.length)]!;
    const octet = (): string => pick(['0', '1', '9', '10', '99', '192', '255', '256', '300', '01', '00', '', 'a', '1000']);
    const len = (max: number): string => (rnd(3) === 0 ? '' : `/${pick(['0', '1', '7', '8', '9', '16', '23', '24', '31', '32', '33', '64', '100', '127', '128', '129', '08', ''].filter((l) => l === '' || l.startsWith('0') || Number(l) <= max + 1))}`);
    const ipv4 = (): string => Array.from({ length: pick([3, 4, 4, 4, 4, 5]) }, octet).join('.') + len(32) + (rnd(12) === 0 ? '-198.51.100.1' : '');
    // Mostly valid addresses (8 groups, or a run of them as `::`), one flaw in about every third.
    const ipv6 = (): string => {
      const gs = Array.from({ length: 8 }, () => pick(['0', '1', 'db8', 'DB8', '2001', 'ffff', 'fFfF', 'f816', '3eff', 'a']));
      const flaw = rnd(3) === 0 ? pick(['10000', '00000', '', 'g', '1:2', '1.2', '%eth0', ':']) : undefined;
      if (flaw !== undefined) gs[rnd(8)] = flaw;
      if (rnd(10) === 0) gs.splice(6, 2, pick(['192.0.2.1', '1.2.3', '256.0.0.1']));
      if (rnd(2) === 0) {
        const at = rnd(8);
        gs.splice(at, rnd(9 - at), '');
        if (at === 0) gs.unshift('');
        if (gs[gs.length - 1] === '') gs.push('');
        if (gs.length === 1) gs.push('');
      }
      if (rnd(10) === 0) gs.splice(rnd(gs.length), 0, pick(['', '1']));
      const edge = rnd(12) === 0 ? pick([':', '.', '-']) : '';
      return (rnd(2) === 0 ? edge + gs.join(':') : gs.join(':') + edge) + len(128);
    };
    const ifname = (): string => {
      const name = Array.from({ length: pick([1, 2, 4, 8, 14, 15, 15, 16, 17]) }, () => pick(['t', 'a', 'p', '0', '9', '-', '_', '.', 'Z']));
      if (rnd(3) === 0) name[rnd(name.length)] = pick([' ', '*', '/', ':', '"', '\\', '\0', '\t', 'ä', '\x7f', '~']);
      const text = rnd(20) === 0 ? pick(['.', '..', '']) : name.join('');
      return text + (rnd(6) === 0 ? '*' : '');
    };
    // Mostly valid MACs, any case; a flaw (a short or long group, a wrong separator, a range) in about every third.
    const mac = (): string => {
      const gs = Array.from({ length: 6 }, () => pick(['00', '0a', 'fa', 'FA', 'fE', '16', 'ff']));
      if (rnd(3) === 0) gs[rnd(6)] = pick(['0', '000', 'g0', '', '0:', ' a', '-1']);
      if (rnd(12) === 0) gs.splice(rnd(6), 1);
      const text = gs.join(rnd(15) === 0 ? pick(['-', '.', '::']) : ':');
      return text + (rnd(12) === 0 ? '-fa:16:3e:00:00:01' : '');
    };
    const integer = (): Value => pick([0, 1, 80, 255, 256, 65_535, 65_536, 2 ** 32 - 1, 2 ** 32, -1, 1.5, -0, '80', '22-80', 'ssh', NaN]);
    const makers: [DataTypeName, () => Value][] = [
      ['ipv4_addr', ipv4], ['ipv6_addr', ipv6], ['ifname', ifname], ['inet_service', integer], ['inet_proto', integer],
      ['mark', integer], ['integer', integer], ['ether_addr', mac],
    ];
    const outcome = (fn: () => Uint8Array[]): string => {
      try {
        return fn().map(hex).join(' ');
      } catch (e) {
        return `error ${(e as Error).message}`;
      }
    };
    let fast = 0;
    for (let i = 0; i < 20_000; i++) {
      const [type, make] = makers[i % makers.length]!;
      const v = make();
      const t = DATATYPES[type];
      const interval = rnd(2) === 0;
      const got = outcome(() => {
        const k = encodeKey([type], [v], interval);
        return interval ? [k.key, k.keyEnd!] : [k.key];
      });
      const want = outcome(() => {
        const iv = parseInterval(type, v, { field: 'key[0]' });
        if (!interval) {
          if (iv.lo !== iv.hi) throw new Error(notSingle(type, v));
          return [toBytes(iv.lo, t.size, t.order)];
        }
        return [toBytes(iv.lo, t.size, 'big'), toBytes(iv.hi, t.size, 'big')];
      });
      expect(got, `${type} ${JSON.stringify(v)} interval=${interval}`).toBe(want);
      if (!want.startsWith('error')) fast++;
    }
    expect(fast).toBeGreaterThan(5_000); // the generator reaches valid values of every kind, not only errors
  });

  test('ranges and prefixes need an interval set', () => {
    invalid(() => encodeKey(['ipv4_addr'], ['192.0.2.0/24'], false));
    invalid(() => encodeKey(['ipv4_addr', 'inet_service'], ['192.0.2.1'], true));
  });

  test('decodeKey: a range that is a prefix prints as one, other ranges as a-b', () => {
    const types: DataTypeName[] = ['ipv4_addr'];
    expect(decodeKey(types, bytes('c0000200'), bytes('c00002ff'))).toEqual(['192.0.2.0/24']);
    expect(decodeKey(types, bytes('c0000201'), bytes('c0000209'))).toEqual(['192.0.2.1-192.0.2.9']);
    expect(decodeKey(['inet_service'], bytes('0000'), bytes('03ff'))).toEqual(['0-1023']);
    invalid(() => decodeKey(types, bytes('c00002'), undefined), 'ERR_WIRE');
  });
});

describe('nft spelling of values', () => {
  test('names where nft has them, quoted interfaces, hex marks', () => {
    expect(nftValueText('inet_proto', 6)).toBe('tcp');
    expect(nftValueText('inet_proto', 58)).toBe('ipv6-icmp');
    expect(nftValueText('inet_proto', 200)).toBe('200');
    expect(nftValueText('ifname', 'tap*')).toBe('"tap*"');
    expect(nftValueText('mark', 16)).toBe('0x10');
    expect(nftValueText('ct_state', 6)).toBe('established,related');
    expect(nftValueText('icmpv6_type', 135)).toBe('nd-neighbor-solicit');
    expect(nftValueText('ether_type', 0x8100)).toBe('8021q');
    expect(nftValueText('inet_service', '1000-2000')).toBe('1000-2000');
  });

  test('in set elements a multi-flag state is a number (the comma would split the list)', () => {
    expect(nftValueText('ct_state', 6, true)).toBe('0x6');
    expect(nftValueText('ct_state', 2, true)).toBe('established');
  });
});

describe('IPv4 text', () => {
  test('parses and prints every octet value at its edges; refuses leading zeros, 256 and short forms', async () => {
    const { formatIPv4, parseIPv4 } = await import('../../src/nft/addresses.js');
    for (const [text, n] of [['0.0.0.0', 0n], ['255.255.255.255', 0xffffffffn], ['192.0.2.1', 0xc0000201n], ['128.0.0.255', 0x800000ffn]] as const) {
      expect(parseIPv4(text)).toBe(n);
      expect(formatIPv4(n)).toBe(text);
    }
    for (const bad of ['01.2.3.4', '1.2.3.256', '1.2.3', '1.2.3.4.5', '1..3.4', '-1.2.3.4', '1.2.3.4 ']) expect(parseIPv4(bad), bad).toBeUndefined();
  });
});

describe('isIfname', () => {
  const parses = (name: string) => {
    try {
      canonicalValue('ifname', name);
      return true;
    } catch {
      return false;
    }
  };
  test('agrees with the ifname type on plain, non-ASCII, odd and wildcard names', () => {
    const names = [
      'tap1', 'eth0', 'a', 'x'.repeat(15), 'x'.repeat(16), '', '.', '..', '...', 'tap 1', 'tap/1', 'tap:1', 'ta"p', 'ta\\p',
      'tap*', '*', 'tap+', 'vé0', 'ü'.repeat(7), 'ü'.repeat(8), 'tap\t', 'tap\u007f', 'a.b', 'tap-1_x@y',
    ];
    for (const name of names) expect([name, isIfname(name)]).toEqual([name, !name.endsWith('*') && parses(name)]);
    expect(isIfname('tap1')).toBe(true);
    expect(isIfname('vé0')).toBe(true);
    expect(isIfname('tap*')).toBe(false);
    expect(isIfname('x'.repeat(16))).toBe(false);
  });
});
