#!/usr/bin/env node
/**
 * The portwall command line. Each command has --help; exit codes are the contract scripts rely on (docs/requirements.md, "Command-line contract").
 */
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

import { Portwall } from './apply/portwall.js';
import { PortwallError } from './errors.js';
import { compilePolicy } from './compile/policy.js';
import { readStateFile, readStateText } from './model/load.js';
import { InvalidStateError, type Problem } from './model/problems.js';
import type { Model, PortwallConfig } from './model/types.js';
import { renderIptables } from './render/iptables.js';
import { stateJsonSchema } from './model/emit-schema.js';
import { explain, packetText, type Explanation } from './explain.js';
import { narrowCounters, readCounters, type CounterReport } from './apply/counters.js';
import { DEFAULT_SOCKET } from './agent/socket-path.js';
import { request as httpRequest } from 'node:http';

const EXIT_CODES = `Exit codes:
  0  success (apply: the kernel matches FILE; plan: the changes were printed)
  1  failure: an invalid state file (every bad object and field is named on stderr; nothing was applied),
     or the kernel refused the batch (nothing was applied), or a system error
  2  usage error (unknown command or option, missing FILE, unsupported --format)`;

const HELP = `portwall — security groups programmed directly over netlink

Usage:
  portwall apply [--netns NAME] FILE                     make the kernel match the state FILE ("-" = stdin)
  portwall plan [--netns NAME] [--format nft|iptables] FILE
                                                         print the changes apply would make, without applying
  portwall status [--netns NAME] [--port ID | --group ID] [--state FILE] [--json]
                                                         what portwall's tables hold, rule hits, drops per step
  portwall explain --port ID [--state FILE | --socket PATH] [--netns NAME] [--direction D] [--json] PACKET
                                                         which rule or policy step admits or drops PACKET
  portwall agent [--netns NAME] [--state FILE] [--socket PATH] [--metrics HOST:PORT]
                                                         the long-running agent with its HTTP API (root)
  portwall schema                                        print the state file's JSON Schema
  portwall demo                                          the built-in demo in its own namespaces (root)
  portwall bench [--quick] [--sizes 100,1000,5000] [--out DIR]
                                                         the side-by-side security-group benchmark (root)
  portwall COMMAND --help                                help for one command

${EXIT_CODES}`;

const COMMAND_HELP: Record<string, string> = {
  explain: `portwall explain --port ID [--state FILE | --socket PATH] [--netns NAME] [--direction ingress|egress] [--json] PACKET

Says whether port ID's policy admits PACKET and which step decides: the security-group rule (its id, group
and what it allows), or a base-policy step (anti-spoof, DHCP, neighbour discovery, router advertisements, a
layer-2 guard, the default drop). PACKET is one argument:
  "tcp 198.51.100.7:40000 -> 192.0.2.14:22"      tcp, udp, sctp, udplite, dccp: both ports
  "icmp 198.51.100.7 -> 192.0.2.14 type 8"       icmp, icmpv6: type and code (default echo request)
  "udp [2001:db8::7]:5353 -> [2001:db8:a::14]:53"   IPv6 addresses in brackets before a port
  "... mac fa:16:3e:00:00:01"                    the source MAC, for anti-spoof
The direction is ingress when the destination is the port's address, egress when the source is; give
--direction when neither or both are.

Where the policy comes from:
  --socket PATH  the running agent's programmed state (GET /v1/explain); the default, at ${DEFAULT_SOCKET}
  --state FILE   the state file; the kernel of --netns is compared with it first, and a difference is a
                 warning on stderr (the answer is then about FILE, not about what is programmed)

Options:
  --json        print the answer as JSON

Exit codes:
  0  the packet is allowed
  3  the packet is dropped
  1  failure (unknown port, a packet that does not parse, an invalid state file, no agent)
  2  usage error`,
  apply: `portwall apply [--netns NAME] [--json] FILE

Validates the state FILE (JSON in Neutron's shapes, see schema/state.schema.json), compiles it, compares it
with portwall's nftables tables in the namespace and commits the difference as one atomic batch; then deletes
the conntrack entries of flows the new policy no longer admits (in the affected ports' zones only). Running it
twice changes nothing the second time. FILE "-" reads stdin. Keys the schema does not know (a misspelt field,
the openstack CLI's column names) are ignored and printed on stderr, one line each:
  warning: PATH: unknown key, ignored (did you mean remote_ip_prefix?)
They do not change the exit code.

Options:
  --netns NAME  the network namespace (a name under /run/netns or a path); default: the current one
  --json        print the result as JSON

${EXIT_CODES}`,
  plan: `portwall plan [--netns NAME] [--format nft|iptables] FILE

Prints what apply would change, without changing anything. Keys of FILE the schema does not know are printed
on stderr as "warning: PATH: ..." lines, as apply prints them.
  --format nft       (default) the batch as nft -f commands
  --format iptables  the whole compiled policy as Neutron-style iptables-restore input

${EXIT_CODES}`,
  status: `portwall status [--netns NAME] [--port ID | --group ID] [--state FILE] [--json]

Lists portwall's tables over netlink: tables and counts of chains, rules, sets and elements; the kernel's hit
counters per security-group rule (packets, bytes) and the drops per base-policy step (anti-spoof, DHCP, the
default drop, …). --json prints every object (handles and byte strings as strings) and "counters".

Options:
  --port ID     the rule hits of the port's rule profile (ports with the same groups share one: the count
                of ports sharing it is printed)
  --group ID    the rule hits of one group (with --state, exactly its rules; without, every rule of a rule
                profile the group is in)
  --state FILE  the state file, to name each rule's group (the kernel keeps only the rule id)

${EXIT_CODES}`,
  agent: `portwall agent [--netns NAME] [--state FILE] [--socket PATH] [--metrics HOST:PORT]
               [--log-level LEVEL] [--check-interval SECONDS] [--body-limit BYTES]

Runs until SIGTERM or SIGINT, which stop it and leave the rules in place. On start it adopts what portwall's
tables hold (no flush, no traffic gap) and makes them match FILE; SIGHUP, or a change of FILE, reloads FILE
through the same incremental diff (an invalid file is logged and the running state kept). Keys the schema does
not know are logged at warn, one line each; in API answers they are listed in "warnings". Changes also come
through the HTTP/1.1 + JSON API on a Unix socket (mode 0600; see docs/agent.md for every route):
  GET /v1/status   PUT /v1/state   PUT|DELETE /v1/ports/{id}   PUT|DELETE /v1/security-groups/{id}
  PUT|DELETE /v1/floatingips/{id}   GET /v1/explain?port=ID&packet=TEXT   GET /metrics
e.g. curl --unix-socket /run/portwall/portwall.sock http://portwall/v1/status
Requests arriving together are committed as one batch; each caller gets its own answer after the commit.
When anyone else changes portwall's tables (nft flush ruleset, nft delete table, a rule or element edited by
hand), the agent hears it from nftables' netlink events and puts its state back, typically within
milliseconds; every --check-interval it also checks whether anyone committed, and if so compares the whole state.
Logs are JSON lines on stdout (one per commit, drift repair, reload and error).

Options:
  --netns NAME             the network namespace (a name under /run/netns or a path); default: the current one
  --state FILE             the desired state (JSON, see schema/state.schema.json); without it the agent waits
                           for PUT /v1/state
  --socket PATH            the API socket (default /run/portwall/portwall.sock; its directory is created)
  --metrics HOST:PORT      also serve GET /metrics over TCP on this address
  --log-level LEVEL        fatal, error, warn, info (default), debug or trace
  --check-interval SECONDS the periodic check (default 60; 0 turns it off)
  --body-limit BYTES       the largest request body (default 8388608); larger ones are answered 413

Exit codes: 0 stopped by a signal; 1 the state file was invalid or unreadable, or the socket could not be
served (nothing was applied); 2 usage error.`,
  schema: 'portwall schema: prints the JSON Schema of the state file (the same as schema/state.schema.json in the package).',
  demo: `portwall demo (root)

Builds a compute host with two VMs and an outside client in fresh network namespaces and runs the agent on it,
in this process (its API on a Unix socket in a temporary directory, its JSON log in a file there). It narrates,
with timings: the agent starting from a state file; a security group changed through the API (with the
equivalent curl command line); a running ping cut when its rule is removed through the API; \`nft flush
ruleset\` in the host's namespace repaired by the agent from nftables' events; a restart of the agent while a
ping runs, without a lost packet or a new generation; invalid input answered 400 with its problems, nothing
applied. Every step checks traffic allowed and blocked (rules, a remote group, anti-spoofing) and prints
"as expected" or "UNEXPECTED". At the end it stops the agent and removes the namespaces and the files. It takes
about 15 seconds.

Exit codes: 0 every check came out as expected; 1 something did not, or the demo could not run.`,
  bench: `portwall bench [--quick] [--sizes 100,1000,5000] [--out DIR] [--only SECTIONS] [--skip SECTIONS] [OPTIONS] (root)

The security-group benchmark, side by side with the tools Neutron's iptables driver forks, in network
namespaces it creates and removes (nothing changes in the current namespace). At each size it loads a seeded
Neutron-shaped state (tenants of 50 ports, ~20 rules per port from 2-3 groups, remote groups, IPv4 and IPv6)
and times, sections:
  updates   one port added, changed (groups, fixed IP), removed through one library handle after a full
            sync: incremental (upsertPort/removePort) and apply(state ± port); a rule added to and removed
            from a group many ports use
  agent     the same one-port changes through a portwall agent process's socket API
  members   a port joining and leaving a big remote group; --member-bulk members leaving and joining at
            once (one library batch, a burst of agent requests); ipset restore / ipset add of the same
  sync      a full sync into an empty namespace: portwall apply, the replay of its own encoded batch (the
            floor), nft -f, Neutron-style ipset + iptables-restore (legacy and nft back ends), the agent's
            PUT /v1/state; and the iptables one-port change (an ipset delta and a full-table restore)
  memory    the RSS of a process after a full sync, of an agent process after its start, and of a process
            after a full sync of --wide-ports ports × --wide-rules rules
  start     adopt-on-start: a fresh handle and a fresh agent taking over a kernel that holds the state
  datapath  new TCP connections per second and one bulk stream's Mbit/s through one port, alone (size 1)
            and among --dp-sizes ports: portwall, the conntrack floor, legacy iptables
  conntrack 1k matching conntrack entries deleted among --ct-entries (by zone, by zone and source /24):
            portwall's list + delete vs conntrack -D
  churn     sustained churn through an agent serving --churn-size ports: --churn-rate mixed changes per
            second for --churn-seconds, open loop; latency per kind of change, p99 per second, the agent's CPU
A progress line shows what runs. At the end it prints a table of every case, the spec's targets (met or
missed) and the paths of the report files:
  DIR/sg-TIME.md            headline, p50/p99 tables, targets, ratios, machine facts; links the charts
  DIR/sg-TIME.json          every sample
  DIR/sg-TIME-oneport.svg   one-port change p50 vs host size, one line per tool (log scale)
  DIR/sg-TIME-fullsync.svg  full sync p50 vs host size, one line per tool (log scale)
  DIR/sg-TIME-churn.svg     p99 and p50 of each second under churn (log scale), when churn ran
A full run takes about 25 minutes on 2 cores, --quick about a minute. Ctrl-C removes the namespaces and
still writes what was measured.

Options:
  --quick               size 100, a few repetitions, a one-second datapath of the port alone: a smoke test
  --sizes N,N,...       host sizes in ports (default 100,1000,5000)
  --out DIR             where the report goes (default bench/reports under the current directory)
  --only S,S,...        run only these sections (default all)
  --skip S,S,...        leave these sections out
  --reps N              repetitions through the incremental API and the agent (default 50; --quick 5)
  --apply-reps N        repetitions through apply(state ± change) (default 50; --quick 3)
  --budget-s S          the longest one measurement loop may run (default 120; --quick 20)
  --sync-sizes N,...    full-sync sizes (default the sizes from 1000 up, else the largest)
  --sync-reps N         full-sync rounds per tool (default 5; --quick 2)
  --change-size N       the size of the iptables one-port change (default 1000 if among the sizes, else the
                        smallest)
  --change-reps N       its repetitions (default 50; --quick 3)
  --members N           members of the big remote group (default 10000; --quick 200)
  --member-refs N       ports whose rules name that group (default 1000; --quick 100)
  --member-bulk N       members changed at once (default 1000; --quick 50)
  --bulk-reps N         repetitions of the members-at-once changes (default 10; --quick 2)
  --wide-ports N        ports of the wide memory case (default 10000; --quick 200)
  --wide-rules N        rules per port of the wide memory case (default 50, at least 21)
  --start-reps N        adopt-on-start rounds per size, library and agent (default 5; --quick 1)
  --dp-sizes N,...      datapath sizes, 1 = the port alone (default 1 and the sizes; --quick 1)
  --dp-rounds N         datapath rounds per configuration (default 5; --quick 1)
  --dp-seconds S        seconds per datapath measurement, the bulk stream's limit too (default 2; --quick 1)
  --dp-mb N             the bulk stream's limit in MB (default 4000; --quick 500)
  --dp-concurrency N    concurrent client connections (default 32; --quick 8)
  --ct-entries N        conntrack entries in the table (default 100000, a multiple of 1000)
  --ct-reps N           conntrack cleanup repetitions per tool (default 7; --quick 5)
  --churn-rate N        changes per second sent to the agent (default 500; --quick 50)
  --churn-seconds S     how long the churn runs (default 60; --quick 5)
  --churn-size N        ports the churned agent serves (default 1000)
  --mode routed|bridged how the ports' networks are built (default routed)
  --seed N              the workload's seed (default 1)

Exit codes: 0 the report was written (a case that failed is a row saying so); 1 the benchmark could not run
(not root, an error outside the measurements); 2 usage error; 130 or 143 interrupted (the namespaces are
removed and what was measured is written).`,
};

class UsageError extends Error {}

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

const BASE = { netns: { type: 'string' }, help: { type: 'boolean', short: 'h' } } as const;
const WITH_JSON = { ...BASE, json: { type: 'boolean' } } as const;
const WITH_FORMAT = { ...BASE, format: { type: 'string' } } as const;

function options<O extends typeof BASE | typeof WITH_JSON | typeof WITH_FORMAT>(args: string[], opts: O) {
  try {
    return parseArgs({ args, allowPositionals: true, options: opts });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function handle(netns: string | undefined): Portwall {
  return Portwall.open(netns === undefined ? {} : { netns });
}

/** Reads and validates FILE ("-": stdin); the keys the schema does not know are printed as warnings. */
async function readState(io: Io, file: string | undefined, config: PortwallConfig): Promise<Model> {
  if (file === undefined) throw new UsageError('missing FILE');
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

async function apply(io: Io, args: string[]): Promise<number> {
  const { values, positionals } = options(args, WITH_JSON);
  if (values.help) return help(io, 'apply');
  const pw = handle(values.netns);
  const r = await pw.apply(await readState(io, positionals[0], pw.config));
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

const EXPLAIN_OPTIONS = {
  ...WITH_JSON,
  port: { type: 'string' },
  direction: { type: 'string' },
  state: { type: 'string' },
  socket: { type: 'string' },
} as const;

async function explainCommand(io: Io, args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args, allowPositionals: true, options: EXPLAIN_OPTIONS });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return help(io, 'explain');
  if (!values.port) throw new UsageError('explain needs --port ID');
  if (positionals.length !== 1) throw new UsageError('explain needs one PACKET argument, e.g. "tcp 198.51.100.7:40000 -> 192.0.2.14:22"');
  const direction = values.direction;
  if (direction !== undefined && direction !== 'ingress' && direction !== 'egress') throw new UsageError(`--direction ${direction}: use ingress or egress`);
  if (values.state !== undefined && values.socket !== undefined) throw new UsageError('--state and --socket: give one');
  let answer: Explanation;
  if (values.state !== undefined) {
    const pw = handle(values.netns);
    try {
      const model = await readState(io, values.state, pw.config);
      const pending = (await pw.plan(model)).operations.length;
      if (pending > 0) io.err(`warning: the kernel does not hold ${values.state} (${pending} operations differ): explaining the file, not what is programmed\n`);
      answer = explain(compilePolicy(model, pw.config), values.port, positionals[0]!, direction);
    } finally {
      await pw.close();
    }
  } else {
    if (values.netns !== undefined) throw new UsageError('--netns goes with --state (the agent answers for its own namespace)');
    answer = await askAgent(values.socket ?? DEFAULT_SOCKET, values.port, positionals[0]!, direction);
  }
  if (values.json) io.out(`${JSON.stringify(answer, null, 2)}\n`);
  else io.out(`${answer.direction} ${packetText(answer.packet)} at port ${answer.portId}: ${answer.why}\n`);
  return answer.allowed ? 0 : 3;
}

// GET /v1/explain from the agent over its socket.
function askAgent(socketPath: string, port: string, packet: string, direction: string | undefined): Promise<Explanation> {
  const q = new URLSearchParams({ port, packet, ...(direction ? { direction } : {}) });
  return new Promise((resolve, reject) => {
    const req = httpRequest({ socketPath, method: 'GET', path: `/v1/explain?${q}`, timeout: 10_000 }, (res) => {
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
  const { values, positionals } = options(args, WITH_FORMAT);
  if (values.help) return help(io, 'plan');
  const format = values.format ?? 'nft';
  if (format !== 'nft' && format !== 'iptables') throw new UsageError(`--format ${format}: use nft or iptables`);
  const pw = handle(values.netns);
  const model = await readState(io, positionals[0], pw.config);
  if (format === 'iptables') return planIptables(io, pw, model);
  const p = await pw.plan(model);
  io.out(p.text === '' ? '# no changes\n' : p.text);
  return 0;
}

function planIptables(io: Io, pw: Portwall, model: Model): number {
  const r = renderIptables(compilePolicy(model, pw.config));
  io.out(`# ipset restore\n${r.ipsets}\n# iptables-restore\n${r.iptables}\n# ip6tables-restore\n${r.ip6tables}`);
  return 0;
}

const STATUS_OPTIONS = { ...WITH_JSON, port: { type: 'string' }, group: { type: 'string' }, state: { type: 'string' } } as const;

async function status(io: Io, args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args, allowPositionals: false, options: STATUS_OPTIONS }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (values.help) return help(io, 'status');
  if (values.port !== undefined && values.group !== undefined) throw new UsageError('--port and --group: give one');
  const pw = handle(values.netns);
  try {
    const model = values.state === undefined ? undefined : await readState(io, values.state, pw.config);
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
  for (const p of c.profiles.length === 1 ? c.profiles : []) io.out(`rule profile ${p.id} (${p.label}), shared by ${p.ports.length} port${p.ports.length === 1 ? '' : 's'}\n`);
  io.out(`security-group rule hits${scope} (packets, bytes):\n`);
  if (c.rules.length === 0) io.out('  none\n');
  for (const r of c.rules) io.out(`  ${r.ruleId}${r.groupId === undefined ? '' : ` (${r.groupId})`}: ${r.packets} packets, ${r.bytes} bytes\n`);
  const hit = c.steps.filter((s) => s.packets > 0);
  io.out(`drops per policy step (host-wide; ${c.steps.length - hit.length} steps with none):\n`);
  for (const s of hit) io.out(`  ${s.family} ${s.table} ${s.chain}: ${s.step || 'unnamed'}: ${s.packets} packets, ${s.bytes} bytes\n`);
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
      io.err(`portwall: ${err.message}\n\n${HELP}\n`);
      return 2;
    }
    if (err instanceof InvalidStateError) printWarnings(io, err.warnings);
    if (err instanceof PortwallError) io.err(`portwall: ${err.code}: ${err.message}\n`);
    else io.err(`portwall: ${err instanceof Error ? err.stack : String(err)}\n`);
    return 1;
  }
}

async function dispatch(io: Io, argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    io.out(`${HELP}\n`);
    return command ? 0 : 2;
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
    case 'agent':
      return agent(io, rest);
    case 'schema':
      if (rest.includes('--help')) return help(io, 'schema');
      io.out(stateJsonSchema());
      return 0;
    case 'demo': {
      if (rest.includes('--help')) return help(io, 'demo');
      // The demo lives outside src/: it is a harness that runs `ip` and `ping`, which the product never does.
      const { runDemo } = await import('../demo/run.js');
      return (await runDemo()) ? 0 : 1;
    }
    case 'bench': {
      if (rest.includes('--help') || rest.includes('-h')) return help(io, 'bench');
      // Like the demo, the benchmark is a harness outside src/ (it runs ip, nft, iptables-restore, ...).
      const { runBench } = await import('../bench/sg.js');
      return runBench(rest);
    }
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

const AGENT_OPTIONS = {
  ...BASE,
  state: { type: 'string' },
  socket: { type: 'string' },
  metrics: { type: 'string' },
  'log-level': { type: 'string' },
  'check-interval': { type: 'string' },
  'body-limit': { type: 'string' },
} as const;

async function agent(io: Io, args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args, allowPositionals: false, options: AGENT_OPTIONS }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (values.help) return help(io, 'agent');
  const level = values['log-level'] ?? 'info';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace'].includes(level)) throw new UsageError(`--log-level: unknown level "${level}"`);
  const number = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v)) throw new UsageError(`--${name} must be a whole number, not "${v}"`);
    return Number(v);
  };
  const every = number('check-interval', values['check-interval']);
  const { pino } = await import('pino');
  const { startAgent } = await import('./agent/agent.js');
  const logger = pino({ level, base: { pid: process.pid } });
  const running = await startAgent({
    netns: values.netns, stateFile: values.state, socketPath: values.socket, metricsAddress: values.metrics, logger,
    checkIntervalMs: every === undefined ? undefined : every * 1000, bodyLimit: number('body-limit', values['body-limit']),
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
  run(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
