/**
 * The last fallback: HTTP polling of `GET /v1/jobs/{id}` and `GET /v1/jobs/{id}/events?since=`.
 * It emits the same frames as the WebSocket (snapshot, events, history_truncated, rewound).
 */
import { JobwireError, errorFromResponse } from '../errors.js';
import type { JobSnapshot, WireEvent } from '../types.js';
import { isTerminalStatus } from '../types.js';
import { sleep } from '../backoff.js';
import { fetchSnapshot, isPerJob, probe, send } from './http.js';
import type { Position, Transport, TransportContext } from './types.js';

interface HistoryPage {
  events: WireEvent[];
  next_since: number;
  seq: number;
  history_start: number;
  truncated: boolean;
  status: string;
}

export class PollTransport implements Transport {
  readonly kind = 'polling' as const;
  private readonly abort = new AbortController();
  private readonly jobs = new Map<string, AbortController>();
  private readonly pending = new Map<string, Position>();
  private opened = false;
  private openedAt: number | undefined;
  private done = false;

  constructor(private readonly ctx: TransportContext) {
    probe(ctx, this.abort.signal).then(
      () => {
        if (this.done) return;
        this.opened = true;
        this.openedAt = Date.now();
        ctx.hooks.open();
        for (const [id, p] of this.pending) this.start(id, p.since, p.epoch);
        this.pending.clear();
      },
      (e) => this.fail(e),
    );
  }

  private fail(e: unknown): void {
    if (this.done) return;
    this.close();
    const error = e instanceof JobwireError ? e : new JobwireError('network', String(e));
    const out: { wasOpen: boolean; error: JobwireError; openedAt?: number } = { wasOpen: this.opened, error };
    if (this.openedAt !== undefined) out.openedAt = this.openedAt;
    this.ctx.hooks.closed(out);
  }

  subscribe(jobId: string, since: number | undefined, epoch?: number): void {
    if (this.done) return;
    if (!this.opened) this.pending.set(jobId, { since, epoch });
    else this.start(jobId, since, epoch);
  }

  unsubscribe(jobId: string): void {
    this.pending.delete(jobId);
    this.jobs.get(jobId)?.abort();
    this.jobs.delete(jobId);
  }

  send(): boolean {
    return false;
  }

  close(): void {
    this.done = true;
    this.abort.abort();
    for (const c of this.jobs.values()) c.abort();
    this.jobs.clear();
  }

  private start(jobId: string, since: number | undefined, epoch: number | undefined): void {
    const ctl = new AbortController();
    this.jobs.set(jobId, ctl);
    this.loop(jobId, since, epoch, ctl.signal).catch((e) => {
      if (ctl.signal.aborted || this.done) return;
      if (isPerJob(e)) {
        this.ctx.hooks.frame({ type: 'error', code: e.code, number: e.number ?? 0, message: e.message, job_id: jobId });
      } else this.fail(e);
    });
  }

  private async loop(jobId: string, since: number | undefined, epoch: number | undefined, signal: AbortSignal): Promise<void> {
    const path = `/v1/jobs/${encodeURIComponent(jobId)}`;
    const snap = await fetchSnapshot(this.ctx, jobId, signal);
    const snapEpoch = latestEpoch(snap);
    this.ctx.hooks.frame({ type: 'snapshot', job_id: jobId, seq: snap.seq, epoch: snapEpoch, job: snap });
    let pos = since ?? snap.seq;
    // The HTTP API sends no `rewound`: work it out from the job's epoch boundaries, as the server does.
    const from = since === undefined ? undefined : rewindPoint(snap, since, epoch);
    if (from !== undefined && since !== undefined) {
      this.ctx.hooks.frame({ type: 'rewound', job_id: jobId, since, from, epoch: snapEpoch! });
      pos = from - 1;
    }
    let terminal = isTerminalStatus(snap.status);
    for (;;) {
      const res = await send(this.ctx, `${path}/events?since=${pos}&limit=1000`, { signal });
      if (!res.ok) throw await errorFromResponse(res);
      const page = (await res.json()) as HistoryPage;
      if (page.truncated) {
        // Events after `pos` are gone: start a new cycle from a fresh snapshot, like a WebSocket resubscribe.
        const fresh = await fetchSnapshot(this.ctx, jobId, signal);
        this.ctx.hooks.frame({ type: 'snapshot', job_id: jobId, seq: fresh.seq, job: fresh });
        this.ctx.hooks.frame({ type: 'history_truncated', job_id: jobId, since: pos, history_start: page.history_start });
        terminal = isTerminalStatus(fresh.status);
      }
      for (const ev of page.events) {
        this.ctx.hooks.frame(ev);
        if (isTerminalStatus(ev.status)) terminal = true;
      }
      pos = Math.max(pos, page.next_since);
      if (page.next_since < page.seq) continue; // more pages waiting
      if (terminal || isTerminalStatus(page.status)) return;
      await sleep(this.ctx.pollInterval, signal);
    }
  }
}

/** The newest epoch that wrote the job (its snapshot's `epochs`); undefined on engines without epochs. */
export function latestEpoch(s: JobSnapshot): number | undefined {
  const e = s.epochs;
  return e && e.length ? Math.max(...e.map((x) => x[0])) : undefined;
}

/**
 * The first seq a client that had up to `since` in `epoch` must drop, or undefined: the
 * server's `Job::rewind_point` (crates/jobwire-proto/src/job.rs), with the newest epoch that
 * wrote the job standing in for the store's current one.
 */
export function rewindPoint(s: JobSnapshot, since: number, epoch: number | undefined): number | undefined {
  const e = s.epochs;
  if (epoch === undefined || !e || e.length === 0) return undefined;
  const later = e.find((x) => x[0] > epoch)?.[1];
  const first = e[0]!;
  const dropped = first[1] > 1 && first[0] > epoch;
  const suspect = dropped ? s.history_start : Math.min(later ?? Number.MAX_SAFE_INTEGER, s.seq + 1);
  return since >= suspect ? suspect : undefined;
}
