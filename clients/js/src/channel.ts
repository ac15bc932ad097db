/**
 * Project channels: a live list of every job of a project (`/v1/projects/{project}/ws`, or `*`
 * for every project of the tenant), with the `resume` handshake carrying each job's last seq.
 */
import * as api from './api.js';
import type { Jobwire } from './client.js';
import { Supervisor, type ConnectionInfo } from './connection.js';
import { Entry, type EntrySink, type RewindInfo } from './entry.js';
import { JobwireError } from './errors.js';
import type { Outcome } from './transport/types.js';
import { WsTransport } from './transport/ws.js';
import type { ServerFrame, WireEvent } from './types.js';
import { isWireEvent } from './types.js';
import type { JobView } from './view.js';

export interface ProjectWatchOptions {
  onEvent?: (event: WireEvent, view: JobView | null) => void;
  /** The server took back events of a job this channel had seen (a crash before they were durable); its view was rebuilt. */
  onRewind?: (info: RewindInfo, view: JobView | null) => void;
  /** The catch-up finished (`ready` frame): `jobs` replayed, `omitted` left out (over the server's 1000-job bound). */
  onReady?: (info: { jobs: number; omitted: number }) => void;
}

/** A live, reduced list of a project's jobs. */
export class ProjectWatch {
  readonly project: string;
  private readonly entries = new Map<string, Entry>();
  private readonly listeners = new Set<() => void>();
  private readonly connListeners = new Set<(c: ConnectionInfo) => void>();
  private readonly supervisor: Supervisor;
  private list: readonly JobView[] = Object.freeze([]);
  private dirty = false;
  private transport: WsTransport | null = null;
  private readonly fetching = new Set<string>();
  /** The catch-up of the current connection is done. */
  ready = false;
  /** The last epoch any snapshot on this channel carried (for jobs first seen by a live `created`). */
  private epoch: number | undefined;

  constructor(
    private readonly client: Jobwire,
    project: string,
    private readonly opts: ProjectWatchOptions = {},
  ) {
    if (project !== '*') api.checkJobId(project);
    this.project = project;
    const { tokens, options } = client._settings();
    this.supervisor = new Supervisor({
      tokens,
      backoff: { minDelay: options.minReconnectDelay, maxDelay: options.maxReconnectDelay },
      healthyAfter: options.healthyAfter,
      kinds: ['websocket'],
      run: (_k, signal) => this.run(signal),
      onInfo: (info) => this.connListeners.forEach((l) => l(info)),
    });
    this.supervisor.start();
  }

  /** Every job seen, in id order; a new frozen array after each change. */
  getSnapshot(): readonly JobView[] {
    if (this.dirty) {
      this.dirty = false;
      const views: JobView[] = [];
      for (const e of this.entries.values()) if (e.view) views.push(e.view);
      views.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      this.list = Object.freeze(views);
    }
    return this.list;
  }

  get(jobId: string): JobView | null {
    return this.entries.get(jobId)?.view ?? null;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  getConnection(): ConnectionInfo {
    return this.supervisor.current;
  }

  subscribeConnection(listener: (c: ConnectionInfo) => void): () => void {
    this.connListeners.add(listener);
    return () => this.connListeners.delete(listener);
  }

  close(): void {
    this.supervisor.stop();
    this.transport?.close();
    this.transport = null;
    this.listeners.clear();
  }

  private changed(): void {
    this.dirty = true;
    this.listeners.forEach((l) => l());
  }

  private entry(jobId: string): Entry {
    let e = this.entries.get(jobId);
    if (!e) {
      const sink: EntrySink = {
        snapshot: () => {},
        event: (ev, v) => this.opts.onEvent?.(ev, v),
        terminal: () => {},
        gap: () => {},
        rewind: (r, v) => this.opts.onRewind?.(r, v),
        error: () => {},
        changed: () => this.changed(),
      };
      e = new Entry(jobId, undefined, this.client._settings().options.maxLogs, sink);
      e.awaiting = false; // the channel starts every job itself: snapshot or `created`
      this.entries.set(jobId, e);
    }
    return e;
  }

  private run(signal: AbortSignal): Promise<Outcome> {
    const { options, tokens } = this.client._settings();
    return new Promise<Outcome>((resolve) => {
      let t: WsTransport;
      const finish = (o: Outcome): void => {
        signal.removeEventListener('abort', onAbort);
        if (this.transport === t) this.transport = null;
        this.ready = false;
        resolve(o);
      };
      const onAbort = (): void => {
        t.close();
        finish({ wasOpen: false });
      };
      try {
        t = new WsTransport(
          {
            baseUrl: this.client.url,
            token: () => tokens.current,
            fetch: this.client._settings().http.fetch,
            WebSocket: options.WebSocket,
            heartbeatDeadline: options.heartbeatInterval + options.heartbeatGrace,
            connectTimeout: options.connectTimeout,
            pollInterval: options.pollInterval,
            hooks: {
              open: () => {
                const positions: Record<string, number> = {};
                // One epoch for all positions: the oldest one held (an older epoch only makes the server rewind more, never less).
                let epoch: number | undefined;
                for (const e of this.entries.values()) {
                  if (e.delivered === undefined) continue;
                  positions[e.jobId] = e.delivered;
                  const ep = e.epoch ?? this.epoch;
                  if (ep !== undefined) epoch = epoch === undefined ? ep : Math.min(epoch, ep);
                }
                t.send({ type: 'resume', positions, epoch });
                this.supervisor.opened('websocket');
              },
              frame: (f) => this.onFrame(f),
              closed: finish,
            },
          },
          `/v1/projects/${this.project === '*' ? '*' : encodeURIComponent(this.project)}/ws`,
        );
      } catch (e) {
        resolve({ wasOpen: false, error: e instanceof JobwireError ? e : new JobwireError('connect_failed', String(e)) });
        return;
      }
      this.transport = t;
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private onFrame(f: ServerFrame): void {
    if (f.type === 'ready') {
      this.ready = true;
      this.opts.onReady?.({ jobs: f.jobs, omitted: f.omitted });
      this.changed();
      return;
    }
    const jobId = (f as { job_id?: unknown }).job_id;
    if (typeof jobId !== 'string') return;
    if (f.type === 'snapshot') {
      if (f.epoch !== undefined) this.epoch = f.epoch;
      this.entry(jobId).onSnapshot(f.job, f.epoch);
    } else if (f.type === 'rewound') this.entry(jobId).onRewound(f);
    else if (f.type === 'history_truncated') this.entry(jobId).onTruncated(f);
    else if (isWireEvent(f as { type: string; seq?: unknown })) {
      const e = this.entry(jobId);
      e.onEvent(f as WireEvent);
      // A job outside the catch-up bound streams live without a snapshot: read it once.
      if (!e.view && !this.fetching.has(jobId)) {
        this.fetching.add(jobId);
        this.client.getJob(jobId).then(
          (snap) => {
            this.fetching.delete(jobId);
            if (!e.view) e.onSnapshot(snap);
          },
          () => this.fetching.delete(jobId),
        );
      }
    }
  }
}
