/**
 * ipsets through libipset, for hosts whose iptables consumers match `-m set --match-set` (docs/requirements.md, "Remote groups as ipsets").
 *
 * Every call runs its netlink I/O off the JS thread, inside the client's network namespace. Input is
 * validated here first — set names, types, members — so that a bad call reaches no kernel and changes nothing.
 *
 * @example
 * const sets = new IpsetClient({ netns: 'router' });
 * await sets.create('sg-web-v4', { type: 'hash:net' });
 * await sets.add('sg-web-v4', ['192.0.2.10', '198.51.100.0/24']);
 * await sets.replace('sg-web-v4', ['192.0.2.11']);  // atomic, through a swap
 */
import { randomBytes } from 'node:crypto';

import { IpFamily, Prefix, familyNumber, parsePrefix } from './address.js';
import { PortwallError } from './errors.js';
import { HeldSocketQueue } from './held-socket.js';
import { binding, type IpsetBinding, type IpsetTarget, type NativeIpsetSocket } from './native.js';
import { fromNativeItems } from './native-errors.js';

/** Set types portwall creates. */
export type IpsetType = 'hash:ip' | 'hash:net' | 'hash:net,iface';
export const IPSET_TYPES: readonly IpsetType[] = ['hash:ip', 'hash:net', 'hash:net,iface'];

/** The kernel's limit: IPSET_MAXNAMELEN (32) including the NUL. */
export const IPSET_MAX_NAME = 31;

export interface IpsetCreateOptions {
  type: IpsetType;
  /** Default `ipv4`. */
  family?: IpFamily;
  hashsize?: number;
  maxelem?: number;
  /** Default timeout of members, in seconds. */
  timeout?: number;
  /** Per-member packet and byte counters. */
  counters?: boolean;
  /** Per-member comments. */
  comment?: boolean;
}

/** A member: an address or prefix (`192.0.2.1`, `2001:db8::/64`), or one with an interface (hash:net,iface). */
export type IpsetMember = string | { ip: string; iface: string };

/** One set as `ipset list` shows it. */
export interface IpsetInfo {
  name: string;
  type: string;
  family: IpFamily;
  revision: number;
  hashsize?: number;
  maxelem?: number;
  timeout?: number;
  counters: boolean;
  comment: boolean;
  references: number;
  entries: number;
  /** Absent when listed with `headersOnly`. */
  members?: IpsetMember[];
}

const IFNAME = /^[^\s/:]{1,15}$/;

/** Options of {@link IpsetClient}. */
export interface IpsetOptions {
  /** A name under /run/netns or a path; omitted = the caller's namespace. */
  netns?: string;
  /**
   * Hold one socket for all calls of this client (opened on first use, in `netns`) instead of one per call —
   * closing a netfilter socket can take milliseconds on a busy host (docs/netlink.md); release
   * it with {@link IpsetClient.close}. Calls run one after another, in the order made. Default false.
   */
  persistent?: boolean;
}

export class IpsetClient {
  readonly netns: string | null;
  /** Whether the client holds one socket across calls (see {@link IpsetOptions.persistent}). */
  readonly persistent: boolean;
  readonly #held: HeldSocketQueue<IpsetBinding, NativeIpsetSocket>;

  /** @param options see {@link IpsetOptions}; all optional (the caller's namespace, a socket per call). */
  constructor(options: IpsetOptions = {}) {
    this.netns = options.netns ?? null;
    this.persistent = options.persistent ?? false;
    this.#held = new HeldSocketQueue(this.netns, (b) => b.ipsetSocketOpen?.bind(b));
  }

  /**
   * Releases a persistent client's socket once every call already made has settled. The client stays usable
   * (a later call opens a new socket). Resolves at once when no socket is open; never rejects.
   */
  close(): Promise<void> {
    return this.#held.close();
  }

  // One binding call on this client's target (the namespace, or the held socket opened on first use), its
  // rejection mapped; `itemField` names the list a rejection's opIndex points into.
  #call<T>(fn: (native: IpsetBinding, target: IpsetTarget) => Promise<T>, itemField?: string): Promise<T> {
    return call(() => (this.persistent ? this.#held.run(binding, fn) : fn(binding(), this.netns)), itemField);
  }

  /** Creates a set; ERR_SET_EXISTS if the name is taken. */
  async create(name: string, options: IpsetCreateOptions): Promise<void> {
    checkName(name, 'name');
    if (!IPSET_TYPES.includes(options.type)) invalid('type', options.type, `must be one of ${IPSET_TYPES.join(', ')}`);
    const family = options.family ?? 'ipv4';
    if (family !== 'ipv4' && family !== 'ipv6') invalid('family', family, "must be 'ipv4' or 'ipv6'");
    for (const key of ['hashsize', 'maxelem', 'timeout'] as const) {
      const v = options[key];
      if (v !== undefined && (!Number.isInteger(v) || v < 1 || v > 0xffffffff)) invalid(key, v, 'must be a positive 32-bit integer');
    }
    await this.#call((native, target) => native.ipsetCreate(target, { ...options, name, family: familyNumber(family) }));
  }

  /** Destroys a set; ERR_SET_NOT_FOUND if absent, ERR_KERNEL if an iptables rule still uses it. */
  async destroy(name: string): Promise<void> {
    checkName(name, 'name');
    await this.#call((native, target) => native.ipsetDestroy(target, name));
  }

  /** Removes every member. */
  async flush(name: string): Promise<void> {
    checkName(name, 'name');
    await this.#call((native, target) => native.ipsetFlush(target, name));
  }

  async rename(from: string, to: string): Promise<void> {
    checkName(from, 'from');
    checkName(to, 'to');
    await this.#call((native, target) => native.ipsetRename(target, from, to));
  }

  /** Atomically exchanges two sets of compatible types: rules matching `a` now see `b`'s members. */
  async swap(a: string, b: string): Promise<void> {
    checkName(a, 'a');
    checkName(b, 'b');
    await this.#call((native, target) => native.ipsetSwap(target, a, b));
  }

  /** Adds members in bulk; members already present are fine. */
  async add(name: string, members: readonly IpsetMember[]): Promise<void> {
    checkName(name, 'name');
    const buf = encodeMembers(members);
    await this.#call((native, target) => native.ipsetAdd(target, name, buf), 'members');
  }

  /** Deletes members in bulk; absent members are fine. */
  async del(name: string, members: readonly IpsetMember[]): Promise<void> {
    checkName(name, 'name');
    const buf = encodeMembers(members);
    await this.#call((native, target) => native.ipsetDel(target, name, buf), 'members');
  }

  /** Whether the set matches each member (one kernel round trip per member). */
  async test(name: string, members: readonly IpsetMember[]): Promise<boolean[]> {
    checkName(name, 'name');
    const buf = encodeMembers(members);
    const found = await this.#call((native, target) => native.ipsetTest(target, name, buf), 'members');
    return Array.from(found, (b) => b === 1);
  }

  /** Lists one set or all of them. */
  async list(name?: string, options: { headersOnly?: boolean } = {}): Promise<IpsetInfo[]> {
    if (name !== undefined) checkName(name, 'name');
    const text = await this.#call((native, target) => native.ipsetList(target, name ?? null, options.headersOnly ?? false));
    return parseIpsetList(text);
  }

  /**
   * Replaces all members at once: fills a temporary set of the same type and options, swaps it in and
   * destroys the old contents. Rules never see a partial set.
   */
  async replace(name: string, members: readonly IpsetMember[]): Promise<void> {
    checkName(name, 'name');
    const buf = encodeMembers(members);
    const [info] = await this.list(name, { headersOnly: true });
    if (!info) throw new PortwallError('ERR_SET_NOT_FOUND', `ipset ${name} does not exist`, { field: 'name' });
    const temp = `pw-tmp-${randomBytes(8).toString('hex')}`;
    await this.create(temp, {
      type: info.type as IpsetType,
      family: info.family,
      hashsize: info.hashsize,
      maxelem: info.maxelem,
      timeout: info.timeout,
      counters: info.counters,
      comment: info.comment,
    });
    try {
      await this.#call((native, target) => native.ipsetAdd(target, temp, buf), 'members');
      await this.swap(name, temp);
    } finally {
      await this.destroy(temp);
    }
  }
}

/**
 * The binding's member encoding: u32 count, then per member u8 family (4/6), u8 CIDR (0 = host), u8 interface
 * length, u8 0, 16 address bytes, interface bytes.
 */
export function encodeMembers(members: readonly IpsetMember[]): Buffer {
  if (!Array.isArray(members)) invalid('members', members, 'must be an array');
  const parsed: { prefix: Prefix; iface: Buffer }[] = members.map((m, i) => {
    const field = `members[${i}]`;
    const ip = typeof m === 'string' ? m : m?.ip;
    const iface = typeof m === 'string' ? '' : m?.iface;
    if (typeof iface !== 'string' || (iface !== '' && !IFNAME.test(iface)) || (typeof m !== 'string' && iface === ''))
      invalid(`${field}.iface`, iface, 'is not an interface name (1–15 bytes)');
    const prefix = parsePrefix(ip as string, typeof m === 'string' ? field : `${field}.ip`);
    return { prefix, iface: Buffer.from(iface) };
  });
  const size = 4 + parsed.reduce((n, p) => n + 20 + p.iface.length, 0);
  const buf = Buffer.alloc(size);
  buf.writeUInt32LE(parsed.length, 0);
  let at = 4;
  for (const { prefix, iface } of parsed) {
    const host = prefix.length === (prefix.family === 'ipv4' ? 32 : 128);
    buf[at] = familyNumber(prefix.family);
    buf[at + 1] = host ? 0 : prefix.length;
    buf[at + 2] = iface.length;
    buf.set(prefix.bytes, at + 4);
    iface.copy(buf, at + 20);
    at += 20 + iface.length;
  }
  return buf;
}

/** Parses `ipset list` plain output (what libipset prints) into set descriptions. */
export function parseIpsetList(text: string): IpsetInfo[] {
  const sets: IpsetInfo[] = [];
  let current: IpsetInfo | undefined;
  let inMembers = false;
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z ]+): ?(.*)$/.exec(line);
    if (line === '') {
      inMembers = false;
    } else if (inMembers && current) {
      current.members!.push(parseMember(line));
    } else if (m) {
      const [, key, value = ''] = m;
      if (key === 'Name') {
        current = { name: value, type: '', family: 'ipv4', revision: 0, counters: false, comment: false, references: 0, entries: 0 };
        sets.push(current);
      } else if (current) {
        if (key === 'Type') current.type = value;
        else if (key === 'Revision') current.revision = Number(value);
        else if (key === 'References') current.references = Number(value);
        else if (key === 'Number of entries') current.entries = Number(value);
        else if (key === 'Header') parseHeader(value, current);
        else if (key === 'Members') {
          current.members = [];
          inMembers = true;
        }
      }
    }
  }
  return sets;
}

function parseHeader(header: string, info: IpsetInfo): void {
  const words = header.split(/\s+/);
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!, next = words[i + 1];
    if (w === 'family') info.family = next === 'inet6' ? 'ipv6' : 'ipv4';
    else if (w === 'hashsize') info.hashsize = Number(next);
    else if (w === 'maxelem') info.maxelem = Number(next);
    else if (w === 'timeout') info.timeout = Number(next);
    else if (w === 'counters') info.counters = true;
    else if (w === 'comment') info.comment = true;
  }
}

function parseMember(line: string): IpsetMember {
  const element = line.split(' ')[0]!;
  const comma = element.indexOf(',');
  if (comma < 0) return element;
  return { ip: element.slice(0, comma), iface: element.slice(comma + 1) };
}

function checkName(name: string, field: string): void {
  if (typeof name !== 'string' || name.length === 0 || Buffer.byteLength(name) > IPSET_MAX_NAME || /[\s\0]/.test(name))
    invalid(field, name, `must be 1–${IPSET_MAX_NAME} bytes without whitespace`);
}

function invalid(field: string, value: unknown, why: string): never {
  throw new PortwallError('ERR_INVALID_VALUE', `ipset ${field} ${JSON.stringify(value)} ${why}`, { field, object: value });
}

const IPSET_ERRNO_CODES = {
  ENOENT: 'ERR_SET_NOT_FOUND',
  EEXIST: 'ERR_SET_EXISTS',
  EAFNOSUPPORT: 'ERR_FAMILY_MISMATCH',
  EINVAL: 'ERR_INVALID_VALUE',
} as const;

async function call<T>(op: () => Promise<T>, itemField?: string): Promise<T> {
  try {
    return await op();
  } catch (cause) {
    throw fromNativeItems(cause, null, { codes: IPSET_ERRNO_CODES, itemField, field: 'name' });
  }
}
