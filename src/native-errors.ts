/**
 * Native rejections → PortwallError. The addon rejects with an Error carrying `kind` ('netlink' | 'system' |
 * 'wire'), `errno`, `errnoName` and `opIndex` (see src/native.ts); this gives each a stable code and, for a
 * refused batch, names the operation and the object that caused it.
 */
import { getSystemErrorMap } from 'node:util';

import { PortwallError, type ErrorCode, type ErrorDetails } from './errors.js';
import { describeObject } from './nft/validate.js';
import type { Operation } from './nft/types.js';

interface NativeError extends Error {
  kind?: 'netlink' | 'system' | 'wire';
  errno?: number;
  errnoName?: string;
  opIndex?: number;
}

// glibc's strerror() texts for what the kernel answers nf_tables batches with (libuv's wording differs).
const STRERROR: Readonly<Record<string, string>> = {
  EPERM: 'Operation not permitted',
  ENOENT: 'No such file or directory',
  E2BIG: 'Argument list too long',
  EBADF: 'Bad file descriptor',
  ENOMEM: 'Cannot allocate memory',
  EBUSY: 'Device or resource busy',
  EEXIST: 'File exists',
  EINVAL: 'Invalid argument',
  ENFILE: 'Too many open files in system',
  ENOSPC: 'No space left on device',
  EMLINK: 'Too many links',
  ERANGE: 'Numerical result out of range',
  ELOOP: 'Too many levels of symbolic links',
  ENOTEMPTY: 'Directory not empty',
  EOVERFLOW: 'Value too large for defined data type',
  EMSGSIZE: 'Message too long',
  EOPNOTSUPP: 'Operation not supported',
  EAFNOSUPPORT: 'Address family not supported by protocol',
  ENOBUFS: 'No buffer space available',
  ETIMEDOUT: 'Connection timed out',
  ERESTART: 'Interrupted system call should be restarted',
};

// Where libuv's name differs from glibc's strerrorname_np(), which the addon uses (95 is both on Linux), or
// libuv has none: ERESTART (85) is how the kernel refuses a batch whose generation id is stale.
const GLIBC_NAMES: Readonly<Record<number, string>> = { 85: 'ERESTART', 95: 'EOPNOTSUPP' };

/** The symbolic name of a positive errno (ENOENT), as glibc spells it, when known. */
export function errnoName(errno: number): string | undefined {
  return GLIBC_NAMES[errno] ?? getSystemErrorMap().get(-errno)?.[0];
}

/** A strerror()-like text for an errno. */
export function strerror(errno: number, name = errnoName(errno)): string {
  const text = (name && STRERROR[name]) ?? getSystemErrorMap().get(-errno)?.[1];
  return text ? text[0]!.toUpperCase() + text.slice(1) : `errno ${errno}`;
}

/** What {@link fromNative} knows about the call besides its operations. */
export interface CommitContext {
  /** The generation the batch was made conditional on (nftCommit's `genid`), if it was. */
  genid?: number;
}

/**
 * Maps a native rejection. `ops` are the operations of the batch (for netlink errors), `netns` the namespace
 * the call targeted. A batch sent with a generation id (`context.genid`) and refused with ERESTART becomes
 * ERR_CONFLICT. PortwallErrors pass through unchanged.
 */
export function fromNative(
  err: unknown,
  netns: string | null,
  ops: readonly Operation[] = [],
  context: CommitContext = {},
): PortwallError {
  if (err instanceof PortwallError) return err;
  const e = asNative(err);
  if (e.kind !== 'netlink') return systemOrWire(e, err, netns);
  const { errno, name } = errnoOf(e);
  const opIndex = typeof e.opIndex === 'number' ? e.opIndex : -1;
  if (context.genid !== undefined && name === 'ERESTART') {
    return new PortwallError(
      'ERR_CONFLICT',
      `batch: another writer committed since generation ${context.genid}, which the batch was computed against; nothing was applied`,
      { errno, errnoName: name, cause: err, opIndex },
    );
  }
  const op = ops[opIndex];
  const what = op ? `${op.verb} ${describeObject(op.object)} (operation ${opIndex + 1} of ${ops.length})` : 'batch';
  const reason = errno === undefined ? e.message : strerror(errno, name);
  // The addon's message may carry the kernel's extended ACK; keep it when it says more than strerror.
  const extra = e.message && !e.message.includes(reason) ? ` (${e.message})` : '';
  return new PortwallError('ERR_KERNEL', `${what}: ${reason}${extra}`, {
    errno, errnoName: name, cause: err, opIndex, object: op?.object,
  });
}

/**
 * Maps a native rejection of a call on a list of items (ipset members, conntrack entries): `opIndex` names
 * the item (`members[3]`), `codes` gives errnos a domain meaning (ENOENT → ERR_SET_NOT_FOUND), and `field`
 * is named when no item is to blame.
 */
export function fromNativeItems(
  err: unknown,
  netns: string | null,
  opts: { codes?: Partial<Record<string, ErrorCode>>; itemField?: string; field?: string } = {},
): PortwallError {
  if (err instanceof PortwallError) return err;
  const e = asNative(err);
  const opIndex = typeof e.opIndex === 'number' && e.opIndex >= 0 ? e.opIndex : undefined;
  const field = opts.itemField && opIndex !== undefined ? `${opts.itemField}[${opIndex}]` : opts.field;
  if (e.kind !== 'netlink') return systemOrWire(e, err, netns, { opIndex, field });
  const { errno, name } = errnoOf(e);
  const code = (name && opts.codes?.[name]) || 'ERR_KERNEL';
  return new PortwallError(code, e.message, { errno, errnoName: name, cause: err, opIndex, field });
}

function asNative(err: unknown): NativeError {
  return (err instanceof Error ? err : new Error(String(err))) as NativeError;
}

function errnoOf(e: NativeError): { errno?: number; name?: string } {
  const errno = typeof e.errno === 'number' && e.errno > 0 ? e.errno : undefined;
  return { errno, name: e.errnoName ?? (errno === undefined ? undefined : errnoName(errno)) };
}

// Failures before or around the kernel's answer: the namespace, a syscall, or a malformed buffer.
function systemOrWire(e: NativeError, cause: unknown, netns: string | null, extra: ErrorDetails = {}): PortwallError {
  const { errno, name } = errnoOf(e);
  const details = { ...extra, errno, errnoName: name, cause };
  if (e.kind === 'wire') return new PortwallError('ERR_WIRE', `the addon refused the wire buffer: ${e.message}`, details);
  // A held nftables socket used after close() is EBADF as well, but says so.
  const closedSocket = /socket was closed/.test(e.message);
  const missingNetns = netns !== null && !closedSocket && (name === 'ENOENT' || name === 'EBADF');
  if (/network namespace/i.test(e.message) || missingNetns) {
    return new PortwallError('ERR_NETNS', `network namespace ${netns ?? '(current)'}: ${e.message}`, details);
  }
  return new PortwallError('ERR_SYSTEM', e.message, details);
}
