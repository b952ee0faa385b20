/**
 * Hostile input against the real kernel: a sample of the generated hostile edits
 * (test/helpers/hostile.ts) through a handle in a namespace, and hostile bodies, malformed HTTP and
 * connections from a non-root user through the agent's API (the agent in-process, its socket in a temp dir).
 * Each is applied correctly or refused naming its fields; after a refusal the kernel's tables are exactly as
 * before (listings compared); nothing answers 500; the agent serves on afterwards.
 *
 * Seeded: PW_HOSTILE_SEED (default: time-based); PW_HOSTILE_KERNEL (edits and requests, default 150 each).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { testSeed } from '../helpers/prng.js';

import { startAgent, type Agent } from '../../src/agent/agent.js';
import { withoutRecord } from '../../src/apply/adopt-record.js';
import { Portwall } from '../../src/apply/portwall.js';
import { DEFAULT_CONFIG } from '../../src/model/types.js';
import { InvalidStateError } from '../../src/model/problems.js';
import { openNft } from '../../src/nft/client.js';
import { call } from '../helpers/agent-api.js';
import { comparable, json } from '../helpers/compare.js';
import { allNamed, baseObject, baseState, hostileState, jsonText, mutate, rng } from '../helpers/hostile.js';
import { Netns, isRoot } from '../helpers/netns.js';

const SEED = testSeed('PW_HOSTILE_SEED', 341097);
const COUNT = Number(process.env.PW_HOSTILE_KERNEL ?? 150);
const why = (what: string, i: number) => `seed ${SEED}, ${what} ${i} (PW_HOSTILE_SEED=${SEED} reproduces it)`;

/** portwall's tables as listed, without the adopt record (bookkeeping the agent writes once quiet, not policy). */
async function listing(netns: string): Promise<string> {
  const nft = openNft({ netns });
  const tables = await Promise.all(['portwall', 'portwall_raw', 'portwall_nat'].map((table) => nft.list({ table })));
  return json(comparable(withoutRecord(tables.flatMap((t) => t.objects), DEFAULT_CONFIG)));
}

describe.skipIf(!isRoot)('hostile input against the kernel', () => {
  let ns: Netns;
  let dir: string;
  beforeAll(() => {
    ns = new Netns('hostile');
    dir = mkdtempSync(path.join(tmpdir(), 'pw-hostile-'));
    // Traversable by anyone, so that only the socket's own mode keeps other users out.
    chmodSync(dir, 0o755);
  });
  afterAll(() => {
    ns?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  test(`${COUNT} hostile edits through a handle: applied correctly, or refused by name with the kernel unchanged (seed ${SEED})`, async () => {
    const r = rng(SEED);
    const pw = Portwall.open({ netns: ns.name, profileGc: false });
    await pw.apply(baseState());
    const counts = { tried: 0, refused: 0, applied: 0, crashes: 0 };
    const bad: string[] = [];
    for (let i = 0; i < COUNT; i++) {
      const kind = r.pick(['port', 'port', 'group', 'floatingip'] as const);
      let obj: unknown = baseObject(r, kind, i);
      for (let k = r.int(3); k > 0; k--) obj = mutate(r, obj, false).doc;
      const before = await listing(ns.name);
      counts.tried++;
      try {
        if (kind === 'port') await pw.upsertPort(obj);
        else if (kind === 'group') await pw.upsertGroup(obj);
        else await pw.upsertFloatingIp(obj);
        counts.applied++;
      } catch (e) {
        if (!(e instanceof InvalidStateError) || !allNamed(e.problems)) {
          counts.crashes++;
          bad.push(`${why('edit', i)}: ${String(e).slice(0, 300)}`);
        } else {
          counts.refused++;
          if ((await listing(ns.name)) !== before) bad.push(`${why('edit', i)}: refused, yet the kernel changed`);
        }
      }
    }
    // Applied correctly: once the unused profiles are collected, the kernel is a fresh compile of the handle's
    // state — a resync (list, rebuild, diff) finds nothing to change.
    await pw.collectProfiles();
    const resync = await pw.resync();
    await pw.close();
    expect(resync.plan.split('\n').filter((l) => l !== ''), why('run', 0)).toEqual([]);
    console.log(`[hostile/kernel] seed ${SEED}: ${counts.tried} edits tried: ${counts.refused} rejected with named fields, ${counts.applied} applied, ${counts.crashes} crashes`);
    expect(bad.slice(0, 5)).toEqual([]);
  });

  describe('the agent', () => {
    let agent: Agent;
    let socketPath: string;
    beforeAll(async () => {
      const stateFile = path.join(dir, 'state.json');
      socketPath = path.join(dir, 'run', 'portwall.sock');
      writeFileSync(stateFile, JSON.stringify(baseState()));
      agent = await startAgent({ netns: ns.name, stateFile, socketPath, logger: pino({ level: 'silent' }), checkIntervalMs: 0 });
    });
    afterAll(async () => {
      await agent?.stop();
    });

    test(`${COUNT} hostile bodies: 200, or 400 naming every problem with the kernel unchanged; never a 500 (seed ${SEED})`, async () => {
      const r = rng(SEED + 2);
      const counts = { tried: 0, refused: 0, applied: 0, crashes: 0 };
      const bad: string[] = [];
      const heapBefore = process.memoryUsage().heapUsed / 2 ** 20;
      for (let i = 0; i < COUNT; i++) {
        const kind = r.pick(['state', 'port', 'port', 'group', 'floatingip'] as const);
        let body: unknown;
        let url: string;
        let undecodable = false;
        if (kind === 'state') {
          body = hostileState(r, true).doc;
          url = '/v1/state';
        } else {
          body = baseObject(r, kind, i);
          for (let k = r.int(3); k > 0; k--) body = mutate(r, body, true).doc;
          const id = (body as { id?: unknown } | null)?.id;
          const route = kind === 'port' ? 'ports' : kind === 'group' ? 'security-groups' : 'floatingips';
          // An empty id has no path (`/v1/ports/` is no route, 404): such a body goes to an odd id instead.
          const segment = pathId(typeof id === 'string' && id !== '' && r.chance(0.8) ? id : `odd-${i}`);
          url = `/v1/${route}/${segment.text}`;
          undecodable = !segment.valid;
        }
        const text = jsonText(body) ?? 'null';
        // The agent's profile collector changes the tables on its own after a quiet second: done first.
        await agent.core.handle.collectProfiles();
        const before = await listing(ns.name);
        counts.tried++;
        const a = await call(socketPath, 'PUT', url, text, 60_000);
        if (a.status === 200) counts.applied++;
        else if (a.status === 400 && a.body?.error?.code === 'ERR_INVALID_STATE' && allNamed(a.body.error.problems)) {
          counts.refused++;
          if ((await listing(ns.name)) !== before) bad.push(`${why('request', i)}: PUT ${url.slice(0, 80)} refused, yet the kernel changed`);
        } else if (a.status === 413) counts.refused++; // over the body limit: refused unread, by size
        else if (a.body?.error?.code === 'ERR_BAD_REQUEST' && ((undecodable && a.status === 400) || a.status === 431)) {
          // The path is refused before any body is read: an id with a lone surrogate has no percent-encoding (400),
          // an id of 70 000 characters puts the request line over Node's header limit (431).
          counts.refused++;
          if ((await listing(ns.name)) !== before) bad.push(`${why('request', i)}: PUT ${url.slice(0, 80)} refused, yet the kernel changed`);
        }
        else {
          counts.crashes++;
          bad.push(`${why('request', i)}: PUT ${url.slice(0, 80)} answered ${a.status} ${a.text.slice(0, 300)}`);
        }
      }
      const heapAfter = process.memoryUsage().heapUsed / 2 ** 20;
      console.log(`[hostile/agent] seed ${SEED}: ${counts.tried} requests tried: ${counts.refused} rejected with named fields, ${counts.applied} applied, ` +
        `${counts.crashes} crashes (500s); heap ${heapBefore.toFixed(1)} → ${heapAfter.toFixed(1)} MB`);
      expect(bad.slice(0, 5)).toEqual([]);
      expect((await call(socketPath, 'GET', '/v1/status')).status).toBe(200);
    });

    test('malformed HTTP is answered 4xx (or the connection closed), changes nothing, and the agent serves on', async () => {
      await agent.core.handle.collectProfiles();
      const before = await listing(ns.name);
      const garbage = [
        'GARBAGE\r\n\r\n',
        'GET\r\n\r\n',
        'PUT /v1/ports/p1 HTTP/9.9\r\nHost: x\r\n\r\n',
        'PUT /v1/ports/p1 HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}',
        'PUT /v1/ports/p1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}',
        'PUT /v1/ports/p1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n',
        'PUT /v1/ports/p1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\n{}\r\n0\r\n\r\n',
        `GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(100_000)}\r\n\r\n`,
        'GET /v1/status HTTP/1.1\r\nHo\u0000st: x\r\n\r\n',
        'GET /v1/st\u0000atus HTTP/1.1\r\nHost: x\r\n\r\n',
        'GET /v1/ports/%ZZ HTTP/1.1\r\nHost: x\r\n\r\n',
        `GET /${'%2e%2e/'.repeat(2000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
        'DELETE /v1/ports/%ED%A0%80 HTTP/1.1\r\nHost: x\r\n\r\n',
        'PUT /v1/state HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\n\xff\xfe{}',
        '\r\n\r\n\r\n',
        '\u0016\u0003\u0001\u0000\u00a5\u0001\u0000\u0000\u00a1\u0003\u0003', // a TLS ClientHello
      ];
      const answers: string[] = [];
      for (const text of garbage) answers.push(await raw(socketPath, Buffer.from(text, 'latin1')));
      for (const [k, a] of answers.entries()) {
        const status = /^HTTP\/1\.1 (\d{3}) /.exec(a)?.[1];
        expect(status === undefined || /^4\d\d$/.test(status), `${JSON.stringify(garbage[k]!.slice(0, 60))} → ${a.slice(0, 120)}`).toBe(true);
      }
      expect(answers.filter((a) => a.startsWith('HTTP/1.1 4')).length).toBeGreaterThan(garbage.length / 2);
      expect(await listing(ns.name)).toBe(before);
      expect((await call(socketPath, 'GET', '/v1/status')).status).toBe(200);
    });

    test('a user other than the owner cannot connect: the socket is mode 0600 (with 0666 the same client gets in)', () => {
      const client = `const s=require('net').createConnection(${JSON.stringify(socketPath)});s.on('connect',()=>{console.log('connected');s.destroy()});s.on('error',(e)=>console.log(e.code))`;
      const asNobody = () => spawnSync('setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups', process.execPath, '-e', client], { encoding: 'utf8', timeout: 10_000 });
      const refused = asNobody();
      expect(refused.stdout.trim(), refused.stderr).toBe('EACCES');
      chmodSync(socketPath, 0o666);
      try {
        expect(asNobody().stdout.trim()).toBe('connected');
      } finally {
        chmodSync(socketPath, 0o600);
      }
    });
  });
});

/** A path segment for an id; one that cannot be percent-encoded (a lone surrogate) is sent raw-escaped. */
/** An id as a path segment; `valid: false` when it has no percent-encoding (a lone surrogate: `escape`'s `%uD800`). */
function pathId(id: string): { text: string; valid: boolean } {
  try {
    return { text: encodeURIComponent(id), valid: true };
  } catch {
    return { text: escape(id), valid: false };
  }
}

/** Writes bytes on a fresh connection and collects what comes back until the server closes it (5 s at most). */
function raw(socketPath: string, bytes: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const c = createConnection(socketPath);
    let out = '';
    const done = () => {
      clearTimeout(timer);
      c.destroy();
      resolve(out);
    };
    const timer = setTimeout(done, 5000);
    c.on('data', (d: Buffer) => {
      out += d.toString('latin1');
      // A complete answer to one request is all there is to see.
      if (/\r\n\r\n/.test(out) && /content-length: (\d+)/i.test(out)) {
        const len = Number(/content-length: (\d+)/i.exec(out)![1]);
        if (Buffer.byteLength(out.slice(out.indexOf('\r\n\r\n') + 4), 'latin1') >= len) done();
      }
    });
    c.on('error', done);
    c.on('close', done);
    c.write(bytes);
  });
}
