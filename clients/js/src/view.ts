/**
 * The reduced, immutable JobView: built from a snapshot (or a `created` event) and advanced
 * by wire events with the server's own fold rules (docs/protocol.md "The snapshot").
 */
import type { JobSnapshot, JobStatus, WireCancelRequest, WireEvent, WireLog } from './types.js';
import { isTerminalStatus } from './types.js';

/** A log line with its 1-based line number in the job (line numbers survive reconnects and gaps). */
export interface LogLine {
  readonly number: number;
  readonly seq: number;
  readonly timestamp: string;
  readonly line: string;
  readonly level?: string;
}

/** One step of the job: done (left behind) or active (the current step). */
export interface StepView {
  readonly name: string;
  readonly label?: string;
  readonly state: 'done' | 'active';
}

/** The reduced job. Every change produces a new frozen object, so `===` tells whether it changed. */
export interface JobView {
  readonly id: string;
  readonly project?: string;
  readonly status: JobStatus;
  /** 0 to 100, as the server sends it. */
  readonly progress: number;
  readonly stage?: string;
  readonly message?: string;
  /** The current step, if any. */
  readonly step?: { readonly step: string; readonly label?: string };
  /** Steps left behind, in order. */
  readonly completedSteps: readonly string[];
  /** Completed steps then the current one, with the labels seen. */
  readonly steps: readonly StepView[];
  readonly metadata: Readonly<Record<string, unknown>>;
  readonly result?: unknown;
  readonly error?: string;
  /** The newest log lines (at most the client's `maxLogs`), oldest first. */
  readonly logs: readonly LogLine[];
  /** How many log lines the job has had in all. */
  readonly logCount: number;
  /** Seq of the last event folded in. */
  readonly seq: number;
  readonly historyStart: number;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly finishedAt?: string;
  readonly isTerminal: boolean;
  /** Liveness and cancel settings given at create (seconds). */
  readonly heartbeatTimeout?: number;
  readonly stallFailAfter?: number;
  readonly cancelTimeout?: number;
  /** When the job was found stalled; set only while it is stalled (a `recovered` clears it). */
  readonly stalledSince?: string;
  /** Set once someone asked for a cancel the worker has to confirm (kept after the job ended). */
  readonly cancelRequested?: CancelRequest;
  /** The last checkpoint a heartbeat or progress event carried. */
  readonly checkpoint?: unknown;
  /** Percent per second (server-computed, smoothed); absent while unknown. */
  readonly rate?: number;
  /** Seconds left at `rate`; absent while unknown and once the job ended. */
  readonly etaSeconds?: number;
}

/** A requested cancel: when, the `cancel_requested` event's seq, who asked and why. */
export interface CancelRequest {
  readonly at: string;
  readonly seq?: number;
  readonly by?: string;
  readonly reason?: string;
}

function cancelRequest(c: WireCancelRequest): CancelRequest {
  return Object.freeze(JSON.parse(JSON.stringify(c)) as CancelRequest);
}

/** Reducer settings. */
export interface ViewOptions {
  /** Log lines kept in the view (default 1000). */
  maxLogs: number;
  /** Step labels seen so far (name -> label), shared across reductions of one job. */
  labels: Map<string, string>;
}

function freezeView(v: Omit<JobView, 'steps' | 'isTerminal'>, labels: Map<string, string>): JobView {
  const steps: StepView[] = v.completedSteps.map((name) => stepView(name, labels.get(name), 'done'));
  if (v.step && !v.completedSteps.includes(v.step.step)) {
    steps.push(stepView(v.step.step, v.step.label ?? labels.get(v.step.step), 'active'));
  }
  const out = { ...v, steps: Object.freeze(steps), isTerminal: isTerminalStatus(v.status) };
  for (const k of Object.keys(out) as (keyof typeof out)[]) if (out[k] === undefined) delete out[k];
  return Object.freeze(out) as JobView;
}

function stepView(name: string, label: string | undefined, state: 'done' | 'active'): StepView {
  return Object.freeze(label === undefined ? { name, state } : { name, label, state });
}

function logLine(number: number, l: WireLog): LogLine {
  const out: { number: number; seq: number; timestamp: string; line: string; level?: string } = {
    number,
    seq: l.seq,
    timestamp: l.timestamp,
    line: l.line,
  };
  if (l.level !== undefined) out.level = l.level;
  return Object.freeze(out);
}

/**
 * A view from a snapshot. `previous` (the view before a gap) lends its older log lines,
 * the ones numbered before the snapshot's first, so a log tail is not cut short by a resync.
 */
export function viewFromSnapshot(s: JobSnapshot, opts: ViewOptions, previous?: JobView | null): JobView {
  if (s.step?.label !== undefined) opts.labels.set(s.step.step, s.step.label);
  const first = s.log_count - s.logs.length + 1;
  let logs: LogLine[] = s.logs.map((l, i) => logLine(first + i, l));
  if (previous && previous.id === s.id) {
    logs = previous.logs.filter((l) => l.number < first).concat(logs);
  }
  if (logs.length > opts.maxLogs) logs = logs.slice(logs.length - opts.maxLogs);
  const v: Omit<JobView, 'steps' | 'isTerminal'> = {
    id: s.id,
    project: s.project,
    status: s.status,
    progress: s.progress,
    stage: s.stage,
    message: s.message,
    step: s.step ? Object.freeze({ ...s.step }) : undefined,
    completedSteps: Object.freeze([...s.completed_steps]),
    metadata: Object.freeze({ ...s.metadata }),
    result: s.result,
    error: s.error,
    logs: Object.freeze(logs),
    logCount: s.log_count,
    seq: s.seq,
    historyStart: s.history_start,
    createdAt: s.created_at,
    updatedAt: s.updated_at,
    finishedAt: s.finished_at,
    heartbeatTimeout: s.heartbeat_timeout,
    stallFailAfter: s.stall_fail_after,
    cancelTimeout: s.cancel_timeout,
    stalledSince: s.stalled_since,
    cancelRequested: s.cancel_requested && cancelRequest(s.cancel_requested),
    checkpoint: s.checkpoint,
    rate: s.rate,
    etaSeconds: s.eta_seconds,
  };
  return freezeView(v, opts.labels);
}

/**
 * The view with its log lines from seq `from` on dropped (for a rebuild after `rewound`:
 * `viewFromSnapshot(snapshot, opts, truncateView(old, from))` keeps only what was not taken back).
 */
export function truncateView(v: JobView, from: number): JobView {
  if (v.logs.every((l) => l.seq < from)) return v;
  const { steps: _s, isTerminal: _t, ...rest } = v;
  return freezeView({ ...rest, logs: Object.freeze(v.logs.filter((l) => l.seq < from)) }, new Map());
}

/** A view from a `created` event (a project channel's first frame for a job created after connect). */
export function viewFromCreated(e: WireEvent, opts: ViewOptions): JobView {
  return freezeView(
    {
      id: e.job_id,
      project: e.project,
      status: e.status,
      progress: 0,
      completedSteps: Object.freeze([]),
      metadata: Object.freeze({ ...(e.metadata ?? {}) }),
      logs: Object.freeze([]),
      logCount: 0,
      seq: e.seq,
      historyStart: 1,
      createdAt: e.timestamp,
      updatedAt: e.timestamp,
      heartbeatTimeout: e.heartbeat_timeout,
      stallFailAfter: e.stall_fail_after,
      cancelTimeout: e.cancel_timeout,
    },
    opts.labels,
  );
}

/** Folds one wire event into a view (the caller has checked `e.seq > v.seq`). */
export function applyEvent(v: JobView, e: WireEvent, opts: ViewOptions): JobView {
  const n: { -readonly [K in keyof JobView]: JobView[K] } = { ...v };
  n.seq = e.seq;
  n.updatedAt = e.timestamp;
  if (typeof e.status === 'string') n.status = e.status;
  if (e.metadata) n.metadata = Object.freeze({ ...v.metadata, ...e.metadata });
  if (e.message !== undefined) n.message = e.message;
  const leaveStep = (): void => {
    if (v.step && !n.completedSteps.includes(v.step.step)) {
      n.completedSteps = Object.freeze([...n.completedSteps, v.step.step]);
    }
  };
  switch (e.type) {
    case 'progress':
      if (typeof e.progress === 'number') n.progress = e.progress;
      if (e.stage !== undefined) n.stage = e.stage;
      if (e.checkpoint !== undefined) n.checkpoint = e.checkpoint;
      // Each progress event carries the server's current estimate; none means unknown.
      n.rate = e.rate;
      n.etaSeconds = e.eta_seconds;
      break;
    case 'step':
      if (e.label !== undefined && e.step !== undefined) opts.labels.set(e.step, e.label);
      if (e.step !== undefined && v.step?.step !== e.step) leaveStep();
      if (e.step !== undefined) {
        n.step = Object.freeze(e.label === undefined ? { step: e.step } : { step: e.step, label: e.label });
      }
      break;
    case 'log': {
      n.logCount = v.logCount + 1;
      const line: WireLog = { seq: e.seq, timestamp: e.timestamp, line: e.line ?? '' };
      if (e.level !== undefined) line.level = e.level;
      const logs = v.logs.length >= opts.maxLogs ? v.logs.slice(v.logs.length - opts.maxLogs + 1) : v.logs.slice();
      logs.push(logLine(n.logCount, line));
      n.logs = Object.freeze(logs);
      break;
    }
    case 'completed':
      n.progress = 100;
      if ('result' in e) n.result = e.result;
      leaveStep();
      n.finishedAt = e.timestamp;
      break;
    case 'failed':
      n.error = e.error;
      n.finishedAt = e.timestamp;
      break;
    case 'cancelled':
      if (e.reason !== undefined) n.message = e.reason;
      if (e.error !== undefined) n.error = e.error; // cancel_timeout: the worker never confirmed
      n.finishedAt = e.timestamp;
      break;
    case 'stalled':
      n.stalledSince = e.timestamp;
      break;
    case 'recovered':
      n.stalledSince = undefined;
      break;
    case 'cancel_requested':
      n.cancelRequested = cancelRequest({ at: e.timestamp, seq: e.seq, by: e.by, reason: e.reason });
      break;
    default:
      break; // created, status, custom: only the common fields
  }
  // A finished job is neither stalled nor running out of time (the server's rule).
  if (isTerminalStatus(n.status)) n.stalledSince = n.etaSeconds = undefined;
  const { steps: _s, isTerminal: _t, ...rest } = n;
  return freezeView(rest, opts.labels);
}
