/** Shared pieces of the HTTP transports: the reachability/auth probe, snapshot fetch, abortable fetch. */
import { JobwireError, errorFromResponse } from '../errors.js';
import type { JobSnapshot } from '../types.js';
import type { TransportContext } from './types.js';
import { authHeaders } from './types.js';

/** fetch that turns network failures into JobwireError('network'), and passes aborts through. */
export async function send(ctx: TransportContext, path: string, init: RequestInit = {}): Promise<Response> {
  try {
    return await ctx.fetch(ctx.baseUrl + path, {
      ...init,
      headers: { ...authHeaders(ctx.token()), ...(init.headers as Record<string, string> | undefined) },
    });
  } catch (e) {
    if (init.signal?.aborted) throw e;
    throw new JobwireError('network', `request to ${path} failed: ${(e as Error).message ?? e}`, { cause: e });
  }
}

/** Checks that the server answers HTTP and takes the token: `GET /v1/jobs?limit=1` (needs jobs:watch). */
export async function probe(ctx: TransportContext, signal: AbortSignal): Promise<void> {
  const res = await send(ctx, '/v1/jobs?limit=1', { signal });
  if (!res.ok) throw await errorFromResponse(res);
  await res.body?.cancel();
}

export async function fetchSnapshot(ctx: TransportContext, jobId: string, signal: AbortSignal): Promise<JobSnapshot> {
  const res = await send(ctx, `/v1/jobs/${encodeURIComponent(jobId)}`, { signal });
  if (!res.ok) throw await errorFromResponse(res);
  return (await res.json()) as JobSnapshot;
}

/** A JobwireError for errors per job (reported as an `error` frame) vs. ones that end the transport. */
export function isPerJob(e: unknown): e is JobwireError {
  return e instanceof JobwireError && (e.code === 'job_not_found' || e.code === 'forbidden' || e.code === 'invalid_job_id');
}
