/**
 * nftables userdata: the TLV blob (`u8 type, u8 len, value`) that `nft` stores with tables, chains, rules,
 * sets and elements. Writing the same TLVs as `nft` makes portwall's comments and set types list cleanly in
 * `nft list ruleset`, and lets portwall read comments written by `nft`.
 */
import { BYTEORDER, UDATA } from './constants.js';
import type { DataTypeName, NftSet, TypeofKey } from './types.js';

/** One userdata attribute. */
export interface Tlv {
  type: number;
  value: Uint8Array;
}

/** Serialises TLVs; the caller has validated sizes (each value < 256 bytes). */
export function buildUserdata(tlvs: Tlv[]): Uint8Array {
  let size = 0;
  for (const t of tlvs) size += 2 + t.value.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const t of tlvs) {
    out[at] = t.type;
    out[at + 1] = t.value.length;
    out.set(t.value, at + 2);
    at += 2 + t.value.length;
  }
  return out;
}

/** The value of the first attribute of `type`; a truncated blob (not ours) is read up to the damage. */
function findUserdata(blob: Uint8Array, type: number): Uint8Array | undefined {
  for (let at = 0; at + 2 <= blob.length; at += 2 + blob[at + 1]!) {
    const end = at + 2 + blob[at + 1]!;
    if (end > blob.length) return undefined;
    if (blob[at] === type) return blob.subarray(at + 2, end);
  }
  return undefined;
}

/** A comment as nft stores it: the UTF-8 bytes plus a terminating NUL. */
export function commentTlv(type: number, comment: string): Tlv {
  return { type, value: Buffer.from(`${comment}\0`) };
}

/** The comment stored under `type` in a userdata blob, without its NUL (tolerates a missing NUL). */
export function userdataComment(blob: Uint8Array | undefined, type: number): string | undefined {
  const value = blob && findUserdata(blob, type);
  if (!value) return undefined;
  const end = value.indexOf(0);
  return Buffer.from(value.buffer, value.byteOffset, end < 0 ? value.length : end).toString('utf8');
}

/** A u32 attribute in host byte order, as nftnl_udata_put_u32 writes it (little-endian here). */
export function u32Tlv(type: number, v: number): Tlv {
  const value = new Uint8Array(4);
  new DataView(value.buffer).setUint32(0, v, true);
  return { type, value };
}

/** Userdata holding at most a comment (tables, chains, rules, elements); built in one allocation. */
export function commentUserdata(type: number, comment: string | undefined): Uint8Array | undefined {
  if (comment === undefined) return undefined;
  const blob = Buffer.from(`\0\0${comment}\0`);
  blob[0] = type;
  blob[1] = blob.length - 2;
  return blob;
}

// The byte order nft records for each datatype (seen with `nft --debug=mnl add set …` on nftables 1.0.6):
// nft reads it back to print keys and data in their type; one-byte types carry none.
const TYPE_BYTEORDER: Readonly<Record<DataTypeName, number>> = {
  ipv4_addr: BYTEORDER.BIG,
  ipv6_addr: BYTEORDER.BIG,
  ether_addr: BYTEORDER.BIG,
  inet_proto: BYTEORDER.INVALID,
  inet_service: BYTEORDER.BIG,
  ifname: BYTEORDER.HOST,
  mark: BYTEORDER.HOST,
  ct_state: BYTEORDER.HOST,
  icmp_type: BYTEORDER.BIG,
  icmp_code: BYTEORDER.BIG,
  icmpv6_type: BYTEORDER.BIG,
  icmpv6_code: BYTEORDER.BIG,
  ether_type: BYTEORDER.BIG,
  arp_op: BYTEORDER.BIG,
  nf_proto: BYTEORDER.INVALID,
  integer: BYTEORDER.HOST,
  ct_zone: BYTEORDER.HOST,
  verdict: BYTEORDER.INVALID,
};

// `typeof` descriptions as nft 1.0.6 stores them (NFTNL_UDATA_SET_KEY_TYPEOF / DATA_TYPEOF, seen with
// `nft --debug=mnl add map inet t m '{ typeof ip daddr : ct zone; }'`): the expression's kind (nft's enum
// expr_types: payload 7, meta 9, ct 12) and, nested, its attributes — meta: key; payload: protocol
// description (ip 12, ip6 13) and header field; ct: key (zone 17) and direction (none: 0xffffffff).
const EXPR_PAYLOAD = 7;
const EXPR_META = 9;
const EXPR_CT = 12;
const TYPEOF_KEYS: Readonly<Record<TypeofKey, { expr: number; attrs: number[] }>> = {
  iifname: { expr: EXPR_META, attrs: [6] },
  oifname: { expr: EXPR_META, attrs: [7] },
  'ip saddr': { expr: EXPR_PAYLOAD, attrs: [12, 11] },
  'ip daddr': { expr: EXPR_PAYLOAD, attrs: [12, 12] },
  'ip6 saddr': { expr: EXPR_PAYLOAD, attrs: [13, 8] },
  'ip6 daddr': { expr: EXPR_PAYLOAD, attrs: [13, 9] },
};
/** The datatype of each typeof key expression. */
export const TYPEOF_KEY_TYPE: Readonly<Record<TypeofKey, DataTypeName>> = {
  iifname: 'ifname', oifname: 'ifname', 'ip saddr': 'ipv4_addr', 'ip daddr': 'ipv4_addr', 'ip6 saddr': 'ipv6_addr', 'ip6 daddr': 'ipv6_addr',
};
const CT_ZONE = { expr: EXPR_CT, attrs: [17, 0xffffffff] };

function typeofTlv(type: number, d: { expr: number; attrs: number[] }): Tlv {
  const nested = buildUserdata(d.attrs.map((v, i) => u32Tlv(i, v)));
  return { type, value: buildUserdata([u32Tlv(UDATA.TYPEOF_EXPR, d.expr), { type: UDATA.TYPEOF_DATA, value: nested }]) };
}

function readU32s(blob: Uint8Array): number[] {
  const out: number[] = [];
  for (let at = 0; at + 2 <= blob.length; at += 2 + blob[at + 1]!) {
    if (blob[at + 1] !== 4 || at + 6 > blob.length) return [];
    out[blob[at]!] = new DataView(blob.buffer, blob.byteOffset + at + 2, 4).getUint32(0, true);
  }
  return out;
}

function readTypeof(blob: Uint8Array | undefined): { expr: number; attrs: number[] } | undefined {
  if (!blob) return undefined;
  const expr = findUserdata(blob, UDATA.TYPEOF_EXPR);
  const data = findUserdata(blob, UDATA.TYPEOF_DATA);
  if (!expr || expr.length !== 4 || !data) return undefined;
  return { expr: new DataView(expr.buffer, expr.byteOffset, 4).getUint32(0, true), attrs: readU32s(data) };
}

const same = (a: { expr: number; attrs: number[] }, b: { expr: number; attrs: number[] }): boolean =>
  a.expr === b.expr && a.attrs.length === b.attrs.length && a.attrs.every((v, i) => v === b.attrs[i]);

/**
 * A set's `typeof … : ct zone` as its userdata says, or undefined (no typeof, or one portwall does not
 * write): how a dump tells a zone map (kernel data type integer, 2 bytes) from other integer data.
 */
export function zoneMapTypeof(blob: Uint8Array | undefined): TypeofKey | undefined {
  if (!blob) return undefined;
  const data = readTypeof(findUserdata(blob, UDATA.SET_DATA_TYPEOF));
  if (!data || !same(data, CT_ZONE)) return undefined;
  const key = readTypeof(findUserdata(blob, UDATA.SET_KEY_TYPEOF));
  return key && (Object.keys(TYPEOF_KEYS) as TypeofKey[]).find((k) => same(TYPEOF_KEYS[k], key));
}

/**
 * A set's userdata as nft writes it: key byte order (none for concatenations), data byte order for maps,
 * for a zone map the `typeof` of key and data, and the comment.
 */
export function setUserdata(set: NftSet): Uint8Array {
  const key = set.key.length === 1 ? TYPE_BYTEORDER[set.key[0]!] : BYTEORDER.INVALID;
  const tlvs = [u32Tlv(UDATA.SET_KEYBYTEORDER, key)];
  if (set.data !== undefined) tlvs.push(u32Tlv(UDATA.SET_DATABYTEORDER, TYPE_BYTEORDER[set.data]));
  if (set.typeof !== undefined) {
    tlvs.push(typeofTlv(UDATA.SET_KEY_TYPEOF, TYPEOF_KEYS[set.typeof]), typeofTlv(UDATA.SET_DATA_TYPEOF, CT_ZONE));
    tlvs.push(u32Tlv(UDATA.SET_DATA_INTERVAL, 0));
  }
  if (set.comment !== undefined) tlvs.push(commentTlv(UDATA.SET_COMMENT, set.comment));
  return buildUserdata(tlvs);
}
