/**
 * The API's answers: JSON bodies, and every error mapped to one status and one error body
 * `{ error: { code, message, problems? } }` (docs/agent.md, "Errors").
 */
import type { ServerResponse } from 'node:http';

import { PortwallError } from '../errors.js';
import type { Problem } from '../model/problems.js';

/** Codes of errors the API layer itself answers (the backend's errors keep their PortwallError code). */
export type ApiErrorCode =
  | 'ERR_BAD_REQUEST'
  | 'ERR_NOT_FOUND'
  | 'ERR_METHOD_NOT_ALLOWED'
  | 'ERR_BODY_TOO_LARGE'
  | 'ERR_UNSUPPORTED_MEDIA_TYPE'
  | 'ERR_TIMEOUT'
  | 'ERR_INTERNAL';

/** An error the API answers with a given status (headers e.g. `Allow` for 405). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: ApiErrorCode | 'ERR_INVALID_STATE',
    message: string,
    readonly problems?: readonly Problem[],
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** An error body. */
export interface ErrorBody {
  error: { code: string; message: string; problems?: readonly Problem[] };
}

/** The status, body and extra headers an error is answered with. */
export interface ErrorAnswer {
  status: number;
  body: ErrorBody;
  headers: Readonly<Record<string, string>>;
}

/**
 * Maps an error to its answer: an {@link ApiError} as it says; an invalid state (code `ERR_INVALID_STATE`
 * with `problems`, i.e. an InvalidStateError) 400 with its problems, as `ERR_INVALID_VALUE` (a bad query value); `ERR_CONFLICT` and `ERR_TRANSACTION_STATE` (no
 * state yet) 409; any other error 500
 * (a PortwallError keeps its code, anything else is `ERR_INTERNAL`).
 */
export function errorAnswer(e: unknown): ErrorAnswer {
  if (e instanceof ApiError) return answer(e.status, e.code, e.message, e.problems, e.headers);
  if (isInvalidState(e)) return answer(400, e.code, e.message, e.problems);
  if (e instanceof PortwallError) {
    const status = e.code === 'ERR_CONFLICT' || e.code === 'ERR_TRANSACTION_STATE' ? 409 : e.code === 'ERR_INVALID_VALUE' ? 400 : 500;
    return answer(status, e.code, e.message);
  }
  return answer(500, 'ERR_INTERNAL', e instanceof Error ? e.message : String(e));
}

/** Sends `body` as JSON (unless the response has already started or its connection is gone). */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Readonly<Record<string, string>> = {},
): void {
  if (res.headersSent || res.destroyed) return;
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    ...headers,
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
  });
  res.end(text);
}

// Duck-typed, so an InvalidStateError from another copy of the module is recognised too.
function isInvalidState(e: unknown): e is Error & { code: 'ERR_INVALID_STATE'; problems: readonly Problem[] } {
  if (!(e instanceof Error)) return false;
  const { code, problems } = e as { code?: unknown; problems?: unknown };
  return code === 'ERR_INVALID_STATE' && Array.isArray(problems);
}

function answer(
  status: number,
  code: string,
  message: string,
  problems?: readonly Problem[],
  headers: Readonly<Record<string, string>> = {},
): ErrorAnswer {
  const error = problems === undefined ? { code, message } : { code, message, problems: problems.map(plainProblem) };
  return { status, body: { error }, headers };
}

function plainProblem(p: Problem): Problem {
  return { path: String(p.path), message: String(p.message) };
}
