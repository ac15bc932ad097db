/**
 * The multiplexed `/v1/ws` socket: per-job subscriptions that resume from the last seq seen,
 * so a reconnect (server restart, dropped network) delivers every event once: no loss, no duplicate.
 */

import { wsBase } from '../api';
import type { Job, ServerFrame, WireEvent } from '../types';
import { LiveSocket } from './socket';

export interface JobHandler {
  /** A snapshot: the first frame of each (re)subscription. `resumed` is true after a reconnect. */
  snapshot(job: Job, resumed: boolean): void;
  /** An event, in seq order, never one already delivered. */
  event(ev: WireEvent): void;
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
    const frame: { type: string; job_id: string; since?: number } = { type: 'subscribe', job_id: id };
    if (sub.since !== undefined) frame.since = sub.since;
    this.socket.send(frame);
  }

  private frame(f: ServerFrame): void {
    const id = (f as { job_id?: string }).job_id;
    if (!id) return;
    const sub = this.subs.get(id);
    if (!sub) return;
    switch (f.type) {
      case 'snapshot': {
        const snap = f as { seq: number; job: Job };
        sub.snapshots += 1;
        // Without `since` nothing is replayed: the snapshot is the position.
        if (sub.since === undefined) sub.last = Math.max(sub.last, snap.seq);
        // From now on every reconnect resumes from what was delivered.
        sub.since = sub.last;
        sub.handler.snapshot(snap.job, sub.snapshots > 1);
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
