import { afterEach, describe, expect, it } from 'vitest';

import { IpsetClient, encodeMembers, parseIpsetList } from '../../src/ipset.js';
import { NativeBinding, setBinding } from '../../src/native.js';

describe('encodeMembers', () => {
  it('packs family, CIDR, address and interface', () => {
    const buf = encodeMembers(['192.0.2.1', '198.51.100.0/24', { ip: '2001:db8::/64', iface: 'eth0' }]);
    expect(buf.readUInt32LE(0)).toBe(3);
    expect([buf[4], buf[5], buf[6]]).toEqual([4, 0, 0]);
    expect(Array.from(buf.subarray(8, 12))).toEqual([192, 0, 2, 1]);
    expect([buf[24], buf[25]]).toEqual([4, 24]);
    expect([buf[44], buf[45], buf[46]]).toEqual([6, 64, 4]);
    expect(buf.subarray(64, 68).toString()).toBe('eth0');
    expect(buf.length).toBe(68);
  });

  it('rejects bad members with the index in the field', () => {
    expect(() => encodeMembers(['192.0.2.1', 'nope'])).toThrow(expect.objectContaining({ code: 'ERR_INVALID_VALUE', field: 'members[1]' }));
    expect(() => encodeMembers([{ ip: '192.0.2.1', iface: 'x'.repeat(16) }])).toThrow(expect.objectContaining({ field: 'members[0].iface' }));
  });
});

describe('parseIpsetList', () => {
  it('reads headers and members of several sets', () => {
    const text = [
      'Name: a', 'Type: hash:net,iface', 'Revision: 8',
      'Header: family inet6 hashsize 1024 maxelem 1000 timeout 30 counters comment bucketsize 12 initval 0x1',
      'Size in memory: 1408', 'References: 2', 'Number of entries: 1', 'Members:',
      '2001:db8::/64,veth0 timeout 29 packets 0 bytes 0', '',
      'Name: b', 'Type: hash:ip', 'Revision: 6', 'Header: family inet hashsize 1024 maxelem 65536',
      'Size in memory: 200', 'References: 0', 'Number of entries: 0', 'Members:', '',
    ].join('\n');
    expect(parseIpsetList(text)).toEqual([
      { name: 'a', type: 'hash:net,iface', family: 'ipv6', revision: 8, hashsize: 1024, maxelem: 1000, timeout: 30,
        counters: true, comment: true, references: 2, entries: 1, members: [{ ip: '2001:db8::/64', iface: 'veth0' }] },
      { name: 'b', type: 'hash:ip', family: 'ipv4', revision: 6, hashsize: 1024, maxelem: 65536, counters: false,
        comment: false, references: 0, entries: 0, members: [] },
    ]);
  });
});

describe('IpsetClient with a fake binding', () => {
  afterEach(() => setBinding(undefined));

  it('validates before calling the binding and maps native errnos to codes', async () => {
    const calls: string[] = [];
    const failing = (errnoName: string, opIndex = -1) => async () => {
      calls.push(errnoName);
      throw Object.assign(new Error('native'), { kind: 'netlink', errno: 1, errnoName, opIndex });
    };
    setBinding({ ipsetAdd: failing('ENOENT'), ipsetDel: failing('EAFNOSUPPORT', 1), ipsetCreate: failing('EEXIST') } as unknown as NativeBinding);
    const sets = new IpsetClient({ netns: 'x' });
    await expect(sets.add('s', ['192.0.2.1'])).rejects.toMatchObject({ code: 'ERR_SET_NOT_FOUND', field: 'name' });
    await expect(sets.del('s', ['192.0.2.1', '2001:db8::1'])).rejects.toMatchObject({ code: 'ERR_FAMILY_MISMATCH', field: 'members[1]', opIndex: 1 });
    await expect(sets.create('s', { type: 'hash:ip' })).rejects.toMatchObject({ code: 'ERR_SET_EXISTS' });
    await expect(sets.add('a'.repeat(32), ['192.0.2.1'])).rejects.toMatchObject({ code: 'ERR_INVALID_VALUE', field: 'name' });
    await expect(sets.add('s', ['192.0.2.1/40'])).rejects.toMatchObject({ code: 'ERR_INVALID_VALUE' });
    expect(calls).toEqual(['ENOENT', 'EAFNOSUPPORT', 'EEXIST']);
  });
});
