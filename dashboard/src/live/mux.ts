/**
 * The multiplexed `/v1/ws` socket: per-job subscriptions that resume from the last seq seen
 * (with the epoch it came with), so a reconnect (server restart, dropped network) delivers every
 * event once: no loss, no duplicate; and events a crash took back are rewound and replayed.
 */

import { wsBase } from '../api';
import type { Job, RewoundFrame, ServerFrame, WireEvent } from '../types';
import { LiveSocket } from './socket';

export interface JobHandler {
  /** A snapshot: the first frame of each (re)subscription. `resumed` is true after a reconnect. */
  snapshot(job: Job, resumed: boolean): void;
  /** An event, in seq order, never one already delivered. */
  event(ev: WireEvent): void;
  /**
   * Events from `from` on were taken back by the server (a crash before they were durable): drop
   * what you hold from `from` on and rebuild from `job` (the snapshot just received; it has the
   * new events). The events from `from` are delivered again next. Default: `snapshot(job, true)`.
   */
  rewound?(from: number, job: Job): void;
  /** Events from `since + 1` to `historyStart - 1` are gone (retention). */
  truncated?(since: number, historyStart: number): void;
  /** A refused subscription (job_not_found, forbidden...). */
  error?(code: string, message: string): void;
}

interface Sub {
  handler: JobHandler;
  /** The `since` to send: undefined = snapshot + live only (first subscribe without history). */
  since: number | undefined;
  /** Highest seq delivered to the handler. */
  last: number;
  snapshots: number;
  /** The epoch of the last snapshot or `rewound` (absent on engines without epochs, e.g. Redis). */
  epoch?: number;
  /** The last snapshot: what a `rewound` rebuilds from. */
  job?: Job;
}

export class Mux {
  readonly socket: LiveSocket;
  private subs = new Map<string, Sub>();

  /** `onStop`: a close the code table says not to retry (4501 token expired...). */
  constructor(onStop?: (code: number, reason: string) => void) {
    this.socket = new LiveSocket('jobs', () => `${wsBase()}/v1/ws`, {
      onOpen: () => {
        for (const [id, sub] of this.subs) this.sendSubscribe(id, sub);
      },
      onFrame: (f) => this.frame(f),
      ...(onStop ? { onStop } : {}),
    });
  }

  /** Watches `id`; `since` = 0 replays the whole history first. Returns the unsubscribe function. */
  watch(id: string, handler: JobHandler, since?: number): () => void {
    const sub: Sub = { handler, since, last: since ?? 0, snapshots: 0 };
    this.subs.set(id, sub);
    if (this.socket.state === 'closed') this.socket.start();
    else this.sendSubscribe(id, sub);
    return () => {
      if (this.subs.get(id) !== sub) return;
      this.subs.delete(id);
      this.socket.send({ type: 'unsubscribe', job_id: id });
    };
  }

  has(id: string): boolean {
    return this.subs.has(id);
  }

  get size(): number {
    return this.subs.size;
  }

  private sendSubscribe(id: string, sub: Sub): void {
    const frame: { type: string; job_id: string; since?: number; epoch?: number } = { type: 'subscribe', job_id: id };
    if (sub.since !== undefined) frame.since = sub.since;
    if (sub.since !== undefined && sub.epoch !== undefined) frame.epoch = sub.epoch;
    this.socket.send(frame);
  }

  private frame(f: ServerFrame): void {
    const id = (f as { job_id?: string }).job_id;
    if (!id) return;
    const sub = this.subs.get(id);
    if (!sub) return;
    switch (f.type) {
      case 'snapshot': {
        const snap = f as { seq: number; epoch?: number; job: Job };
        sub.snapshots += 1;
        if (typeof snap.epoch === 'number') sub.epoch = snap.epoch;
        sub.job = snap.job;
        // Without `since` nothing is replayed: the snapshot is the position.
        if (sub.since === undefined) sub.last = Math.max(sub.last, snap.seq);
        // From now on every reconnect resumes from what was delivered.
        sub.since = sub.last;
        sub.handler.snapshot(snap.job, sub.snapshots > 1);
        return;
      }
      case 'rewound': {
        const r = f as RewoundFrame;
        sub.epoch = r.epoch;
        // Accept seqs `from`.. again: they are the store's now, not the ones we had.
        sub.last = Math.min(sub.last, r.from - 1);
        sub.since = sub.last;
        if (!sub.job) return;
        if (sub.handler.rewound) sub.handler.rewound(r.from, sub.job);
        else sub.handler.snapshot(sub.job, true);
        return;
      }
      case 'history_truncated': {
        const t = f as { since: number; history_start: number };
        sub.handler.truncated?.(t.since, t.history_start);
        return;
      }
      case 'error': {
        const e = f as { code: string; message: string };
        if (e.code === 'already_subscribed') return;
        sub.handler.error?.(e.code, e.message);
        return;
      }
      case 'unsubscribed':
        return;
      default: {
        const ev = f as WireEvent;
        if (typeof ev.seq !== 'number' || ev.seq <= sub.last) return; // already delivered
        sub.last = ev.seq;
        sub.since = ev.seq;
        sub.handler.event(ev);
      }
    }
  }
}
