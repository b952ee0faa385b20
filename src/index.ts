/** portwall's public API. */
export { PortwallError, ERROR_CODES } from './errors.js';
export type { ErrorCode, ErrorDetails } from './errors.js';
export type { IpFamily } from './address.js';
export { IpsetClient, IPSET_TYPES, IPSET_MAX_NAME } from './ipset.js';
export type { IpsetType, IpsetCreateOptions, IpsetMember, IpsetInfo } from './ipset.js';
export { ConntrackClient, PROTOCOLS, TCP_STATES, STATUS } from './conntrack.js';
export type {
  ConntrackEntry,
  ConntrackEntrySpec,
  ConntrackEvent,
  ConntrackFilter,
  ConntrackSubscription,
  ConntrackTuple,
  PortMatch,
  Protocol,
  SubscribeOptions,
  TcpState,
} from './conntrack.js';
