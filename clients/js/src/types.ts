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
}

/** A wire event as watchers receive it. Type-specific fields are optional here; `type` tells which are present. */
export interface WireEvent {
  type: 'created' | 'status' | 'progress' | 'step' | 'log' | 'completed' | 'failed' | 'cancelled' | 'custom';
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
}

/** An event a worker publishes (`POST /v1/jobs/{id}/events`). */
export type PublishEvent =
  | { type: 'status'; status: 'queued' | 'in_progress'; message?: string; event_id?: string; metadata?: Record<string, unknown> }
  | { type: 'progress'; progress: number; stage?: string; message?: string; event_id?: string; metadata?: Record<string, unknown> }
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
  job: JobSnapshot;
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
  return typeof frame.seq === 'number' && frame.type !== 'snapshot';
}
