/** Wire shapes of the jobwire protocol v1 (docs/protocol.md) as the client reads them. */

export type JobStatus = 'pending' | 'queued' | 'in_progress' | 'completed' | 'failed' | 'cancelled';

/** A log line of a snapshot (`logs[]`) or of a `log` event. */
export interface WireLog {
  seq: number;
  timestamp: string;
  line: string;
  level?: string;
}

/** A job's snapshot: the fold of its events (`GET /v1/jobs/{id}`, `snapshot` frames). */
export interface JobSnapshot {
  id: string;
  project?: string;
  tenant?: string;
  created_by?: string;
  status: JobStatus;
  progress: number;
  stage?: string;
  step?: { step: string; label?: string };
  completed_steps: string[];
  message?: string;
  metadata: Record<string, unknown>;
  result?: unknown;
  error?: string;
  logs: WireLog[];
  log_count: number;
  seq: number;
  history_start: number;
  created_at: string;
  updated_at: string;
  finished_at?: string;
  /** Liveness and cancel settings given at create (seconds); absent when unset. */
  heartbeat_timeout?: number;
  stall_fail_after?: number;
  cancel_timeout?: number;
  /** Present only while the job is stalled (no heartbeat or publish within `heartbeat_timeout`). */
  stalled_since?: string;
  /** Present once a cancel was requested (it stays after the job ended). */
  cancel_requested?: WireCancelRequest;
  /** The last checkpoint a heartbeat or progress event carried. */
  checkpoint?: unknown;
  /** Percent per second, smoothed by the server; absent while unknown. */
  rate?: number;
  /** Seconds left at `rate`; absent while unknown and once the job ended. */
  eta_seconds?: number;
  /** Server bookkeeping: `[epoch, first seq written in it]` pairs (engines with epochs only; clients may ignore it). */
  epochs?: [number, number][];
}

/** A requested cancel, as the snapshot keeps it (`seq` is the `cancel_requested` event's). */
export interface WireCancelRequest {
  at: string;
  seq?: number;
  by?: string;
  reason?: string;
}

/** A wire event as watchers receive it. Type-specific fields are optional here; `type` tells which are present. */
export interface WireEvent {
  type:
    | 'created'
    | 'status'
    | 'progress'
    | 'step'
    | 'log'
    | 'completed'
    | 'failed'
    | 'cancelled'
    | 'custom'
    | 'stalled'
    | 'recovered'
    | 'cancel_requested';
  job_id: string;
  seq: number;
  timestamp: string;
  status: JobStatus;
  event_id?: string;
  metadata?: Record<string, unknown>;
  project?: string;
  progress?: number;
  stage?: string;
  message?: string;
  step?: string;
  label?: string;
  line?: string;
  level?: string;
  result?: unknown;
  error?: string;
  reason?: string;
  name?: string;
  data?: unknown;
  /** `progress`: server-computed percent per second and seconds left, when known. */
  rate?: number;
  eta_seconds?: number;
  /** `progress`: a checkpoint a heartbeat or the worker sent. */
  checkpoint?: unknown;
  /** `created` (the job's settings) and `stalled` (the timeout that ran out). */
  heartbeat_timeout?: number;
  stall_fail_after?: number;
  cancel_timeout?: number;
  /** `recovered`: seconds the job was stalled. */
  stalled_for?: number;
  /** `cancel_requested`: the `sub` of who asked. */
  by?: string;
}

/** An event a worker publishes (`POST /v1/jobs/{id}/events`). */
export type PublishEvent =
  | { type: 'status'; status: 'queued' | 'in_progress'; message?: string; event_id?: string; metadata?: Record<string, unknown> }
  | { type: 'progress'; progress: number; stage?: string; message?: string; checkpoint?: unknown; event_id?: string; metadata?: Record<string, unknown> }
  | { type: 'step'; step: string; label?: string; message?: string; event_id?: string; metadata?: Record<string, unknown> }
  | { type: 'log'; line: string; level?: string; event_id?: string; metadata?: Record<string, unknown> }
  | { type: 'completed'; result?: unknown; message?: string; event_id?: string; metadata?: Record<string, unknown> }
  | { type: 'failed'; error: string; message?: string; event_id?: string; metadata?: Record<string, unknown> }
  | { type: 'cancelled'; reason?: string; event_id?: string; metadata?: Record<string, unknown> }
  | { type: 'custom'; name: string; data?: unknown; event_id?: string; metadata?: Record<string, unknown> };

export interface SnapshotFrame {
  type: 'snapshot';
  job_id: string;
  seq: number;
  /** The store's epoch: sent back with `since` on resume (absent on engines that never push ahead of their flush, e.g. Redis). */
  epoch?: number;
  job: JobSnapshot;
}
/**
 * Right after a resume's snapshot: the events the client had from `from` on were taken back
 * (a crash or a failed flush before they were durable). Drop them; seqs `from`.. follow again
 * (they may differ). `epoch` is the one to resume with from now on.
 */
export interface RewoundFrame {
  type: 'rewound';
  job_id: string;
  since: number;
  from: number;
  epoch: number;
}
export interface HistoryTruncatedFrame {
  type: 'history_truncated';
  job_id: string;
  since: number;
  history_start: number;
}
export interface ErrorFrame {
  type: 'error';
  code: string;
  number: number;
  message: string;
  job_id?: string;
}

/** Any JSON object the server sends on a socket or stream. */
export type ServerFrame =
  | SnapshotFrame
  | RewoundFrame
  | HistoryTruncatedFrame
  | ErrorFrame
  | WireEvent
  | { type: 'unsubscribed'; job_id: string }
  | { type: 'heartbeat' | 'pong'; timestamp: string }
  | { type: 'authenticated'; expires_at: number }
  | { type: 'ready'; jobs: number; omitted: number };

export const TERMINAL_STATUSES: readonly JobStatus[] = ['completed', 'failed', 'cancelled'];

export function isTerminalStatus(status: string): boolean {
  return status === 'completed' || status === 'failed' || status === 'cancelled';
}

/** True for frames that are wire events (they carry a seq and an event type). */
export function isWireEvent(frame: { type: string; seq?: unknown }): frame is WireEvent {
  return typeof frame.seq === 'number' && frame.type !== 'snapshot' && frame.type !== 'rewound';
}
