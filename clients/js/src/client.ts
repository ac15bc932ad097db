/**
 * `Jobwire`: one multiplexed connection per client, reference-counted job subscriptions
 * with resume by seq, token refresh on an open socket, SSE/polling fallback, and the HTTP API.
 */
import * as api from './api.js';
import { ProjectWatch, type ProjectWatchOptions } from './channel.js';
import { Supervisor, type ConnectionInfo } from './connection.js';
import { Entry, type EntrySink, type GapInfo, type RewindInfo, type SnapshotInfo } from './entry.js';
import { JobwireError, StopRetrying } from './errors.js';
import { TokenSource, type GetToken } from './token.js';
import { PollTransport } from './transport/poll.js';
import { SseTransport } from './transport/sse.js';
import type { Outcome, Transport, TransportContext, TransportKind, WebSocketCtor } from './transport/types.js';
import { WsTransport } from './transport/ws.js';
import type { PublishEvent, ServerFrame, WireEvent } from './types.js';
import { isWireEvent } from './types.js';
import type { JobView } from './view.js';

export interface JobwireOptions {
  /** The server, e.g. `http://127.0.0.1:8000` (ws:// and wss:// are accepted too). */
  url: string;
  /** A JWT or API key. */
  token?: string;
  /** Called for a token when there is none, before it expires, and when the server refuses it. May throw StopRetrying. */
  getToken?: GetToken;
  /** A WebSocket implementation (Node 20 has none: pass the `ws` package's). Default: globalThis.WebSocket. */
  WebSocket?: WebSocketCtor;
  /** Default: globalThis.fetch. */
  fetch?: typeof fetch;
  /** Transports tried in order when the previous one cannot connect (default websocket, sse, polling). */
  transports?: TransportKind[];
  /** Backoff bounds (full jitter), ms. Defaults 500 and 20000. */
  minReconnectDelay?: number;
  maxReconnectDelay?: number;
  /** A connection open this long resets the backoff (ms, default 5000). */
  healthyAfter?: number;
  /** The server's `--heartbeat-interval` (ms, default 30000). */
  heartbeatInterval?: number;
  /** How late a heartbeat may be before the socket counts as dead (ms, default 10000). */
  heartbeatGrace?: number;
  /** WebSocket open timeout (ms, default 10000). */
  connectTimeout?: number;
  /** Polling fallback period (ms, default 1000). */
  pollInterval?: number;
  /** Log lines kept per JobView (default 1000). */
  maxLogs?: number;
  /** Send a fresh token on the open socket before the current one expires (default true; needs getToken). */
  refreshBeforeExpiry?: boolean;
  /** Retry rules of publish and the other HTTP calls (defaults 3 attempts, 500 ms -> 8 s). */
  retry?: Partial<api.RetryOptions>;
}

export interface WatchOptions {
  /** The last seq you already have: events after it are replayed (default: snapshot, then live only). */
  since?: number;
  /** The epoch `since` came with (the subscription's `epoch` when you saved `seq`): lets the server tell you to rewind. */
  epoch?: number;
  onSnapshot?: (view: JobView, info: SnapshotInfo) => void;
  onEvent?: (event: WireEvent, view: JobView | null) => void;
  onTerminal?: (view: JobView) => void;
  onGap?: (info: GapInfo, view: JobView | null) => void;
  /** The server took back events this client had (a crash before they were durable); the view was rebuilt without them. */
  onRewind?: (info: RewindInfo, view: JobView | null) => void;
  onError?: (error: JobwireError) => void;
}

/** A handle on one watch of a job. Several handles on one job share one server subscription. */
export interface JobSubscription {
  readonly jobId: string;
  /** The reduced job, or null before the first snapshot. Stable until it changes (useSyncExternalStore-ready). */
  getSnapshot(): JobView | null;
  /** Calls `listener` after every change of the view; returns the unsubscribe function. */
  subscribe(listener: () => void): () => void;
  /** The last resume was whole (see SnapshotInfo.recovered). */
  readonly recovered: boolean;
  /** The job's error (e.g. job_not_found), if the subscription failed. */
  readonly error: JobwireError | null;
  /** The last seq received (the resume position). */
  readonly seq: number | undefined;
  /** The epoch `seq` belongs to (undefined on engines without epochs): save it with `seq` to resume later. */
  readonly epoch: number | undefined;
  close(): void;
}

const DEFAULTS = {
  minReconnectDelay: 500,
  maxReconnectDelay: 20_000,
  healthyAfter: 5_000,
  heartbeatInterval: 30_000,
  heartbeatGrace: 10_000,
  connectTimeout: 10_000,
  pollInterval: 1_000,
  maxLogs: 1_000,
};

/** Normalizes a base URL: http(s) scheme, no trailing slash. */
export function baseUrl(url: string): string {
  if (typeof url !== 'string' || !/^(https?|wss?):\/\/[^/]+/.test(url)) {
    throw new JobwireError('bad_option', `options.url must be an http(s):// or ws(s):// URL, got ${JSON.stringify(url)}`);
  }
  return url.replace(/^ws/, 'http').replace(/\/+$/, '');
}

class Handle implements JobSubscription {
  readonly listeners = new Set<() => void>();
  closed = false;
  constructor(
    readonly client: Jobwire,
    readonly entry: Entry,
    readonly opts: WatchOptions,
  ) {}
  get jobId(): string {
    return this.entry.jobId;
  }
  get recovered(): boolean {
    return this.entry.recovered;
  }
  get error(): JobwireError | null {
    return this.entry.error;
  }
  get seq(): number | undefined {
    return this.entry.delivered;
  }
  get epoch(): number | undefined {
    return this.entry.epoch;
  }
  getSnapshot(): JobView | null {
    return this.entry.view;
  }
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    this.client._release(this);
  }
}

export class Jobwire {
  readonly url: string;
  private readonly tokens: TokenSource;
  private readonly http: api.HttpContext;
  private readonly o: typeof DEFAULTS & JobwireOptions;
  private readonly entries = new Map<string, { entry: Entry; handles: Set<Handle> }>();
  private readonly connListeners = new Set<(info: ConnectionInfo) => void>();
  private readonly supervisor: Supervisor;
  private transport: Transport | null = null;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: JobwireOptions) {
    if (!options || typeof options !== 'object') throw new JobwireError('bad_option', 'new Jobwire({ url }) needs an options object');
    this.url = baseUrl(options.url);
    this.o = { ...DEFAULTS, ...stripUndefined(options) };
    const f = options.fetch ?? (globalThis.fetch ? globalThis.fetch.bind(globalThis) : undefined);
    if (!f) throw new JobwireError('bad_option', 'no fetch implementation: pass options.fetch');
    this.tokens = new TokenSource(options.token, options.getToken);
    this.http = {
      baseUrl: this.url,
      fetch: f,
      tokens: this.tokens,
      retry: { attempts: 3, minDelay: 500, maxDelay: 8_000, ...stripUndefined(options.retry ?? {}) },
    };
    const kinds = options.transports ?? ['websocket', 'sse', 'polling'];
    if (kinds.length === 0 || kinds.some((k) => k !== 'websocket' && k !== 'sse' && k !== 'polling')) {
      throw new JobwireError('bad_option', `options.transports: a non-empty list of websocket, sse, polling`);
    }
    this.supervisor = new Supervisor({
      tokens: this.tokens,
      backoff: { minDelay: this.o.minReconnectDelay, maxDelay: this.o.maxReconnectDelay },
      healthyAfter: this.o.healthyAfter,
      kinds,
      run: (kind, signal) => this.run(kind, signal),
      onInfo: (info) => {
        for (const l of this.connListeners) l(info);
      },
    });
  }

  /** Watches a job. The connection opens on the first watch. */
  watch(jobId: string, opts: WatchOptions = {}): JobSubscription {
    api.checkJobId(jobId);
    for (const k of ['since', 'epoch'] as const) {
      const n = opts[k];
      if (n !== undefined && (!Number.isInteger(n) || n < 0)) throw new JobwireError('bad_option', `${k} must be a non-negative integer, got ${n}`);
    }
    let slot = this.entries.get(jobId);
    const isNew = !slot;
    if (!slot) {
      const handles = new Set<Handle>();
      const entry = new Entry(jobId, opts.since, this.o.maxLogs, this.sink(handles), opts.epoch);
      slot = { entry, handles };
      this.entries.set(jobId, slot);
    }
    const h = new Handle(this, slot.entry, opts);
    slot.handles.add(h);
    if (isNew) {
      if (this.transport) {
        slot.entry.beginCycle();
        this.transport.subscribe(jobId, slot.entry.delivered, slot.entry.epoch);
      }
    } else if (slot.entry.view) {
      const { view, recovered } = slot.entry;
      queueMicrotask(() => {
        if (!h.closed) opts.onSnapshot?.(view, { resumed: false, recovered });
      });
    }
    this.connect();
    return h;
  }

  /** Opens the connection now (watch() does it for you). */
  connect(): void {
    if (this.supervisor.current.state === 'closed' && this.supervisor.current.error instanceof StopRetrying) return;
    this.supervisor.start();
  }

  /** Skips the current reconnect wait (done automatically on the browser's `online` event). */
  reconnectNow(): void {
    this.supervisor.reconnectNow();
  }

  /** Closes the connection and every subscription. */
  close(): void {
    this.supervisor.stop();
    this.transport?.close();
    this.transport = null;
    this.clearRefresh();
    this.entries.clear();
  }

  /** The connection's state (a new frozen object on every change). */
  getConnection(): ConnectionInfo {
    return this.supervisor.current;
  }

  /** Calls `listener` on every connection change; returns the unsubscribe function. */
  subscribeConnection(listener: (info: ConnectionInfo) => void): () => void {
    this.connListeners.add(listener);
    return () => this.connListeners.delete(listener);
  }

  publish(jobId: string, events: PublishEvent | readonly PublishEvent[]): Promise<api.PublishResult> {
    return api.publish(this.http, jobId, events);
  }
  createJob(input?: api.CreateJobInput): Promise<api.CreateJobResult> {
    return api.createJob(this.http, input);
  }
  getJob(jobId: string): ReturnType<typeof api.getJob> {
    return api.getJob(this.http, jobId);
  }
  listJobs(q?: api.ListJobsQuery): ReturnType<typeof api.listJobs> {
    return api.listJobs(this.http, q);
  }
  history(jobId: string, since?: number, limit?: number): Promise<api.HistoryPage> {
    return api.history(this.http, jobId, since, limit);
  }
  cancel(jobId: string, opts?: string | api.CancelOptions): Promise<api.CancelResult> {
    return api.cancel(this.http, jobId, opts);
  }

  /** For workers: renews the job's liveness deadline (optionally with progress or a checkpoint); returns the cancel flag. */
  heartbeat(jobId: string, input?: api.HeartbeatInput): Promise<api.HeartbeatResult> {
    return api.heartbeat(this.http, jobId, input);
  }

  /** A live list of a project's jobs (`'*'`: every project of the tenant) over its own channel socket. */
  watchProject(project: string, opts?: ProjectWatchOptions): ProjectWatch {
    return new ProjectWatch(this, project, opts);
  }

  /** The current token (after refreshes), for code that opens its own requests. */
  get token(): string | undefined {
    return this.tokens.current;
  }

  /** @internal the pieces a channel needs to share this client's settings. */
  _settings(): { tokens: TokenSource; http: api.HttpContext; options: typeof DEFAULTS & JobwireOptions } {
    return { tokens: this.tokens, http: this.http, options: this.o };
  }

  /** @internal a handle closed. */
  _release(h: Handle): void {
    const slot = this.entries.get(h.jobId);
    if (!slot || slot.entry !== h.entry) return;
    slot.handles.delete(h);
    if (slot.handles.size === 0) {
      this.entries.delete(h.jobId);
      if (!slot.entry.error) this.transport?.unsubscribe(h.jobId);
    }
  }

  private sink(handles: Set<Handle>): EntrySink {
    const each = (f: (h: Handle) => void): void => {
      for (const h of [...handles]) if (!h.closed) f(h);
    };
    return {
      snapshot: (v, info) => each((h) => h.opts.onSnapshot?.(v, info)),
      event: (e, v) => each((h) => h.opts.onEvent?.(e, v)),
      terminal: (v) => each((h) => h.opts.onTerminal?.(v)),
      gap: (g, v) => each((h) => h.opts.onGap?.(g, v)),
      rewind: (r, v) => each((h) => h.opts.onRewind?.(r, v)),
      error: (err) => each((h) => h.opts.onError?.(err)),
      changed: () => each((h) => h.listeners.forEach((l) => l())),
    };
  }

  private context(done: (o: Outcome) => void, kind: TransportKind): TransportContext {
    return {
      baseUrl: this.url,
      token: () => this.tokens.current,
      fetch: this.http.fetch,
      WebSocket: this.o.WebSocket,
      heartbeatDeadline: this.o.heartbeatInterval + this.o.heartbeatGrace,
      connectTimeout: this.o.connectTimeout,
      pollInterval: this.o.pollInterval,
      hooks: {
        open: () => this.onOpen(kind),
        frame: (f) => this.onFrame(f),
        closed: done,
      },
    };
  }

  private run(kind: TransportKind, signal: AbortSignal): Promise<Outcome> {
    return new Promise<Outcome>((resolve) => {
      let t: Transport;
      const finish = (o: Outcome): void => {
        signal.removeEventListener('abort', onAbort);
        if (this.transport === t) this.transport = null;
        this.clearRefresh();
        resolve(o);
      };
      const onAbort = (): void => {
        t.close();
        finish({ wasOpen: false });
      };
      try {
        const ctx = this.context(finish, kind);
        t = kind === 'websocket' ? new WsTransport(ctx) : kind === 'sse' ? new SseTransport(ctx) : new PollTransport(ctx);
      } catch (e) {
        resolve({ wasOpen: false, error: e instanceof JobwireError ? new StopRetrying(e.code, e.message) : new JobwireError('connect_failed', String(e)) });
        return;
      }
      this.transport = t;
      // Transports hold subscribes until they are ready (and SSE opens only once a stream delivered).
      for (const { entry } of this.entries.values()) {
        if (entry.error) continue;
        entry.beginCycle();
        t.subscribe(entry.jobId, entry.delivered, entry.epoch);
      }
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private onOpen(kind: TransportKind): void {
    const t = this.transport;
    if (!t) return;
    this.supervisor.opened(kind);
    if (kind === 'websocket') this.scheduleRefresh();
  }

  private onFrame(f: ServerFrame): void {
    const jobId = (f as { job_id?: unknown }).job_id;
    const entry = typeof jobId === 'string' ? this.entries.get(jobId)?.entry : undefined;
    switch (f.type) {
      case 'snapshot':
        entry?.onSnapshot(f.job, f.epoch);
        return;
      case 'rewound':
        entry?.onRewound(f);
        return;
      case 'history_truncated':
        entry?.onTruncated(f);
        return;
      case 'authenticated':
        this.scheduleRefresh();
        return;
      case 'error': {
        const err = new JobwireError(f.code, f.message, { number: f.number });
        if (f.code === 'already_subscribed' || f.code === 'not_subscribed') return;
        if (entry) entry.onError(err);
        else this.supervisor.set({ error: err });
        return;
      }
      default:
        if (entry && isWireEvent(f as { type: string; seq?: unknown })) entry.onEvent(f as WireEvent);
    }
  }

  private clearRefresh(): void {
    if (this.refreshTimer !== undefined) clearTimeout(this.refreshTimer);
    this.refreshTimer = undefined;
  }

  /** Sends a fresh token in an `auth` frame before the current one expires. */
  private scheduleRefresh(): void {
    this.clearRefresh();
    if (this.o.refreshBeforeExpiry === false) return;
    const delay = this.tokens.refreshDelay();
    if (delay === undefined) return;
    const t = this.transport;
    this.refreshTimer = setTimeout(() => {
      this.tokens.refresh().then(
        (token) => {
          if (token && this.transport === t && t) t.send({ type: 'auth', token });
        },
        (e: unknown) => {
          if (e instanceof StopRetrying) this.close();
          this.supervisor.set({ error: e instanceof JobwireError ? e : new JobwireError('get_token_failed', String(e)) });
        },
      );
    }, Math.min(delay, 2 ** 31 - 1));
  }
}

function stripUndefined<T extends object>(o: T): T {
  const out = { ...o };
  for (const k of Object.keys(out) as (keyof T)[]) if (out[k] === undefined) delete out[k];
  return out;
}
