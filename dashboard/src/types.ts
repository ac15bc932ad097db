/** Wire shapes the dashboard reads (docs/protocol.md: the snapshot, wire events, server frames). */

export type Status = 'pending' | 'queued' | 'in_progress' | 'completed' | 'failed' | 'cancelled';

export const STATUSES: readonly Status[] = ['pending', 'queued', 'in_progress', 'completed', 'failed', 'cancelled'];

export const TERMINAL: ReadonlySet<string> = new Set(['completed', 'failed', 'cancelled']);

export interface LogLine {
  seq: number;
  timestamp: string;
  line: string;
  level?: string;
}

export interface Job {
  id: string;
  project?: string;
  tenant?: string;
  created_by?: string;
  status: Status;
  progress: number;
  stage?: string;
  step?: { step: string; label?: string };
  completed_steps: string[];
  message?: string;
  metadata: Record<string, unknown>;
  result?: unknown;
  error?: string;
  logs: LogLine[];
  log_count: number;
  seq: number;
  history_start: number;
  created_at: string;
  updated_at: string;
  finished_at?: string;
  /** Liveness and cancel settings given at create (seconds). */
  heartbeat_timeout?: number;
  stall_fail_after?: number;
  cancel_timeout?: number;
  /** Present only while the job is stalled (a `stalled` event sets it, `recovered` or the end clears it). */
  stalled_since?: string;
  /** Present once a cancel was requested; the worker has to stop and publish `cancelled`. */
  cancel_requested?: { at: string; seq?: number; by?: string; reason?: string };
  checkpoint?: unknown;
  /** Percent per second and seconds left, computed by the server on each progress event. */
  rate?: number;
  eta_seconds?: number;
}

export interface WireEvent {
  type: string;
  job_id: string;
  seq: number;
  timestamp: string;
  status: Status;
  [field: string]: unknown;
}

export interface SnapshotFrame {
  type: 'snapshot';
  job_id: string;
  seq: number;
  job: Job;
}

export type ServerFrame =
  | SnapshotFrame
  | { type: 'history_truncated'; job_id: string; since: number; history_start: number }
  | { type: 'ready'; jobs: number; omitted: number }
  | { type: 'error'; code: string; number: number; message: string; job_id?: string }
  | { type: 'heartbeat' | 'pong' | 'unsubscribed' | 'authenticated'; [k: string]: unknown }
  | WireEvent;
