/**
 * Request bodies: the content type checked before reading, the size bounded while reading (a body over the
 * limit is refused without being buffered), the bytes decoded as UTF-8 JSON with the place of a mistake.
 */
import type { IncomingMessage } from 'node:http';

import { findJsonSyntaxError } from '../model/json-syntax.js';
import { ApiError } from './answers.js';

/** The problem path of a body that is not a JSON document (or not the kind of value the route needs). */
export const BODY_PATH = '(body)';

/** Whether a Content-Type header names JSON (`application/json` or `…+json`, UTF-8 when a charset is given). */
export function isJsonContentType(header: string): boolean {
  const [type = '', ...params] = header.split(';').map((s) => s.trim().toLowerCase());
  if (type !== 'application/json' && !/^application\/[a-z0-9.+-]+\+json$/.test(type)) return false;
  const charset = params.find((p) => p.startsWith('charset='))?.slice('charset='.length).replace(/^"|"$/g, '');
  return charset === undefined || charset === 'utf-8' || charset === 'utf8';
}

/**
 * Refuses a body before reading it: 415 for a Content-Type that is present and not JSON, 413 for a declared
 * Content-Length over `limit`.
 */
export function checkBodyHeaders(req: IncomingMessage, limit: number): void {
  const type = req.headers['content-type'];
  if (type !== undefined && !isJsonContentType(type)) {
    throw new ApiError(415, 'ERR_UNSUPPORTED_MEDIA_TYPE', `Content-Type ${JSON.stringify(type)} is not JSON (send application/json)`);
  }
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) throw tooLarge(limit);
}

/**
 * Reads the body, at most `limit` bytes: past the limit it stops reading (pauses the request) and rejects
 * with a 413 {@link ApiError}; what was read so far is dropped. Rejects with `ERR_BAD_REQUEST` when the client
 * goes away before the end.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = (error?: unknown) => {
      req.off('data', onData).off('end', onEnd).off('error', stop).off('close', onClose);
      if (error !== undefined) reject(error);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
      else {
        req.pause();
        chunks.length = 0;
        stop(tooLarge(limit));
      }
    };
    const onEnd = () => {
      stop();
      resolve(Buffer.concat(chunks, size));
    };
    const onClose = () => stop(new ApiError(400, 'ERR_BAD_REQUEST', 'the client closed the request before its end'));
    req.on('data', onData).on('end', onEnd).on('error', stop).on('close', onClose);
  });
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Parses a body as JSON (a leading byte-order mark is allowed).
 *
 * @throws ApiError 400 `ERR_INVALID_STATE` with one problem at `(body)`: empty, not UTF-8, or not JSON (with
 *   the line and column of the first mistake).
 */
export function parseJsonBody(bytes: Uint8Array): unknown {
  let text: string;
  try {
    text = UTF8.decode(bytes);
  } catch {
    throw badBody('not valid UTF-8');
  }
  if (text.startsWith('\uFEFF')) text = text.slice(1);
  if (text.trim() === '') throw badBody('empty, expected a JSON document');
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    const at = findJsonSyntaxError(text);
    throw badBody(at === undefined
      ? `not valid JSON: ${e instanceof Error ? e.message : String(e)}`
      : `not valid JSON at line ${at.line}, column ${at.column}: ${at.message}`);
  }
}

/** A 400 for a body that is not what the route takes; the problem is at `path` (default `(body)`). */
export function badBody(message: string, path = BODY_PATH): ApiError {
  return new ApiError(400, 'ERR_INVALID_STATE', `request body: ${path}: ${message}`, [{ path, message }]);
}

function tooLarge(limit: number): ApiError {
  return new ApiError(413, 'ERR_BODY_TOO_LARGE', `the request body is larger than ${limit} bytes`);
}
