/**
 * The native binding: its shape, its loader, and a seam to inject a fake for tests.
 *
 * Every function returns a promise and runs its I/O on a libuv pool thread. Buffers follow docs/wire.md.
 * A `netns` argument is a name under /run/netns, a path, or null for the caller's namespace.
 * Rejections are Errors with `kind` ('system' | 'netlink' | 'wire'), `errno`, `errnoName`, `opIndex`.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

import { PortwallError } from './errors.js';

export interface CommitResult {
  /** Ruleset generation id after the commit. */
  genid: number;
  /** Netlink messages sent (including batch begin/end). */
  messages: number;
}

export interface ListResult {
  genid: number;
  /** A wire stream of dump records (verb 0). */
  records: Buffer;
}

export interface NativeBinding {
  nftCommit(netns: string | null, batch: Buffer): Promise<CommitResult>;
  /** The netlink bytes of a batch (BEGIN … END), for replay by nftSendEncoded. */
  nftEncode(batch: Buffer): Promise<Buffer>;
  /** Sends already encoded netlink bytes as one batch; errors carry the message index as opIndex. */
  nftSendEncoded(netns: string | null, netlink: Buffer): Promise<CommitResult>;
  /** family 0 = all families; table null = all tables. */
  nftList(netns: string | null, family: number, table: string | null): Promise<ListResult>;
  nftGenid(netns: string | null): Promise<number>;
}

let injected: NativeBinding | undefined;
let loaded: NativeBinding | undefined;

/** Replaces the binding (tests); pass undefined to go back to the real addon. */
export function setBinding(binding: NativeBinding | undefined): void {
  injected = binding;
}

/** The binding in use: an injected one, else the addon loaded through node-gyp-build. */
export function binding(): NativeBinding {
  if (injected) return injected;
  if (!loaded) {
    const require = createRequire(import.meta.url);
    const root = packageRoot(path.dirname(fileURLToPath(import.meta.url)));
    try {
      loaded = require('node-gyp-build')(root) as NativeBinding;
    } catch (cause) {
      throw new PortwallError('ERR_NATIVE_MISSING', `cannot load the portwall addon from ${root}`, { cause });
    }
  }
  return loaded;
}

// src/ and dist/src/ both live below the package root, which holds binding.gyp.
function packageRoot(dir: string): string {
  const require = createRequire(import.meta.url);
  for (let d = dir; ; d = path.dirname(d)) {
    try {
      require.resolve(path.join(d, 'package.json'));
      return d;
    } catch {
      if (path.dirname(d) === d) return dir;
    }
  }
}
