/** Folds wire events into a job snapshot, the same way the server does (docs/protocol.md "The snapshot"). */

import { TERMINAL, type Job, type LogLine, type WireEvent } from './types';

/** The snapshot keeps its newest 50 log lines, like the server's. */
const SNAPSHOT_LOGS = 50;

/**
 * Applies `ev` to `job` in place when it is newer than the job's seq; returns whether it did.
 * Gaps are allowed (coalesced progress, omitted channel jobs): every event carries the status after it.
 */
export function applyEvent(job: Job, ev: WireEvent): boolean {
  if (ev.seq <= job.seq) return false;
  job.seq = ev.seq;
  job.updated_at = ev.timestamp;
  if (typeof ev.status === 'string') job.status = ev.status;
  if (typeof ev.message === 'string') job.message = ev.message;
  if (ev.metadata && typeof ev.metadata === 'object') job.metadata = { ...job.metadata, ...(ev.metadata as object) };
  switch (ev.type) {
    case 'progress':
      if (typeof ev.progress === 'number') job.progress = ev.progress;
      if (typeof ev.stage === 'string') job.stage = ev.stage;
      if (ev.checkpoint !== undefined) job.checkpoint = ev.checkpoint;
      // Every progress event carries the server's current estimate; none means unknown.
      setNum(job, 'rate', ev.rate);
      setNum(job, 'eta_seconds', ev.eta_seconds);
      break;
    case 'stalled':
      job.stalled_since = ev.timestamp;
      break;
    case 'recovered':
      delete job.stalled_since;
      break;
    case 'cancel_requested': {
      const c: NonNullable<Job['cancel_requested']> = { at: ev.timestamp, seq: ev.seq };
      if (typeof ev.by === 'string') c.by = ev.by;
      if (typeof ev.reason === 'string') c.reason = ev.reason;
      job.cancel_requested = c;
      break;
    }
    case 'step': {
      const step = String(ev.step);
      const prev = job.step?.step;
      if (prev && prev !== step && !job.completed_steps.includes(prev)) job.completed_steps = [...job.completed_steps, prev];
      job.step = typeof ev.label === 'string' ? { step, label: ev.label } : { step };
      break;
    }
    case 'log': {
      const line: LogLine = { seq: ev.seq, timestamp: ev.timestamp, line: String(ev.line) };
      if (typeof ev.level === 'string') line.level = ev.level;
      job.logs = [...job.logs.slice(-(SNAPSHOT_LOGS - 1)), line];
      job.log_count += 1;
      break;
    }
    case 'completed': {
      job.progress = 100;
      const cur = job.step?.step;
      if (cur && !job.completed_steps.includes(cur)) job.completed_steps = [...job.completed_steps, cur];
      if ('result' in ev) job.result = ev.result;
      job.finished_at = ev.timestamp;
      break;
    }
    case 'failed':
      job.error = String(ev.error);
      job.finished_at = ev.timestamp;
      break;
    case 'cancelled':
      if (typeof ev.reason === 'string') job.message = ev.reason;
      if (typeof ev.error === 'string') job.error = ev.error; // cancel_timeout: the worker never confirmed
      job.finished_at = ev.timestamp;
      break;
    case 'created':
      if (typeof ev.project === 'string') job.project = ev.project;
      setNum(job, 'heartbeat_timeout', ev.heartbeat_timeout);
      setNum(job, 'stall_fail_after', ev.stall_fail_after);
      setNum(job, 'cancel_timeout', ev.cancel_timeout);
      break;
  }
  if (TERMINAL.has(job.status)) {
    // A finished job is neither stalled nor running out of time (the server's rule).
    delete job.stalled_since;
    delete job.eta_seconds;
  }
  return true;
}

type NumKey = 'rate' | 'eta_seconds' | 'heartbeat_timeout' | 'stall_fail_after' | 'cancel_timeout';
function setNum(job: Job, k: NumKey, v: unknown): void {
  if (typeof v === 'number') job[k] = v;
  else delete job[k];
}

/** A job known only from an event (a channel's live event for a job it sent no snapshot of). */
export function jobFromEvent(ev: WireEvent): Job {
  const job: Job = {
    id: ev.job_id,
    status: ev.status,
    progress: 0,
    completed_steps: [],
    metadata: {},
    logs: [],
    log_count: 0,
    seq: ev.seq - 1,
    history_start: 1,
    created_at: ev.timestamp,
    updated_at: ev.timestamp,
  };
  applyEvent(job, ev);
  return job;
}
