/**
 * Zone maps (`typeof KEY : ct zone`): the set userdata is byte for byte what nft 1.0.6 writes (captured with
 * `nft --debug=mnl add map inet t m '{ typeof … : ct zone; }'`), so `nft list ruleset` prints them and
 * `nft -f` reads them back; dumps recognise them; validation refuses a zone map without its key expression.
 */
import { describe, expect, test } from 'vitest';

import { Transaction } from '../../src/nft/transaction.js';
import { setUserdata, zoneMapTypeof } from '../../src/nft/userdata.js';
import { decodeOperations } from '../../src/nft/wire.js';
import type { NftSet } from '../../src/nft/types.js';

const hex = (s: string) => Uint8Array.from(s.replace(/\s+/g, '').match(/../g)!.map((x) => parseInt(x, 16)));
const map = (name: string, extra: Partial<NftSet>): NftSet => ({ kind: 'set', family: 'inet', table: 't', name, key: ['ifname'], data: 'ct_zone', typeof: 'iifname', ...extra });

// NFTA_SET_USERDATA of the three maps nft created.
const NFT_IIFNAME = hex('00040100 0000 0104 01000000 030e 0004 09000000 0106 0004 06000000 0414 0004 0c000000 010c 0004 11000000 0104 ffffffff 0604 00000000');
const NFT_OIFNAME = hex('00040100 0000 0104 01000000 030e 0004 09000000 0106 0004 07000000 0414 0004 0c000000 010c 0004 11000000 0104 ffffffff 0604 00000000');
const NFT_IP6_COMMENT = hex('00040200 0000 0104 01000000 0314 0004 07000000 010c 0004 0d000000 0104 09000000 0414 0004 0c000000 010c 0004 11000000 0104 ffffffff 0604 00000000 0702 7800');

describe('zone maps', () => {
  test('userdata as nft writes it', () => {
    expect(setUserdata(map('a', {}))).toEqual(NFT_IIFNAME);
    expect(setUserdata(map('b', { typeof: 'oifname' }))).toEqual(NFT_OIFNAME);
    expect(setUserdata(map('c', { key: ['ipv6_addr'], typeof: 'ip6 daddr', comment: 'x' }))).toEqual(NFT_IP6_COMMENT);
  });

  test('a dump recognises them by their typeof; other integer maps are left alone', () => {
    expect(zoneMapTypeof(NFT_IIFNAME)).toBe('iifname');
    expect(zoneMapTypeof(NFT_IP6_COMMENT)).toBe('ip6 daddr');
    expect(zoneMapTypeof(hex('00040100 0000 0104 01000000'))).toBeUndefined();
  });

  test('encode → decode keeps data type and key expression; nft text uses typeof', () => {
    const m4 = map('z4', { key: ['ipv4_addr'], typeof: 'ip daddr', flags: ['interval'] });
    const tx = new Transaction().add({ kind: 'table', family: 'inet', name: 't' }).add(map('zd', {})).add(m4)
      .add({ kind: 'elements', family: 'inet', table: 't', set: 'zd', elements: [{ key: ['tap1'], data: 101 }, { key: ['tap2'], data: 65535 }] })
      .add({ kind: 'elements', family: 'inet', table: 't', set: 'z4', elements: [{ key: ['192.0.2.0/24'], data: 7 }] });
    expect(tx.error).toBeUndefined();
    const decoded = decodeOperations(tx.encode());
    expect(decoded.map((o) => o.object)).toEqual(tx.operations.map((o) => o.object));
    expect(tx.toString()).toContain('add map inet t zd { typeof iifname : ct zone; }');
    expect(tx.toString()).toContain('add map inet t z4 { typeof ip daddr : ct zone; flags interval; }');
    expect(tx.toString()).toContain('add element inet t zd { "tap1" : 101, "tap2" : 65535 }');
  });

  test('validation: a zone map needs its key expression, of the key type; zones are 16-bit', () => {
    const tx = () => new Transaction().add({ kind: 'table', family: 'inet', name: 't' });
    expect(tx().add(map('x', { typeof: undefined })).error?.field).toBe('typeof');
    expect(tx().add(map('x', { typeof: 'ip daddr' })).error?.message).toContain('ip daddr is not a key of type ifname');
    expect(tx().add(map('x', { data: 'mark' })).error?.message).toContain('only maps of ct_zone data');
    const big = tx().add(map('x', {})).add({ kind: 'elements', family: 'inet', table: 't', set: 'x', elements: [{ key: ['tap1'], data: 65536 }] });
    expect(big.error?.code).toBe('ERR_INVALID_VALUE');
  });
});
