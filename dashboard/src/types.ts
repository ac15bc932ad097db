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
  /** When the last progress event was applied. */
  progress_at?: string;
  /** A child job: its parent's id, its weight in the parent's progress (default 1), how many parents are above it. */
  parent?: string;
  weight?: number;
  depth?: number;
  /** A parent: counts of its children (present once it has one) and each child's last known state, by id. */
  children?: ChildCounts;
  child_jobs?: Record<string, ChildState>;
  /** True once the job published progress itself: then its children no longer move `progress`. */
  own_progress?: boolean;
  complete_when?: 'all_children';
  on_child_failure?: 'fail' | 'continue';
}

export interface ChildCounts {
  total: number;
  pending: number;
  queued: number;
  in_progress: number;
  completed: number;
  failed: number;
  cancelled: number;
  /** Unfinished children the server finds stalled. */
  stalled: number;
}

/** What a parent keeps of one child (`stalled` only while true). */
export interface ChildState {
  status: Status;
  seq: number;
  progress: number;
  weight: number;
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
  /** The store's epoch (engines that push events before they are durable); sent back with `since`. */
  epoch?: number;
  job: Job;
}

/** After a resume's snapshot: events from `from` on were taken back (a crash before they were durable); they follow again. */
export interface RewoundFrame {
  type: 'rewound';
  job_id: string;
  since: number;
  from: number;
  epoch: number;
}

export type ServerFrame =
  | SnapshotFrame
  | RewoundFrame
  | { type: 'history_truncated'; job_id: string; since: number; history_start: number }
  | { type: 'ready'; jobs: number; omitted: number }
  | { type: 'error'; code: string; number: number; message: string; job_id?: string }
  | { type: 'heartbeat' | 'pong' | 'unsubscribed' | 'authenticated'; [k: string]: unknown }
  | WireEvent;
