/**
 * Keeps the JobStore live: lists every job (`GET /v1/jobs`, 1000 a page), and streams changes over
 * the tenant-wide project channel `/v1/projects/*\/ws` (resume handshake; snapshots on reconnect).
 * A server without that channel (it refuses the name `*`) gets the fallback: per-job `/v1/ws`
 * subscriptions of the listed unfinished jobs, plus a list refresh to discover new jobs.
 */

import { ApiError, listJobs, request, wsBase } from '../api';
import { JobStore } from '../store';
import { TERMINAL, type Job, type WireEvent } from '../types';
import { Mux } from './mux';
import { LiveSocket } from './socket';

export type FeedMode = 'probing' | 'channel' | 'subscriptions';

/** Jobs listed in all (bounds memory for very large tenants). */
const MAX_LISTED = 100_000;
/** Fallback mode: subscriptions kept (the server's default --max-subscriptions is 1000). */
const MAX_SUBSCRIPTIONS = 900;
const FALLBACK_REFRESH_MIN_MS = 2_000;
const FALLBACK_REFRESH_MAX_MS = 30_000;

export interface FeedEvents {
  mode(mode: FeedMode): void;
  loaded(count: number, done: boolean): void;
  authRequired(err: ApiError): void;
  error(message: string): void;
}

export class Feed {
  mode: FeedMode = 'probing';
  readonly channel: LiveSocket;
  private loading = false;
  private refreshTimer: ReturnType<typeof setTimeout> | null = null;
  private unsubs = new Map<string, () => void>();
  /** The epoch of each job's last channel snapshot: a snapshot of another epoch may take back events the row has. */
  private epochs = new Map<string, number>();

  constructor(
    readonly store: JobStore,
    readonly mux: Mux,
    private readonly on: FeedEvents,
  ) {
    this.channel = new LiveSocket('table', () => `${wsBase()}/v1/projects/*/ws`, {
      // No positions: the table needs each job's current state, and a snapshot per job is that.
      onOpen: (s) => s.send({ type: 'resume' }),
      onFrame: (f) => {
        if (f.type === 'snapshot') this.channelSnapshot(f as { epoch?: number; job: Job });
        else if (f.type === 'ready') {
          if ((f as { omitted: number }).omitted > 0) void this.load(); // refresh what the catch-up left out
        } else if (typeof (f as WireEvent).seq === 'number' && (f as WireEvent).job_id) this.store.apply(f as WireEvent);
      },
      onFailedOpen: () => void this.diagnose(),
      onStop: (code, reason) => {
        if (code === 4501) this.on.authRequired(new ApiError(401, 'token_expired', 'token expired'));
        else this.on.error(`live updates stopped (${code} ${reason})`);
      },
    });
  }

  /**
   * The channel resumes without positions, so it gets no `rewound`: a snapshot of a new epoch
   * (the server restarted) is authoritative, even at a seq the row already has, since a crash may
   * have taken back the row's newest events and written others under their seqs.
   */
  private channelSnapshot(f: { epoch?: number; job: Job }): void {
    const id = f.job.id;
    const before = this.epochs.get(id);
    if (typeof f.epoch === 'number') this.epochs.set(id, f.epoch);
    if (before !== undefined && f.epoch !== undefined && before !== f.epoch) this.store.replace(f.job);
    else this.store.upsert(f.job);
  }

  /** `forceSubscriptions` (the page's `?feed=subscriptions`) uses the fallback even when the channel exists. */
  async start(forceSubscriptions = false): Promise<void> {
    const supported = await this.probe();
    if (supported === null) return;
    const channel = supported && !forceSubscriptions;
    this.setMode(channel ? 'channel' : 'subscriptions');
    if (channel) this.channel.start();
    else this.mux.socket.start(); // live even before the first subscription
    await this.load();
    if (!channel) this.scheduleRefresh();
  }

  /** Fallback only: re-list to discover new jobs, more rarely the more jobs there are (2 s per 1000, 2-30 s). */
  private scheduleRefresh(): void {
    const ms = Math.min(FALLBACK_REFRESH_MAX_MS, Math.max(FALLBACK_REFRESH_MIN_MS, (this.store.rows.size / 1000) * FALLBACK_REFRESH_MIN_MS));
    this.refreshTimer = setTimeout(async () => {
      await this.load();
      if (this.refreshTimer) this.scheduleRefresh();
    }, ms);
  }

  stop(): void {
    this.channel.stop();
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    for (const u of this.unsubs.values()) u();
    this.unsubs.clear();
  }

  /**
   * Does the server have the tenant-wide channel? A plain GET on a WebSocket route answers
   * "upgrade required"; an older binary refuses the project name `*` (400) or has no route (404).
   * Returns null when the answer is an auth refusal (the token form takes over).
   */
  private async probe(): Promise<boolean | null> {
    try {
      await request('/v1/projects/*/ws');
      return true;
    } catch (e) {
      const err = e as ApiError;
      if (err.isAuth) {
        this.on.authRequired(err);
        return null;
      }
      if (err.status === 0) {
        this.on.error(err.message);
        // The server is down: assume the channel, the socket retries with backoff.
        return true;
      }
      return /upgrade/i.test(err.message);
    }
  }

  /** The channel failed to open: tell an auth refusal apart from a server that is down. */
  private async diagnose(): Promise<void> {
    try {
      await request('/v1/jobs?limit=1');
    } catch (e) {
      const err = e as ApiError;
      if (err.isAuth) {
        this.channel.stop();
        this.on.authRequired(err);
      }
    }
  }

  /** Lists every job, page by page; rows merge by seq, so it can run while the channel streams. */
  async load(): Promise<void> {
    if (this.loading) return;
    this.loading = true;
    try {
      let after: string | null = null;
      let count = 0;
      do {
        const page = await listJobs(after);
        for (const job of page.jobs) this.store.upsert(job);
        count += page.jobs.length;
        after = page.next;
        this.on.loaded(count, after === null);
      } while (after !== null && count < MAX_LISTED);
      if (this.mode === 'subscriptions') this.subscribeUnfinished();
    } catch (e) {
      const err = e as ApiError;
      if (err.isAuth) this.on.authRequired(err);
      else this.on.error(`listing jobs failed: ${err.message}`);
    } finally {
      this.loading = false;
    }
  }

  /** Fallback: watch the unfinished jobs (finished ones cannot change). */
  private subscribeUnfinished(): void {
    for (const [id, unsub] of this.unsubs) {
      const row = this.store.rows.get(id);
      if (row && TERMINAL.has(row.status)) {
        unsub();
        this.unsubs.delete(id);
      }
    }
    for (const job of this.store.rows.values()) {
      if (this.unsubs.size >= MAX_SUBSCRIPTIONS) break;
      if (TERMINAL.has(job.status) || this.unsubs.has(job.id)) continue;
      this.unsubs.set(
        job.id,
        this.mux.watch(job.id, {
          snapshot: (j) => this.store.upsert(j),
          rewound: (_from, j) => this.store.replace(j),
          event: (ev) => this.store.apply(ev),
        }),
      );
    }
  }

  private setMode(m: FeedMode): void {
    this.mode = m;
    this.on.mode(m);
  }
}
