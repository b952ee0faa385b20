/**
 * Names of portwall's chains and sets. Fixed names are plain identifiers that are no nft keyword (nft 1.0.6
 * refuses quoted names and keywords such as `counter` or `fwd` in `nft -f`); names derived from ids (groups,
 * networks) end in a hash of the whole id, so they stay short, legal and distinct however long or odd the id
 * is — never a truncation that two ids could share. Chains carry a readable slug of the id before the hash;
 * sets do not: the kernel finds a set by name walking the table's sets and measuring each name, so every byte
 * of every set's name costs each element batch (docs/dataplane.md, "Names"). The sets' comments name the id.
 */
import { createHash } from 'node:crypto';

import type { Family } from '../nft/types.js';

/** Longest name portwall derives (older kernels allowed 32 bytes with the NUL). */
export const MAX_NAME = 31;

const SLUG_MAX = 10;
const HASH_HEX = 12;

/** A chain's name, `prefix_slug_hash`: [A-Za-z_][A-Za-z0-9_]*, at most {@link MAX_NAME} bytes. */
export function derivedName(prefix: string, id: string): string {
  return memo(prefix, id, true);
}

/** A set's name, `prefix_hash` (no slug: see the module's comment). */
export function derivedSetName(prefix: string, id: string): string {
  return memo(prefix, id, false);
}

// Derived names are asked for again and again (every rule of a group, every port of a network): a bounded
// memo, per kind and prefix, then per id — no composed key string to build and hash on every call.
const DERIVED = { slug: new Map<string, Map<string, string>>(), hash: new Map<string, Map<string, string>>() };
const DERIVED_MAX = 100_000;
let derivedCount = 0;

function memo(prefix: string, id: string, slug: boolean): string {
  const byPrefix = slug ? DERIVED.slug : DERIVED.hash;
  let names = byPrefix.get(prefix);
  if (names === undefined) byPrefix.set(prefix, (names = new Map()));
  let name = names.get(id);
  if (name === undefined) {
    name = deriveName(prefix, id, slug);
    if (derivedCount >= DERIVED_MAX) {
      DERIVED.slug.clear();
      DERIVED.hash.clear();
      derivedCount = 0;
      byPrefix.set(prefix, (names = new Map()));
    }
    names.set(id, name);
    derivedCount++;
  }
  return name;
}

/** The hash every name derived from `id` ends with (to find a group's sets in a listing). */
export function idHash(id: string): string {
  let hash = HASHES.get(id);
  if (hash === undefined) {
    if (HASHES.size >= DERIVED_MAX) HASHES.clear();
    HASHES.set(id, (hash = createHash('sha256').update(id).digest('hex').slice(0, HASH_HEX)));
  }
  return hash;
}

// The hash of an id, whatever the prefix: a group names ~10 sets and chains, each its own memo entry above, and a
// fresh process (an agent starting) would otherwise hash each id that many times.
const HASHES = new Map<string, string>();

function deriveName(prefix: string, id: string, withSlug: boolean): string {
  const slug = withSlug ? id.replace(/[^A-Za-z0-9]+/g, '_').replace(/^_+|_+$/g, '').slice(0, SLUG_MAX).replace(/_+$/, '') : '';
  const hash = idHash(id);
  const name = slug ? `${prefix}_${slug}_${hash}` : `${prefix}_${hash}`;
  // The prefix is ours and short; this only guards against a future caller passing a long one.
  if (name.length > MAX_NAME) throw new Error(`derived name ${name} is longer than ${MAX_NAME}`);
  return name;
}

/** Port key kinds: routed ports by device name, bridged ports by their mark tag. */
export type KeyKind = 'dev' | 'tag';

/**
 * The inet table that holds the raw chains (conntrack zones and untracking) and the sets only they read:
 * `<tables.inet>_raw`. A table of its own, so that a port change's element messages for the zone sets walk
 * past those sets alone, not the security groups' (docs/dataplane.md, "Set order").
 */
export function rawTableName(tables: { inet: string }): string {
  return `${tables.inet}_raw`;
}

/** Every table portwall owns, by family and name (the raw table with the inet one). */
export function ownTables(tables: { inet: string; bridge: string; nat: string }): [Family, string][] {
  return [['inet', tables.inet], ['inet', rawTableName(tables)], ['bridge', tables.bridge], ['ip', tables.nat]];
}

/** The fixed names of the inet tables (the raw table's too: set names are unique across both). */
export const INET = {
  rawPre: 'raw_pre',
  rawOut: 'raw_out',
  /** The raw table's copy of `bridges` (a rule reads only sets of its own table). */
  rawBridges: 'raw_bridges',
  preFilter: 'pre_filter',
  fwdFilter: 'fwd_filter',
  inFilter: 'in_filter',
  outFilter: 'out_filter',
  egress: (k: KeyKind) => `egress_${k}`,
  ingress: (k: KeyKind) => `ingress_${k}`,
  ports: (k: KeyKind) => `ports_${k}`,
  /** Port → rule profile (hash map; the profile is written into the mark's tag bits). */
  profile: (k: KeyKind) => `profile_${k}`,
  /** Every rule profile in use, commented with its groups (how a restart finds the numbers again). */
  profiles: 'profiles',
  /**
   * Rule profile → `jump` to the chain of its k-th group (slot k, 0-based), per direction: verdict maps, the only
   * jump elements. Slot 0 is `prof_in`, slot k `prof_in_sK`; a CloudStack-flavour profile's slot 0 jumps to its
   * own chain instead (its groups, then its built-in rules).
   */
  profileSlot: (dir: 'in' | 'out', k: number) => (k === 0 ? `prof_${dir}` : `prof_${dir}_s${k}`),
  /** Anti-spoof: exact (MAC, address) per port (hash) … */
  spoof: (f: 4 | 6, k: KeyKind) => `spoof${f}_${k}`,
  /** … and address-pair prefixes (interval, only ports with such pairs). */
  spoofNet: (f: 4 | 6, k: KeyKind) => `spoofnet${f}_${k}`,
  dhcp: (f: 4 | 6, k: KeyKind) => `dhcp${f}_${k}`,
  ra6: (k: KeyKind) => `ra6_${k}`,
  ndOut: 'nd_out',
  ndIn: 'nd_in',
  ndDad: 'nd_dad',
  bridges: 'bridges',
  bridgeFwd: 'bridge_fwd',
  toBridge: 'to_bridge',
  routeTag: (f: 4 | 6) => `route_tag${f}`,
  routeTagNet: (f: 4 | 6) => `route_tagnet${f}`,
  statelessDev: 'stateless_dev',
  stateless: (f: 4 | 6) => `stateless${f}`,
  statelessNet: (f: 4 | 6) => `statelessnet${f}`,
  statelessTag: 'stateless_tag',
  statelessBr: (f: 4 | 6) => `stateless_br${f}`,
  statelessBrNet: (f: 4 | 6) => `stateless_brnet${f}`,
  /** Zone maps (docs/dataplane.md, "Zones"): routed port device → zone, bridge → zone … */
  zoneDev: 'zone_dev',
  zoneBridge: 'zone_br',
  /** … and address → zone, hosts (hash) and prefix ranges (interval), per attachment mode. */
  zoneAddr: (mode: 'routed' | 'bridged', f: 4 | 6, what: 'host' | 'net') => `zone_${mode === 'bridged' ? 'b' : ''}${what === 'host' ? 'ip' : 'net'}${f}`,
  /** Packets from a routed port: whether they go to another routed port, else the port's zone. */
  zonePort: 'zone_port',
  /** Between two routed ports: one rule per network, lowest zone first. */
  zoneCross: 'zone_cross',
  /** With `nat`: the fixed ranges, and where their traffic is not SNATed to the host (docs/dataplane.md, "NAT"). */
  natFixed: 'nat_fixed4',
  natKeep: 'nat_keep4',
  /** With a drop log: the chain a port chain's drop rule goes to, which logs and drops (`egress_dev_d3`). */
  dropChain: (chain: string, i: number) => `${chain}_d${i}`,
  isDropChain: (name: string) => /_d\d+$/.test(name),
  /** With an accept log: the chain dispatch enters a port chain through, which calls it and logs what came back (`ingress_dev_acc`). */
  acceptChain: (chain: string) => `${chain}_acc`,
  /** Source (routed device or bridge, fixed IP) of the ports with a floating IP. */
  natFipSrc: 'nat_fip_src',
} as const;

/** The fixed names of the NAT table (`ip portwall_nat`). */
export const NAT = {
  pre: 'nat_pre',
  out: 'nat_out',
  post: 'nat_post',
  /** Floating IP → fixed IP, and fixed IP → floating IP. */
  dnat: 'fip_dnat',
  snat: 'fip_snat',
  fixed: 'fixed',
  dmz: 'dmz',
} as const;

/** The fixed names of the bridge table. */
export const BRIDGE = {
  fromPort: 'from_port',
  toPort: 'to_port',
  portTag: 'port_tag',
  l2Ports: 'l2_ports',
  macOk: 'mac_ok',
  arpOk: 'arp_ok',
  arpOkNet: 'arp_oknet',
  bcast: 'bcast_v4',
} as const;

/** The bridge table's port set of each layer-2 guard (docs/dataplane.md, "Layer-2 guards"). */
export const GUARD_SETS = {
  arp: 'guard_arp',
  dhcpSnooping: 'guard_dhcp',
  broadcast: 'guard_bcast',
  dropIpv6: 'guard_ip6',
  dropVlan: 'guard_vlan',
} as const;

/** Shapes of security-group rule sets (docs/dataplane.md). */
export type Shape = 'ports' | 'proto' | 'icmp' | 'any';

/** A remote group's member set of host addresses (hash): `m4_<hash>`. */
export function memberSetName(groupId: string, family: 4 | 6): string {
  return derivedSetName(family === 4 ? 'm4' : 'm6', groupId);
}

/** A remote group's member set of address-pair prefixes (interval): `n4_<hash>`. */
export function memberNetSetName(groupId: string, family: 4 | 6): string {
  return derivedSetName(family === 4 ? 'n4' : 'n6', groupId);
}

/**
 * The key of a group's rule set: `l4` — protocol, then the transport header's first two 16-bit fields (ports;
 * ICMP type and code, then the checksum) — for every rule naming a protocol, `any` for rules that do not (they
 * must match packets without a transport header too).
 */
export type SetShape = 'l4' | 'any';
const SHAPE_LETTER: Record<SetShape, string> = { l4: 't', any: 'a' };
const DIR_LETTER = { in: 'i', out: 'o' } as const;

/** Versions of a group's rule sets cycle through this many names (only the current one and the next coexist). */
export const GROUP_VERSIONS = 36 ** 3;

/** A group's chain per direction (docs/dataplane.md, "Rule profiles"): `gi_<slug>_<hash>`, `go_…`. */
export function groupChainName(groupId: string, dir: 'in' | 'out'): string {
  return derivedName(`g${DIR_LETTER[dir]}`, groupId);
}

/**
 * One of a group's rule sets, per (direction, family, shape) and version: `i4t0_<hash>`. Rules taken
 * from the group beyond a few elements of small sets give it a new version (new sets, the chain refilled, the
 * old sets deleted whole) rather than element deletes from a concatenated interval set.
 */
export function groupSetName(groupId: string, dir: 'in' | 'out', family: 4 | 6, shape: SetShape, version: number): string {
  return derivedSetName(`${DIR_LETTER[dir]}${family}${SHAPE_LETTER[shape]}${version.toString(36)}`, groupId);
}

/** A group's references to one remote group for one rule shape: `ri4t0_<hash>` (hash of both ids). */
export function groupRefSetName(groupId: string, remoteId: string, dir: 'in' | 'out', family: 4 | 6, shape: SetShape, version: number): string {
  return derivedSetName(`r${DIR_LETTER[dir]}${family}${SHAPE_LETTER[shape]}${version.toString(36)}`, `${groupId}\n${remoteId}`);
}

/** The version in a group set's name (what {@link groupSetName} or {@link groupRefSetName} put there), if it is one. */
export function groupSetVersion(name: string): { version: number; tail: string } | undefined {
  const m = /^r?[io][46][ta]([0-9a-z]{1,3})_(.+)$/.exec(name);
  return m ? { version: parseInt(m[1]!, 36), tail: m[2]! } : undefined;
}

/** A rule profile's chain per direction: `prof_in_12` (the profile's number). */
export function profileChainName(dir: 'in' | 'out', profile: number): string {
  return `prof_${dir}_${profile}`;
}

/**
 * The zone sets of a network: devices (routed) or tags (bridged) of its ports, the host addresses it owns
 * (`ip4`, hash) and the address-pair ranges it owns (`net4`, interval).
 */
export function zoneSetName(networkId: string, what: ZoneSet): string {
  return derivedSetName(ZONE_PREFIX[what], networkId);
}

/** The zone sets a network has. */
export type ZoneSet = 'dev' | 'tag' | 'ip4' | 'ip6' | 'net4' | 'net6';
// Constant prefixes (asked for per port and address: a composed one would be a new string to hash each time).
const ZONE_PREFIX: Record<ZoneSet, string> = { dev: 'zdev', tag: 'ztag', ip4: 'zip4', ip6: 'zip6', net4: 'znet4', net6: 'znet6' };

/**
 * The comment of a rule profile's element in `profiles`: its key (the sorted group ids), or a hash of the key
 * when that is longer than a comment may be. A restart reads the numbers back by it.
 */
export function profileLabel(key: string): string {
  const ids = JSON.parse(key) as string[];
  const text = ids.length ? `profile ${ids.join(',')}` : 'profile (no groups)';
  // Plain when unambiguous and printable (nft quotes comments and knows no escapes), hashed otherwise.
  const plain = Buffer.byteLength(text) <= 128 && ids.every((id) => /^[^",\\\x00-\x1f\x7f]+$/.test(id));
  return plain ? text : `profile #${createHash('sha256').update(key).digest('hex').slice(0, 32)}`;
}
