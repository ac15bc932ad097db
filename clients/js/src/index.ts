/**
 * @jobwire/client: live job views from a jobwire server, for browsers and Node >= 20.
 *
 * # Layout
 * - client.ts: `Jobwire` (watch, connection state, HTTP API)
 * - connection.ts: the reconnect loop (backoff, close-code actions, state)
 * - entry.ts: one job's subscribe cycle, resume position and dedupe
 * - view.ts: the immutable JobView and its reducer
 * - channel.ts: project channels (a live list of jobs)
 * - api.ts: publish / create / get / list / cancel with retries
 * - transport/: WebSocket, SSE and polling transports
 * - codes.ts, errors.ts, token.ts, backoff.ts, types.ts
 */
export { Jobwire, baseUrl } from './client.js';
export type { JobwireOptions, WatchOptions, JobSubscription } from './client.js';
export type { ConnectionInfo, ConnectionState } from './connection.js';
export { ProjectWatch } from './channel.js';
export type { ProjectWatchOptions } from './channel.js';
export type { SnapshotInfo, GapInfo, RewindInfo } from './entry.js';
export type { JobView, LogLine, StepView, CancelRequest } from './view.js';
export { viewFromSnapshot, applyEvent, viewFromCreated, truncateView } from './view.js';
export { JobwireError, StopRetrying } from './errors.js';
export { CLOSE_CODES, ERROR_CODES, closeAction } from './codes.js';
export type { CloseAction } from './codes.js';
export { fullJitter } from './backoff.js';
export { retryDelay } from './api.js';
export { tokenExpiry } from './token.js';
export type { GetToken } from './token.js';
export type { TransportKind, WebSocketCtor, WebSocketLike } from './transport/types.js';
export type {
  JobStatus,
  JobSnapshot,
  WireEvent,
  WireLog,
  WireCancelRequest,
  PublishEvent,
  SnapshotFrame,
  RewoundFrame,
  ServerFrame,
} from './types.js';
export { isTerminalStatus, TERMINAL_STATUSES } from './types.js';
export type { PublishResult, CreateJobInput, CreateJobResult, ListJobsQuery, HistoryPage, RetryOptions, CancelOptions, CancelResult, HeartbeatInput, HeartbeatResult } from './api.js';
