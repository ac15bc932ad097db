/**
 * One reconnecting WebSocket: full-jitter exponential backoff (500 ms -> 20 s, reset after a
 * healthy connection), an immediate retry on the browser's `online` event, the close-code table
 * (reconnect / refresh token / stop), dead-socket detection by a ping deadline, observable state.
 */

import { getToken } from '../api';
import { closeAction } from '../codes';
import type { ServerFrame } from '../types';

export type ConnState = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface SocketHooks {
  /** Called on every open, before any frame: send `subscribe`/`resume` frames here. */
  onOpen(sock: LiveSocket): void;
  onFrame(frame: ServerFrame): void;
  /** The socket closed before it ever opened (a refused upgrade looks like this in a browser). */
  onFailedOpen?(): void;
  /** A close the table says not to retry (4501 token expired, 4504, 1009...). */
  onStop?(code: number, reason: string): void;
}

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 20_000;
/** A connection that stayed open this long resets the backoff. */
const HEALTHY_MS = 10_000;
/** Send a `ping` after this much silence; give up on the socket after twice as much. Once two
 *  `heartbeat` frames were seen, 1.5 x their interval (within these bounds) is used instead. */
const SILENCE_MS = 20_000;
const SILENCE_MIN_MS = 2_000;
/** A socket that has not opened by then is dropped and retried. */
const CONNECT_TIMEOUT_MS = 10_000;

export class LiveSocket {
  state: ConnState = 'closed';
  lastError = '';
  private ws: WebSocket | null = null;
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private watchdog: ReturnType<typeof setInterval> | null = null;
  private lastRx = 0;
  private lastHeartbeat = 0;
  private lastPing = 0;
  private silenceMs = SILENCE_MS;
  private openedAt = 0;
  private stopped = true;
  private listeners = new Set<(s: ConnState) => void>();
  private readonly online = () => {
    if (this.state === 'reconnecting' && this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
      this.connect();
    }
  };

  constructor(
    readonly name: string,
    private readonly url: () => string,
    private readonly hooks: SocketHooks,
  ) {}

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    addEventListener('online', this.online);
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    removeEventListener('online', this.online);
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.clearWatchdog();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
      ws.close(1000);
    }
    this.setState('closed');
  }

  /** Reconnect now (e.g. after the token changed). */
  restart(): void {
    this.stop();
    this.attempt = 0;
    this.start();
  }

  send(frame: object): void {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  isOpen(): boolean {
    return this.state === 'open';
  }

  onState(fn: (s: ConnState) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private setState(s: ConnState): void {
    if (this.state === s) return;
    this.state = s;
    for (const fn of this.listeners) fn(s);
  }

  private connect(): void {
    this.timer = null;
    if (this.stopped) return;
    this.setState(this.attempt === 0 ? 'connecting' : 'reconnecting');
    const token = getToken();
    let ws: WebSocket;
    try {
      // A JWT goes in the subprotocol (kept out of URLs); the server selects `jobwire`.
      ws = token && !token.startsWith('jwk_') ? new WebSocket(this.url(), ['jobwire', `bearer.${token}`]) : new WebSocket(this.url());
    } catch (e) {
      this.lastError = (e as Error).message;
      this.schedule();
      return;
    }
    this.ws = ws;
    let opened = false;
    const connectTimer = setTimeout(() => {
      if (!opened && this.ws === ws) this.drop('connect timeout');
    }, CONNECT_TIMEOUT_MS);
    ws.onopen = () => {
      clearTimeout(connectTimer);
      opened = true;
      this.lastHeartbeat = 0;
      this.openedAt = this.lastRx = Date.now();
      this.lastError = '';
      this.setState('open');
      this.startWatchdog();
      this.hooks.onOpen(this);
    };
    ws.onmessage = (m) => {
      const now = Date.now();
      this.lastRx = now;
      let frame: ServerFrame;
      try {
        frame = JSON.parse(typeof m.data === 'string' ? m.data : '') as ServerFrame;
      } catch {
        return;
      }
      if (frame.type === 'heartbeat') {
        if (this.lastHeartbeat) this.silenceMs = Math.min(SILENCE_MS, Math.max(SILENCE_MIN_MS, 1.5 * (now - this.lastHeartbeat)));
        this.lastHeartbeat = now;
        return;
      }
      this.hooks.onFrame(frame);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.clearWatchdog();
      if (this.stopped) return;
      this.lastError = ev.code === 1006 ? 'connection lost' : `closed ${ev.code}${ev.reason ? ' ' + ev.reason : ''}`;
      if (!opened) {
        this.hooks.onFailedOpen?.();
        if (this.stopped) return;
      }
      if (opened && Date.now() - this.openedAt > HEALTHY_MS) this.attempt = 0;
      const action = closeAction(ev.code);
      if (opened && action !== 'reconnect') {
        this.stopped = true;
        this.setState('closed');
        this.hooks.onStop?.(ev.code, ev.reason);
        return;
      }
      this.schedule();
    };
  }

  private schedule(): void {
    if (this.stopped) return;
    const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    this.attempt += 1;
    this.setState('reconnecting');
    // Full jitter: uniform in [0, cap], with a small floor so a dead server is not hammered.
    const delay = 50 + Math.random() * cap;
    this.timer = setTimeout(() => this.connect(), delay);
  }

  private startWatchdog(): void {
    this.clearWatchdog();
    this.watchdog = setInterval(() => {
      const quiet = Date.now() - this.lastRx;
      if (quiet > 2 * this.silenceMs) this.drop('no heartbeat');
      else if (quiet > this.silenceMs && Date.now() - this.lastPing > this.silenceMs) {
        this.lastPing = Date.now();
        this.send({ type: 'ping' });
      }
    }, 500);
  }

  /** A dead TCP connection may take minutes to report its close: drop it and reconnect now. */
  private drop(why: string): void {
    const ws = this.ws;
    this.ws = null;
    this.clearWatchdog();
    if (ws) {
      ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
      ws.close(4000);
    }
    this.lastError = why;
    this.schedule();
  }

  private clearWatchdog(): void {
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = null;
  }
}
