/**
 * One error class for everything portwall throws, with a stable `code` (see {@link ERROR_CODES}).
 * Kernel errors keep their errno; batch errors name the operation index and the object.
 */

/** Every code portwall can throw, with what it means. Tests check each is documented in README. */
export const ERROR_CODES = {
  ERR_INVALID_OBJECT: 'an object added to a transaction is malformed; `field` names the bad field',
  ERR_INVALID_VALUE: 'a value does not parse as its datatype (address, port, MAC, interface name, …)',
  ERR_UNKNOWN_SET: 'elements refer to a set the transaction cannot resolve (add it first or pass it as known)',
  ERR_TRANSACTION_STATE: 'a transaction was used after commit or after an earlier operation failed',
  ERR_KERNEL: 'the kernel refused an operation of a batch; nothing of the batch was applied',
  ERR_CONFLICT:
    'another writer committed since the generation this batch was computed against; nothing was applied',
  ERR_NETNS: 'the network namespace could not be opened or entered',
  ERR_SYSTEM: 'a system call failed (socket, sendmsg, recvmsg)',
  ERR_WIRE: 'the native side could not decode a buffer from the TypeScript side (a portwall bug)',
  ERR_RENDER: 'an object cannot be printed in the requested syntax (nft text, iptables-restore input)',
  ERR_SET_NOT_FOUND: 'the named ipset does not exist in the target network namespace',
  ERR_SET_EXISTS: 'an ipset of that name already exists in the target network namespace',
  ERR_FAMILY_MISMATCH: 'an address is of another family (IPv4/IPv6) than the set, filter or entry it belongs to',
  ERR_NATIVE_MISSING: 'the native addon could not be loaded; the message names why (usually a missing shared library) and the packages it needs',
  ERR_LISTENER: 'a listener given to an event subscription threw; `cause` is what it threw (the subscription goes on)',
  ERR_INVALID_STATE:
    'a state file is not valid JSON or breaks the schema or its rules; `problems` lists every bad object and field',
  ERR_INVALID_CONFIG:
    'a configuration file (`--config`) is not valid JSON, has a bad value or an unknown key; `problems` names each by its key path',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface ErrorDetails {
  /** The object (or its path in a state document) that caused the error. */
  object?: unknown;
  /** The field of that object, e.g. `ports[3].device`. */
  field?: string;
  /** Index of the failing operation in its transaction. */
  opIndex?: number;
  /** Kernel errno (positive) and its symbolic name, when the kernel said no. */
  errno?: number;
  errnoName?: string;
  cause?: unknown;
}

export class PortwallError extends Error {
  readonly code: ErrorCode;
  readonly object?: unknown;
  readonly field?: string;
  readonly opIndex?: number;
  readonly errno?: number;
  readonly errnoName?: string;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'PortwallError';
    this.code = code;
    this.object = details.object;
    this.field = details.field;
    this.opIndex = details.opIndex;
    this.errno = details.errno;
    this.errnoName = details.errnoName;
  }
}

/**
 * Whether `err` is a PortwallError, also one made by another copy of this module (the bundled `portwall`
 * command loads the demo and the benchmark from their own files, whose errors are not the bundle's class).
 */
export function isPortwallError(err: unknown): err is PortwallError {
  if (err instanceof PortwallError) return true;
  const e = err as Partial<PortwallError> | null;
  return err instanceof Error && e!.name === 'PortwallError' && typeof e!.code === 'string' && e!.code in ERROR_CODES;
}
