/** Folds wire events into a job snapshot, the same way the server does (docs/protocol.md "The snapshot"). */

import { TERMINAL, type ChildCounts, type ChildState, type Job, type LogLine, type Status, type WireEvent } from './types';

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
      job.progress_at = ev.timestamp;
      job.own_progress = true; // from now on its children no longer move its progress
      break;
    case 'child':
      foldChild(job, ev);
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
      if (typeof ev.parent === 'string') job.parent = ev.parent;
      if (typeof ev.weight === 'number') job.weight = ev.weight;
      if (typeof ev.depth === 'number' && ev.depth > 0) job.depth = ev.depth;
      if (ev.complete_when === 'all_children') job.complete_when = ev.complete_when;
      if (ev.on_child_failure === 'fail' || ev.on_child_failure === 'continue') job.on_child_failure = ev.on_child_failure;
      break;
  }
  if (TERMINAL.has(job.status)) {
    // A finished job is neither stalled nor running out of time (the server's rule).
    delete job.stalled_since;
    delete job.eta_seconds;
  }
  return true;
}

/**
 * A `child` event (the server's fold_child): keeps the child's state unless an update with a
 * higher child seq is known, recounts, and (unless the job publishes progress itself) sets
 * `progress` to the weighted mean of its children's, an ended child counting as 100, to 0.1.
 */
function foldChild(job: Job, ev: WireEvent): void {
  const id = String(ev.child);
  const all = (job.child_jobs ??= {});
  const known = all[id];
  const seq = Number(ev.child_seq);
  if (!known || seq > known.seq) {
    const s: ChildState = { status: ev.child_status as Status, seq, progress: Number(ev.progress), weight: Number(ev.weight) };
    if (ev.stalled === true) s.stalled = true;
    if (!known) {
      const ids = sortedIds(all);
      ids.splice(insertAt(ids, id), 0, id);
    }
    all[id] = s;
  }
  const c: ChildCounts = { total: 0, pending: 0, queued: 0, in_progress: 0, completed: 0, failed: 0, cancelled: 0, stalled: 0 };
  let sum = 0;
  let weights = 0;
  // In id order, like the server's BTreeMap: the float sum (and so its rounding) comes out the same.
  for (const k of sortedIds(all)) {
    const s = all[k]!;
    c.total += 1;
    c[s.status] += 1;
    const ended = TERMINAL.has(s.status);
    if (s.stalled && !ended) c.stalled += 1;
    sum += (ended ? 100 : s.progress) * s.weight;
    weights += s.weight;
  }
  job.children = c;
  if (!job.own_progress && weights > 0) job.progress = Math.round((sum / weights) * 10) / 10;
}

/** The ids of a `child_jobs` object in byte order (ids are ASCII), kept per object across events. */
const idOrder = new WeakMap<object, string[]>();
export function sortedIds(all: Record<string, ChildState>): string[] {
  let ids = idOrder.get(all);
  if (!ids) {
    ids = Object.keys(all).sort();
    idOrder.set(all, ids);
  }
  return ids;
}

function insertAt(ids: string[], id: string): number {
  let lo = 0;
  let hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ids[mid]! < id) lo = mid + 1;
    else hi = mid;
  }
  return lo;
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
