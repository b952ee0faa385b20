#!/usr/bin/env node
/**
 * The portwall command line. Each command has --help; exit codes are the contract scripts rely on (docs/requirements.md, "Command-line contract").
 */
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';

import { Portwall, RECORD_IDLE_MAX_MS } from './apply/portwall.js';
import { teardown } from './apply/teardown.js';
import { COMMAND_HELP, GENERAL_USAGE, HELP, USAGE } from './cli-help.js';
import { PortwallError, isPortwallError } from './errors.js';
import { compilePolicy } from './compile/policy.js';
import { readConfigFile } from './model/config.js';
import { readStateFile, readStateText } from './model/load.js';
import { InvalidStateError, type Problem } from './model/problems.js';
import { DEFAULT_CONFIG, type Model, type PortwallConfig } from './model/types.js';
import { preflight } from './preflight.js';
import { renderIptables } from './render/iptables.js';
import { stateJsonSchema } from './model/emit-schema.js';
import { explain, packetText, type Explanation } from './explain.js';
import { explainLive, formatTrace, type LiveExplanation } from './trace.js';
import { narrowCounters, readCounters, type CounterReport } from './apply/counters.js';
import { DEFAULT_SOCKET } from './agent/socket-path.js';
import { request as httpRequest } from 'node:http';

/** A mistake in the command line: its message and the command's one usage line are printed, exit 2. */
/** `explain --live`: how long it waits for the packet by default, and at most (seconds). */
const DEFAULT_LIVE_TIMEOUT_MS = 10_000;
const MAX_LIVE_TIMEOUT_S = 300;

class UsageError extends Error {
  constructor(message: string, readonly command?: string) {
    super(message);
  }
}

/** Where a command reads and writes (the process by default; tests capture it). */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  stdin: AsyncIterable<unknown> | Iterable<unknown>;
}

const PROCESS_IO: Io = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  stdin: process.stdin,
};

type Options = NonNullable<ParseArgsConfig['options']>;

const BASE = { netns: { type: 'string' }, config: { type: 'string' }, help: { type: 'boolean', short: 'h' } } as const;
const OPTIONS = {
  apply: { ...BASE, json: { type: 'boolean' } },
  plan: { ...BASE, format: { type: 'string' }, 'detailed-exitcode': { type: 'boolean' } },
  status: { ...BASE, json: { type: 'boolean' }, port: { type: 'string' }, group: { type: 'string' }, state: { type: 'string' } },
  explain: { ...BASE, json: { type: 'boolean' }, port: { type: 'string' }, direction: { type: 'string' }, state: { type: 'string' }, socket: { type: 'string' }, live: { type: 'boolean' }, timeout: { type: 'string' } },
  teardown: BASE,
  schema: { help: BASE.help },
  demo: { help: BASE.help },
} as const satisfies Record<string, Options>;

/** Parses a command's arguments; `files` is how many positionals it takes (FILE). */
function options<O extends Options>(command: string, args: string[], opts: O, files: number) {
  let parsed;
  try {
    parsed = parseArgs({ args, allowPositionals: true, options: opts, strict: true });
  } catch (e) {
    // parseArgs appends a hint about '--' to its first sentence: one sentence is enough here.
    throw new UsageError((e as Error).message.replace(/\. To specify a positional argument[^]*$/, ''), command);
  }
  if (!(parsed.values as { help?: boolean }).help && parsed.positionals.length > files) {
    throw new UsageError(`unexpected argument "${parsed.positionals[files]}"`, command);
  }
  return parsed;
}

/** The settings of --config FILE, or the defaults. */
async function config(file: string | undefined): Promise<PortwallConfig> {
  return file === undefined ? DEFAULT_CONFIG : readConfigFile(file);
}

async function handle(values: { netns?: string; config?: string }): Promise<Portwall> {
  const cfg = await config(values.config);
  // A one-shot command exits right after its change, before any quiet period: no adopt record from a timer.
  return Portwall.open({ ...(values.netns === undefined ? {} : { netns: values.netns }), config: cfg, recordIdleMs: false });
}

/** Reads and validates FILE ("-": stdin); the keys the schema does not know are printed as warnings. */
async function readState(io: Io, command: string, file: string | undefined, config: PortwallConfig): Promise<Model> {
  if (file === undefined) throw new UsageError('missing FILE', command);
  let loaded;
  if (file !== '-') loaded = await readStateFile(file, config);
  else {
    let text = '';
    for await (const chunk of io.stdin) text += String(chunk);
    loaded = readStateText(text, config, 'stdin');
  }
  printWarnings(io, loaded.warnings);
  return loaded.model;
}

// One line each on stderr; they never change the exit code.
function printWarnings(io: Io, warnings: readonly Problem[]): void {
  for (const w of warnings) io.err(`warning: ${w.path}: ${w.message}\n`);
}

// The host's side (br_netfilter, devices): also warnings on stderr, after the state file's.
function printPreflight(io: Io, model: Model, netns: string | undefined): void {
  for (const w of preflight(model, { sameNamespace: netns === undefined })) io.err(`warning: ${w}\n`);
}

async function apply(io: Io, args: string[]): Promise<number> {
  const { values, positionals } = options('apply', args, OPTIONS.apply, 1);
  if (values.help) return help(io, 'apply');
  const pw = await handle(values);
  const model = await readState(io, 'apply', positionals[0], pw.config);
  printPreflight(io, model, values.netns);
  const r = await pw.apply(model);
  if (values.json) {
    io.out(`${JSON.stringify(r, null, 2)}\n`);
  } else if (!r.changed) {
    io.out('no changes: the kernel already matches\n');
  } else {
    io.out(`${r.plan}\n`);
    io.out(`applied ${r.operations} operations (+${r.elements.added}/-${r.elements.removed} elements) in one batch, generation ${r.genid}; ` +
      `conntrack: ${r.cleanup.deleted} entries deleted of ${r.cleanup.examined} examined\n`);
  }
  return 0;
}

async function explainCommand(io: Io, args: string[]): Promise<number> {
  const { values, positionals } = options('explain', args, OPTIONS.explain, 1);
  if (values.help) return help(io, 'explain');
  if (!values.port) throw new UsageError('explain needs --port ID', 'explain');
  if (positionals.length !== 1) throw new UsageError('explain needs one PACKET argument, e.g. "tcp 198.51.100.7:40000 -> 192.0.2.14:22"', 'explain');
  const direction = values.direction;
  if (direction !== undefined && direction !== 'ingress' && direction !== 'egress') throw new UsageError(`--direction ${direction}: use ingress or egress`, 'explain');
  if (values.state !== undefined && values.socket !== undefined) throw new UsageError('--state and --socket: give one', 'explain');
  if (values.timeout !== undefined && !values.live) throw new UsageError('--timeout goes with --live', 'explain');
  let timeoutMs: number | undefined;
  if (values.timeout !== undefined) {
    const t = Number(values.timeout);
    if (!(t > 0 && t <= MAX_LIVE_TIMEOUT_S)) throw new UsageError(`--timeout ${values.timeout}: seconds, more than 0 and at most ${MAX_LIVE_TIMEOUT_S}`, 'explain');
    timeoutMs = Math.round(t * 1000);
  }
  let answer: Explanation | LiveExplanation;
  if (values.state !== undefined) {
    const pw = await handle(values);
    try {
      const model = await readState(io, 'explain', values.state, pw.config);
      // The plan compiles the file anyway: its policy is the one explained.
      const p = await pw.plan(model);
      if (p.operations.length > 0) io.err(`warning: the kernel does not hold ${values.state} (${p.operations.length} operations differ): explaining the file, not what is programmed\n`);
      if (values.live) {
        // Ctrl-C ends the wait; the trace tables are removed before the answer is printed.
        const abort = new AbortController();
        const onSignal = (): void => abort.abort();
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        try {
          answer = await explainLive(p.ir, values.port, positionals[0]!, {
            netns: values.netns ?? null, tables: pw.config.tables, signal: abort.signal,
            onArmed: () => io.err(`tracing: send the packet now (waiting up to ${((timeoutMs ?? DEFAULT_LIVE_TIMEOUT_MS) / 1000).toFixed(0)} s)\n`),
            ...(direction ? { direction } : {}), ...(timeoutMs !== undefined ? { timeoutMs } : { timeoutMs: DEFAULT_LIVE_TIMEOUT_MS }),
          });
        } finally {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
        }
      } else {
        answer = explain(p.ir, values.port, positionals[0]!, direction);
      }
    } finally {
      await pw.close();
    }
  } else {
    if (values.netns !== undefined) throw new UsageError('--netns goes with --state (the agent answers for its own namespace)', 'explain');
    answer = await askAgent(values.socket ?? DEFAULT_SOCKET, values.port, positionals[0]!, direction, values.live ? timeoutMs ?? DEFAULT_LIVE_TIMEOUT_MS : undefined);
  }
  if (values.json) io.out(`${JSON.stringify(answer, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n`);
  else if ('live' in answer) io.out(formatTrace(answer.live, answer));
  else io.out(`${answer.direction} ${packetText(answer.packet)} at port ${answer.portId}: ${answer.why}\n`);
  if ('live' in answer) {
    if (!answer.live.trace) return 1;
    return answer.live.trace.verdict === 'accepted' ? 0 : 3;
  }
  return answer.allowed ? 0 : 3;
}

// GET /v1/explain from the agent over its socket.
function askAgent(socketPath: string, port: string, packet: string, direction: string | undefined, liveMs?: number): Promise<Explanation | LiveExplanation> {
  const live: Record<string, string> = liveMs === undefined ? {} : { live: '1', timeout: String(liveMs / 1000) };
  const q = new URLSearchParams({ port, packet, ...(direction ? { direction } : {}), ...live });
  return new Promise((resolve, reject) => {
    const req = httpRequest({ socketPath, method: 'GET', path: `/v1/explain?${q}`, timeout: 10_000 + (liveMs ?? 0) + 5000 }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => {
        let body: { error?: { code?: string; message?: string } } & Partial<Explanation>;
        try {
          body = JSON.parse(text);
        } catch {
          return reject(new PortwallError('ERR_SYSTEM', `the agent at ${socketPath} answered ${res.statusCode} without JSON`));
        }
        if (res.statusCode === 200) return resolve(body as Explanation);
        const code = body.error?.code === 'ERR_INVALID_VALUE' ? 'ERR_INVALID_VALUE' : body.error?.code === 'ERR_TRANSACTION_STATE' ? 'ERR_TRANSACTION_STATE' : 'ERR_SYSTEM';
        reject(new PortwallError(code, `the agent answered ${res.statusCode}: ${body.error?.message ?? text}`));
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => reject(new PortwallError('ERR_SYSTEM', `no agent at ${socketPath} (${e.message}); give --state FILE to explain a state file`)));
    req.end();
  });
}

async function plan(io: Io, args: string[]): Promise<number> {
  const { values, positionals } = options('plan', args, OPTIONS.plan, 1);
  if (values.help) return help(io, 'plan');
  const format = values.format ?? 'nft';
  if (format !== 'nft' && format !== 'iptables') throw new UsageError(`--format ${format}: use nft or iptables`, 'plan');
  if (format === 'iptables') {
    // The iptables rendering reads nothing from the kernel: a namespace or a comparison would be ignored.
    if (values.netns !== undefined) throw new UsageError('--format iptables reads no namespace: leave out --netns (load the output with ip netns exec NAME iptables-restore)', 'plan');
    if (values['detailed-exitcode']) throw new UsageError('--detailed-exitcode compares with the kernel; --format iptables prints the whole policy', 'plan');
    const cfg = await config(values.config);
    const r = renderIptables(compilePolicy(await readState(io, 'plan', positionals[0], cfg), cfg));
    io.out(`# ipset restore\n${r.ipsets}\n# iptables-restore\n${r.iptables}\n# ip6tables-restore\n${r.ip6tables}`);
    return 0;
  }
  const pw = await handle(values);
  const model = await readState(io, 'plan', positionals[0], pw.config);
  printPreflight(io, model, values.netns);
  const p = await pw.plan(model);
  io.out(p.text === '' ? '# no changes\n' : p.text);
  return values['detailed-exitcode'] && p.operations.length > 0 ? 2 : 0;
}

async function status(io: Io, args: string[]): Promise<number> {
  const { values } = options('status', args, OPTIONS.status, 0);
  if (values.help) return help(io, 'status');
  if (values.port !== undefined && values.group !== undefined) throw new UsageError('--port and --group: give one', 'status');
  const pw = await handle(values);
  try {
    const model = values.state === undefined ? undefined : await readState(io, 'status', values.state, pw.config);
    const s = await pw.status();
    const by = { ...(values.port !== undefined ? { port: values.port } : {}), ...(values.group !== undefined ? { group: values.group } : {}) };
    const counters = narrowCounters(readCounters(s.objects, model), by);
    if (values.json) {
      io.out(`${JSON.stringify({ ...s, counters }, jsonBytes, 2)}\n`);
      return 0;
    }
    if (s.tables.length === 0) io.out('no portwall tables\n');
    for (const t of s.tables) io.out(`table ${t.family} ${t.name}\n`);
    const c = s.counts;
    io.out(`${c.chains} chains, ${c.rules} rules, ${c.sets} sets, ${c.elements} elements (generation ${s.genid})\n`);
    printCounters(io, counters, by);
    return 0;
  } finally {
    await pw.close();
  }
}

function printCounters(io: Io, c: CounterReport, by: { port?: string; group?: string }): void {
  const scope = by.port !== undefined ? ` of port ${by.port}` : by.group !== undefined ? ` of group ${by.group}` : '';
  if (by.port !== undefined && c.profiles.length === 0) io.out(`port ${by.port}: not filtered here (unknown, or port security off)\n`);
  for (const p of by.port !== undefined ? c.profiles : []) io.out(`rule profile ${p.id} (${p.label}), shared by ${p.ports.length} port${p.ports.length === 1 ? '' : 's'}\n`);
  io.out(`security-group rule hits${scope} (packets, bytes):\n`);
  if (c.rules.length === 0) io.out('  none\n');
  for (const r of c.rules) io.out(`  ${r.ruleId}${r.groupId === undefined ? '' : ` (${r.groupId})`}: ${r.packets} packets, ${r.bytes} bytes\n`);
  const hit = c.steps.filter((s) => s.packets > 0);
  io.out(`drops per policy step (host-wide; ${c.steps.length - hit.length} steps with none):\n`);
  for (const s of hit) io.out(`  ${s.family} ${s.table} ${s.chain}: ${s.step || 'unnamed'}: ${s.packets} packets, ${s.bytes} bytes\n`);
}

async function removeAll(io: Io, args: string[]): Promise<number> {
  const { values } = options('teardown', args, OPTIONS.teardown, 0);
  if (values.help) return help(io, 'teardown');
  const r = await teardown({ ...(values.netns === undefined ? {} : { netns: values.netns }), config: await config(values.config) });
  if (r.tables.length === 0) io.out('no portwall tables\n');
  else io.out(`deleted ${r.tables.map((t) => `table ${t.family} ${t.name}`).join(', ')} in one batch, generation ${r.genid}\n`);
  if (r.ipsets.length > 0) io.out(`destroyed ipsets ${r.ipsets.join(', ')}\n`);
  for (const name of r.inUse) io.err(`portwall: ipset ${name} is kept: an iptables rule still references it\n`);
  return r.inUse.length > 0 ? 1 : 0;
}

function help(io: Io, command: string): number {
  io.out(`${COMMAND_HELP[command]}\n`);
  return 0;
}

/**
 * Runs one command line; resolves with the exit code. Errors are printed, never thrown: an invalid state or a
 * refused batch is exit 1 (the message names the object and field), a usage error exit 2.
 */
export async function run(argv: string[], io: Io = PROCESS_IO): Promise<number> {
  try {
    return await dispatch(io, argv);
  } catch (err) {
    if (err instanceof UsageError) {
      const usage = err.command === undefined ? GENERAL_USAGE : `${USAGE[err.command]}  (portwall ${err.command} --help)`;
      io.err(`portwall: ${err.message}\nusage: ${usage}\n`);
      return 2;
    }
    if (err instanceof InvalidStateError) printWarnings(io, err.warnings);
    if (isPortwallError(err)) io.err(`portwall: ${err.code}: ${err.message}\n${privilegeHint(err)}`);
    else io.err(`portwall: ${err instanceof Error ? err.stack : String(err)}\n`);
    return 1;
  }
}

// EPERM from netlink or setns: say which privilege is missing instead of leaving "Operation not permitted".
function privilegeHint(err: PortwallError): string {
  if (err.errnoName !== 'EPERM' && err.errno !== 1) return '';
  if (err.code === 'ERR_NETNS') return 'portwall: entering a network namespace needs CAP_SYS_ADMIN (run as root)\n';
  return 'portwall: netlink to nftables, ipset and conntrack needs CAP_NET_ADMIN (run as root, or grant the process CAP_NET_ADMIN)\n';
}

async function dispatch(io: Io, argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined) throw new UsageError('missing COMMAND');
  if (command === '--help' || command === '-h' || command === 'help') {
    io.out(`${HELP}\n`);
    return 0;
  }
  if (command === '--version' || command === '-V') {
    io.out(`${version()}\n`);
    return 0;
  }
  switch (command) {
    case 'apply':
      return apply(io, rest);
    case 'plan':
      return plan(io, rest);
    case 'status':
      return status(io, rest);
    case 'explain':
      return explainCommand(io, rest);
    case 'teardown':
      return removeAll(io, rest);
    case 'agent':
      return agent(io, rest);
    case 'schema':
      if (options('schema', rest, OPTIONS.schema, 0).values.help) return help(io, 'schema');
      io.out(stateJsonSchema());
      return 0;
    case 'demo': {
      if (options('demo', rest, OPTIONS.demo, 0).values.help) return help(io, 'demo');
      // The demo lives outside src/: it is a harness that runs `ip` and `ping`, which the product never does.
      const demo = await sourceCheckoutOnly(io, 'demo', () => import('../demo/run.js'));
      return demo ? ((await demo.runDemo()) ? 0 : 1) : 1;
    }
    case 'bench': {
      if (rest.includes('--help') || rest.includes('-h')) return help(io, 'bench');
      // Like the demo, the benchmark is a harness outside src/ (it runs ip, nft, iptables-restore, ...).
      const bench = await sourceCheckoutOnly(io, 'bench', () => import('../bench/sg.js'));
      return bench ? bench.runBench(rest) : 1;
    }
    default:
      if (command.startsWith('-')) throw new UsageError(`unknown option "${command}" (options follow the COMMAND)`);
      throw new UsageError(`unknown command "${command}"`);
  }
}

// The demo and the benchmark are harnesses of the source tree; the npm package leaves them out.
async function sourceCheckoutOnly<T>(io: Io, what: string, load: () => Promise<T>): Promise<T | undefined> {
  try {
    return await load();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err;
    io.err(`portwall: the ${what} is not part of the npm package; run it from a source checkout (npm run ${what})\n`);
    return undefined;
  }
}

/** The package's version, from the package.json above this file (src/ and dist/src/ both work). */
function version(): string {
  for (let dir = path.dirname(fileURLToPath(import.meta.url)); ; dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'portwall' && pkg.version) return pkg.version;
    }
    if (path.dirname(dir) === dir) return 'unknown';
  }
}

const AGENT_OPTIONS = {
  ...BASE,
  state: { type: 'string' },
  socket: { type: 'string' },
  metrics: { type: 'string' },
  'log-level': { type: 'string' },
  'check-interval': { type: 'string' },
  'record-idle-ms': { type: 'string' },
  'drop-log': { type: 'boolean' },
  'body-limit': { type: 'string' },
} as const;

async function agent(io: Io, args: string[]): Promise<number> {
  const { values } = options('agent', args, AGENT_OPTIONS, 0);
  if (values.help) return help(io, 'agent');
  const level = values['log-level'] ?? 'info';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace'].includes(level)) throw new UsageError(`--log-level: unknown level "${level}"`, 'agent');
  const number = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v)) throw new UsageError(`--${name} must be a whole number, not "${v}"`, 'agent');
    return Number(v);
  };
  const every = number('check-interval', values['check-interval']);
  const bodyLimit = number('body-limit', values['body-limit']);
  const recordIdleMs = number('record-idle-ms', values['record-idle-ms']);
  if (recordIdleMs !== undefined && recordIdleMs > RECORD_IDLE_MAX_MS) throw new UsageError(`--record-idle-ms must be at most ${RECORD_IDLE_MAX_MS}`, 'agent');
  const cfg = await config(values.config);
  // The host's problems, once, before the JSON log starts (an invalid file is the agent's to report). The
  // file read here is the one the agent starts from: not read and validated twice.
  const loaded = values.state === undefined ? undefined : await readStateFile(values.state, cfg).catch(() => undefined);
  if (loaded) printPreflight(io, loaded.model, values.netns);
  const { pino } = await import('pino');
  const { startAgent } = await import('./agent/agent.js');
  const logger = pino({ level, base: { pid: process.pid } });
  const running = await startAgent({
    netns: values.netns, config: cfg, stateFile: values.state, ...(loaded ? { loadedState: loaded } : {}), socketPath: values.socket, metricsAddress: values.metrics, logger,
    checkIntervalMs: every === undefined ? undefined : every * 1000, recordIdleMs, bodyLimit, dropLog: values['drop-log'] ?? false,
  });
  await new Promise<void>((done) => {
    const stop = (signal: string) => {
      logger.info({ event: 'stop', signal }, 'stopping; the rules stay in place');
      running.stop().then(done, done);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => void running.reload());
  });
  return 0;
}

// bigint handles and byte arrays print as strings / hex.
function jsonBytes(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  return value;
}

// Run when executed (bin/portwall), not when imported (tests call run()).
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  // A reader that stops early (portwall status --json | head -1) closes the pipe: nothing more to say.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    process.exit(0);
  });
  run(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
