/** The multiplexed WebSocket transport (`/v1/ws`, or a channel path): heartbeat deadline, token subprotocol. */
import { JobwireError } from '../errors.js';
import type { ServerFrame } from '../types.js';
import type { Outcome, Position, Transport, TransportContext, WebSocketLike } from './types.js';
import { messageText } from './types.js';

export class WsTransport implements Transport {
  readonly kind = 'websocket' as const;
  private readonly ws: WebSocketLike;
  private done = false;
  private opened = false;
  private openedAt: number | undefined;
  private deadline: ReturnType<typeof setTimeout> | undefined;
  /** Subscribes asked for before the socket opened, sent on open. */
  private readonly pending = new Map<string, Position>();

  constructor(
    private readonly ctx: TransportContext,
    path = '/v1/ws',
  ) {
    const Ctor = ctx.WebSocket ?? (globalThis as { WebSocket?: TransportContext['WebSocket'] }).WebSocket;
    if (!Ctor) throw new JobwireError('bad_option', 'no WebSocket implementation: pass options.WebSocket (e.g. the `ws` package) on Node 20');
    const url = ctx.baseUrl.replace(/^http/, 'ws') + path;
    const token = ctx.token();
    // Browsers cannot set headers on a WebSocket: the token travels as a subprotocol.
    this.ws = token ? new Ctor(url, ['jobwire', `bearer.${token}`]) : new Ctor(url);
    this.arm(ctx.connectTimeout, 'connect_timeout', 'the WebSocket did not open in time');
    this.ws.onopen = () => {
      if (this.done) return;
      this.opened = true;
      this.openedAt = Date.now();
      this.arm(ctx.heartbeatDeadline, 'heartbeat_timeout', 'no heartbeat from the server before the deadline');
      ctx.hooks.open();
      for (const [id, p] of this.pending) this.subscribe(id, p.since, p.epoch);
      this.pending.clear();
    };
    this.ws.onmessage = (ev) => {
      if (this.done) return;
      this.arm(ctx.heartbeatDeadline, 'heartbeat_timeout', 'no heartbeat from the server before the deadline');
      const text = messageText(ev.data);
      if (text === undefined) return;
      let frame: ServerFrame;
      try {
        frame = JSON.parse(text) as ServerFrame;
      } catch {
        return; // the server sends JSON only; ignore anything else
      }
      if (frame && typeof frame === 'object' && typeof frame.type === 'string') ctx.hooks.frame(frame);
    };
    this.ws.onclose = (ev) => {
      const out: Outcome = { wasOpen: this.opened, code: ev.code, reason: ev.reason };
      if (!this.opened) out.error = new JobwireError('connect_failed', `WebSocket closed before opening (${ev.code})`, { number: ev.code });
      this.finish(out);
    };
    this.ws.onerror = () => {
      // a close event follows; it carries the code
    };
  }

  private arm(ms: number, code: string, message: string): void {
    if (this.deadline !== undefined) clearTimeout(this.deadline);
    this.deadline = setTimeout(() => {
      this.abandon();
      this.finish({ wasOpen: this.opened, error: new JobwireError(code, message) });
    }, ms);
  }

  /** Drops a socket that may be dead: no close handshake is awaited. */
  private abandon(): void {
    const ws = this.ws as WebSocketLike & { terminate?: () => void };
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      if (typeof ws.terminate === 'function') ws.terminate();
      else ws.close();
    } catch {
      // already closed
    }
  }

  private finish(out: Outcome): void {
    if (this.done) return;
    this.done = true;
    if (this.deadline !== undefined) clearTimeout(this.deadline);
    if (this.openedAt !== undefined) out.openedAt = this.openedAt;
    this.ctx.hooks.closed(out);
  }

  send(frame: object): boolean {
    if (this.done || !this.opened || this.ws.readyState !== 1) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  subscribe(jobId: string, since: number | undefined, epoch?: number): void {
    if (!this.opened) {
      this.pending.set(jobId, { since, epoch });
      return;
    }
    // JSON drops undefined fields; an epoch goes only with a since.
    this.send({ type: 'subscribe', job_id: jobId, since, epoch: since === undefined ? undefined : epoch });
  }

  unsubscribe(jobId: string): void {
    if (this.pending.delete(jobId)) return;
    this.send({ type: 'unsubscribe', job_id: jobId });
  }

  close(): void {
    if (this.done) return;
    this.done = true;
    if (this.deadline !== undefined) clearTimeout(this.deadline);
    const ws = this.ws;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(1000, 'client closed');
    } catch {
      // not open yet
    }
  }
}
