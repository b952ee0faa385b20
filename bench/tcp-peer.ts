/**
 * The datapath case's TCP peers, each bounded in time (and the client in count):
 *
 *   node dist/bench/tcp-peer.js server --port 80 --seconds 600
 *     answers every connection with "ok" and closes it (the server closes first, so TIME_WAIT stays on the
 *     server and the client's ephemeral ports are free again at once); prints "ready" once listening.
 *   node dist/bench/tcp-peer.js client --host H --port 80 --seconds 3 --max 60000 --concurrency 32
 *     opens connections back to back from `concurrency` workers, each waiting for "ok" and the server's FIN;
 *     prints one JSON line {connections, failures, elapsedMs, rate}.
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
  },
});
const port = Number(args.port);
const seconds = Number(args.seconds);

if (positionals[0] === 'server') {
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.end('ok');
  });
  server.listen({ port, host: args.host, backlog: 4096 }, () => console.log('ready'));
  setTimeout(() => process.exit(0), seconds * 1000).unref();
} else if (positionals[0] === 'client') {
  await client();
} else {
  console.error('usage: tcp-peer.js server|client [options]');
  process.exit(2);
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
