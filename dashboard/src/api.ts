/** HTTP side of the protocol: the server base URL, the token, typed errors and the few endpoints the dashboard reads. */

import type { ChildCounts, Job, Status, WireEvent } from './types';

const TOKEN_KEY = 'jobwire.token';

/** The server's base URL: `?server=` (for a dashboard served from elsewhere) or this page's origin. */
export function serverBase(): string {
  const q = new URLSearchParams(location.search).get('server');
  return (q ?? location.origin).replace(/\/+$/, '');
}

export function wsBase(): string {
  return serverBase().replace(/^http/, 'ws');
}

export function getToken(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function setToken(token: string | null): void {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage disabled: the token lives for this page only */
  }
}

/** Claims of the stored JWT, read without verifying it (only to hide buttons the server would refuse). */
export function tokenClaims(): { scope?: string; tenant?: string; sub?: string; exp?: number } | null {
  const t = getToken();
  if (!t || t.startsWith('jwk_')) return null;
  try {
    const part = t.split('.')[1] ?? '';
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/'));
    return JSON.parse(json);
  } catch {
    return null;
  }
}

/** Whether the token may cancel: development mode (no token), an API key, or a JWT with cancel/publish/admin scope. */
export function canPublish(): boolean {
  const t = getToken();
  if (!t || t.startsWith('jwk_')) return true;
  const scope = tokenClaims()?.scope ?? '';
  return /(^|\s)jobs:(publish|admin|cancel)(\s|$)/.test(scope);
}

/** A refused HTTP request, with the server's error code when it sent one. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
  get isAuth(): boolean {
    return this.status === 401 || this.code === 'unauthorized' || this.code === 'token_expired';
  }
}

export async function request<T>(path: string, init: RequestInit = {}): Promise<T> {
  const headers = new Headers(init.headers);
  const token = getToken();
  if (token) headers.set('Authorization', `Bearer ${token}`);
  let resp: Response;
  try {
    resp = await fetch(serverBase() + path, { ...init, headers });
  } catch (e) {
    throw new ApiError(0, 'network', `server unreachable (${(e as Error).message})`);
  }
  const text = await resp.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON: keep the text for the message */
  }
  if (!resp.ok) {
    const err = (body as { error?: { code?: string; message?: string } } | null)?.error;
    throw new ApiError(resp.status, err?.code ?? 'http_' + resp.status, err?.message ?? (text || resp.statusText));
  }
  return body as T;
}

export interface JobPage {
  jobs: Job[];
  next: string | null;
}

export function listJobs(after: string | null, limit = 1000): Promise<JobPage> {
  const q = new URLSearchParams({ limit: String(limit) });
  if (after) q.set('after', after);
  return request<JobPage>(`/v1/jobs?${q}`);
}

export function getJob(id: string): Promise<Job> {
  return request<Job>(`/v1/jobs/${encodeURIComponent(id)}`);
}

export interface HistoryPage {
  events: WireEvent[];
  next_since: number;
  seq: number;
  history_start: number;
  truncated: boolean;
}

export function history(id: string, since: number, limit = 1000): Promise<HistoryPage> {
  return request<HistoryPage>(`/v1/jobs/${encodeURIComponent(id)}/events?since=${since}&limit=${limit}`);
}

export interface ChildRow {
  id: string;
  status: Status;
  progress: number;
  weight: number;
  stalled: boolean;
  seq: number;
}

export interface ChildrenPage {
  job_id: string;
  counts: ChildCounts;
  children: ChildRow[];
  next: string | null;
}

/** A parent's children in id order after `after`, optionally of one status (`GET /v1/jobs/{id}/children`). */
export function listChildren(id: string, status: string, after: string | null, limit = 100): Promise<ChildrenPage> {
  const q = new URLSearchParams({ limit: String(limit) });
  if (status) q.set('status', status);
  if (after) q.set('after', after);
  return request<ChildrenPage>(`/v1/jobs/${encodeURIComponent(id)}/children?${q}`);
}

/** Ends a job no worker started; asks a running job's worker to stop (`cancel_requested: true`, status in_progress). */
export function cancelJob(id: string, reason: string): Promise<{ seqs: number[]; cancel_requested?: boolean; status?: string }> {
  return request(`/v1/jobs/${encodeURIComponent(id)}/cancel`, {
    method: 'POST',
    body: JSON.stringify({ reason, event_id: `dashboard-cancel-${id}` }),
  });
}

/** The `/metrics` text (no token needed). */
export async function metricsText(): Promise<string> {
  const resp = await fetch(serverBase() + '/metrics');
  if (!resp.ok) throw new ApiError(resp.status, 'http_' + resp.status, 'metrics unavailable');
  return resp.text();
}

/** Parses Prometheus text into name -> value (labelled series are summed per name). */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const v = Number(m[3]);
    if (!Number.isFinite(v)) continue;
    out.set(m[1]!, (out.get(m[1]!) ?? 0) + v);
  }
  return out;
}
