/**
 * The API's Unix socket: its directory made if missing, a stale socket of a dead agent replaced, a live one or
 * a non-socket file left alone (refused), and the socket bound with mode 0600 from the first instant — the
 * bind runs under a restrictive umask, then the mode is set explicitly before any connection is accepted.
 */
import { chmodSync, lstatSync, mkdirSync, statSync, unlinkSync } from 'node:fs';
import type { Server } from 'node:http';
import { createConnection } from 'node:net';
import path from 'node:path';

import { PortwallError } from '../errors.js';

/** Mode of the socket file: only its owner (root, for the agent) may connect. */
export const SOCKET_MODE = 0o600;
/** Mode of a socket directory the agent creates. */
export const SOCKET_DIR_MODE = 0o755;

/** What answered at a socket path. */
export type SocketProbe = 'live' | 'stale' | 'gone';

/**
 * Makes `socketPath` ready to bind: creates its directory, removes a stale socket. Resolves what it removed.
 *
 * @throws PortwallError `ERR_SYSTEM` when a live server answers there, or the path is not a socket.
 */
export async function prepareSocketPath(socketPath: string, probeTimeoutMs = 1000): Promise<'none' | 'stale'> {
  mkdirSync(path.dirname(socketPath), { recursive: true, mode: SOCKET_DIR_MODE });
  const kind = fileKind(socketPath);
  if (kind === 'none') return 'none';
  if (kind === 'other') {
    throw refuse(socketPath, 'EEXIST', 'the path exists and is not a socket; refusing to replace it');
  }
  const probe = await probeSocket(socketPath, probeTimeoutMs);
  if (probe === 'live') {
    throw refuse(socketPath, 'EADDRINUSE', 'another process is serving on this socket; refusing to start');
  }
  if (probe === 'stale') unlinkIfExists(socketPath);
  return probe === 'stale' ? 'stale' : 'none';
}

/**
 * Connects to a Unix socket to learn whether a server listens there: `stale` when the kernel refuses
 * (ECONNREFUSED: the socket file outlived its process), `gone` when the file vanished meanwhile.
 *
 * @throws PortwallError `ERR_SYSTEM` on any other failure (e.g. EACCES), or when nothing is said in time.
 */
export function probeSocket(socketPath: string, timeoutMs: number): Promise<SocketProbe> {
  return new Promise((resolve, reject) => {
    const conn = createConnection({ path: socketPath });
    const finish = (result: SocketProbe | Error) => {
      clearTimeout(timer);
      conn.destroy();
      if (result instanceof Error) reject(result);
      else resolve(result);
    };
    const timer = setTimeout(() => {
      finish(refuse(socketPath, 'ETIMEDOUT', `no answer within ${timeoutMs} ms; refusing to replace it`));
    }, timeoutMs);
    conn.once('connect', () => finish('live'));
    conn.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNREFUSED') finish('stale');
      else if (e.code === 'ENOENT') finish('gone');
      else finish(refuse(socketPath, e.code ?? 'EIO', `cannot probe the existing socket: ${e.message}`, e));
    });
  });
}

/**
 * Binds and listens on `socketPath` with mode 0600: the bind happens under umask 0177 (so the socket is never
 * reachable by others, not even for an instant), and the mode is set again before the first accept.
 * Resolves the socket file's inode, so that closing removes only our own file.
 */
export function listenPrivately(server: Server, socketPath: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => {
      server.off('listening', onListening);
      reject(refuse(socketPath, e.code ?? 'EIO', `cannot listen: ${e.message}`, e));
    };
    // 'listening' is emitted on the next tick after the bind, before the event loop can accept anyone.
    const onListening = () => {
      server.off('error', onError);
      try {
        chmodSync(socketPath, SOCKET_MODE);
        resolve(statSync(socketPath).ino);
      } catch (e) {
        server.close();
        reject(refuse(socketPath, (e as NodeJS.ErrnoException).code ?? 'EIO', 'cannot set the socket mode', e));
      }
    };
    server.once('error', onError);
    server.once('listening', onListening);
    withUmask(0o177, () => server.listen(socketPath));
  });
}

/** Removes the socket file if it is still the one we bound (same inode); a replacement is left alone. */
export function removeOwnSocket(socketPath: string, inode: number): void {
  try {
    const st = lstatSync(socketPath);
    if (st.isSocket() && st.ino === inode) unlinkSync(socketPath);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

// Runs `fn` with the process umask set to `mask`. In a worker thread the umask cannot be changed; there the
// explicit chmod right after the bind is the only guard.
function withUmask<T>(mask: number, fn: () => T): T {
  let previous: number | undefined;
  try {
    previous = process.umask(mask);
  } catch {
    previous = undefined;
  }
  try {
    return fn();
  } finally {
    if (previous !== undefined) process.umask(previous);
  }
}

function fileKind(p: string): 'none' | 'socket' | 'other' {
  try {
    return lstatSync(p).isSocket() ? 'socket' : 'other';
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'none';
    throw e;
  }
}

function unlinkIfExists(p: string): void {
  try {
    unlinkSync(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

function refuse(socketPath: string, errnoName: string, why: string, cause?: unknown): PortwallError {
  return new PortwallError('ERR_SYSTEM', `API socket ${socketPath}: ${why} (${errnoName})`, {
    errnoName,
    ...(cause === undefined ? {} : { cause }),
  });
}
