/**
 * The kernel's numbers for everything that crosses the wire, as name ↔ number tables.
 *
 * Values are those of include/uapi/linux/netfilter/nf_tables.h, linux/netfilter.h (NFPROTO_*, NF_INET_*,
 * NF_NETDEV_*), linux/netfilter_arp.h (NF_ARP_*) and libnftnl/udata.h, checked against the headers of the
 * development machine. Names are the ones of `./types.ts`.
 */
import { PortwallError } from '../errors.js';
import type { ChainType, CmpOp, CtKey, Family, Hook, MetaKey, PayloadBase, SetFlag, Verdict } from './types.js';

/** A bidirectional name ↔ number table. */
export class CodeTable<N extends string> {
  readonly #byName: ReadonlyMap<N, number>;
  readonly #byCode: ReadonlyMap<number, N>;

  /** @param what — what the numbers are, for error messages ("meta key"). */
  constructor(
    readonly what: string,
    entries: Readonly<Partial<Record<N, number>>>,
  ) {
    this.#byName = new Map(Object.entries(entries) as [N, number][]);
    this.#byCode = new Map([...this.#byName].map(([n, c]) => [c, n]));
  }

  /** Every name, in table order. */
  get names(): N[] {
    return [...this.#byName.keys()];
  }

  /** Whether `name` is in the table. */
  has(name: unknown): name is N {
    return typeof name === 'string' && this.#byName.has(name as N);
  }

  /** The number of `name`; throws ERR_INVALID_OBJECT for a name outside the table. */
  code(name: N): number {
    const c = this.#byName.get(name);
    if (c === undefined) throw new PortwallError('ERR_INVALID_OBJECT', `unknown ${this.what} '${String(name)}'`);
    return c;
  }

  /** The name of `code`; throws ERR_WIRE for a number portwall cannot represent (e.g. in a foreign dump). */
  name(code: number): N {
    const n = this.#byCode.get(code);
    if (n === undefined) throw new PortwallError('ERR_WIRE', `unknown ${this.what} ${code} in a dump`);
    return n;
  }
}

/** NFPROTO_* of each family. */
export const FAMILIES = new CodeTable<Family>('family', {
  inet: 1,
  ip: 2,
  arp: 3,
  netdev: 5,
  bridge: 7,
  ip6: 10,
});

// Hook numbers depend on the family: NF_INET_* (also used by bridge's NF_BR_*), NF_ARP_*, NF_NETDEV_*.
const INET_HOOKS = { prerouting: 0, input: 1, forward: 2, output: 3, postrouting: 4 } as const;

/** The hooks each family accepts, with their numbers. inet `ingress` is NF_INET_INGRESS (kernel ≥ 5.10). */
export const HOOKS: Readonly<Record<Family, CodeTable<Hook>>> = {
  ip: new CodeTable<Hook>('ip hook', INET_HOOKS),
  ip6: new CodeTable<Hook>('ip6 hook', INET_HOOKS),
  inet: new CodeTable<Hook>('inet hook', { ...INET_HOOKS, ingress: 5 }),
  bridge: new CodeTable<Hook>('bridge hook', INET_HOOKS),
  arp: new CodeTable<Hook>('arp hook', { input: 0, output: 1, forward: 2 }),
  netdev: new CodeTable<Hook>('netdev hook', { ingress: 0, egress: 1 }),
};

/** Base chain policies (NF_DROP, NF_ACCEPT). */
export const CHAIN_POLICIES = new CodeTable<'drop' | 'accept'>('chain policy', { drop: 0, accept: 1 });

/** Chain types, and the families that have them. */
export const CHAIN_TYPE_FAMILIES: Readonly<Record<ChainType, readonly Family[]>> = {
  filter: ['inet', 'ip', 'ip6', 'arp', 'bridge', 'netdev'],
  nat: ['inet', 'ip', 'ip6'],
  route: ['inet', 'ip', 'ip6'],
};

/** NFT_META_* keys. */
export const META_KEYS = new CodeTable<MetaKey>('meta key', {
  len: 0,
  protocol: 1,
  priority: 2,
  mark: 3,
  iif: 4,
  oif: 5,
  iifname: 6,
  oifname: 7,
  iiftype: 8,
  oiftype: 9,
  skuid: 10,
  skgid: 11,
  nftrace: 12,
  rtclassid: 13,
  secmark: 14,
  nfproto: 15,
  l4proto: 16,
  bri_iifname: 17,
  bri_oifname: 18,
  pkttype: 19,
  cpu: 20,
  iifgroup: 21,
  oifgroup: 22,
  cgroup: 23,
  prandom: 24,
  // 25 is NFT_META_SECPATH, not in MetaKey.
  iifkind: 26,
  oifkind: 27,
  bri_iifpvid: 28,
  bri_iifvproto: 29,
});

/** NFT_CT_* keys. */
export const CT_KEYS = new CodeTable<CtKey>('ct key', {
  state: 0,
  direction: 1,
  status: 2,
  mark: 3,
  secmark: 4,
  expiration: 5,
  helper: 6,
  l3protocol: 7,
  src: 8,
  dst: 9,
  protocol: 10,
  proto_src: 11,
  proto_dst: 12,
  labels: 13,
  pkts: 14,
  bytes: 15,
  avgpkt: 16,
  zone: 17,
  eventmask: 18,
  src_ip: 19,
  dst_ip: 20,
  src_ip6: 21,
  dst_ip6: 22,
  id: 23,
});

/** IP_CT_DIR_* for directional ct keys; the wire uses 255 for "no direction". */
export const CT_DIRECTIONS = new CodeTable<'original' | 'reply'>('ct direction', { original: 0, reply: 1 });
/** The wire's ct `dir` value for "no direction". */
export const CT_DIRECTION_UNSET = 255;

/** NFT_CMP_* operators. */
export const CMP_OPS = new CodeTable<CmpOp>('cmp op', { eq: 0, neq: 1, lt: 2, lte: 3, gt: 4, gte: 5 });

/** NFT_RANGE_* operators. */
export const RANGE_OPS = new CodeTable<'eq' | 'neq'>('range op', { eq: 0, neq: 1 });

/** NFT_PAYLOAD_*_HEADER bases. */
export const PAYLOAD_BASES = new CodeTable<PayloadBase>('payload base', {
  ll: 0,
  network: 1,
  transport: 2,
  inner: 3,
});

/** NFT_SET_* flags that a set definition can carry. */
export const SET_FLAGS = new CodeTable<SetFlag>('set flag', {
  constant: 0x2,
  interval: 0x4,
  map: 0x8,
  timeout: 0x10,
  eval: 0x20,
  concat: 0x80,
});
/** NFT_SET_ANONYMOUS: nft's `{ … }` literal sets, which dumps skip. */
export const NFT_SET_ANONYMOUS = 0x1;

/** NFT_SET_ELEM_INTERVAL_END: the element closes the interval opened by the previous (lower) key. */
export const NFT_SET_ELEM_INTERVAL_END = 0x1;

/** NFT_DATA_VERDICT: the data type of verdict maps (data length is ignored by the kernel). */
export const NFT_DATA_VERDICT = 0xffffff00;

/** Verdict codes (NF_DROP, NF_ACCEPT, NFT_CONTINUE … NFT_RETURN). */
export const VERDICTS = new CodeTable<Verdict['code']>('verdict', {
  drop: 0,
  accept: 1,
  continue: -1,
  break: -2,
  jump: -3,
  goto: -4,
  return: -5,
});

/** NFT_NAT_* types. */
export const NAT_TYPES = new CodeTable<'snat' | 'dnat'>('nat type', { snat: 0, dnat: 1 });

/** The families a nat expression can translate. */
export const NAT_FAMILIES = new CodeTable<'ip' | 'ip6'>('nat family', { ip: 2, ip6: 10 });

/** NFT_LIMIT_* types and the inversion flag NFT_LIMIT_F_INV. */
export const LIMIT_TYPES = new CodeTable<'pkts' | 'bytes'>('limit type', { pkts: 0, bytes: 1 });
/** NFT_LIMIT_F_INV: the limit matches when the rate is exceeded (`limit rate over`). */
export const NFT_LIMIT_F_INV = 0x1;

/** NFT_BYTEORDER_* operations. */
export const BYTEORDER_OPS = new CodeTable<'ntoh' | 'hton'>('byteorder op', { ntoh: 0, hton: 1 });

/** NFT_LOOKUP_F_INV: the lookup matches when the key is NOT in the set. */
export const NFT_LOOKUP_F_INV = 0x1;

/** First and last 16-byte register (enum nft_registers; 0 is the verdict register). */
export const NFT_REG_1 = 1;
/** Last 16-byte register. */
export const NFT_REG_4 = 4;
/** First 4-byte register; NFT_REG32_00 + 4k overlays NFT_REG_1 + k. */
export const NFT_REG32_00 = 8;
/** Last 4-byte register. */
export const NFT_REG32_15 = 23;
/** Bytes of register space behind NFT_REG_1 (NFT_REG32_COUNT × NFT_REG32_SIZE). */
export const NFT_REG_SPACE = 64;
/** Size of an nft_data value (cmp, range, bitwise, immediate operands). */
export const NFT_DATA_MAXLEN = 16;
/** Longest set key or map data (NFT_DATA_VALUE_MAXLEN). */
export const NFT_DATA_VALUE_MAXLEN = 64;
/** Longest table, chain and set name in bytes (NFT_NAME_MAXLEN minus the NUL). */
export const NFT_NAME_MAXLEN = 255;
/** Most fields of a concatenated set key (the kernel's NFT_REG32_COUNT). */
export const NFT_SET_MAX_FIELDS = 16;

/** libnftnl userdata TLV types (libnftnl/udata.h). */
export const UDATA = {
  TABLE_COMMENT: 0,
  CHAIN_COMMENT: 0,
  RULE_COMMENT: 0,
  SET_KEYBYTEORDER: 0,
  SET_DATABYTEORDER: 1,
  SET_KEY_TYPEOF: 3,
  SET_DATA_TYPEOF: 4,
  SET_DATA_INTERVAL: 6,
  SET_COMMENT: 7,
  /** Inside a typeof description: the expression kind, and its attributes (nested). */
  TYPEOF_EXPR: 0,
  TYPEOF_DATA: 1,
  SET_ELEM_COMMENT: 0,
  SET_ELEM_FLAGS: 1,
  /** NFTNL_SET_ELEM_F_INTERVAL_OPEN: the interval runs to the key's maximum (no end element). */
  SET_ELEM_F_INTERVAL_OPEN: 0x1,
  /** NFTNL_UDATA_COMMENT_MAXLEN: nft refuses longer comments. */
  COMMENT_MAXLEN: 128,
} as const;

/** nftables' enum byteorder, written in set userdata so `nft` prints keys and data in their type. */
export const BYTEORDER = { INVALID: 0, HOST: 1, BIG: 2 } as const;
