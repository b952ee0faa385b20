/**
 * The agent's HTTP API on a Unix socket in a fresh temp dir, against a fake backend (no kernel): every route
 * and method, the error answers, the socket's mode, directory and stale/live handling, coalescing (fewer
 * commits than requests, each caller its own answer, never two commits at once), metrics, logs and close().
 */
import { mkdirSync, mkdtempSync, linkSync, lstatSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { request } from 'node:http';
import { createConnection, createServer as createNetServer, type Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';

import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';

import type { AgentBackend, AgentOp, OpOutcome } from '../../src/agent/backend.js';
import { startApiServer, type ApiServer, type ApiServerOptions } from '../../src/agent/http.js';
import { AgentMetrics } from '../../src/agent/metrics.js';
import { PortwallError } from '../../src/errors.js';
import { InvalidStateError } from '../../src/model/problems.js';

/**
 * A backend that records every batch and how many commits ran at once. An op whose body has `bad: true` is
 * refused as invalid, `conflict: true` with ERR_CONFLICT; `n` in a body comes back as `elements.added`, so a
 * caller can tell its own outcome from another's.
 */
class FakeBackend implements AgentBackend {
  readonly batches: AgentOp[][] = [];
  running = 0;
  maxRunning = 0;
  delayMs = 5;
  genid = 100;
  failWith: unknown;
  statusCalls = 0;
  /** While set, a commit waits for it (after its delay) before it finishes. */
  gate: Promise<void> | undefined;
  explain?: AgentBackend['explain'];

  async commit(ops: readonly AgentOp[]): Promise<OpOutcome[]> {
    this.running++;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    this.batches.push([...ops]);
    try {
      await sleep(this.delayMs);
      await this.gate;
      if (this.failWith !== undefined) throw this.failWith;
      const genid = ++this.genid;
      return ops.map((op) => outcomeOf(op, genid));
    } finally {
      this.running--;
    }
  }

  async status(): Promise<unknown> {
    this.statusCalls++;
    return { genid: this.genid, ports: 2, healthy: true };
  }

  get ops(): AgentOp[] {
    return this.batches.flat();
  }
}

function outcomeOf(op: AgentOp, genid: number): OpOutcome {
  const body = (op.kind === 'state' ? op.state : op.body) as Record<string, unknown> | undefined;
  // `warn: "key"` in a body: the outcome (applied or refused) says that key was ignored.
  const warnings = typeof body?.warn === 'string' ? { warnings: [{ path: body.warn, message: 'unknown key, ignored' }] } : {};
  return { ...judged(body, genid), ...warnings };
}

function judged(body: Record<string, unknown> | undefined, genid: number): OpOutcome {
  if (body?.bad === true) {
    return { ok: false, error: new InvalidStateError([{ path: 'ports[0] (tap-bad).mac_address', message: 'not a MAC address: "zz"' }]) };
  }
  if (body?.conflict === true) return { ok: false, error: new PortwallError('ERR_CONFLICT', 'another writer committed') };
  const added = typeof body?.n === 'number' ? body.n : 1;
  return { ok: true, genid, changed: true, timings: { compile: 0.5, commit: 1.25 }, elements: { added, removed: 0 } };
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

interface Call {
  method: string;
  path: string;
  body?: string | Buffer | object;
  headers?: Record<string, string>;
  /** A new connection instead of one kept alive by the global agent. */
  fresh?: boolean;
}

// One request over the socket (Node's own client); a body object is sent as JSON.
function call(socketPath: string, c: Call): Promise<Answer> {
  const raw = c.body === undefined ? undefined : typeof c.body === 'string' || Buffer.isBuffer(c.body) ? c.body : JSON.stringify(c.body);
  const headers: Record<string, string> = { ...(raw === undefined ? {} : { 'Content-Type': 'application/json' }), ...c.headers };
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method: c.method, path: c.path, headers, ...(c.fresh === true ? { agent: false } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    req.end(raw);
  });
}

let dir: string;
let socketPath: string;
let backend: FakeBackend;
let metrics: AgentMetrics;
let api: ApiServer | undefined;
let logLines: Record<string, unknown>[];

function logger() {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') logLines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return pino({ level: 'debug' }, sink);
}

async function start(options: Partial<ApiServerOptions> = {}): Promise<ApiServer> {
  api = await startApiServer({ socketPath, backend, metrics, logger: logger(), ...options });
  return api;
}

const send = (c: Call) => call(socketPath, c);

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'portwall-api-'));
  socketPath = path.join(dir, 'run', 'portwall', 'portwall.sock');
  backend = new FakeBackend();
  metrics = new AgentMetrics({ processMetrics: false });
  logLines = [];
  api = undefined;
});

afterEach(async () => {
  await api?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the socket', () => {
  test('its directory is created, the socket is mode 0600, close() removes it', async () => {
    expect(existsSync(path.dirname(socketPath))).toBe(false);
    const server = await start();
    expect(statSync(path.dirname(socketPath)).isDirectory()).toBe(true);
    const st = lstatSync(socketPath);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    expect((await send({ method: 'GET', path: '/v1/status' })).status).toBe(200);
    await server.close();
    expect(existsSync(socketPath)).toBe(false);
    await expect(send({ method: 'GET', path: '/v1/status', fresh: true })).rejects.toMatchObject({ code: 'ENOENT' });
    await server.close(); // a second close is harmless
  });

  test('the bind runs under umask 0177 and the previous umask is put back right after', async () => {
    const umask = vi.spyOn(process, 'umask');
    try {
      await start();
      const calls = umask.mock.calls.map((c) => c[0]);
      expect(calls[0]).toBe(0o177);
      expect(calls).toHaveLength(2);
      expect(calls[1]).toBe(umask.mock.results[0]!.value);
    } finally {
      umask.mockRestore();
    }
  });

  test('a stale socket left by a dead process is replaced', async () => {
    const stale = await staleSocket(socketPath);
    expect(lstatSync(stale).isSocket()).toBe(true);
    await expect(send({ method: 'GET', path: '/v1/status', fresh: true })).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await start();
    expect((await send({ method: 'GET', path: '/v1/status' })).status).toBe(200);
    expect(logLines.some((l) => l.msg === 'removed a stale API socket')).toBe(true);
  });

  test('a live socket is not taken over: the start is refused with a clear error, the other server keeps it', async () => {
    mkdirSync(path.dirname(socketPath), { recursive: true });
    const other = await listenPlain(socketPath);
    try {
      await expect(start()).rejects.toMatchObject({ code: 'ERR_SYSTEM', message: expect.stringContaining('another process is serving') });
      api = undefined;
      expect(lstatSync(socketPath).isSocket()).toBe(true);
      await new Promise<void>((resolve, reject) => {
        const c = createConnection({ path: socketPath }, () => { c.destroy(); resolve(); });
        c.on('error', reject);
      });
    } finally {
      await new Promise((resolve) => other.close(resolve));
    }
  });

  test('limits that are not positive numbers are refused before anything is created', async () => {
    for (const bad of [{ bodyLimit: 0 }, { coalesceMs: -1 }, { requestTimeoutMs: Number.NaN }, { headersTimeoutMs: 0 }]) {
      await expect(start(bad)).rejects.toThrow(RangeError);
    }
    api = undefined;
    expect(existsSync(path.dirname(socketPath))).toBe(false);
  });

  test('a file that is not a socket is refused and left as it was', async () => {
    await start().then((s) => s.close()); // creates the directory
    writeFileSync(socketPath, 'not a socket');
    await expect(start()).rejects.toMatchObject({ code: 'ERR_SYSTEM', message: expect.stringContaining('not a socket') });
    api = undefined;
    expect(readFileSync(socketPath, 'utf8')).toBe('not a socket');
  });
});

describe('routes', () => {
  test('GET /v1/status answers the backend status as JSON', async () => {
    await start();
    const a = await send({ method: 'GET', path: '/v1/status' });
    expect(a.status).toBe(200);
    expect(a.headers['content-type']).toMatch(/^application\/json/);
    expect(a.json).toEqual({ genid: 100, ports: 2, healthy: true });
    expect(backend.statusCalls).toBe(1);
  });

  test('PUT of each item kind: the path id is filled into the body; the answer is the op outcome', async () => {
    await start();
    const puts = [
      ['/v1/ports/port-1', 'port'],
      ['/v1/security-groups/sg-web', 'group'],
      ['/v1/floatingips/fip-1', 'floatingip'],
    ] as const;
    for (const [p, kind] of puts) {
      const a = await send({ method: 'PUT', path: p, body: { name: 'x', n: 7 } });
      expect(a.status).toBe(200);
      expect(a.json).toEqual({ genid: backend.genid, changed: true, timings: { compile: 0.5, commit: 1.25 }, elements: { added: 7, removed: 0 } });
      const id = p.split('/').at(-1);
      expect(backend.ops.at(-1)).toEqual({ kind, id, body: { id, name: 'x', n: 7 } });
    }
  });

  test('PUT with the same id in the body is accepted as it is', async () => {
    await start();
    const a = await send({ method: 'PUT', path: '/v1/ports/port-1', body: { id: 'port-1', device: 'tap1' } });
    expect(a.status).toBe(200);
    expect(backend.ops).toEqual([{ kind: 'port', id: 'port-1', body: { id: 'port-1', device: 'tap1' } }]);
  });

  test('DELETE of each item kind sends an op without a body', async () => {
    await start();
    for (const [p, kind] of [['ports', 'port'], ['security-groups', 'group'], ['floatingips', 'floatingip']] as const) {
      const a = await send({ method: 'DELETE', path: `/v1/${p}/gone-1` });
      expect(a.status).toBe(200);
      expect(a.json).toMatchObject({ changed: true, genid: backend.genid });
      expect(backend.ops.at(-1)).toStrictEqual({ kind, id: 'gone-1' });
    }
  });

  test('PUT /v1/state hands the whole document over as a state op', async () => {
    await start();
    const doc = { networks: [], security_groups: [], ports: [], n: 3 };
    const a = await send({ method: 'PUT', path: '/v1/state', body: doc, headers: { 'Content-Type': 'application/json; charset=utf-8' } });
    expect(a.status).toBe(200);
    expect(a.json.elements).toEqual({ added: 3, removed: 0 });
    expect(backend.ops).toEqual([{ kind: 'state', state: doc }]);
  });

  test('ids in the path are percent-decoded (also in the id check); a query string is ignored', async () => {
    await start();
    expect((await send({ method: 'PUT', path: '/v1/ports/tap%2Fa%20b?x=1', body: { id: 'tap/a b' } })).status).toBe(200);
    expect((await send({ method: 'DELETE', path: '/v1/security-groups/sg%C3%A9' })).status).toBe(200);
    expect(backend.ops.map((o) => (o.kind === 'state' ? undefined : o.id))).toEqual(['tap/a b', 'sgé']);
  });

  test('404 for unknown routes, JSON body', async () => {
    await start();
    for (const p of ['/', '/v1', '/v1/nope/1', '/v1/ports', '/v1/ports/', '/v1/ports/a/b', '/v2/status', '/v1/status/', '/metrics/x']) {
      const a = await send({ method: 'GET', path: p });
      expect(a.status, p).toBe(404);
      expect(a.json.error.code).toBe('ERR_NOT_FOUND');
    }
  });

  test('405 with an Allow header for a known path and the wrong method', async () => {
    await start();
    const cases = [
      ['POST', '/v1/ports/p1', 'PUT, DELETE'],
      ['GET', '/v1/security-groups/sg', 'PUT, DELETE'],
      ['PATCH', '/v1/floatingips/f', 'PUT, DELETE'],
      ['GET', '/v1/state', 'PUT'],
      ['DELETE', '/v1/state', 'PUT'],
      ['PUT', '/v1/status', 'GET'],
      ['POST', '/metrics', 'GET'],
    ] as const;
    for (const [method, p, allow] of cases) {
      const a = await send({ method, path: p });
      expect(a.status, `${method} ${p}`).toBe(405);
      expect(a.headers.allow).toBe(allow);
      expect(a.json.error.code).toBe('ERR_METHOD_NOT_ALLOWED');
    }
    expect(backend.batches).toEqual([]);
  });

  test('a path id that is not valid percent-encoding is a 400', async () => {
    await start();
    const a = await send({ method: 'DELETE', path: '/v1/ports/%E0%A4%A' });
    expect(a.status).toBe(400);
    expect(a.json.error.code).toBe('ERR_BAD_REQUEST');
  });
});

describe('refused requests', () => {
  test('400 for a body that is not JSON: one problem at (body) with line and column; nothing committed', async () => {
    await start();
    const a = await send({ method: 'PUT', path: '/v1/ports/p1', body: '{\n  "device": "tap1",\n}' });
    expect(a.status).toBe(400);
    expect(a.json.error.code).toBe('ERR_INVALID_STATE');
    expect(a.json.error.problems).toEqual([{ path: '(body)', message: expect.stringMatching(/^not valid JSON at line 3, column 1: /) }]);
    for (const body of ['', '   ', Buffer.from([0x7b, 0xff, 0x7d])]) {
      const b = await send({ method: 'PUT', path: '/v1/state', body });
      expect(b.status).toBe(400);
      expect(b.json.error.problems[0].path).toBe('(body)');
    }
    expect(backend.batches).toEqual([]);
  });

  test('400 for an item body that is not an object', async () => {
    await start();
    for (const body of ['[]', '"port"', 'null', '3']) {
      const a = await send({ method: 'PUT', path: '/v1/ports/p1', body });
      expect(a.status).toBe(400);
      expect(a.json.error.problems).toEqual([{ path: '(body)', message: 'must be a JSON object' }]);
    }
    expect(backend.batches).toEqual([]);
  });

  test('400 naming the id field when the body id differs from the path id', async () => {
    await start();
    for (const id of ['port-2', 7, null]) {
      const a = await send({ method: 'PUT', path: '/v1/security-groups/port-1', body: { id } });
      expect(a.status).toBe(400);
      expect(a.json.error.problems).toEqual([{ path: 'id', message: expect.stringContaining('does not match the id in the path "port-1"') }]);
    }
    expect(backend.batches).toEqual([]);
  });

  test('400 with the backend problems for an op it refused as invalid', async () => {
    await start();
    const a = await send({ method: 'PUT', path: '/v1/ports/p1', body: { bad: true } });
    expect(a.status).toBe(400);
    expect(a.json.error).toEqual({
      code: 'ERR_INVALID_STATE',
      message: expect.stringContaining('1 problem'),
      problems: [{ path: 'ports[0] (tap-bad).mac_address', message: 'not a MAC address: "zz"' }],
    });
    expect(logLines.some((l) => l.level === 40 && l.code === 'ERR_INVALID_STATE')).toBe(true);
  });

  test("the backend's warnings are answered beside the outcome and beside a refusal's problems", async () => {
    await start();
    const ok = await send({ method: 'PUT', path: '/v1/security-groups/sg-web', body: { warn: 'rulez', n: 2 } });
    expect(ok.status).toBe(200);
    expect(ok.json).toEqual({
      genid: backend.genid, changed: true, timings: { compile: 0.5, commit: 1.25 }, elements: { added: 2, removed: 0 },
      warnings: [{ path: 'rulez', message: 'unknown key, ignored' }],
    });
    const refused = await send({ method: 'PUT', path: '/v1/ports/p1', body: { bad: true, warn: 'MAC' } });
    expect(refused.status).toBe(400);
    expect(refused.json.warnings).toEqual([{ path: 'MAC', message: 'unknown key, ignored' }]);
    expect(refused.json.error.problems).toHaveLength(1);
  });

  test('409 for ERR_CONFLICT', async () => {
    await start();
    const a = await send({ method: 'PUT', path: '/v1/ports/p1', body: { conflict: true } });
    expect(a.status).toBe(409);
    expect(a.json.error).toEqual({ code: 'ERR_CONFLICT', message: 'another writer committed' });
  });

  test('500 when the commit throws: a PortwallError keeps its code, anything else is ERR_INTERNAL', async () => {
    await start();
    backend.failWith = new PortwallError('ERR_KERNEL', 'kernel said no', { errno: 22, errnoName: 'EINVAL' });
    const a = await send({ method: 'DELETE', path: '/v1/ports/p1' });
    expect(a.status).toBe(500);
    expect(a.json).toEqual({ error: { code: 'ERR_KERNEL', message: 'kernel said no' } });
    backend.failWith = new TypeError('boom');
    const b = await send({ method: 'PUT', path: '/v1/state', body: {} });
    expect(b.status).toBe(500);
    expect(b.json).toEqual({ error: { code: 'ERR_INTERNAL', message: 'boom' } });
    expect(logLines.filter((l) => l.level === 50 && l.msg === 'request failed')).toHaveLength(2);
  });

  test('413 for a body over bodyLimit, with or without Content-Length; nothing committed; the server goes on', async () => {
    await start({ bodyLimit: 1024 });
    const big = JSON.stringify({ pad: 'x'.repeat(256 * 1024) });
    const declared = await send({ method: 'PUT', path: '/v1/state', body: big });
    expect(declared.status).toBe(413);
    expect(declared.json.error.code).toBe('ERR_BODY_TOO_LARGE');
    const chunked = await sendChunked(socketPath, '/v1/ports/p1', big);
    expect(chunked).toMatch(/^HTTP\/1\.1 413 /);
    const fits = await send({ method: 'PUT', path: '/v1/ports/p1', body: { pad: 'x'.repeat(900) } });
    expect(fits.status).toBe(200);
    expect(backend.batches).toHaveLength(1);
  });

  test('Expect: 100-continue: a body that fits is asked for, one declared too large is refused before it is sent', async () => {
    await start({ bodyLimit: 1024 });
    const continued = await new Promise<number>((resolve, reject) => {
      const req = request({ socketPath, method: 'PUT', path: '/v1/ports/p1', agent: false,
        headers: { 'Content-Type': 'application/json', 'Content-Length': '9', Expect: '100-continue' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('continue', () => req.end('{"n": 12}'));
      req.on('error', reject);
      req.flushHeaders();
    });
    expect(continued).toBe(200);
    const refused = await rawExchange(socketPath,
      'PUT /v1/ports/p1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\n\r\n');
    expect(refused).toMatch(/^HTTP\/1\.1 413 /);
    expect(refused).not.toContain('100 Continue');
    expect(backend.ops).toHaveLength(1);
  });

  test('415 for a Content-Type that is not JSON; a JSON one with a +json suffix is fine', async () => {
    await start();
    const a = await send({ method: 'PUT', path: '/v1/ports/p1', body: '{}', headers: { 'Content-Type': 'text/plain' } });
    expect(a.status).toBe(415);
    expect(a.json.error.code).toBe('ERR_UNSUPPORTED_MEDIA_TYPE');
    const b = await send({ method: 'PUT', path: '/v1/ports/p1', body: '{}', headers: { 'Content-Type': 'application/json; charset=latin1' } });
    expect(b.status).toBe(415);
    const c = await send({ method: 'PUT', path: '/v1/ports/p1', body: '{}', headers: { 'Content-Type': 'application/merge-patch+json' } });
    expect(c.status).toBe(200);
    expect(backend.batches).toHaveLength(1);
  });

  test('a client that never finishes its headers is cut off by headersTimeout (408)', async () => {
    await start({ headersTimeoutMs: 200, requestTimeoutMs: 400 });
    const started = Date.now();
    const reply = await rawExchange(socketPath, 'GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Slow: ');
    expect(reply).toMatch(/^HTTP\/1\.1 408 /);
    expect(reply).toContain('"ERR_TIMEOUT"');
    expect(Date.now() - started).toBeLessThan(3000);
    expect(await metrics.text()).toContain('portwall_api_requests_total{route="unmatched",status="408"} 1');
  });

  test('100 slow-loris clients at once: every one cut off within the bounds, a normal request answered meanwhile', async () => {
    await start({ headersTimeoutMs: 300, requestTimeoutMs: 600 });
    const started = Date.now();
    // Each sends its request a byte at a time, 50 ms apart, and never finishes (headers or body).
    const loris = Array.from({ length: 100 }, (_, k) => new Promise<{ reply: string; ms: number }>((resolve) => {
      const text = k % 2 === 0 ? 'GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Slow: ' + 'a'.repeat(1000)
        : 'PUT /v1/ports/p1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n' + ' '.repeat(1000);
      const c = createConnection(socketPath);
      let reply = '';
      let i = 0;
      const drip = setInterval(() => (i < text.length && !c.destroyed ? c.write(text[i++]!) : undefined), 50);
      const end = () => {
        clearInterval(drip);
        resolve({ reply, ms: Date.now() - started });
      };
      c.on('data', (d: Buffer) => (reply += d.toString()));
      c.on('close', end);
      c.on('error', () => undefined);
      // The test's own bound: a client still held after 10 s fails the test below.
      setTimeout(() => c.destroy(), 10_000);
    }));
    await sleep(100);
    const normal = await send({ method: 'GET', path: '/v1/status', fresh: true });
    expect(normal.status).toBe(200);
    const results = await Promise.all(loris);
    for (const { reply, ms } of results) {
      expect(reply).toMatch(/^HTTP\/1\.1 408 /);
      expect(ms).toBeLessThan(3000);
    }
    expect(backend.batches).toEqual([]);
  });

  test('a client that never finishes its body is cut off by requestTimeout; a slow commit is not', async () => {
    await start({ headersTimeoutMs: 200, requestTimeoutMs: 400 });
    const started = Date.now();
    const reply = await rawExchange(socketPath, 'PUT /v1/ports/p1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"id"');
    expect(reply).toMatch(/^HTTP\/1\.1 408 /);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(backend.batches).toEqual([]);
    await sleep(20);
    const t = await metrics.text();
    expect(t).toContain('portwall_api_requests_total{route="/v1/ports/{id}",status="408"} 1');
    expect(t).toContain('portwall_errors_total{code="ERR_TIMEOUT"} 1');
    expect(t).not.toContain('ERR_BAD_REQUEST');
    backend.delayMs = 800; // longer than requestTimeout: the answer still comes
    expect((await send({ method: 'DELETE', path: '/v1/ports/p1' })).status).toBe(200);
  });
});

describe('coalescing', () => {
  test('20 concurrent PUTs: far fewer commits, each caller its own answer, the invalid one 400, never two commits at once', async () => {
    backend.delayMs = 30;
    await start({ coalesceMs: 5 });
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) =>
      send({ method: 'PUT', path: `/v1/ports/port-${i}`, body: i === 13 ? { bad: true } : { n: i + 1 } })));
    expect(backend.ops).toHaveLength(20);
    expect(backend.batches.length).toBeLessThanOrEqual(4);
    expect(backend.maxRunning).toBe(1);
    answers.forEach((a, i) => {
      if (i === 13) {
        expect(a.status).toBe(400);
        expect(a.json.error.problems[0].path).toBe('ports[0] (tap-bad).mac_address');
      } else {
        expect(a.status).toBe(200);
        expect(a.json.elements.added).toBe(i + 1); // its own outcome, not a neighbour's
      }
    });
    // Every op reached the backend once, with the id of its own path.
    expect(backend.ops.map((o) => (o.kind === 'port' ? o.id : '')).sort()).toEqual(Array.from({ length: 20 }, (_, i) => `port-${i}`).sort());
  });

  test('requests arriving during a commit wait for it and are committed together next', async () => {
    let open!: () => void;
    backend.gate = new Promise((resolve) => (open = resolve));
    await start({ coalesceMs: 1 });
    const first = send({ method: 'DELETE', path: '/v1/ports/first' });
    await until(() => backend.running === 1);
    const during = Promise.all([
      send({ method: 'PUT', path: '/v1/security-groups/sg-1', body: {} }),
      send({ method: 'DELETE', path: '/v1/floatingips/f-1' }),
      send({ method: 'PUT', path: '/v1/state', body: {} }),
    ]);
    await sleep(100); // the three are queued behind the running commit
    expect(backend.batches).toHaveLength(1);
    open();
    expect((await first).status).toBe(200);
    const answers = await during;
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    expect(backend.batches.map((b) => b.map((o) => o.kind))).toEqual([['port'], ['group', 'floatingip', 'state']]);
    expect(backend.maxRunning).toBe(1);
    // Outcomes carry their own batch's generation.
    expect(answers.map((a) => a.json.genid)).toEqual([102, 102, 102]);
  });

  test('close() waits for a request in flight, answers it, then removes the socket', async () => {
    backend.delayMs = 150;
    const server = await start();
    const inFlight = send({ method: 'PUT', path: '/v1/ports/p1', body: {} });
    await until(() => backend.running === 1);
    const closing = server.close();
    const answer = await inFlight;
    expect(answer.status).toBe(200);
    await closing;
    expect(existsSync(socketPath)).toBe(false);
  });
});

describe('metrics and logs', () => {
  test('/metrics: Prometheus text with route templates (never raw paths), batches; elements and generation are the core\'s', async () => {
    await start();
    await send({ method: 'PUT', path: '/v1/ports/port-1', body: { n: 4 } });
    await send({ method: 'DELETE', path: '/v1/ports/port-2' });
    await send({ method: 'PUT', path: '/v1/ports/port-3', body: { bad: true } });
    await send({ method: 'GET', path: '/nowhere/at/all' });
    const a = await send({ method: 'GET', path: '/metrics' });
    expect(a.status).toBe(200);
    expect(a.headers['content-type']).toBe(metrics.contentType);
    expect(a.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const t = a.text;
    expect(t).toContain('portwall_api_requests_total{route="/v1/ports/{id}",status="200"} 2');
    expect(t).toContain('portwall_api_requests_total{route="/v1/ports/{id}",status="400"} 1');
    expect(t).toContain('portwall_api_requests_total{route="unmatched",status="404"} 1');
    expect(t).not.toMatch(/port-1|port-2|nowhere/);
    expect(t).toContain('portwall_errors_total{code="ERR_INVALID_STATE"} 1');
    // Elements and the generation are recorded by the core, once per batch (an op's outcome carries its batch's).
    expect(t).not.toMatch(/portwall_elements_total\{change="added"\} [1-9]/);
    expect(t).toContain('portwall_batch_ops_count 3');
    expect(t).toContain('portwall_commit_duration_seconds_count 3');
    expect(t).toContain('portwall_apply_duration_seconds_count{op="port"} 2');
    // The request for /metrics itself is counted once it is answered.
    const again = await send({ method: 'GET', path: '/metrics' });
    expect(again.text).toContain('portwall_api_requests_total{route="/metrics",status="200"} 1');
  });

  test('one debug line per request with method, route template, id, status and time', async () => {
    await start();
    await send({ method: 'DELETE', path: '/v1/floatingips/fip-9' });
    await send({ method: 'GET', path: '/v1/floatingips/fip-9' });
    const lines = logLines.filter((l) => l.msg === 'request');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ level: 20, method: 'DELETE', route: '/v1/floatingips/{id}', id: 'fip-9', status: 200 });
    expect(lines[1]).toMatchObject({ level: 20, method: 'GET', status: 405, code: 'ERR_METHOD_NOT_ALLOWED' });
    expect(typeof lines[0]!.ms).toBe('number');
  });
});

describe('AgentMetrics', () => {
  test('has every documented metric on its own registry, with process metrics by default', async () => {
    const m = new AgentMetrics();
    m.countDriftRepair('flushed');
    m.countConntrackRemoved(3);
    m.countConflicts(2);
    m.countConflicts(0);
    m.observeApply('repair', 0.002);
    const t = await m.text();
    for (const name of ['portwall_apply_duration_seconds', 'portwall_commit_duration_seconds', 'portwall_batch_ops', 'portwall_elements_total',
      'portwall_drift_repairs_total', 'portwall_conntrack_removed_total', 'portwall_commit_conflicts_total', 'portwall_api_requests_total',
      'portwall_errors_total', 'portwall_generation', 'process_cpu_user_seconds_total']) {
      expect(t, name).toContain(`# TYPE ${name} `);
    }
    expect(t).toContain('portwall_drift_repairs_total{cause="flushed"} 1');
    expect(t).toContain('portwall_conntrack_removed_total 3');
    expect(t).toContain('portwall_commit_conflicts_total 2');
    expect(t).toContain('portwall_apply_duration_seconds_count{op="repair"} 1');
    // Two instances do not collide (no global registry).
    expect(() => new AgentMetrics({ processMetrics: false })).not.toThrow();
  });

  test('every metric is documented in docs/agent.md', () => {
    const doc = readFileSync(path.resolve(import.meta.dirname, '../../docs/agent.md'), 'utf8');
    for (const name of ['portwall_apply_duration_seconds', 'portwall_commit_duration_seconds', 'portwall_batch_ops', 'portwall_elements_total',
      'portwall_drift_repairs_total', 'portwall_conntrack_removed_total', 'portwall_commit_conflicts_total', 'portwall_api_requests_total',
      'portwall_errors_total', 'portwall_generation']) {
      expect(doc, name).toMatch(new RegExp(`^\\| \`${name}\` \\|`, 'm'));
    }
  });
});

async function until(condition: () => boolean, timeoutMs = 2000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(2);
  }
}

// A socket file whose server is gone: a hard link to a listening socket outlives the server's own path.
async function staleSocket(p: string): Promise<string> {
  mkdirSync(path.dirname(p), { recursive: true });
  const tmp = `${p}.tmp`;
  const server = await listenPlain(tmp);
  linkSync(tmp, p);
  await new Promise((resolve) => server.close(resolve));
  return p;
}

function listenPlain(p: string): Promise<NetServer> {
  return new Promise((resolve, reject) => {
    const server = createNetServer((c) => c.destroy());
    server.once('error', reject);
    server.listen(p, () => resolve(server));
  });
}

// Writes `text` on a raw connection and resolves everything the server sends until it closes.
function rawExchange(p: string, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const c = createConnection({ path: p }, () => c.write(text));
    c.on('data', (d: Buffer) => chunks.push(d));
    c.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
    c.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' || e.code === 'EPIPE' ? undefined : reject(e)));
  });
}

// A PUT with a chunked body (no Content-Length), so the server only learns the size while reading.
function sendChunked(p: string, route: string, body: string): Promise<string> {
  const chunkSize = 16 * 1024;
  let text = `PUT ${route} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`;
  for (let i = 0; i < body.length; i += chunkSize) {
    const part = body.slice(i, i + chunkSize);
    text += `${Buffer.byteLength(part).toString(16)}\r\n${part}\r\n`;
  }
  return rawExchange(p, `${text}0\r\n\r\n`);
}

describe('GET /v1/explain?live=1', () => {
  test('live=1 passes a bounded timeout to the backend (default 10 s); bad live or timeout values are 400', async () => {
    const seen: unknown[] = [];
    backend.explain = async (q) => {
      seen.push(q);
      return { allowed: true, live: { timedOut: true, ms: 1 } };
    };
    await start();
    const p = encodeURIComponent('icmp 198.51.100.2 -> 192.0.2.10');
    expect((await send({ method: 'GET', path: `/v1/explain?port=p1&packet=${p}&live=1` })).status).toBe(200);
    expect((await send({ method: 'GET', path: `/v1/explain?port=p1&packet=${p}&live=1&timeout=2.5` })).json).toMatchObject({ live: { timedOut: true } });
    expect((await send({ method: 'GET', path: `/v1/explain?port=p1&packet=${p}` })).status).toBe(200);
    expect(seen).toEqual([{ port: 'p1', packet: 'icmp 198.51.100.2 -> 192.0.2.10', liveMs: 10_000 }, { port: 'p1', packet: 'icmp 198.51.100.2 -> 192.0.2.10', liveMs: 2500 }, { port: 'p1', packet: 'icmp 198.51.100.2 -> 192.0.2.10' }]);
    for (const [q, message] of [
      ['&live=1&timeout=61', /timeout must be seconds, more than 0 and at most 60/],
      ['&live=1&timeout=0', /at most 60, not "0"/],
      ['&live=1&timeout=soon', /not "soon"/],
      ['&live=yes', /live must be 1 or 0/],
      ['&timeout=5', /timeout goes with live=1/],
    ] as const) {
      const a = await send({ method: 'GET', path: `/v1/explain?port=p1&packet=${p}${q}` });
      expect(a.status, q).toBe(400);
      expect((a.json as { error: { message: string } }).error.message).toMatch(message);
    }
    expect(seen).toHaveLength(3);
  });
});
