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
  /** The store's epoch (engines with epochs). */
  epoch?: number;
  /** Set when `epoch` was sent and what the client held from `from` on was taken back. */
  rewound?: { since: number; from: number };
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
    for (;;) {
      const snap = await fetchSnapshot(this.ctx, jobId, signal);
      let cur = latestEpoch(snap);
      this.ctx.hooks.frame({ type: 'snapshot', job_id: jobId, seq: snap.seq, epoch: cur, job: snap });
      let pos = since ?? snap.seq;
      if (since !== undefined) cur = epoch;
      let terminal = isTerminalStatus(snap.status);
      // The HTTP API sends no `rewound` frame: a history page says it (with our epoch sent, the
      // server tells us when what we hold was taken back by a crash), and replays from there.
      for (let first = true; ; first = false) {
        const res = await send(this.ctx, `${path}/events?since=${pos}&limit=1000${cur === undefined ? '' : `&epoch=${cur}`}`, { signal });
        if (!res.ok) throw await errorFromResponse(res);
        const page = (await res.json()) as HistoryPage;
        const rw = page.rewound;
        if (rw) {
          // Taken back between two polls (the server restarted in between): a new cycle from a
          // fresh snapshot, whose first page is this rewind again.
          if (!first) break;
          this.ctx.hooks.frame({ type: 'rewound', job_id: jobId, since: rw.since, from: rw.from, epoch: page.epoch! });
          pos = rw.from - 1;
        }
        cur = page.epoch ?? cur;
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
      since = pos;
      epoch = cur;
    }
  }
}

/** The newest epoch that wrote the job (its snapshot's `epochs`); undefined on engines without epochs. */
export function latestEpoch(s: JobSnapshot): number | undefined {
  const e = s.epochs;
  return e && e.length ? Math.max(...e.map((x) => x[0])) : undefined;
}
