/** The jobs the table shows: one row per job id, merged from list pages, snapshots and live events by seq. */

import { applyEvent, jobFromEvent } from './reduce';
import type { Job, WireEvent } from './types';

export class JobStore {
  readonly rows = new Map<string, Job>();
  /** Bumped on every change; views compare it to skip work. */
  version = 0;
  /** Bumped when a job is added (the filtered/sorted view must be rebuilt even when sorted by id). */
  membership = 0;
  private listeners = new Set<() => void>();
  private pending = false;

  /** A list row or a snapshot: kept if it is newer than what the row has. */
  upsert(job: Job): void {
    const cur = this.rows.get(job.id);
    if (cur && cur.seq >= job.seq) return;
    if (!cur) this.membership += 1;
    this.rows.set(job.id, job);
    this.changed();
  }

  /** An authoritative snapshot after a rewind: replaces the row even if its seq is not newer. */
  replace(job: Job): void {
    if (!this.rows.has(job.id)) this.membership += 1;
    this.rows.set(job.id, job);
    this.changed();
  }

  apply(ev: WireEvent): void {
    const cur = this.rows.get(ev.job_id);
    if (!cur) {
      this.rows.set(ev.job_id, jobFromEvent(ev));
      this.membership += 1;
      this.changed();
    } else if (applyEvent(cur, ev)) this.changed();
  }

  /** Listeners run at most once per animation frame, however many updates arrived. */
  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  clear(): void {
    this.rows.clear();
    this.membership += 1;
    this.changed();
  }

  private changed(): void {
    this.version += 1;
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      for (const fn of this.listeners) fn();
    });
  }
}
