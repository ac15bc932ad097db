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
  /** Set by a future liveness `stalled` event (or snapshot field); cleared by the job's next event. */
  stalled?: boolean;
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
