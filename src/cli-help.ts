/**
 * The command line's words: one usage line per command (printed alone on a usage error), the overview and each
 * command's --help.
 */

import { DEFAULT_SOCKET } from './agent/socket-path.js';

/** One line per command: what a usage error prints under its message. */
export const USAGE: Readonly<Record<string, string>> = {
  apply: 'portwall apply [--netns NAME] [--config FILE] [--json] FILE',
  plan: 'portwall plan [--netns NAME] [--config FILE] [--format nft|iptables] [--detailed-exitcode] FILE',
  status: 'portwall status [--netns NAME] [--config FILE] [--port ID | --group ID] [--state FILE] [--json]',
  explain: 'portwall explain --port ID [--state FILE | --socket PATH] [--netns NAME] [--config FILE] [--direction ingress|egress] [--live [--timeout SECONDS]] [--json] PACKET',
  teardown: 'portwall teardown [--netns NAME] [--config FILE]',
  agent: 'portwall agent [--netns NAME] [--config FILE] [--state FILE] [--socket PATH] [--metrics HOST:PORT] [OPTIONS]',
  schema: 'portwall schema',
  demo: 'portwall demo',
  bench: 'portwall bench [--quick] [--sizes N,N,...] [--out DIR] [OPTIONS]',
};

/** Under a usage error without a command. */
export const GENERAL_USAGE = 'portwall COMMAND [OPTIONS] (portwall --help lists the commands)';

const EXIT_CODES = `Exit codes:
  0  success (apply: the kernel matches FILE; plan: the changes were printed)
  1  failure: an invalid state or config file (every bad object and field is named on stderr; nothing was
     applied), or the kernel refused the batch (nothing was applied), or a system error
  2  usage error (unknown command or option, missing FILE, unsupported --format); plan --detailed-exitcode:
     there are changes`;

const CONFIG = `  --config FILE  a JSON file of settings (all optional; an unknown key or a bad value is an error naming it):
                   {"tables": {"inet": "portwall", "bridge": "portwall", "nat": "portwall_nat"},
                    "markMask": "0xffff", "zoneRange": {"min": 1, "max": 65535}, "publishIpsets": false,
                    "logGroup": 28791}
                 tables: the nftables tables portwall owns; markMask: the skb mark bits of bridged ports (one
                 run of bits); zoneRange: the conntrack zones networks may use; publishIpsets: also keep
                 remote groups' members as ipsets pw4-/pw6-... for iptables consumers; logGroup: the NFLOG
                 group of the drop log (networks' log_drops and log_accepts)`;

const PRIVILEGE = `apply, plan, status, teardown and agent talk netlink to nftables, ipset and conntrack: they need
CAP_NET_ADMIN (root), and --netns also CAP_SYS_ADMIN to enter the namespace.`;

export const HELP = `portwall — security groups programmed directly over netlink

Usage:
  portwall apply [--netns NAME] [--config FILE] [--json] FILE
                                  make the kernel match the state FILE ("-" = stdin)
  portwall plan [--netns NAME] [--config FILE] [--format nft|iptables] [--detailed-exitcode] FILE
                                  print the changes apply would make, without applying
  portwall status [--netns NAME] [--config FILE] [--port ID | --group ID] [--state FILE] [--json]
                                  what portwall's tables hold, rule hits, drops per policy step
  portwall explain --port ID [--state FILE | --socket PATH] [--netns NAME] [--direction D] [--live] [--json] PACKET
                                  which rule or policy step admits or drops PACKET; --live also traces
                                  the next real such packet through the kernel and prints its path
  portwall teardown [--netns NAME] [--config FILE]
                                  remove everything portwall owns (its tables and published ipsets)
  portwall agent [--netns NAME] [--config FILE] [--state FILE] [--socket PATH] [--metrics HOST:PORT]
                                  the long-running agent with its HTTP API
  portwall schema                 print the state file's JSON Schema
  portwall demo                   the built-in demo in its own namespaces (root; source checkout)
  portwall bench [--quick] [--sizes 100,1000,5000] [--out DIR]
                                  the side-by-side security-group benchmark (root; source checkout)
  portwall COMMAND --help         help for one command
  portwall --version              the version

${PRIVILEGE}

${EXIT_CODES}`;

export const COMMAND_HELP: Readonly<Record<string, string>> = {
  apply: `portwall apply [--netns NAME] [--config FILE] [--json] FILE

Validates the state FILE (JSON in Neutron's shapes, see schema/state.schema.json), compiles it, compares it
with portwall's nftables tables in the namespace and commits the difference as one atomic batch; then deletes
the conntrack entries of flows the new policy no longer admits (in the affected ports' zones only). Running it
twice changes nothing the second time. FILE "-" reads stdin. Keys the schema does not know (a misspelt field,
the openstack CLI's column names) are ignored and printed on stderr, one line each:
  warning: PATH: unknown key, ignored (did you mean remote_ip_prefix?)
So are the host's problems the rules cannot fix (preflight, read from /proc and /sys): br_netfilter not loaded
or net.bridge.bridge-nf-call-iptables (or -ip6tables) not 1 while a network is bridged, a port's or bridge's
device that does not exist (its rules are programmed all the same). With --netns the namespace's own sysctls
and devices are not visible from here and are not checked; run portwall inside it (ip netns exec) for that.
Warnings never change the exit code.

Options:
  --netns NAME   the network namespace (a name under /run/netns or a path); default: the current one
${CONFIG}
  --json         print the result as JSON

${PRIVILEGE}

${EXIT_CODES}`,
  plan: `portwall plan [--netns NAME] [--config FILE] [--format nft|iptables] [--detailed-exitcode] FILE

Prints what apply would change, without changing anything. Warnings (unknown keys of FILE, preflight) are
printed on stderr as "warning: ..." lines, as apply prints them.
  --format nft          (default) the batch as nft -f commands
  --format iptables     the whole compiled policy as Neutron-style iptables-restore input; it reads no
                        kernel state, so --netns and --detailed-exitcode are refused with it (load it into
                        a namespace with ip netns exec NAME iptables-restore)
  --detailed-exitcode   exit 0 when the kernel already matches FILE, 2 when apply would change something,
                        1 on an error (as terraform plan -detailed-exitcode)
  --netns NAME          the network namespace; default: the current one
${CONFIG}

${EXIT_CODES}`,
  status: `portwall status [--netns NAME] [--config FILE] [--port ID | --group ID] [--state FILE] [--json]

Lists portwall's tables over netlink: tables and counts of chains, rules, sets and elements; the kernel's hit
counters per security-group rule (packets, bytes) and the drops per base-policy step (anti-spoof, DHCP, the
default drop, …). --json prints every object (handles and byte strings as strings) and "counters". Piped
into a command that stops reading early (portwall status --json | head -1) it stops quietly.

Options:
  --netns NAME   the network namespace; default: the current one
${CONFIG}
  --port ID      the rule hits of the port's groups (a group's rules count for all its ports together); the
                 port's rule profile and the number of ports sharing it are printed
  --group ID     the rule hits of one group
  --state FILE   the state file, to name each rule's group (else read from the group's set comments)
  --json         every object and the counters as JSON

${EXIT_CODES}`,
  explain: `portwall explain --port ID [--state FILE | --socket PATH] [--netns NAME] [--config FILE] [--direction ingress|egress] [--live [--timeout SECONDS]] [--json] PACKET

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
  --live        also trace the next real packet matching PACKET (its addresses, protocol, ports, ICMP type
                and code) with nftables tracing, read over netlink: a temporary table (inet portwall_trace,
                and bridge portwall_trace for a bridged port) marks it at priority -350 and is removed
                afterwards, also on timeout or Ctrl-C. Send the packet while it waits (it says when). Prints
                each step — hook, table and chain, the rule (comment or nft text), verdict — then ACCEPTED or
                DROPPED, the static answer, and whether they agree. With --state the trace runs in --netns;
                without, the agent traces in its namespace (GET /v1/explain?live=1, at most 60 s)
  --timeout SECONDS   how long --live waits for the packet (default 10, at most 300)

Exit codes:
  0  the packet is allowed (--live: the traced packet was accepted)
  3  the packet is dropped (--live: the traced packet was dropped)
  1  failure (unknown port, a packet that does not parse, an invalid state file, no agent; --live: no
     matching packet came within the timeout)
  2  usage error`,
  teardown: `portwall teardown [--netns NAME] [--config FILE]

Removes everything portwall owns in the namespace: its nftables tables (inet "portwall" and "portwall_raw",
bridge "portwall", ip "portwall_nat", or the names --config gives; the raw table is the inet name with
"_raw") deleted together in one batch, then the remote-group ipsets it publishes (pw4-... and pw6-...).
Traffic through the ports is then unfiltered. Nothing else is touched; running it again changes nothing. An
ipset an iptables rule still references cannot be destroyed: it is named on stderr and the exit code is 1.

Options:
  --netns NAME   the network namespace; default: the current one
${CONFIG}

${PRIVILEGE}

Exit codes: 0 nothing of portwall's is left; 1 something could not be removed (named on stderr), or a
system error; 2 usage error.`,
  agent: `portwall agent [--netns NAME] [--config FILE] [--state FILE] [--socket PATH] [--metrics HOST:PORT]
               [--log-level LEVEL] [--check-interval SECONDS] [--record-idle-ms MS] [--body-limit BYTES]
               [--drop-log]

Runs until SIGTERM or SIGINT, which stop it and leave the rules in place (and, after changes, the adopt record:
the next start with the same FILE then skips listing every element). The record is also written once the
agent has committed nothing for --record-idle-ms, so that kill -9 or a crash leaves one too. On start it adopts what portwall's
tables hold (no flush, no traffic gap) and makes them match FILE; SIGHUP, or a change of FILE, reloads FILE
through the same incremental diff (an invalid file is logged and the running state kept). Keys the schema does
not know are logged at warn, one line each; in API answers they are listed in "warnings". Changes also come
through the HTTP/1.1 + JSON API on a Unix socket (mode 0600; see docs/agent.md for every route):
  GET /v1/status   PUT /v1/state   PUT|DELETE /v1/ports/{id}   PUT|DELETE /v1/security-groups/{id}
  PUT|DELETE /v1/floatingips/{id}   GET /v1/explain?port=ID&packet=TEXT[&live=1&timeout=S]   GET /metrics
e.g. curl --unix-socket /run/portwall/portwall.sock http://portwall/v1/status
Requests arriving together are committed as one batch; each caller gets its own answer after the commit.
When anyone else changes portwall's tables (nft flush ruleset, nft delete table, a rule or element edited by
hand), the agent hears it from nftables' netlink events and puts its state back, typically within
milliseconds; every --check-interval it also checks whether anyone committed, and if so compares the whole state.
Logs are JSON lines on stdout (one per commit, drift repair, reload and error). Before it starts, the state
FILE's preflight warnings (see portwall apply --help) are printed on stderr.

Options:
  --netns NAME             the network namespace (a name under /run/netns or a path); default: the current one
  --config FILE            table names, mark mask, zone range, ipset publishing (see portwall apply --help)
  --state FILE             the desired state (JSON, see schema/state.schema.json); without it the agent waits
                           for PUT /v1/state
  --socket PATH            the API socket (default /run/portwall/portwall.sock; its directory is created)
  --metrics HOST:PORT      also serve GET /metrics over TCP on this address
  --log-level LEVEL        fatal, error, warn, info (default), debug or trace
  --check-interval SECONDS the periodic check (default 60; 0 turns it off)
  --record-idle-ms MS      write the adopt record this long after the last commit (one small batch; default
                           1000; 0: only when stopped by a signal)
  --body-limit BYTES       the largest request body (default 8388608); larger ones are answered 413
  --drop-log               read the drop log (NFLOG group logGroup of the config) and write one line per
                           packet the policy dropped on a network with log_drops: {"event":"drop",
                           "verdict":"drop", "port", "network", "zone", "step", "direction", "src", "dst",
                           "sport", "dport", ...}; and per new connection the policy allowed on a network
                           with log_accepts: {"event":"accept", "verdict":"accept", "port", "direction", ...}

Exit codes: 0 stopped by a signal; 1 the state file was invalid or unreadable, or the socket could not be
served (nothing was applied); 2 usage error.`,
  schema: `portwall schema

Prints the JSON Schema (draft-07) of the state file on stdout: the same as schema/state.schema.json in
the package, also importable as "portwall/state.schema.json".

Exit codes: 0 printed; 2 usage error.`,
  demo: `portwall demo (root)

Runs from a source checkout (npm run demo): the npm package does not ship the demo.

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

Runs from a source checkout (npm run bench): the npm package does not ship the benchmark.

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
            holding --wide-ports ports × --wide-rules rules (full sync, re-apply, 50 one-port changes: the
            highest RSS, and the one-port add p50)
  start     adopt-on-start: a fresh handle and a fresh agent taking over a kernel that holds the state
  datapath  new TCP connections per second and one bulk stream's Mbit/s through one port, alone (size 1)
            and among --dp-sizes ports, and new connections between two ports of one network (east-west,
            its network the middle one in zone order): portwall, the conntrack floor, legacy iptables
  conntrack 1k matching conntrack entries deleted among --ct-entries (by zone, by zone and source /24):
            portwall's list + delete vs conntrack -D
  churn     sustained churn through an agent serving --churn-size ports: --churn-rate mixed changes per
            second for --churn-seconds, open loop, after an untimed warm-up of the same mix; latency per
            kind of change, p99 per second, the agent's CPU
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
  --quick               size 100, a few repetitions, a one-second datapath (the port alone and at 100): a smoke
                        test
  --sizes N,N,...       host sizes in ports (default 100,1000,5000)
  --out DIR             where the report goes (default bench/reports under the current directory)
  --only S,S,...        run only these sections (default all)
  --skip S,S,...        leave these sections out
  --reps N              repetitions through the incremental API and the agent (default 200; --quick 5)
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
  --dp-sizes N,...      datapath sizes, 1 = the port alone (default 1 and the sizes; --quick 1,100)
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
