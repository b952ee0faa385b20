/**
 * The seam between the agent's HTTP API (./http.ts) and the agent's core, the part that owns the firewall
 * handle. The API turns requests into {@link AgentOp}s and hands a coalesced batch of them to
 * {@link AgentBackend.commit}; it never touches the handle itself.
 */
import type { Problem } from '../model/problems.js';

/** One change a caller asked for; a delete has no body. */
export type AgentOp =
  /** `PUT /v1/state`: a whole state document (as sent, not yet validated). */
  | { kind: 'state'; state: unknown }
  /** `PUT /v1/ports/{id}` (with the port's body) or `DELETE /v1/ports/{id}` (no body). */
  | { kind: 'port'; id: string; body?: unknown }
  /** `PUT` (body) or `DELETE` (no body) `/v1/security-groups/{id}`. */
  | { kind: 'group'; id: string; body?: unknown }
  /** `PUT` (body) or `DELETE` (no body) `/v1/floatingips/{id}`. */
  | { kind: 'floatingip'; id: string; body?: unknown };

/**
 * The outcome of one op inside a committed batch. `warnings`, applied or not: keys of the op's body the schema
 * does not know (ignored), as `{ path, message }`; absent or empty when there are none.
 */
export type OpOutcome = (
  /**
   * The op was applied. `genid`: the ruleset generation after the batch; `changed`: whether the kernel had to
   * change for it; `timings`: milliseconds per stage; `elements`: the set elements the batch this op was
   * committed in added and removed (the core counts them in the metrics, once per batch).
   */
  | { ok: true; genid?: number; changed: boolean; timings: Record<string, number>; elements: { added: number; removed: number } }
  /**
   * The op was not applied: e.g. an InvalidStateError (the op was invalid and skipped, the rest of the batch
   * went ahead) or any PortwallError.
   */
  | { ok: false; error: unknown }
) & { warnings?: readonly Problem[] };

/** What the HTTP API needs from the agent's core. */
export interface AgentBackend {
  /** Applies the ops in order in ONE batch; ops that are invalid are skipped and reported individually; resolves one outcome per op. */
  commit(ops: readonly AgentOp[]): Promise<OpOutcome[]>;
  /** JSON-able status for GET /v1/status. */
  status(): Promise<unknown>;
  /**
   * GET /v1/explain: which step of a port's programmed policy decides a packet (query `port`, `packet`,
   * `direction`); with `liveMs`, also the path of the next real packet like it, traced for at most that long.
   */
  explain?(query: { port: string; packet: string; direction?: 'ingress' | 'egress'; liveMs?: number }): unknown;
}
