/**
 * The reconnect loop shared by the job client and the project channel: token before connect,
 * transports tried in order, close-code actions, full-jitter backoff reset after a healthy
 * connection, an immediate retry on the browser's `online` event, and the observable state.
 */
import { fullJitter, type BackoffOptions } from './backoff.js';
import { closeAction, CLOSE_CODES, type CloseAction } from './codes.js';
import { JobwireError, StopRetrying } from './errors.js';
import type { TokenSource } from './token.js';
import type { Outcome, TransportKind } from './transport/types.js';

export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** An immutable picture of the connection; a new object on every change. */
export interface ConnectionInfo {
  readonly state: ConnectionState;
  /** The transport in use (or last used). */
  readonly transport: TransportKind | null;
  /** The last error (a close, a refusal, a timeout); null after a healthy open. */
  readonly error: JobwireError | null;
  /** Failed attempts since the last healthy connection. */
  readonly attempt: number;
}

export interface SupervisorOptions {
  tokens: TokenSource;
  backoff: BackoffOptions;
  /** A connection open this long resets the backoff (ms). */
  healthyAfter: number;
  /** Transport kinds to try in order on each cycle; the next one is tried only if the previous failed before opening. */
  kinds: readonly TransportKind[];
  /** Runs one transport until it ends. */
  run(kind: TransportKind, signal: AbortSignal): Promise<Outcome>;
  onInfo(info: ConnectionInfo): void;
}

/** What an ended transport asks for, from the close-code table and HTTP refusals. */
export function actionFor(out: Outcome): CloseAction {
  const e = out.error;
  if (e instanceof StopRetrying) return 'stop';
  if (e) {
    if (e.code === 'token_expired' || e.code === 'unauthorized') return 'refresh_token';
    if (e.code === 'invalid_api_key' || e.code === 'forbidden' || e.code === 'origin_not_allowed' || e.code === 'bad_option') return 'stop';
    if (out.code === undefined) return 'reconnect';
  }
  return out.code === undefined ? 'reconnect' : closeAction(out.code);
}

function closeError(out: Outcome): JobwireError | null {
  if (out.error) return out.error;
  if (out.code === undefined) return null;
  const name = CLOSE_CODES[out.code]?.name ?? 'closed';
  return new JobwireError(name, out.reason || `WebSocket closed with ${out.code}`, { number: out.code });
}

export class Supervisor {
  private info: ConnectionInfo = Object.freeze({ state: 'closed', transport: null, error: null, attempt: 0 });
  private abort: AbortController | null = null;
  private wake: (() => void) | null = null;
  private running = false;
  private readonly onOnline = (): void => this.reconnectNow();

  constructor(private readonly o: SupervisorOptions) {}

  get current(): ConnectionInfo {
    return this.info;
  }

  set(patch: Partial<ConnectionInfo>): void {
    this.info = Object.freeze({ ...this.info, ...patch });
    this.o.onInfo(this.info);
  }

  /** Starts the loop if it is not running. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.abort = new AbortController();
    const g = globalThis as { addEventListener?: (t: string, f: () => void) => void };
    if (typeof g.addEventListener === 'function') g.addEventListener('online', this.onOnline);
    void this.loop(this.abort.signal);
  }

  /** Stops for good (state `closed`), ending the current transport. */
  stop(error: JobwireError | null = null): void {
    if (!this.running) return;
    this.running = false;
    this.abort?.abort();
    this.wake?.();
    const g = globalThis as { removeEventListener?: (t: string, f: () => void) => void };
    if (typeof g.removeEventListener === 'function') g.removeEventListener('online', this.onOnline);
    this.set({ state: 'closed', error: error ?? this.info.error });
  }

  /** Skips the current backoff wait (the browser's `online` event does this). */
  reconnectNow(): void {
    this.wake?.();
  }

  private async loop(signal: AbortSignal): Promise<void> {
    const { tokens } = this.o;
    let attempt = 0;
    let refreshed = false;
    let first = true;
    let forceRefresh = false;
    while (!signal.aborted) {
      this.set({ state: first ? 'connecting' : 'reconnecting', attempt });
      let out: Outcome = { wasOpen: false };
      let kind: TransportKind | null = null;
      try {
        if (forceRefresh) await tokens.refresh();
        else await tokens.forConnect();
        forceRefresh = false;
        for (kind of this.o.kinds) {
          out = await this.o.run(kind, signal);
          if (signal.aborted || out.wasOpen) break;
          const a = actionFor(out);
          if (a !== 'reconnect') break; // the server refused us: another transport will not help
          if (out.error?.code === 'network') break; // the server is down: nothing else will answer either
        }
      } catch (e) {
        out = { wasOpen: false, error: e instanceof JobwireError ? e : new JobwireError('get_token_failed', `getToken() failed: ${(e as Error)?.message ?? e}`, { cause: e }) };
      }
      if (signal.aborted) return;
      first = false;
      const error = closeError(out);
      const action = actionFor(out);
      if (out.wasOpen) refreshed = false;
      if (action === 'stop') {
        const stop = error instanceof StopRetrying ? error : new StopRetrying(error?.code ?? 'stopped', error?.message ?? 'the server asked the client not to reconnect', error?.number !== undefined ? { number: error.number } : {});
        this.stop(stop);
        return;
      }
      if (out.wasOpen && out.openedAt !== undefined && Date.now() - out.openedAt >= this.o.healthyAfter) attempt = 0;
      this.set({ state: 'reconnecting', error, transport: kind, attempt });
      if (action === 'refresh_token') {
        if (!tokens.canRefresh) {
          this.stop(new StopRetrying(error?.code ?? 'token_expired', 'the token was refused and no getToken() is configured', error?.number !== undefined ? { number: error.number } : {}));
          return;
        }
        forceRefresh = true;
        // One immediate retry with a fresh token; after that, back off like any failure.
        if (!refreshed) {
          refreshed = true;
          continue;
        }
      } else refreshed = false;
      await this.backoff(fullJitter(attempt, this.o.backoff), signal);
      attempt += 1;
    }
  }

  /** Called by the owner when a transport opened: state `open`, error cleared. */
  opened(kind: TransportKind): void {
    this.set({ state: 'open', transport: kind, error: null });
  }

  private backoff(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        this.wake = null;
        resolve();
      };
      const t = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
      this.wake = done;
    });
  }
}
