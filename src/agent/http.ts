/**
 * The agent's local HTTP API (docs/agent.md): HTTP/1.1 and JSON on a Unix socket of mode 0600, served by
 * `node:http`. Mutating requests become {@link AgentOp}s; ops arriving together are coalesced into one
 * {@link AgentBackend.commit} (./coalescer.ts), one commit at a time, and each caller gets its own op's answer.
 *
 * ```ts
 * const api = await startApiServer({ socketPath: '/run/portwall/portwall.sock', backend, metrics, logger });
 * // …
 * await api.close();   // stops accepting, answers what is in flight, removes the socket file
 * ```
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

import type { Logger } from 'pino';

import type { Problem } from '../model/problems.js';
import { ApiError, errorAnswer, sendJson, type ErrorAnswer } from './answers.js';
import type { AgentBackend, AgentOp, OpOutcome } from './backend.js';
import { badBody, checkBodyHeaders, parseJsonBody, readBody } from './body.js';
import { Coalescer } from './coalescer.js';
import type { AgentMetrics } from './metrics.js';
import { BadPathError, matchRoute, UNMATCHED_ROUTE, type RouteMatch, type RouteTarget } from './routes.js';
import { listenPrivately, prepareSocketPath, removeOwnSocket } from './socket.js';

/** GET /v1/explain?live=1: how long the agent waits for the packet by default, and at most (seconds). */
export const LIVE_TIMEOUT_DEFAULT_S = 10;
export const LIVE_TIMEOUT_MAX_S = 60;

/** Options of {@link startApiServer}. */
export interface ApiServerOptions {
  /** The Unix socket to serve on, e.g. `/run/portwall/portwall.sock`; its directory is created if missing. */
  socketPath: string;
  backend: AgentBackend;
  metrics: AgentMetrics;
  /** One JSON line per request at debug level; failures at warn (409, refused ops) and error (500). */
  logger: Logger;
  /** Largest accepted request body in bytes (default 8 MiB); a larger one is answered 413 unread. */
  bodyLimit?: number;
  /** A batch of changes is committed after a turn of the event loop that brought no other, at most 4 × this (ms, default 2) after its first (docs/agent.md, "Coalescing"). */
  coalesceMs?: number;
  /** Longest time a client may take to send a whole request, in milliseconds (default 30 000). */
  requestTimeoutMs?: number;
  /** Longest time a client may take to send the request headers, in milliseconds (default 10 000). */
  headersTimeoutMs?: number;
}

/** A running API server. */
export interface ApiServer {
  readonly socketPath: string;
  /**
   * Stops accepting connections, waits until every request in flight is answered and its commit done, closes
   * the remaining (idle or half-sent) connections and removes the socket file. Calling it again returns the
   * same promise.
   */
  close(): Promise<void>;
}

/** Defaults of {@link ApiServerOptions}. */
export const API_DEFAULTS = {
  bodyLimit: 8 * 1024 * 1024,
  coalesceMs: 2,
  requestTimeoutMs: 30_000,
  headersTimeoutMs: 10_000,
} as const;

/**
 * Starts the API on `options.socketPath`.
 *
 * @throws RangeError for a size or time that is not a positive number.
 * @throws PortwallError `ERR_SYSTEM` when another process serves on that socket, the path is not a socket,
 *   or it cannot be bound.
 */
export async function startApiServer(options: ApiServerOptions): Promise<ApiServer> {
  checkLimits(options);
  const api = new Api(options);
  const removed = await prepareSocketPath(options.socketPath);
  if (removed === 'stale') options.logger.warn({ socketPath: options.socketPath }, 'removed a stale API socket');
  const inode = await listenPrivately(api.server, options.socketPath);
  // After the bind, a server error (e.g. EMFILE on accept) is logged; it must not end the process.
  api.server.on('error', (e) => options.logger.error({ err: e }, 'API server error'));
  options.logger.info({ socketPath: options.socketPath }, 'API listening');
  let closing: Promise<void> | undefined;
  return {
    socketPath: options.socketPath,
    close: () => (closing ??= api.close().then(() => removeOwnSocket(options.socketPath, inode))),
  };
}

// Sizes and times must be positive numbers (a coalescing window may be 0).
function checkLimits(options: ApiServerOptions): void {
  for (const key of ['bodyLimit', 'coalesceMs', 'requestTimeoutMs', 'headersTimeoutMs'] as const) {
    const value = options[key];
    const min = key === 'coalesceMs' ? 0 : 1;
    if (value !== undefined && !(Number.isFinite(value) && value >= min)) {
      throw new RangeError(`${key} must be a number ≥ ${min}, got ${value}`);
    }
  }
}

// What one request's log line and metrics say about it.
interface Exchange {
  seq: number;
  method: string;
  route: string;
  id?: string;
  started: number;
  code?: string;
  /** A status Node answered for us (a request timeout while the body was being read). */
  status?: number;
  /** Keys of the body the schema does not know (the core's finding), answered with success and refusal alike. */
  warnings?: readonly Problem[];
}

// The server, its request handling and its shutdown.
class Api {
  readonly server: Server;
  readonly #backend: AgentBackend;
  readonly #metrics: AgentMetrics;
  readonly #log: Logger;
  readonly #bodyLimit: number;
  readonly #coalescer: Coalescer<AgentOp, OpOutcome>;
  #seq = 0;
  #inFlight = 0;
  // The request each connection is being answered for, if any.
  readonly #active = new WeakMap<Socket, { exchange: Exchange; res: ServerResponse }>();
  #drained: (() => void)[] = [];
  #closing = false;

  constructor(options: ApiServerOptions) {
    this.#backend = options.backend;
    this.#metrics = options.metrics;
    this.#log = options.logger;
    this.#bodyLimit = options.bodyLimit ?? API_DEFAULTS.bodyLimit;
    this.#coalescer = new Coalescer({
      commit: (ops) => this.#commitBatch(ops),
      windowMs: options.coalesceMs ?? API_DEFAULTS.coalesceMs,
    });
    this.server = createHttpServer(options, (req, res) => {
      this.#handle(req, res).catch((e: unknown) => {
        this.#log.error({ err: e }, 'request handling failed');
        res.destroy();
      });
    });
    this.server.on('clientError', (e: NodeJS.ErrnoException, socket: Socket) => this.#clientError(e, socket));
  }

  async close(): Promise<void> {
    this.#closing = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    while (this.#inFlight > 0) await new Promise<void>((resolve) => this.#drained.push(resolve));
    await this.#coalescer.idle();
    this.server.closeAllConnections();
    await closed;
  }

  // One request, start to answer; nothing it throws escapes.
  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const exchange: Exchange = { seq: ++this.#seq, method: req.method ?? '', route: UNMATCHED_ROUTE, started: performance.now() };
    this.#track(req, res, exchange);
    if (this.#closing) res.setHeader('Connection', 'close');
    try {
      await this.#dispatch(req, res, exchange);
    } catch (e) {
      this.#answerError(res, exchange, e);
    }
  }

  async #dispatch(req: IncomingMessage, res: ServerResponse, exchange: Exchange): Promise<void> {
    const route = this.#route(req.url ?? '/', exchange);
    if (!route.methods.includes(exchange.method)) {
      throw new ApiError(405, 'ERR_METHOD_NOT_ALLOWED', `${exchange.method} is not allowed on ${route.template} (allowed: ${route.methods.join(', ')})`,
        undefined, { Allow: route.methods.join(', ') });
    }
    const target = route.target;
    if (target.kind === 'status') return sendJson(res, 200, await this.#backend.status());
    if (target.kind === 'metrics') return this.#sendMetrics(res);
    if (target.kind === 'explain') return sendJson(res, 200, await this.#explain(req.url ?? ''));
    const op = exchange.method === 'DELETE' ? deleteOp(target) : await this.#readPut(req, res, target);
    const outcome = await this.#submit(op, exchange);
    sendJson(res, 200, { genid: outcome.genid, changed: outcome.changed, timings: outcome.timings, elements: outcome.elements, ...withWarnings(exchange) });
  }

  // GET /v1/explain?port=ID&packet=TEXT[&direction=ingress|egress][&live=1[&timeout=SECONDS]]
  #explain(url: string): unknown {
    const q = new URLSearchParams(url.includes('?') ? url.slice(url.indexOf('?') + 1) : '');
    const port = q.get('port'), packet = q.get('packet'), direction = q.get('direction') ?? undefined;
    if (!port || !packet) throw new ApiError(400, 'ERR_BAD_REQUEST', 'explain needs the query parameters port and packet (and optionally direction)');
    if (direction !== undefined && direction !== 'ingress' && direction !== 'egress') throw new ApiError(400, 'ERR_BAD_REQUEST', `direction must be ingress or egress, not ${JSON.stringify(direction)}`);
    const live = q.get('live'), timeout = q.get('timeout');
    if (live !== null && live !== '0' && live !== '1') throw new ApiError(400, 'ERR_BAD_REQUEST', `live must be 1 or 0, not ${JSON.stringify(live)}`);
    if (timeout !== null && live !== '1') throw new ApiError(400, 'ERR_BAD_REQUEST', 'timeout goes with live=1');
    let liveMs: number | undefined;
    if (live === '1') {
      const t = timeout === null ? LIVE_TIMEOUT_DEFAULT_S : Number(timeout);
      if (!(t > 0 && t <= LIVE_TIMEOUT_MAX_S)) throw new ApiError(400, 'ERR_BAD_REQUEST', `timeout must be seconds, more than 0 and at most ${LIVE_TIMEOUT_MAX_S}, not ${JSON.stringify(timeout)}`);
      liveMs = Math.round(t * 1000);
    }
    if (!this.#backend.explain) throw new ApiError(404, 'ERR_NOT_FOUND', 'this agent does not explain');
    return this.#backend.explain({ port, packet, ...(direction ? { direction } : {}), ...(liveMs !== undefined ? { liveMs } : {}) });
  }

  // The matched route, recorded on the exchange; 404 / 400 when there is none.
  #route(url: string, exchange: Exchange): RouteMatch {
    let route: RouteMatch | undefined;
    try {
      route = matchRoute(url);
    } catch (e) {
      if (!(e instanceof BadPathError)) throw e;
      exchange.route = e.template;
      throw new ApiError(400, 'ERR_BAD_REQUEST', e.message);
    }
    if (route === undefined) throw new ApiError(404, 'ERR_NOT_FOUND', `no route ${exchange.method} ${url.split('?', 1)[0]}`);
    exchange.route = route.template;
    if (route.target.kind === 'item') exchange.id = route.target.id;
    return route;
  }

  // A PUT's body as the op it asks for (the path's id checked against, or filled into, the body).
  async #readPut(req: IncomingMessage, res: ServerResponse, target: RouteTarget): Promise<AgentOp> {
    checkBodyHeaders(req, this.#bodyLimit);
    if (req.headers.expect?.toLowerCase() === '100-continue') res.writeContinue();
    const body = parseJsonBody(await readBody(req, this.#bodyLimit));
    if (target.kind === 'state') return { kind: 'state', state: body };
    if (target.kind !== 'item') throw new Error(`no PUT on ${target.kind}`);
    return { kind: target.item, id: target.id, body: withPathId(body, target.id) };
  }

  // One op through the coalescer; its outcome if applied, else its error thrown (its warnings kept on the exchange).
  async #submit(op: AgentOp, exchange: Exchange): Promise<Extract<OpOutcome, { ok: true }>> {
    const submitted = performance.now();
    const outcome = await this.#coalescer.submit(op);
    if (outcome.warnings?.length) exchange.warnings = outcome.warnings;
    if (!outcome.ok) throw outcome.error;
    this.#metrics.observeApply(op.kind, (performance.now() - submitted) / 1000);
    return outcome;
  }

  // One coalesced batch to the backend, timed and counted.
  async #commitBatch(ops: readonly AgentOp[]): Promise<OpOutcome[]> {
    const started = performance.now();
    let outcomes: OpOutcome[] | undefined;
    try {
      outcomes = await this.#backend.commit(ops);
      return outcomes;
    } finally {
      const ms = performance.now() - started;
      this.#metrics.observeCommit(ms / 1000, ops.length);
      this.#log.debug({ ops: ops.length, ms: round(ms), failed: outcomes === undefined }, 'batch committed');
    }
  }

  async #sendMetrics(res: ServerResponse): Promise<void> {
    const text = await this.#metrics.text();
    if (res.headersSent || res.destroyed) return;
    res.writeHead(200, { 'Content-Type': this.#metrics.contentType, 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store' });
    res.end(text);
  }

  #answerError(res: ServerResponse, exchange: Exchange, e: unknown): void {
    const answer = errorAnswer(e);
    exchange.code = answer.body.error.code;
    this.#metrics.countError(answer.body.error.code);
    this.#logFailure(exchange, answer, e);
    // A body refused unread: the connection closes after the answer, so the rest is never read.
    const headers = answer.status === 413 ? { ...answer.headers, Connection: 'close' } : answer.headers;
    if (answer.status === 413) res.once('finish', () => res.socket?.destroy());
    sendJson(res, answer.status, { ...answer.body, ...withWarnings(exchange) }, headers);
  }

  #logFailure(exchange: Exchange, answer: ErrorAnswer, e: unknown): void {
    const fields = { req: exchange.seq, method: exchange.method, route: exchange.route, id: exchange.id, status: answer.status, code: answer.body.error.code };
    if (answer.status >= 500) this.#log.error({ ...fields, err: e }, 'request failed');
    else if (answer.status === 409 || (answer.status === 400 && !(e instanceof ApiError))) this.#log.warn({ ...fields, message: answer.body.error.message }, 'change refused');
  }

  // Counts the request in flight until its response is finished or its connection gone; then logs and counts it.
  #track(req: IncomingMessage, res: ServerResponse, exchange: Exchange): void {
    this.#inFlight++;
    const socket = req.socket;
    this.#active.set(socket, { exchange, res });
    res.once('close', () => {
      if (this.#active.get(socket)?.exchange === exchange) this.#active.delete(socket);
      const status = exchange.status ?? (res.writableFinished ? res.statusCode : 'aborted');
      const ms = round(performance.now() - exchange.started);
      this.#metrics.countRequest(exchange.route, status);
      this.#log.debug({ req: exchange.seq, method: exchange.method, route: exchange.route, id: exchange.id, status, ms, code: exchange.code }, 'request');
      if (--this.#inFlight === 0) for (const done of this.#drained.splice(0)) done();
    });
  }

  // A request Node could not parse, or a client too slow to send one: a JSON 400/408/431 unless an answer
  // has started on that connection, then the connection is closed.
  #clientError(e: NodeJS.ErrnoException, socket: Socket): void {
    const status = e.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : e.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    const code = status === 408 ? 'ERR_TIMEOUT' : 'ERR_BAD_REQUEST';
    const active = this.#active.get(socket);
    this.#log.debug({ req: active?.exchange.seq, err: e.code, status }, 'client error');
    if (e.code === 'ECONNRESET' || !socket.writable || active?.res.headersSent === true) {
      socket.destroy();
      return;
    }
    this.#metrics.countError(code);
    // A request being answered is counted once, when its response closes; one without headers yet, here.
    if (active === undefined) this.#metrics.countRequest(UNMATCHED_ROUTE, status);
    else Object.assign(active.exchange, { status, code });
    const text = `${JSON.stringify({ error: { code, message: clientErrorMessage(status) } })}\n`;
    const head = `HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\nContent-Type: application/json; charset=utf-8\r\n`
      + `Content-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n`;
    socket.end(head + text, () => socket.destroy());
  }
}

const STATUS_TEXT: Readonly<Record<number, string>> = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' };

function clientErrorMessage(status: number): string {
  if (status === 408) return 'the request was not received in time';
  if (status === 431) return 'the request headers are too large';
  return 'the request is not valid HTTP/1.1';
}

// node:http with the slow-client bounds: headers in headersTimeout, the whole request in requestTimeout,
// checked often enough that a bound is kept to within a second.
function createHttpServer(options: ApiServerOptions, handler: (req: IncomingMessage, res: ServerResponse) => void): Server {
  const requestTimeout = options.requestTimeoutMs ?? API_DEFAULTS.requestTimeoutMs;
  const headersTimeout = Math.min(options.headersTimeoutMs ?? API_DEFAULTS.headersTimeoutMs, requestTimeout);
  const server = createServer({
    requestTimeout,
    headersTimeout,
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(headersTimeout / 4))),
  }, handler);
  server.on('checkContinue', handler);
  return server;
}

function deleteOp(target: RouteTarget): AgentOp {
  if (target.kind !== 'item') throw new Error(`no DELETE on ${target.kind}`);
  return { kind: target.item, id: target.id };
}

/**
 * The body of an item PUT with the path's id: it must be a JSON object; its own `id`, when present, must equal
 * the path's; when absent the path's id is filled in.
 */
export function withPathId(body: unknown, id: string): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badBody('must be a JSON object');
  const record = body as Record<string, unknown>;
  if (!Object.hasOwn(record, 'id')) return { id, ...record };
  if (record.id !== id) throw badBody(`${JSON.stringify(record.id)} does not match the id in the path ${JSON.stringify(id)}`, 'id');
  return record;
}

/** `{ warnings }` for an answer body when the request's body had keys the schema does not know, else nothing. */
function withWarnings(exchange: Exchange): { warnings?: Problem[] } {
  return exchange.warnings === undefined ? {} : { warnings: exchange.warnings.map((w) => ({ path: String(w.path), message: String(w.message) })) };
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
