/**
 * The datapath case's TCP peers, each bounded in time (and the clients in count or bytes):
 *
 *   node dist/bench/tcp-peer.js server --port 80 --seconds 600
 *     answers every connection with "ok" and closes it (the server closes first, so TIME_WAIT stays on the
 *     server and the client's ephemeral ports are free again at once); prints "ready" once listening. A line
 *     "sink" on its stdin switches it to reading each connection to its end and answering the byte count
 *     ("accept" switches back); it prints "mode sink" / "mode accept" once switched.
 *   node dist/bench/tcp-peer.js client --host H --port 80 --seconds 3 --max 60000 --concurrency 32
 *     opens connections back to back from `concurrency` workers, each waiting for "ok" and the server's FIN;
 *     prints one JSON line {connections, failures, elapsedMs, rate}.
 *   node dist/bench/tcp-peer.js bulk --host H --port 80 --seconds 2 --bytes 2000000000
 *     one connection to a sink: writes until `bytes` are sent or `seconds` passed, half-closes, waits for the
 *     count the server read; prints one JSON line {bytes, elapsedMs, mbps} (Mbit/s of the bytes the server read).
 *
 * Node rather than netprobe.py: a new connection must cost as little user time as possible, or the
 * firewall's share of it disappears in the noise.
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

const { positionals, values: args } = parseArgs({
  allowPositionals: true,
  options: {
    host: { type: 'string', default: '::' },
    port: { type: 'string', default: '80' },
    seconds: { type: 'string', default: '3' },
    max: { type: 'string', default: '60000' },
    concurrency: { type: 'string', default: '32' },
    'timeout-ms': { type: 'string', default: '2000' },
    bytes: { type: 'string', default: '1000000000' },
  },
});
const port = Number(args.port);
const seconds = Number(args.seconds);

if (positionals[0] === 'server') {
  let sink = false;
  const server = net.createServer((s) => {
    s.on('error', () => {});
    if (!sink) {
      s.end('ok');
      return;
    }
    let n = 0;
    s.on('data', (d: Buffer) => { n += d.length; });
    s.on('end', () => s.end(String(n)));
  });
  server.listen({ port, host: args.host, backlog: 4096 }, () => console.log('ready'));
  process.stdin.setEncoding('utf8').on('data', (d: string) => {
    for (const line of d.split('\n').map((l) => l.trim()).filter(Boolean)) {
      sink = line === 'sink';
      console.log(`mode ${sink ? 'sink' : 'accept'}`);
    }
  });
  setTimeout(() => process.exit(0), seconds * 1000).unref();
} else if (positionals[0] === 'client') {
  await client();
} else if (positionals[0] === 'bulk') {
  await bulk();
} else {
  console.error('usage: tcp-peer.js server|client|bulk [options]');
  process.exit(2);
}

/** One stream to a sink, bounded in bytes and in time. */
async function bulk(): Promise<void> {
  const limit = Number(args.bytes);
  const chunk = Buffer.alloc(256 * 1024, 0x61);
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  const result = await new Promise<{ bytes: number; elapsedMs: number }>((resolve, reject) => {
    const s = net.connect({ host: args.host, port });
    const guard = setTimeout(() => s.destroy(new Error('no answer from the sink')), seconds * 1000 + Number(args['timeout-ms']));
    let sent = 0;
    let ended = false;
    let answer = '';
    const pump = () => {
      while (!ended && sent < limit && performance.now() < deadline) {
        const n = Math.min(chunk.length, limit - sent);
        sent += n;
        if (!s.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return; // 'drain' resumes
      }
      if (!ended) s.end();
      ended = true;
    };
    s.on('connect', pump);
    s.on('drain', pump);
    s.on('data', (d: Buffer) => { answer += d.toString(); });
    s.on('end', () => {
      clearTimeout(guard);
      resolve({ bytes: Number(answer), elapsedMs: performance.now() - t0 });
    });
    s.on('error', (e) => {
      clearTimeout(guard);
      reject(e);
    });
  });
  const mbps = (result.bytes * 8) / (result.elapsedMs / 1000) / 1e6;
  console.log(JSON.stringify({ bytes: result.bytes, elapsedMs: Math.round(result.elapsedMs), mbps: Math.round(mbps) }));
}

async function client(): Promise<void> {
  const max = Number(args.max);
  const timeoutMs = Number(args['timeout-ms']);
  const deadline = performance.now() + seconds * 1000;
  let started = 0;
  let connections = 0;
  let failures = 0;
  const one = () => new Promise<boolean>((resolve) => {
    const s = net.connect({ host: args.host, port, noDelay: true });
    let data = '';
    let settled = false;
    const done = (ok: boolean) => {
      if (settled) return;
      settled = true;
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.on('data', (d: Buffer) => { data += d.toString(); });
    s.on('end', () => done(data === 'ok'));
    s.on('error', () => done(false));
    s.on('close', () => done(data === 'ok'));
  });
  const worker = async () => {
    while (performance.now() < deadline && started < max) {
      started++;
      if (await one()) connections++;
      else failures++;
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: Number(args.concurrency) }, worker));
  const elapsedMs = performance.now() - t0;
  console.log(JSON.stringify({ connections, failures, elapsedMs: Math.round(elapsedMs), rate: Math.round(connections / (elapsedMs / 1000)) }));
}
