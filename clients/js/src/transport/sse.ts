/**
 * The SSE fallback: one `GET /v1/jobs/{id}/events` stream per job, read with fetch (so the token
 * goes in a header and it runs on Node too). Same frames as the WebSocket; resumes by `since`.
 */
import { JobwireError, errorFromResponse } from '../errors.js';
import type { ServerFrame } from '../types.js';
import { isTerminalStatus, isWireEvent } from '../types.js';
import { fetchSnapshot, isPerJob, probe, send } from './http.js';
import type { Position, Transport, TransportContext } from './types.js';

export class SseTransport implements Transport {
  readonly kind = 'sse' as const;
  private readonly abort = new AbortController();
  private readonly streams = new Map<string, AbortController>();
  private readonly pending = new Map<string, Position>();
  private probed = false;
  private opened = false;
  private openedAt: number | undefined;
  private done = false;

  /**
   * Open means: the probe passed and, if jobs are watched, a stream delivered. A stream that
   * fails before that (a proxy that refuses or buffers event streams) fails the transport as
   * "never opened", so the client moves on to polling.
   */
  constructor(private readonly ctx: TransportContext) {
    probe(ctx, this.abort.signal).then(
      () => {
        if (this.done) return;
        this.probed = true;
        if (this.pending.size === 0) this.markOpen();
        for (const [id, p] of this.pending) this.start(id, p.since, p.epoch);
        this.pending.clear();
      },
      (e) => this.fail(e),
    );
  }

  private markOpen(): void {
    if (this.opened || this.done) return;
    this.opened = true;
    this.openedAt = Date.now();
    this.ctx.hooks.open();
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
    if (!this.probed) this.pending.set(jobId, { since, epoch });
    else this.start(jobId, since, epoch);
  }

  unsubscribe(jobId: string): void {
    this.pending.delete(jobId);
    this.streams.get(jobId)?.abort();
    this.streams.delete(jobId);
  }

  send(): boolean {
    return false;
  }

  close(): void {
    this.done = true;
    this.abort.abort();
    for (const c of this.streams.values()) c.abort();
    this.streams.clear();
  }

  private start(jobId: string, since: number | undefined, epoch: number | undefined): void {
    const ctl = new AbortController();
    this.streams.set(jobId, ctl);
    this.read(jobId, since, epoch, ctl.signal).then(
      () => {
        if (this.streams.get(jobId) === ctl) this.streams.delete(jobId);
      },
      (e) => {
        if (ctl.signal.aborted || this.done) return;
        if (isPerJob(e)) {
          this.ctx.hooks.frame({ type: 'error', code: e.code, number: e.number ?? 0, message: e.message, job_id: jobId });
        } else this.fail(e);
      },
    );
  }

  /** Reads one job's stream to its end. Resolves when the job's terminal event was read. */
  private async read(jobId: string, since: number | undefined, epoch: number | undefined, signal: AbortSignal): Promise<void> {
    const q = since === undefined ? '' : epoch === undefined ? `?since=${since}` : `?since=${since}&epoch=${epoch}`;
    const res = await send(this.ctx, `/v1/jobs/${encodeURIComponent(jobId)}/events${q}`, {
      headers: { accept: 'text/event-stream' },
      signal,
    });
    if (res.status === 204) {
      // Terminal and already caught up: the client still wants a snapshot to start its cycle.
      const job = await fetchSnapshot(this.ctx, jobId, signal);
      this.markOpen();
      this.ctx.hooks.frame({ type: 'snapshot', job_id: jobId, seq: job.seq, job });
      return;
    }
    if (!res.ok) {
      const err = await errorFromResponse(res);
      if (isPerJob(err)) this.markOpen();
      throw err;
    }
    if (!res.body || !(res.headers.get('content-type') ?? '').includes('text/event-stream')) {
      throw new JobwireError('sse_failed', 'the server did not answer with an event stream');
    }
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let data: string[] = [];
    let terminal = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const arm = (): void => {
      if (timer !== undefined) clearTimeout(timer);
      timer = setTimeout(() => reader.cancel().catch(() => {}), this.ctx.heartbeatDeadline);
    };
    arm();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        arm();
        buf += value;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).replace(/\r$/, '');
          buf = buf.slice(nl + 1);
          if (line === '') {
            if (data.length) {
              const frame = JSON.parse(data.join('\n')) as ServerFrame;
              data = [];
              this.markOpen();
              this.ctx.hooks.frame(frame);
              if (isWireEvent(frame) && isTerminalStatus(frame.status)) terminal = true;
              if (frame.type === 'snapshot' && isTerminalStatus(frame.job.status)) terminal = true;
            }
          } else if (line.startsWith('data:')) data.push(line.slice(line[5] === ' ' ? 6 : 5));
          // `id:` (seq or seq:epoch), `retry:` and `: comments` need no handling: the client tracks seqs and epochs itself
        }
      }
    } finally {
      if (timer !== undefined) clearTimeout(timer);
    }
    if (!terminal && !signal.aborted) throw new JobwireError('stream_ended', 'the event stream ended before the job did');
  }
}
