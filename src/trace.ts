/**
 * `explain --live` (docs/dataplane.md, "Tracing a packet"): traces one real packet through the namespace's
 * nftables hooks with nftables' own tracing and reports the path it took — each base chain's hook, the chains
 * and rules it met and their verdicts, ending accepted or dropped.
 *
 * A temporary table of its own (`inet <tables.inet>_trace`, and `bridge <tables.bridge>_trace` for a bridged
 * port) holds base chains at priority -350 — before portwall's raw chains (-300) and the bridge table's
 * `from_port` — with one rule that matches the packet and sets `meta nftrace set 1`. Every later step of that
 * packet is then reported over netlink (NFNLGRP_NFTRACE, read by the native addon; nothing is forked). The
 * table is added and removed in one batch each, and removed whatever happens (timeout, error, abort). A table
 * of its own, not a chain in portwall's: a running agent repairs anything it did not put in its own tables.
 *
 * The trace knows nothing of portwall's rule sets: each step is named by its table, chain and rule (the rule's
 * comment, else a short nft rendering of it), as listed from the kernel once the packet has passed.
 */
import { PortwallError } from './errors.js';
import type { Packet } from './compile/evaluate.js';
import { explain, packetText, type Explanation } from './explain.js';
import type { Direction } from './compile/evaluate.js';
import type { PolicyIR } from './compile/ir.js';
import { packetTuple } from './droplog.js';
import { binding as loadBinding, type NativeTraceEvent, type NftTraceBinding } from './native.js';
import { fromNativeItems } from './native-errors.js';
import { Nft } from './nft/client.js';
import { F, eq, rule, type Part } from './nft/match.js';
import { renderOperations } from './nft/render.js';
import type { Chain, Expr, Family, NftObject, NftSet, Rule } from './nft/types.js';

/** What a traced packet's step was: a rule that matched, the end of a chain (back to its caller), a base chain's policy. */
export type TraceStepKind = 'rule' | 'return' | 'policy';

/** One step of the traced packet, named from the kernel's listing. */
export interface TraceStep {
  kind: TraceStepKind;
  family: Family | string;
  table: string;
  chain: string;
  /** The hook of the base chain the step happened under (prerouting, forward, …), when known. */
  hook?: string;
  /** Whether `chain` itself is a base chain. */
  base?: boolean;
  /** Rule steps: the rule's handle, its comment and a short nft rendering. */
  handle?: number;
  comment?: string;
  text?: string;
  /** accept, drop, continue, jump, goto, return, break, queue, stolen, repeat (a policy step: the policy). */
  verdict: string;
  /** The chain of a jump or goto. */
  target?: string;
  /** Interface indexes (0: none) and the packet mark at that step. */
  iif: number;
  oif: number;
  mark: number;
}

/** The path one packet took (see {@link traceLive}). */
export interface LiveTrace {
  /** The kernel's trace id of the packet. */
  id: number;
  /** The packet as the kernel saw it (its headers), when they were reported. */
  seen?: Omit<Packet, 'srcMac'>;
  steps: TraceStep[];
  /** `dropped` when a rule or policy dropped it; `accepted` when every hook it met let it pass. */
  verdict: 'accepted' | 'dropped';
}

/** What {@link traceLive} found. */
export interface LiveTraceResult {
  packet: Packet;
  /** The trace; undefined when no matching packet came within the timeout. */
  trace?: LiveTrace;
  timedOut: boolean;
  /** Milliseconds waited. */
  ms: number;
}

/** Options of {@link traceLive}. */
export interface TraceOptions {
  /** The network namespace (null or absent: the caller's). */
  netns?: string | null;
  /** The table names to derive the trace tables' names from (default `portwall`). */
  tables?: { inet: string; bridge: string };
  /** Also trace from the bridge family's prerouting (a bridged port: frames from its bridge ports). */
  bridged?: boolean;
  /** Match the packet only from this input device (a routed port's egress). */
  iifname?: string;
  /** How long to wait for the packet, in milliseconds (default 10 000). */
  timeoutMs?: number;
  /** Ends the wait early (the trace table is removed; the result is timedOut). */
  signal?: AbortSignal;
  /** Called once the trace is armed: send the packet now. */
  onArmed?: () => void;
  /**
   * Called with the ruleset generation each of the trace's own commits made (arming, then removing the trace
   * tables): a long-lived handle that knows nobody else committed in between keeps trusting its memory.
   */
  onCommit?: (genid: number) => void;
  /** The addon (tests inject doubles). */
  binding?: NftTraceBinding;
}

/** The trace tables' priority: before portwall's raw chains (-300) and the bridge table's `from_port` (-300). */
export const TRACE_PRIORITY = -350;
/** After the last step of the packet, how long more steps may still come (later hooks of the same packet). */
const QUIET_MS = 300;
/** The longest a trace is collected after its first step. */
const COLLECT_MAX_MS = 3000;

const NFPROTO: Record<number, Family> = { 1: 'inet', 2: 'ip', 3: 'arp', 5: 'netdev', 7: 'bridge', 10: 'ip6' };
const VERDICT: Record<number, string> = { 0: 'drop', 1: 'accept', 2: 'stolen', 3: 'queue', 4: 'repeat', [-1]: 'continue', [-2]: 'break', [-3]: 'jump', [-4]: 'goto', [-5]: 'return' };
const KIND: Record<number, TraceStepKind> = { 1: 'policy', 2: 'return', 3: 'rule' };

/** The trace tables' names for portwall's table names. */
export function traceTables(tables: { inet: string; bridge: string } = { inet: 'portwall', bridge: 'portwall' }): { inet: string; bridge: string } {
  return { inet: `${tables.inet}_trace`, bridge: `${tables.bridge}_trace` };
}

/** The matches of the packet's 5-tuple (and ICMP type and code), for the trace rule. */
export function packetMatch(p: Packet, iifname?: string): Part[] {
  const ip = p.family === 4 ? F.ip : F.ip6;
  const out: Part[] = [];
  if (iifname !== undefined) out.push(eq(F.meta.iifname, iifname));
  out.push(eq(ip.saddr, p.src), eq(ip.daddr, p.dst), eq(F.meta.l4proto, p.protocol));
  if (p.sport !== undefined) out.push(eq(F.th.sport, p.sport));
  if (p.dport !== undefined) out.push(eq(F.th.dport, p.dport));
  if (p.icmp) {
    const icmp = p.family === 4 ? F.icmp : F.icmpv6;
    out.push(eq(icmp.type, p.icmp.type), eq(icmp.code, p.icmp.code));
  }
  return out;
}

// `meta nftrace set 1`: the skb's trace bit, which makes every later step of the packet report itself.
const NFTRACE_ON: Expr[] = [{ type: 'immediate', dreg: 1, data: Uint8Array.of(1) }, { type: 'meta', key: 'nftrace', sreg: 1 }];

/**
 * The objects of the trace tables: base chains `trace_pre` (prerouting) and `trace_out` (output) at
 * {@link TRACE_PRIORITY} in `inet NAME_trace`, and with `bridged` `trace_pre` in `bridge NAME_trace`, each with
 * one rule matching the packet and turning tracing on.
 */
export function traceObjects(p: Packet, options: Pick<TraceOptions, 'tables' | 'bridged' | 'iifname'> = {}): NftObject[] {
  const names = traceTables(options.tables);
  const out: NftObject[] = [];
  const families: [Family, string][] = [['inet', names.inet]];
  if (options.bridged) families.push(['bridge', names.bridge]);
  for (const [family, table] of families) {
    out.push({ kind: 'table', family, name: table });
    const hooks = family === 'inet' && options.iifname === undefined ? (['prerouting', 'output'] as const) : (['prerouting'] as const);
    for (const hook of hooks) {
      const chain = hook === 'prerouting' ? 'trace_pre' : 'trace_out';
      out.push({ kind: 'chain', family, table, name: chain, hook, priority: TRACE_PRIORITY, type: 'filter', policy: 'accept' });
      // A bridge frame's input device is the bridge port; in inet the routed port's device (bridged ports: the bridge).
      const iif = family === 'bridge' ? undefined : options.iifname;
      out.push({ kind: 'rule', family, table, chain, comment: 'portwall explain --live', exprs: [...rule(family, packetMatch(p, iif)), ...NFTRACE_ON] });
    }
  }
  return out;
}

/** Adds the trace tables in one batch (a leftover of an earlier trace is replaced in the same batch). */
async function arm(nft: Nft, objects: NftObject[], onCommit?: (genid: number) => void): Promise<void> {
  const tx = nft.transaction();
  for (const o of objects) if (o.kind === 'table') tx.add(o).delete(o);
  for (const o of objects) tx.add(o);
  // Committed first, then reported (an optional call's arguments are not evaluated without a callee).
  const { genid } = await tx.commit();
  onCommit?.(genid);
}

/** Removes the trace tables in one batch; a table already gone is fine. */
async function disarm(nft: Nft, objects: NftObject[], onCommit?: (genid: number) => void): Promise<void> {
  const tables = objects.filter((o) => o.kind === 'table');
  const tx = nft.transaction();
  for (const t of tables) tx.add(t).delete(t);
  const { genid } = await tx.commit();
  onCommit?.(genid);
}

const key = (family: string, table: string, chain: string) => `${family} ${table} ${chain}`;

/** The kernel's chains and rules, to name the steps. */
export interface RuleIndex {
  chains: Map<string, Chain>;
  rules: Map<string, Rule>;
  sets: NftSet[];
}

/** Indexes listed objects by `family table chain` (chains) and `family table chain handle` (rules). */
export function indexRules(objects: readonly NftObject[]): RuleIndex {
  const out: RuleIndex = { chains: new Map(), rules: new Map(), sets: [] };
  for (const o of objects) {
    if (o.kind === 'chain') out.chains.set(key(o.family, o.table, o.name), o);
    else if (o.kind === 'rule' && o.handle !== undefined) out.rules.set(`${key(o.family, o.table, o.chain)} ${o.handle}`, o);
    else if (o.kind === 'set') out.sets.push(o);
  }
  return out;
}

const MAX_RULE_TEXT = 120;

/** A rule as nft prints it, without its `add rule FAMILY TABLE CHAIN` head and its comment; undefined when nft has no spelling for it. */
export function ruleText(r: Rule, sets: NftSet[] = []): string | undefined {
  try {
    const line = renderOperations([{ verb: 'add', object: { ...r, comment: undefined, handle: undefined } as Rule }], sets).trim();
    const head = /^add rule \S+ \S+ \S+ /.exec(line);
    const text = head ? line.slice(head[0].length) : line;
    return text.length > MAX_RULE_TEXT ? `${text.slice(0, MAX_RULE_TEXT - 1)}…` : text;
  } catch {
    return undefined;
  }
}

/** The steps of one packet's events, named from `index` (chains' hooks, rules' comments and renderings). */
export function traceSteps(events: readonly NativeTraceEvent[], index: RuleIndex): TraceStep[] {
  let hook: string | undefined;
  // The kernel reports reaching the end of a base chain's rules as a rule step without a handle, just before
  // the policy step: the policy says it, so it is left out.
  const kept = events.filter((e) => !(e.type === 3 && e.handle === undefined && (e.verdict ?? -1) === -1));
  return kept.map((e) => {
    const family = NFPROTO[e.family] ?? String(e.family);
    const chain = index.chains.get(key(family, e.table, e.chain));
    if (chain?.hook) hook = chain.hook;
    const kind = KIND[e.type] ?? 'rule';
    const code = kind === 'policy' ? e.policy ?? e.verdict : e.verdict;
    const step: TraceStep = {
      kind, family, table: e.table, chain: e.chain, verdict: code === undefined ? 'continue' : VERDICT[code] ?? `verdict ${code}`,
      iif: e.iif, oif: e.oif, mark: e.mark,
    };
    if (hook !== undefined) step.hook = hook;
    step.base = chain?.hook !== undefined;
    if (e.target) step.target = e.target;
    if (e.handle !== undefined) {
      step.handle = Number(e.handle);
      const r = index.rules.get(`${key(family, e.table, e.chain)} ${e.handle}`);
      if (r?.comment) step.comment = r.comment;
      const text = r && ruleText(r, index.sets);
      if (text) step.text = text;
    }
    return step;
  });
}

/** `dropped` when a step dropped the packet, else `accepted`. */
export function traceVerdict(steps: readonly TraceStep[]): 'accepted' | 'dropped' {
  return steps.some((s) => s.verdict === 'drop') ? 'dropped' : 'accepted';
}

const HOOK_WIDTH = 12;

/** One line of a step: `forward     inet portwall fwd_filter: rule "to routed ports" (oifname @ports_dev jump ingress_dev) → jump ingress_dev`. */
export function stepLine(s: TraceStep): string {
  const where = `${s.base && s.hook ? s.hook.padEnd(HOOK_WIDTH) : ' '.repeat(HOOK_WIDTH)}${s.family} ${s.table} ${s.chain}`;
  const verdict = s.target ? `${s.verdict} ${s.target}` : s.verdict;
  if (s.kind === 'policy') return `${where}: policy ${s.verdict}`;
  if (s.kind === 'return') return `${where}: end of chain → ${verdict === 'continue' ? 'return' : verdict}`;
  const name = s.comment !== undefined ? JSON.stringify(s.comment) : `handle ${s.handle ?? '?'}`;
  const text = s.text !== undefined ? ` (${s.text})` : '';
  return `${where}: rule ${name}${text} → ${verdict}`;
}

/**
 * The trace as text: a head naming the packet, one line per step, the verdict,
 * and — with the static explanation — whether the two agree.
 */
export function formatTrace(result: LiveTraceResult, explanation?: Explanation): string {
  const lines: string[] = [];
  const what = explanation ? `${explanation.direction} ${packetText(result.packet)} at port ${explanation.portId}` : packetText(result.packet);
  if (!result.trace) {
    lines.push(`live: no packet ${what} came within ${(result.ms / 1000).toFixed(1)} s`);
  } else {
    const t = result.trace;
    lines.push(`live trace of ${what} (trace id 0x${t.id.toString(16).padStart(8, '0')}):`);
    for (const s of t.steps) lines.push(`  ${stepLine(s)}`);
    lines.push(`  => ${t.verdict.toUpperCase()}`);
  }
  if (explanation) {
    lines.push(`static: ${explanation.why}`);
    if (result.trace) {
      const agree = (result.trace.verdict === 'accepted') === explanation.allowed;
      lines.push(agree ? 'live and static agree' : `DISAGREE: the kernel ${result.trace.verdict} the packet, the static explanation says ${explanation.allowed ? 'allowed' : 'dropped'}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Traces the next packet matching `packet` (5-tuple, ICMP type and code) in a namespace: arms the trace tables,
 * waits up to `timeoutMs` for such a packet (the caller or someone else sends it), collects its steps until it
 * is dropped or no step came for a moment, then removes the trace tables — always, also on timeout, error or
 * abort — and names each step from one listing of the tables the packet met.
 * @throws PortwallError ERR_KERNEL when the trace tables cannot be added (e.g. without CAP_NET_ADMIN), ERR_NETNS.
 */
export async function traceLive(packet: Packet, options: TraceOptions = {}): Promise<LiveTraceResult> {
  const netns = options.netns ?? null;
  const native = options.binding ?? loadBinding();
  const nft = new Nft({ netns });
  const timeoutMs = options.timeoutMs ?? 10_000;
  const names = traceTables(options.tables);
  const objects = traceObjects(packet, options);
  const t0 = performance.now();

  let id: number | undefined;
  let start: string | undefined;
  const steps: NativeTraceEvent[] = [];
  let failure: PortwallError | undefined;
  let wake: () => void = () => {};
  let lastAt = 0;
  let done = false;
  const onEvents = (error: Error | null, events: NativeTraceEvent[]): void => {
    if (error) failure = fromNativeItems(error, netns);
    for (const e of events) {
      if (done) break;
      // Our rule's own step: where a packet's trace begins.
      const ours = (e.table === names.inet || e.table === names.bridge) && e.type === 3 && e.handle !== undefined;
      // The packet is the first one our own rule marked; others (someone else's tracing) are not ours.
      if (id === undefined && ours) [id, start] = [e.id, `${e.family} ${e.table}`];
      if (id === undefined || e.id !== id) continue;
      // The id is a hash of the packet's flow and buffer, so the flow's next packet may share it: it begins
      // where our rule marks a packet again in the table the first one began in.
      if (ours && `${e.family} ${e.table}` === start && steps.length > 0) {
        done = true;
        break;
      }
      steps.push(e);
      lastAt = performance.now();
      if (e.verdict === 0 || (e.type === 1 && e.policy === 0)) done = true;
    }
    wake();
  };
  let sub;
  try {
    sub = await native.nftTraceSubscribe(netns, onEvents);
  } catch (cause) {
    throw fromNativeItems(cause, netns);
  }
  try {
    await arm(nft, objects, options.onCommit);
    try {
      options.onArmed?.();
      const deadline = t0 + timeoutMs;
      for (;;) {
        if (failure || done || options.signal?.aborted) break;
        const now = performance.now();
        if (id === undefined && now >= deadline) break;
        if (id !== undefined && (now - lastAt >= QUIET_MS || now - t0 >= timeoutMs + COLLECT_MAX_MS)) break;
        const wait = id === undefined ? deadline - now : QUIET_MS - (now - lastAt);
        // Woken by the timer, a delivery or the abort, whichever comes first; the others are undone.
        await new Promise<void>((resolve) => {
          const finish = (): void => {
            clearTimeout(timer);
            options.signal?.removeEventListener('abort', finish);
            wake = () => {};
            resolve();
          };
          const timer = setTimeout(finish, Math.max(1, wait));
          options.signal?.addEventListener('abort', finish, { once: true });
          wake = finish;
        });
      }
    } finally {
      await disarm(nft, objects, options.onCommit);
    }
  } finally {
    await sub.close();
  }
  if (failure) throw failure;
  const ms = Math.round(performance.now() - t0);
  if (id === undefined) return { packet, timedOut: true, ms };
  // Name the steps from one listing of each table the packet met (the trace tables are gone by now).
  const tables = new Map<string, { family: Family; table: string }>();
  for (const e of steps) {
    const family = NFPROTO[e.family];
    if (family && e.table !== names.inet && e.table !== names.bridge) tables.set(`${family} ${e.table}`, { family, table: e.table });
  }
  const listed: NftObject[] = [];
  for (const { family, table } of tables.values()) {
    try {
      listed.push(...(await nft.list({ family, table })).objects);
    } catch {
      // A table deleted meanwhile: its steps keep their handles only.
    }
  }
  // The trace tables' own steps (our rule, their policy) are not the packet's path through the ruleset.
  const named = traceSteps(steps.filter((e) => e.table !== names.inet && e.table !== names.bridge), indexRules(listed));
  const trace: LiveTrace = { id, steps: named, verdict: traceVerdict(named) };
  const first = steps.find((e) => e.network);
  const seen = first?.network && packetTuple(first.transport ? concat(first.network, first.transport) : first.network);
  if (seen) trace.seen = seen;
  return { packet, trace, timedOut: false, ms };
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/** Options of {@link explainLive} (and `Portwall.explainLive`). */
export interface LiveExplainOptions extends Pick<TraceOptions, 'timeoutMs' | 'signal' | 'onArmed' | 'binding'> {
  /** The direction (default: inferred from the port's addresses, as `explain`). */
  direction?: Direction;
}

/** The static explanation of a packet, its live trace, and whether they agree. */
export interface LiveExplanation extends Explanation {
  live: LiveTraceResult;
  /** Whether the kernel's verdict equals the static one (absent when no packet came). */
  agrees?: boolean;
}

/**
 * Explains `packet` for a port of `ir` statically (`explain`) and traces the next real packet matching it
 * ({@link traceLive}) in `options.netns`. The port gives the direction (unless given), whether the bridge
 * family is traced too (bridged ports) and, for a routed port's egress, the input device the trace matches.
 * @throws PortwallError ERR_INVALID_VALUE as `explain`; ERR_KERNEL when the trace cannot be armed.
 */
export async function explainLive(
  ir: PolicyIR,
  portId: string,
  packet: string | Packet,
  options: LiveExplainOptions & Pick<TraceOptions, 'netns' | 'tables' | 'onCommit'> = {},
): Promise<LiveExplanation> {
  const answer = explain(ir, portId, packet, options.direction);
  const port = ir.ports.find((p) => p.portId === portId)!;
  const { direction: _d, ...rest } = options;
  const live = await traceLive(answer.packet, {
    ...rest,
    bridged: port.mode === 'bridged',
    ...(port.mode === 'routed' && answer.direction === 'egress' ? { iifname: port.device } : {}),
  });
  const out: LiveExplanation = { ...answer, live };
  if (live.trace) out.agrees = (live.trace.verdict === 'accepted') === answer.allowed;
  return out;
}
