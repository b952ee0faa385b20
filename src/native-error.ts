/**
 * Turns a rejection of the native binding (an Error with `kind`, `errno`, `errnoName`, `opIndex`) into a
 * PortwallError with a stable code. `codes` maps errnos that have a domain meaning for the caller.
 */
import { ErrorCode, PortwallError } from './errors.js';

interface NativeFailure {
  message?: string;
  kind?: 'system' | 'netlink' | 'wire';
  errno?: number;
  errnoName?: string;
  opIndex?: number;
}

/**
 * @param itemField the input list an opIndex points into (`members` → `members[3]`)
 * @param field the field named when no item is to blame (e.g. the set name)
 */
export function fromNative(
  cause: unknown,
  codes: Partial<Record<string, ErrorCode>> = {},
  itemField?: string,
  field?: string,
): PortwallError {
  if (cause instanceof PortwallError) return cause;
  const e = (cause ?? {}) as NativeFailure;
  const message = e.message ?? String(cause);
  let code: ErrorCode;
  if (e.kind === 'wire') code = 'ERR_WIRE';
  else if (e.kind === 'system') code = /network namespace/.test(message) ? 'ERR_NETNS' : 'ERR_SYSTEM';
  else code = (e.errnoName && codes[e.errnoName]) || 'ERR_KERNEL';
  const opIndex = e.opIndex !== undefined && e.opIndex >= 0 ? e.opIndex : undefined;
  return new PortwallError(code, message, {
    cause,
    errno: e.errno || undefined,
    errnoName: e.errnoName,
    opIndex,
    field: itemField && opIndex !== undefined ? `${itemField}[${opIndex}]` : field,
  });
}
