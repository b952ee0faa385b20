/**
 * portwall's public API: typed nftables objects, transactions committed as one atomic netlink batch,
 * listings decoded back into the same objects, and a fake for tests without root.
 */
export type * from './nft/types.js';
export * from './nft/match.js';
export { Nft, openNft } from './nft/client.js';
export type { Listing, NftOptions } from './nft/client.js';
export { Transaction } from './nft/transaction.js';
export type { CommitOptions, TransactionOptions, TransactionSink } from './nft/transaction.js';
export { FakeNft, FakeNftSocket } from './nft/fake.js';
export type { FakeNftOptions } from './nft/fake.js';
export { subscribeNftEvents, NFT_EVENT_MESSAGES } from './nft/events.js';
export type {
  NftEvent,
  NftEventListener,
  NftEventOptions,
  NftEventSubscription,
  NftEventType,
  NftTransactionEvent,
} from './nft/events.js';
export { PortwallError, ERROR_CODES } from './errors.js';
export type { ErrorCode, ErrorDetails } from './errors.js';
export type {
  CommitResult, ConntrackTarget, NativeConntrackSocket, NativeNftEvent, NativeNftEventSubscription, NativeNftSocket, NativeNftTransaction,
  NftEventsBinding, NftTarget,
} from './native.js';
export type { IpFamily } from './address.js';
export { IpsetClient, IPSET_TYPES, IPSET_MAX_NAME } from './ipset.js';
export type { IpsetType, IpsetCreateOptions, IpsetMember, IpsetInfo, IpsetOptions } from './ipset.js';
export { ConntrackClient, PROTOCOLS, TCP_STATES, STATUS } from './conntrack.js';
export type {
  ConntrackEntry,
  ConntrackEntrySpec,
  ConntrackEvent,
  ConntrackFilter,
  ConntrackOptions,
  ConntrackSubscription,
  ConntrackTuple,
  PortMatch,
  Protocol,
  SubscribeOptions,
  TcpState,
} from './conntrack.js';
export { validateState } from './model/validate.js';
export { parseState, loadStateFile, readStateFile, readStateText } from './model/load.js';
export type { LoadedState } from './model/load.js';
export { unknownKeys } from './model/unknown-keys.js';
export { stateJsonSchema } from './model/emit-schema.js';
export { InvalidStateError, ROOT_PATH } from './model/problems.js';
export type { Problem } from './model/problems.js';
export type * from './model/schema.js';
export type * from './model/types.js';
export { DEFAULT_CONFIG } from './model/types.js';
export { renderIptables } from './render/iptables.js';
export { Portwall } from './apply/portwall.js';
export type { ApplyOptions, ApplyResult, BatchResult, Edit, PlanResult, PortwallOptions, StatusResult, StatusSummary } from './apply/portwall.js';
export { diff } from './apply/diff.js';
export type { Diff, RemovedElements } from './apply/diff.js';
export { affectedPorts, cleanup } from './apply/cleanup.js';
export type { AffectedPort, CleanupResult, ConntrackLike } from './apply/cleanup.js';
export { compilePolicy } from './compile/policy.js';
export type { CompileOptions } from './compile/policy.js';
export { layout } from './compile/layout.js';
export { allows, evaluate } from './compile/evaluate.js';
export { explain, parsePacket, packetText, type Explanation } from './explain.js';
export {
  traceLive, explainLive, formatTrace, traceObjects, traceSteps, traceTables, TRACE_PRIORITY,
  type LiveExplainOptions, type LiveExplanation, type LiveTrace, type LiveTraceResult, type TraceOptions, type TraceStep, type TraceStepKind,
} from './trace.js';
export { subscribeDropLog, dropRecord, packetTuple, type AcceptRecord, type DropRecord, type DropLogOptions, type LogRecord } from './droplog.js';
export { readCounters, narrowCounters, type CounterReport, type RuleHits, type StepHits } from './apply/counters.js';
export type { Decision, Direction, Packet } from './compile/evaluate.js';
export type * from './compile/ir.js';
export { startApiServer, API_DEFAULTS } from './agent/http.js';
export type { ApiServer, ApiServerOptions } from './agent/http.js';
export type { AgentBackend, AgentOp, OpOutcome } from './agent/backend.js';
export { Coalescer } from './agent/coalescer.js';
export type { CoalescerOptions, CommitBatch } from './agent/coalescer.js';
export { AgentMetrics, APPLY_KINDS } from './agent/metrics.js';
export type { AgentMetricsOptions, ApplyKind } from './agent/metrics.js';
export type { ApiErrorCode } from './agent/answers.js';
export { startAgent, DEFAULT_SOCKET } from './agent/agent.js';
export type { Agent, AgentEvents, AgentOptions } from './agent/agent.js';
export { AgentCore } from './agent/core.js';
export { parseConfig, readConfigFile, InvalidConfigError } from './model/config.js';
export { teardown } from './apply/teardown.js';
export type { TeardownOptions, TeardownResult } from './apply/teardown.js';
export { preflight } from './preflight.js';
export type { PreflightOptions } from './preflight.js';
