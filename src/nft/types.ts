/**
 * Typed nftables objects: what a transaction carries and what a dump decodes back into.
 *
 * These mirror the kernel's objects (not nft's syntax): rules are lists of low-level expressions with
 * registers, exactly as the kernel stores them, so that a committed rule and its dumped twin compare equal.
 * The matcher helpers in `./match.ts` build the expression sequences that `nft` itself would generate.
 */

/** Address family of a table (the NFPROTO value on the wire). */
export type Family = 'inet' | 'ip' | 'ip6' | 'arp' | 'bridge' | 'netdev';

/** Netfilter hook of a base chain. */
export type Hook = 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting' | 'ingress' | 'egress';

/** Kind of base chain. */
export type ChainType = 'filter' | 'nat' | 'route';

/** Operation verbs of a transaction (see docs/wire.md for the netlink each maps to). */
export type Verb = 'add' | 'create' | 'insert' | 'replace' | 'delete' | 'flush' | 'destroy';

/**
 * Name of an nftables datatype used as a set key, map data or a typed value.
 * Concatenated keys are arrays of these (e.g. `['ifname', 'inet_proto', 'inet_service', 'ipv4_addr']`).
 */
export type DataTypeName =
  | 'ipv4_addr'
  | 'ipv6_addr'
  | 'ether_addr'
  | 'inet_proto'
  | 'inet_service'
  | 'ifname'
  | 'mark'
  | 'ct_state'
  | 'icmp_type'
  | 'icmp_code'
  | 'icmpv6_type'
  | 'icmpv6_code'
  | 'ether_type'
  | 'arp_op'
  | 'nf_proto'
  | 'integer'
  | 'ct_zone'
  | 'verdict';

/**
 * The expression a `typeof` map is keyed by, for maps whose data has no datatype of its own (`ct zone`, a
 * plain 16-bit integer): nft declares them `typeof KEY : ct zone` and prints them back only from this.
 */
export type TypeofKey = 'iifname' | 'oifname' | 'ip saddr' | 'ip daddr' | 'ip6 saddr' | 'ip6 daddr';

/**
 * A typed value of one key field or of map data.
 * Numbers for integers/ports/protocol numbers/marks; strings for addresses, MACs, interface names and names
 * (`'tcp'`); a prefix (`'192.0.2.0/24'`) or a range (`'1000-2000'`, `'192.0.2.1-192.0.2.9'`) in interval sets.
 * Validation turns every accepted spelling into one canonical form, so equal values compare equal.
 */
export type Value = string | number;

/** A verdict: terminal (`accept`, `drop`, `return`, `continue`) or a jump/goto to a chain. */
export type Verdict =
  | { code: 'accept' | 'drop' | 'return' | 'continue' | 'break' }
  | { code: 'jump' | 'goto'; chain: string };

/** Kernel register numbers: 0 verdict, 1–4 the 16-byte registers, 8–23 the 4-byte registers. */
export type Register = number;

export type PayloadBase = 'll' | 'network' | 'transport' | 'inner';

export type MetaKey =
  | 'len' | 'protocol' | 'priority' | 'mark' | 'iif' | 'oif' | 'iifname' | 'oifname' | 'iiftype' | 'oiftype'
  | 'skuid' | 'skgid' | 'nftrace' | 'rtclassid' | 'secmark' | 'nfproto' | 'l4proto' | 'bri_iifname'
  | 'bri_oifname' | 'pkttype' | 'cpu' | 'iifgroup' | 'oifgroup' | 'cgroup' | 'prandom' | 'iifkind' | 'oifkind'
  | 'bri_iifpvid' | 'bri_iifvproto';

export type CtKey =
  | 'state' | 'direction' | 'status' | 'mark' | 'secmark' | 'expiration' | 'helper' | 'l3protocol' | 'src'
  | 'dst' | 'protocol' | 'proto_src' | 'proto_dst' | 'labels' | 'pkts' | 'bytes' | 'avgpkt' | 'zone'
  | 'eventmask' | 'src_ip' | 'dst_ip' | 'src_ip6' | 'dst_ip6' | 'id';

export type CmpOp = 'eq' | 'neq' | 'lt' | 'lte' | 'gt' | 'gte';

/** One kernel expression. Field names follow libnftnl's attribute names. */
export type Expr =
  | {
      type: 'payload';
      base: PayloadBase;
      offset: number;
      len: number;
      dreg?: Register;
      /** Set form (packet mangling): source register and checksum fixup. */
      sreg?: Register;
      csumType?: number;
      csumOffset?: number;
      csumFlags?: number;
    }
  | { type: 'meta'; key: MetaKey; dreg?: Register; sreg?: Register }
  | { type: 'ct'; key: CtKey; dreg?: Register; sreg?: Register; dir?: 'original' | 'reply' }
  | { type: 'cmp'; sreg: Register; op: CmpOp; data: Uint8Array }
  | { type: 'bitwise'; sreg: Register; dreg: Register; len: number; mask: Uint8Array; xor: Uint8Array }
  | { type: 'range'; sreg: Register; op: 'eq' | 'neq'; from: Uint8Array; to: Uint8Array }
  | { type: 'lookup'; sreg: Register; dreg?: Register; set: string; invert?: boolean }
  /** Byte-order swap of `len` bytes in units of `size` (2, 4, 8); nft emits it for host-order keys of interval sets. */
  | { type: 'byteorder'; sreg: Register; dreg: Register; op: 'hton' | 'ntoh'; len: number; size: number }
  | { type: 'immediate'; dreg: Register; data: Uint8Array }
  | { type: 'immediate'; dreg: 0; verdict: Verdict }
  | { type: 'counter'; packets?: bigint; bytes?: bigint }
  | {
      type: 'log';
      prefix?: string;
      group?: number;
      snaplen?: number;
      qthreshold?: number;
      level?: number;
      flags?: number;
    }
  | {
      type: 'nat';
      nat: 'snat' | 'dnat';
      family: 'ip' | 'ip6';
      regAddrMin?: Register;
      regAddrMax?: Register;
      regProtoMin?: Register;
      regProtoMax?: Register;
      flags?: number;
    }
  | { type: 'limit'; rate: bigint; unit: bigint; burst: number; kind: 'pkts' | 'bytes'; invert?: boolean }
  | { type: 'notrack' }
  | { type: 'reject'; rejectType: number; code: number }
  | { type: 'masq'; flags?: number; regProtoMin?: Register; regProtoMax?: Register }
  | { type: 'redir'; flags?: number; regProtoMin?: Register; regProtoMax?: Register }
  /**
   * Dump only: an expression portwall has no type for (e.g. written by another tool), kept by its kernel name
   * and raw netlink attributes so a diff still sees it. It cannot be added to a transaction.
   */
  | { type: 'other'; name: string; data: Uint8Array };

export interface Table {
  kind: 'table';
  family: Family;
  name: string;
  handle?: bigint;
  flags?: number;
}

export interface Chain {
  kind: 'chain';
  family: Family;
  table: string;
  name: string;
  handle?: bigint;
  /** Base chains only: hook, priority, type and policy go together. */
  hook?: Hook;
  priority?: number;
  type?: ChainType;
  policy?: 'accept' | 'drop';
  /** netdev (and inet ingress) base chains: the device. */
  device?: string;
  comment?: string;
}

export interface Rule {
  kind: 'rule';
  family: Family;
  table: string;
  chain: string;
  /** Set by the kernel; needed for replace/delete of a single rule. */
  handle?: bigint;
  /** For add/insert: place after (add) or before (insert) the rule with this handle. */
  position?: bigint;
  /** Stored as nftables userdata, shown by `nft list ruleset` as `comment "…"`. */
  comment?: string;
  exprs: Expr[];
}

export type SetFlag = 'constant' | 'interval' | 'timeout' | 'map' | 'eval' | 'concat';

export interface NftSet {
  kind: 'set';
  family: Family;
  table: string;
  name: string;
  handle?: bigint;
  /** Key datatypes; more than one = a concatenated key. */
  key: DataTypeName[];
  /** Present for maps: the data type (`'verdict'` for verdict maps). */
  data?: DataTypeName;
  /**
   * Maps of `ct_zone` data: the key's expression (`typeof iifname : ct zone`), which nft needs to print and
   * reload them. Only with a one-field key of that expression's datatype.
   */
  typeof?: TypeofKey;
  flags?: SetFlag[];
  /** Every element gets its own packet/byte counter. */
  counter?: boolean;
  comment?: string;
  size?: number;
  /** Default element timeout in milliseconds (requires the `timeout` flag). */
  timeout?: number;
}

export interface Element {
  /** One value per key field (a one-field key is a one-item array). */
  key: Value[];
  /** Map data (non-verdict maps). */
  data?: Value;
  /** Verdict-map data. */
  verdict?: Verdict;
  comment?: string;
  /** Only in dumps of sets with `counter`; ignored when adding. */
  counter?: { packets: bigint; bytes: bigint };
  /** Milliseconds. */
  timeout?: number;
}

export interface Elements {
  kind: 'elements';
  family: Family;
  table: string;
  set: string;
  elements: Element[];
}

/** Anything a transaction can carry or a dump can return. */
export type NftObject = Table | Chain | Rule | NftSet | Elements;

/** One operation of a transaction. */
export interface Operation {
  verb: Verb;
  object: NftObject;
}
