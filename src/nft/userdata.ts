/**
 * nftables userdata: the TLV blob (`u8 type, u8 len, value`) that `nft` stores with tables, chains, rules,
 * sets and elements. Writing the same TLVs as `nft` makes portwall's comments and set types list cleanly in
 * `nft list ruleset`, and lets portwall read comments written by `nft`.
 */
import { BYTEORDER, UDATA } from './constants.js';
import type { DataTypeName, NftSet } from './types.js';

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
  verdict: BYTEORDER.INVALID,
};

/**
 * A set's userdata as nft writes it: key byte order (none for concatenations), data byte order for maps,
 * and the comment.
 */
export function setUserdata(set: NftSet): Uint8Array {
  const key = set.key.length === 1 ? TYPE_BYTEORDER[set.key[0]!] : BYTEORDER.INVALID;
  const tlvs = [u32Tlv(UDATA.SET_KEYBYTEORDER, key)];
  if (set.data !== undefined) tlvs.push(u32Tlv(UDATA.SET_DATABYTEORDER, TYPE_BYTEORDER[set.data]));
  if (set.comment !== undefined) tlvs.push(commentTlv(UDATA.SET_COMMENT, set.comment));
  return buildUserdata(tlvs);
}
