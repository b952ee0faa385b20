/**
 * Statements with their nft spelling and their match.ts spelling, checked against `nft` by the kernel test.
 * Each family's cases load into one table `t` with base chain `c` (filter), `n`/`p` (nat) and chain `d`.
 */
import {
  F, accept, and, counter, dnat, drop, eq, ge, goto, inSet, jump, limit, log, lt, mapOf, masquerade, ne, notInSet,
  natFrom, notrack, or, ret, set, snat, vmap, type Part,
} from '../../src/nft/match.js';
import type { Family, NftSet } from '../../src/nft/types.js';

export interface Case {
  /** nft syntax of the statement, as a person would write it. */
  nft: string;
  parts: Part[];
  /** Chain: c (filter, default), n (nat prerouting), p (nat postrouting). */
  chain?: 'c' | 'n' | 'p';
}

const s = (family: Family, name: string, key: NftSet['key'], extra: Partial<NftSet> = {}): NftSet =>
  ({ kind: 'set', family, table: 't', name, key, ...extra });

export const SETS: Record<string, NftSet[]> = {
  inet: [
    s('inet', 'allow4', ['ifname', 'inet_proto', 'inet_service', 'ipv4_addr'], { flags: ['interval'], counter: true, comment: 'sg rules' }),
    s('inet', 'allow6', ['ifname', 'inet_proto', 'inet_service', 'ipv6_addr'], { flags: ['interval'] }),
    s('inet', 'members', ['ipv4_addr'], { flags: ['interval'] }),
    s('inet', 'refs', ['ifname', 'inet_proto', 'inet_service'], { flags: ['interval'] }),
    s('inet', 'icmp4', ['ifname', 'icmp_type', 'icmp_code', 'ipv4_addr'], { flags: ['interval'] }),
    s('inet', 'bridged', ['mark', 'ipv4_addr'], { flags: ['interval'] }),
    s('inet', 'hashed', ['ifname', 'inet_proto', 'inet_service']),
    s('inet', 'zones', ['ifname'], { data: 'verdict' }),
    s('inet', 'ports', ['ifname', 'inet_proto'], { data: 'verdict' }),
    s('inet', 'marks', ['mark'], { flags: ['interval'] }),
    s('inet', 'devmarks', ['ifname'], { data: 'mark' }),
    s('inet', 'netmarks', ['ipv4_addr'], { data: 'mark', flags: ['interval'] }),
    s('inet', 'fips', ['ipv4_addr'], { data: 'ipv4_addr' }),
    s('inet', 'devzones', ['ifname'], { data: 'ct_zone', typeof: 'iifname' }),
  ],
  bridge: [s('bridge', 'macs', ['ether_addr', 'ipv4_addr']), s('bridge', 'port_tag', ['ifname'], { data: 'mark' })],
};
const set$ = (family: string, name: string): NftSet => SETS[family]!.find((x) => x.name === name)!;

export const CASES: Record<'inet' | 'ip' | 'ip6' | 'bridge' | 'arp' | 'netdev', Case[]> = {
  inet: [
    { nft: 'ip saddr 192.0.2.0/24 accept', parts: [eq(F.ip.saddr, '192.0.2.0/24'), accept()] },
    { nft: 'ip saddr 192.0.2.0/25', parts: [eq(F.ip.saddr, '192.0.2.0/25')] },
    { nft: 'ip saddr != 192.0.2.0/24 drop', parts: [ne(F.ip.saddr, '192.0.2.0/24'), drop()] },
    { nft: 'ip daddr 192.0.2.1-192.0.2.9', parts: [eq(F.ip.daddr, '192.0.2.1-192.0.2.9')] },
    { nft: 'tcp dport 80 counter', parts: [eq(F.tcp.dport, 80), counter()] },
    { nft: 'th dport 1000-2000', parts: [eq(F.th.dport, '1000-2000')] },
    { nft: 'th dport != 1000-2000', parts: [ne(F.th.dport, '1000-2000')] },
    { nft: 'tcp dport < 1024', parts: [lt(F.tcp.dport, 1024)] },
    { nft: 'ip6 saddr 2001:db8::/32', parts: [eq(F.ip6.saddr, '2001:db8::/32')] },
    { nft: 'ip6 saddr 2001:db8::/33 ip6 daddr 2001:db8::1', parts: [eq(F.ip6.saddr, '2001:db8::/33'), eq(F.ip6.daddr, '2001:db8::1')] },
    { nft: 'ether saddr 00:11:22:33:44:55', parts: [eq(F.ether.saddr, '00:11:22:33:44:55')] },
    { nft: 'ether saddr 00:11:22:33:44:55 ip saddr 192.0.2.1', parts: [eq(F.ether.saddr, '00:11:22:33:44:55'), eq(F.ip.saddr, '192.0.2.1')] },
    { nft: 'iifname "tap0" oifname "tap1"', parts: [eq(F.meta.iifname, 'tap0'), eq(F.meta.oifname, 'tap1')] },
    { nft: 'iifname "tap*"', parts: [eq(F.meta.iifname, 'tap*')] },
    { nft: 'meta l4proto tcp', parts: [eq(F.meta.l4proto, 'tcp')] },
    { nft: 'meta l4proto ipv6-icmp icmpv6 type nd-router-advert', parts: [eq(F.meta.l4proto, 58), eq(F.icmpv6.type, 'nd-router-advert')] },
    { nft: 'ct state established,related accept', parts: [eq(F.ct.state, 'established,related'), accept()] },
    { nft: 'ct state invalid drop', parts: [eq(F.ct.state, 'invalid'), drop()] },
    { nft: 'ct state != established', parts: [ne(F.ct.state, 'established')] },
    { nft: 'ct zone set 5', parts: [set(F.ct.zone, 5)] },
    { nft: 'meta mark set 0x10', parts: [set(F.meta.mark, 0x10)] },
    { nft: 'meta mark and 0xff00 == 0x100', parts: [eq(and(F.meta.mark, 0xff00), 0x100)] },
    { nft: 'meta mark 0x1-0xa', parts: [eq(F.meta.mark, '1-10')] },
    { nft: 'meta mark >= 0x10', parts: [ge(F.meta.mark, 16)] },
    { nft: 'oifname . meta l4proto . th dport . ip saddr @allow4 accept', parts: [inSet([F.meta.oifname, F.meta.l4proto, F.th.dport, F.ip.saddr], set$('inet', 'allow4')), accept()] },
    { nft: 'oifname . meta l4proto . th dport . ip6 saddr @allow6 accept', parts: [inSet([F.meta.oifname, F.meta.l4proto, F.th.dport, F.ip6.saddr], set$('inet', 'allow6')), accept()] },
    { nft: 'ip saddr @members oifname . meta l4proto . th dport @refs accept', parts: [inSet(F.ip.saddr, set$('inet', 'members')), inSet([F.meta.oifname, F.meta.l4proto, F.th.dport], set$('inet', 'refs')), accept()] },
    { nft: 'ip saddr != @members', parts: [notInSet(F.ip.saddr, set$('inet', 'members'))] },
    { nft: 'oifname . icmp type . icmp code . ip saddr @icmp4', parts: [inSet([F.meta.oifname, F.icmp.type, F.icmp.code, F.ip.saddr], set$('inet', 'icmp4'))] },
    { nft: 'meta mark and 0xffff . ip saddr @bridged', parts: [inSet([and(F.meta.mark, 0xffff), F.ip.saddr], set$('inet', 'bridged'))] },
    { nft: 'meta mark @marks', parts: [inSet(F.meta.mark, set$('inet', 'marks'))] },
    { nft: 'iifname . meta l4proto . th dport @hashed', parts: [inSet([F.meta.iifname, F.meta.l4proto, F.th.dport], set$('inet', 'hashed'))] },
    { nft: 'iifname vmap @zones', parts: [vmap(F.meta.iifname, set$('inet', 'zones'))] },
    { nft: 'iifname . meta l4proto vmap @ports', parts: [vmap([F.meta.iifname, F.meta.l4proto], set$('inet', 'ports'))] },
    { nft: 'log prefix "pw drop " level info limit rate 10/second notrack', parts: [log({ prefix: 'pw drop ', level: 'info' }), limit({ rate: 10, per: 'second' }), notrack()] },
    { nft: 'log group 2 limit rate over 100 kbytes/second burst 1000 bytes', parts: [log({ group: 2 }), limit({ rate: 102400, per: 'second', bytes: true, over: true, burst: 1000 })] },
    { nft: 'limit rate 6/minute burst 2 packets counter', parts: [limit({ rate: 6, per: 'minute', burst: 2 }), counter()] },
    { nft: 'icmp type echo-request', parts: [eq(F.icmp.type, 'echo-request')] },
    { nft: 'icmp type echo-request icmp code 0', parts: [eq(F.icmp.type, 8), eq(F.icmp.code, 0)] },
    { nft: 'icmpv6 type nd-neighbor-solicit', parts: [eq(F.icmpv6.type, 'nd-neighbor-solicit')] },
    { nft: 'ip saddr 192.0.2.1 icmp type echo-reply', parts: [eq(F.ip.saddr, '192.0.2.1'), eq(F.icmp.type, 'echo-reply')] },
    { nft: 'udp sport 67 udp dport 68', parts: [eq(F.udp.sport, 67), eq(F.udp.dport, 68)] },
    { nft: 'ip saddr 192.0.2.1 udp sport 67 udp dport 68 accept', parts: [eq(F.ip.saddr, '192.0.2.1'), eq(F.udp.sport, 67), eq(F.udp.dport, 68), accept()] },
    { nft: 'tcp dport 80 iifname "x" tcp sport 5', parts: [eq(F.tcp.dport, 80), eq(F.meta.iifname, 'x'), eq(F.tcp.sport, 5)] },
    { nft: 'meta nfproto ipv6 meta l4proto udp udp dport 547', parts: [eq(F.meta.nfproto, 'ipv6'), eq(F.meta.l4proto, 'udp'), eq(F.udp.dport, 547)] },
    { nft: 'ip protocol tcp tcp dport 22', parts: [eq(F.ip.protocol, 'tcp'), eq(F.tcp.dport, 22)] },
    { nft: 'ip saddr 0.0.0.0/0', parts: [eq(F.ip.saddr, '0.0.0.0/0')] },
    { nft: 'ip6 daddr != 2001:db8::/64 tcp dport != 22 meta mark != 0x10', parts: [ne(F.ip6.daddr, '2001:db8::/64'), ne(F.tcp.dport, 22), ne(F.meta.mark, 16)] },
    { nft: 'sctp dport 5000-5010 ct state new,untracked', parts: [eq(F.sctp.dport, '5000-5010'), eq(F.ct.state, ['new', 'untracked'].join(','))] },
    { nft: 'udplite sport 1', parts: [eq(F.udplite.sport, 1)] },
    { nft: 'ether daddr ff:ff:ff:ff:ff:ff ether saddr 00:11:22:33:44:55 ether type arp', parts: [eq(F.ether.daddr, 'FF:FF:FF:FF:FF:FF'), eq(F.ether.saddr, '00:11:22:33:44:55'), eq(F.ether.type, 'arp')] },
    { nft: 'jump d', parts: [jump('d')] },
    { nft: 'goto d', parts: [goto('d')] },
    { nft: 'return', parts: [ret()] },
    { nft: 'ct mark set 0x1 ct zone 7', parts: [set(F.ct.mark, 1), eq(F.ct.zone, 7)] },
    { nft: 'meta mark set iifname map @devmarks', parts: [set(F.meta.mark, mapOf(F.meta.iifname, set$('inet', 'devmarks')))] },
    { nft: 'ct mark set ip daddr map @netmarks', parts: [set(F.ct.mark, mapOf(F.ip.daddr, set$('inet', 'netmarks')))] },
    { nft: 'meta mark set meta mark and 0xffff0000', parts: [set(F.meta.mark, and(F.meta.mark, 0xffff0000))] },
    { nft: 'meta mark set meta mark or 0x8000', parts: [set(F.meta.mark, or(F.meta.mark, 0x8000))] },
    { nft: 'ct mark set meta mark', parts: [set(F.ct.mark, F.meta.mark)] },
    { nft: 'snat ip to ip saddr map @fips', parts: [natFrom('snat', 'ip', mapOf(F.ip.saddr, set$('inet', 'fips')))], chain: 'p' },
    { nft: 'ip saddr 192.0.2.0/24 ct status & 0x20 == 0 accept', parts: [eq(F.ip.saddr, '192.0.2.0/24'), eq(and(F.ct.status, 0x20), 0), accept()], chain: 'p' },
    { nft: 'dnat ip to ip daddr map @fips', parts: [natFrom('dnat', 'ip', mapOf(F.ip.daddr, set$('inet', 'fips')))], chain: 'n' },
    { nft: 'ct original zone set 5', parts: [set(F.ct.originalZone, 5)] },
    { nft: 'ct original zone set iifname map @devzones', parts: [set(F.ct.originalZone, mapOf(F.meta.iifname, set$('inet', 'devzones')))] },
    { nft: 'snat ip to 192.0.2.1', parts: [snat('192.0.2.1')], chain: 'p' },
    { nft: 'snat ip to 192.0.2.1-192.0.2.9 persistent', parts: [snat('192.0.2.1-192.0.2.9', { flags: ['persistent'] })], chain: 'p' },
    { nft: 'meta l4proto tcp snat ip to 192.0.2.1:1000-2000 fully-random', parts: [eq(F.meta.l4proto, 'tcp'), snat('192.0.2.1', { port: '1000-2000', flags: ['fully-random'] })], chain: 'p' },
    { nft: 'snat ip6 to 2001:db8::1', parts: [snat('2001:db8::1')], chain: 'p' },
    { nft: 'masquerade', parts: [masquerade()], chain: 'p' },
    { nft: 'ip daddr 203.0.113.5 dnat ip to 192.0.2.1', parts: [eq(F.ip.daddr, '203.0.113.5'), dnat('192.0.2.1')], chain: 'n' },
    { nft: 'ip daddr 169.254.169.254 tcp dport 80 dnat ip to 192.0.2.1:8775', parts: [eq(F.ip.daddr, '169.254.169.254'), eq(F.tcp.dport, 80), dnat('192.0.2.1', { port: 8775 })], chain: 'n' },
    { nft: 'meta l4proto tcp dnat ip6 to [2001:db8::1]:80', parts: [eq(F.meta.l4proto, 'tcp'), dnat('2001:db8::1', { port: 80 })], chain: 'n' },
  ],
  ip: [
    { nft: 'ip saddr 192.0.2.0/24 tcp dport 22 accept', parts: [eq(F.ip.saddr, '192.0.2.0/24'), eq(F.tcp.dport, 22), accept()] },
    { nft: 'ip saddr 192.0.2.1 ip daddr 192.0.2.2', parts: [eq(F.ip.saddr, '192.0.2.1'), eq(F.ip.daddr, '192.0.2.2')] },
    { nft: 'icmp type echo-request', parts: [eq(F.icmp.type, 'echo-request')] },
    { nft: 'ether saddr 00:11:22:33:44:55', parts: [eq(F.ether.saddr, '00:11:22:33:44:55')] },
    { nft: 'meta protocol ip ip saddr 192.0.2.1 counter', parts: [eq(F.meta.protocol, 'ip'), eq(F.ip.saddr, '192.0.2.1'), counter()] },
  ],
  ip6: [
    { nft: 'ip6 saddr 2001:db8::1 tcp dport 22', parts: [eq(F.ip6.saddr, '2001:db8::1'), eq(F.tcp.dport, 22)] },
    { nft: 'icmpv6 type nd-neighbor-solicit accept', parts: [eq(F.icmpv6.type, 'nd-neighbor-solicit'), accept()] },
  ],
  bridge: [
    { nft: 'ip saddr 192.0.2.1', parts: [eq(F.ip.saddr, '192.0.2.1')] },
    { nft: 'tcp dport 80', parts: [eq(F.tcp.dport, 80)] },
    { nft: 'ether saddr 00:11:22:33:44:55 ip saddr 192.0.2.1', parts: [eq(F.ether.saddr, '00:11:22:33:44:55'), eq(F.ip.saddr, '192.0.2.1')] },
    { nft: 'ether type arp arp operation request', parts: [eq(F.ether.type, 'arp'), eq(F.arp.operation, 'request')] },
    { nft: 'arp saddr ip 192.0.2.1', parts: [eq(F.arp.saddrIp, '192.0.2.1')] },
    { nft: 'arp saddr ether 00:11:22:33:44:55 arp saddr ip 192.0.2.1 accept', parts: [eq(F.arp.saddrEther, '00:11:22:33:44:55'), eq(F.arp.saddrIp, '192.0.2.1'), accept()] },
    { nft: 'ether saddr 00:11:22:33:44:55 arp operation reply', parts: [eq(F.ether.saddr, '00:11:22:33:44:55'), eq(F.arp.operation, 'reply')] },
    { nft: 'icmp type echo-request', parts: [eq(F.icmp.type, 'echo-request')] },
    { nft: 'icmpv6 type nd-router-advert drop', parts: [eq(F.icmpv6.type, 'nd-router-advert'), drop()] },
    { nft: 'ether type vlan', parts: [eq(F.ether.type, 'vlan')] },
    { nft: 'udp sport 68 udp dport 67 meta mark set 0x100', parts: [eq(F.udp.sport, 68), eq(F.udp.dport, 67), set(F.meta.mark, 0x100)] },
    { nft: 'ether saddr . ip saddr @macs accept', parts: [inSet([F.ether.saddr, F.ip.saddr], set$('bridge', 'macs')), accept()] },
    { nft: 'meta mark set meta mark and 0xffff0000 meta mark set oifname map @port_tag', parts: [set(F.meta.mark, and(F.meta.mark, 0xffff0000)), set(F.meta.mark, mapOf(F.meta.oifname, set$('bridge', 'port_tag')))] },
  ],
  arp: [
    { nft: 'arp operation request', parts: [eq(F.arp.operation, 'request')] },
    { nft: 'arp htype 1 arp ptype ip', parts: [eq(F.arp.htype, 1), eq(F.arp.ptype, 'ip')] },
    { nft: 'arp daddr ip 192.0.2.0/24 drop', parts: [eq(F.arp.daddrIp, '192.0.2.0/24'), drop()] },
  ],
  netdev: [
    { nft: 'ip saddr 192.0.2.1', parts: [eq(F.ip.saddr, '192.0.2.1')] },
    { nft: 'ether saddr 00:11:22:33:44:55', parts: [eq(F.ether.saddr, '00:11:22:33:44:55')] },
    { nft: 'icmpv6 type nd-neighbor-solicit', parts: [eq(F.icmpv6.type, 'nd-neighbor-solicit')] },
  ],
};
