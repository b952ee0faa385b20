/**
 * The agent's HTTP API as a client sees it (docs/agent.md): one request over its Unix socket with node:http,
 * and the same request as a `curl --unix-socket` command line (for narrations a reader can repeat).
 */
import { request, type Agent as HttpAgent } from 'node:http';

export interface Answer {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  text: string;
}

/**
 * One HTTP request over the agent's socket; a string body is sent as it is, anything else as JSON. `agent`: a
 * connection pool (e.g. kept-alive connections); default a new connection per request. `sent`: called once the
 * whole request has been handed to the kernel (it may still wait, unread, in the socket).
 */
export function call(socketPath: string, method: string, url: string, body?: unknown, timeoutMs = 20_000, agent?: HttpAgent, sent?: () => void): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    const req = request({ agent, socketPath, method, path: url, headers: data ? { 'content-type': 'application/json', 'content-length': data.length } : {}, timeout: timeoutMs }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => {
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = undefined;
        }
        resolve({ status: res.statusCode ?? 0, body: parsed, text });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: timeout`)));
    req.on('error', (err: NodeJS.ErrnoException) => {
      // A kept-alive connection the server closed as idle just as this request went out (a reset, or EPIPE when
      // the close came first: seen once in a 30 s churn run): the request never reached it, so sending it again
      // on a fresh connection is safe (node:http's documented retry).
      if (req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) call(socketPath, method, url, body, timeoutMs, agent, sent).then(resolve, reject);
      else reject(err);
    });
    if (sent) req.once('finish', sent);
    req.end(data);
  });
}

/** Single-quotes a word for a POSIX shell (a plain shell variable such as `$S` is left to expand). */
function shq(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) || /^\$\w+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The same request as {@link call} sends, as a `curl` command line (split over lines with `\` when long). */
export function curlLine(socketPath: string, method: string, url: string, body?: unknown): string {
  let head = `curl --unix-socket ${shq(socketPath)}`;
  if (method !== 'GET') head += ` -X ${method}`;
  const parts = [head];
  if (body !== undefined) {
    parts[0] += ` -H 'Content-Type: application/json'`;
    parts.push(`-d ${shq(typeof body === 'string' ? body : JSON.stringify(body))}`);
  }
  parts.push(shq(`http://localhost${url}`));
  const oneLine = parts.join(' ');
  return oneLine.length <= 110 ? oneLine : parts.join(' \\\n    ');
}
