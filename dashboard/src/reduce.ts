/** Folds wire events into a job snapshot, the same way the server does (docs/protocol.md "The snapshot"). */

import type { Job, LogLine, WireEvent } from './types';

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
  job.stalled = ev.type === 'stalled';
  switch (ev.type) {
    case 'progress':
      if (typeof ev.progress === 'number') job.progress = ev.progress;
      if (typeof ev.stage === 'string') job.stage = ev.stage;
      break;
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
      job.finished_at = ev.timestamp;
      break;
    case 'created':
      if (typeof ev.project === 'string') job.project = ev.project;
      break;
  }
  return true;
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
