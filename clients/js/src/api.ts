/**
 * The HTTP API for workers and pages: publish with idempotency keys and retries, create,
 * read, list and cancel jobs. Retry rules (the Python SDK's RetryPolicy): 3 attempts, delay n =
 * uniform(0.5, 1) * min(8 s, 0.5 s * 2^n), retrying network errors, 5xx and 429; a longer
 * Retry-After replaces the delay.
 */
import { sleep } from './backoff.js';
import { JobwireError, errorFromResponse } from './errors.js';
import type { TokenSource } from './token.js';
import type { JobSnapshot, JobStatus, PublishEvent, WireEvent } from './types.js';

export interface RetryOptions {
  /** Attempts in all, the first included (default 3). */
  attempts: number;
  minDelay: number;
  maxDelay: number;
}

export interface HttpContext {
  baseUrl: string;
  fetch: typeof fetch;
  tokens: TokenSource;
  retry: RetryOptions;
}

export interface PublishResult {
  job_id: string;
  /** One seq per input event; a retried `event_id` maps to its original seq. */
  seqs: number[];
  /** True when a cancel of the job was requested: the worker should stop and publish `cancelled`. */
  cancel_requested?: boolean;
}

export interface CancelOptions {
  reason?: string;
  /** End a running job now instead of asking its worker to stop. */
  force?: boolean;
}
/**
 * A cancel's outcome. A job no worker had started (or `force`) ends at once: `status`
 * `cancelled`, `cancelRequested` false. A running job is asked to stop: `status`
 * `in_progress`, `cancelRequested` true, until its worker publishes `cancelled`.
 */
export interface CancelResult {
  jobId: string;
  /** The `cancelled` or `cancel_requested` event's seq (a repeated request answers the same one). */
  seqs: number[];
  status: JobStatus;
  cancelRequested: boolean;
}
export interface HeartbeatInput {
  /** Appends a `progress` event at this percent. */
  progress?: number;
  /** Kept in the snapshot (`checkpoint`) for a worker that resumes the job. */
  checkpoint?: unknown;
}
export interface HeartbeatResult {
  jobId: string;
  status: JobStatus;
  /** Stop work and publish `{"type":"cancelled"}` when true. */
  cancelRequested: boolean;
}

export interface CreateJobInput {
  id?: string;
  project?: string;
  metadata?: Record<string, unknown>;
}
export interface CreateJobResult {
  created: boolean;
  job: JobSnapshot;
  urls: { events: string; self: string; sse: string; ws: string };
}
export interface ListJobsQuery {
  status?: JobStatus;
  project?: string;
  after?: string;
  limit?: number;
}
export interface HistoryPage {
  job_id: string;
  events: WireEvent[];
  history_start: number;
  next_since: number;
  seq: number;
  status: JobStatus;
  truncated: boolean;
}

const JOB_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Throws a typed error for an id the server would refuse. */
export function checkJobId(jobId: unknown): asserts jobId is string {
  if (typeof jobId !== 'string' || !JOB_ID.test(jobId)) {
    throw new JobwireError('invalid_job_id', `invalid job id ${JSON.stringify(jobId)}: 1-128 characters of [A-Za-z0-9._:-]`);
  }
}

function randomKey(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (c && typeof c.randomUUID === 'function') return c.randomUUID().replace(/-/g, '');
  return Math.random().toString(36).slice(2) + Date.now().toString(36) + Math.random().toString(36).slice(2);
}

function retryable(e: JobwireError): boolean {
  return e.code === 'network' || (e.status !== undefined && (e.status >= 500 || e.status === 429));
}

/** The wait before retry `n` (0-based), as the Python SDK computes it. */
export function retryDelay(n: number, r: RetryOptions, retryAfterMs?: number, random: () => number = Math.random): number {
  const d = Math.min(r.maxDelay, r.minDelay * 2 ** n) * (0.5 + random() / 2);
  return retryAfterMs !== undefined && retryAfterMs > d ? retryAfterMs + random() * 100 : d;
}

/** One HTTP call with the retry rules. `idempotent: false` disables retries (a create without an id). */
export async function request<T>(ctx: HttpContext, method: string, path: string, body?: unknown, idempotent = true): Promise<T> {
  let refreshed = false;
  for (let attempt = 0; ; attempt++) {
    let err: JobwireError;
    try {
      const token = await ctx.tokens.forConnect();
      const headers: Record<string, string> = {};
      if (token) headers.authorization = `Bearer ${token}`;
      if (body !== undefined) headers['content-type'] = 'application/json';
      const init: RequestInit = { method, headers };
      if (body !== undefined) init.body = JSON.stringify(body);
      const res = await ctx.fetch(ctx.baseUrl + path, init);
      if (res.ok) return (await res.json()) as T;
      err = await errorFromResponse(res);
    } catch (e) {
      if (e instanceof JobwireError) throw e; // from getToken (e.g. StopRetrying)
      err = new JobwireError('network', `${method} ${path} failed: ${(e as Error)?.message ?? e}`, { cause: e });
    }
    if ((err.code === 'token_expired' || err.code === 'unauthorized') && ctx.tokens.canRefresh && !refreshed) {
      refreshed = true;
      await ctx.tokens.refresh();
      attempt--;
      continue;
    }
    if (!idempotent || !retryable(err) || attempt + 1 >= ctx.retry.attempts) throw err;
    await sleep(retryDelay(attempt, ctx.retry, err.retryAfterMs));
  }
}

/** Publishes one event or a batch (atomic, in order). Events without `event_id` get one, so retries never double. */
export async function publish(ctx: HttpContext, jobId: string, events: PublishEvent | readonly PublishEvent[]): Promise<PublishResult> {
  checkJobId(jobId);
  const list = Array.isArray(events) ? events : [events as PublishEvent];
  if (list.length === 0 || list.length > 1000) {
    throw new JobwireError('invalid_event', `a publish takes 1 to 1000 events, got ${list.length}`);
  }
  const prefix = randomKey();
  const body = list.map((ev, i) => {
    if (!ev || typeof ev !== 'object' || typeof (ev as { type?: unknown }).type !== 'string') {
      throw new JobwireError('invalid_event', `event ${i}: an object with a string "type" is required`);
    }
    return ev.event_id === undefined ? { ...ev, event_id: `${prefix}-${i}` } : ev;
  });
  return request<PublishResult>(ctx, 'POST', `/v1/jobs/${encodeURIComponent(jobId)}/events`, body);
}

export async function createJob(ctx: HttpContext, input: CreateJobInput = {}): Promise<CreateJobResult> {
  if (input.id !== undefined) checkJobId(input.id);
  // Without an id a retry could create a second job: no retries then.
  return request<CreateJobResult>(ctx, 'POST', '/v1/jobs', input, input.id !== undefined);
}

export async function getJob(ctx: HttpContext, jobId: string): Promise<JobSnapshot> {
  checkJobId(jobId);
  return request<JobSnapshot>(ctx, 'GET', `/v1/jobs/${encodeURIComponent(jobId)}`);
}

export async function listJobs(ctx: HttpContext, q: ListJobsQuery = {}): Promise<{ jobs: JobSnapshot[]; next: string | null }> {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined) p.set(k, String(v));
  const qs = p.toString();
  return request(ctx, 'GET', `/v1/jobs${qs ? `?${qs}` : ''}`);
}

export async function history(ctx: HttpContext, jobId: string, since = 0, limit = 1000): Promise<HistoryPage> {
  checkJobId(jobId);
  return request(ctx, 'GET', `/v1/jobs/${encodeURIComponent(jobId)}/events?since=${since}&limit=${limit}`);
}

type Reply = { job_id: string; seqs?: number[]; status: JobStatus; cancel_requested: boolean };

/** Cancels a job, or asks its worker to stop when it runs (see CancelResult). A string is the reason. */
export async function cancel(ctx: HttpContext, jobId: string, opts: string | CancelOptions = {}): Promise<CancelResult> {
  checkJobId(jobId);
  const o = typeof opts === 'string' ? { reason: opts } : opts;
  const r = await request<Reply>(ctx, 'POST', `/v1/jobs/${encodeURIComponent(jobId)}/cancel`, { event_id: `cancel-${randomKey()}`, ...o });
  return { jobId: r.job_id, seqs: r.seqs ?? [], status: r.status, cancelRequested: r.cancel_requested };
}

/** A worker's heartbeat: renews the job's liveness deadline and tells whether a cancel was requested. */
export async function heartbeat(ctx: HttpContext, jobId: string, input: HeartbeatInput = {}): Promise<HeartbeatResult> {
  checkJobId(jobId);
  const body = input.progress === undefined && input.checkpoint === undefined ? undefined : input;
  const r = await request<Reply>(ctx, 'POST', `/v1/jobs/${encodeURIComponent(jobId)}/heartbeat`, body);
  return { jobId: r.job_id, status: r.status, cancelRequested: r.cancel_requested };
}
