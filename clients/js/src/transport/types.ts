/** The seam between the client and its three transports (WebSocket, SSE, HTTP polling). */
import type { JobwireError } from '../errors.js';
import type { ServerFrame } from '../types.js';

export type TransportKind = 'websocket' | 'sse' | 'polling';

/** The part of the WebSocket API the client uses (browsers' WebSocket and the `ws` package both fit). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}
export type WebSocketCtor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** How a transport ended. */
export interface Outcome {
  /** The transport opened (WebSocket open; SSE/polling: the server answered) before it ended. */
  wasOpen: boolean;
  /** When it opened (ms since epoch). */
  openedAt?: number;
  /** The WebSocket close code, when the server (or the network, 1006) closed it. */
  code?: number;
  reason?: string;
  /** A typed reason: HTTP refusal, heartbeat timeout, network error. */
  error?: JobwireError;
}

/** What a transport reports to its owner. */
export interface TransportHooks {
  open(): void;
  frame(frame: ServerFrame): void;
  closed(outcome: Outcome): void;
}

/** What a transport needs from the client. */
export interface TransportContext {
  /** http(s)://host[:port], no trailing slash. */
  baseUrl: string;
  token(): string | undefined;
  fetch: typeof fetch;
  WebSocket: WebSocketCtor | undefined;
  hooks: TransportHooks;
  /** Close a WebSocket that received nothing for this long (ms). */
  heartbeatDeadline: number;
  /** Give up on a WebSocket that has not opened after this long (ms). */
  connectTimeout: number;
  /** Polling period (ms). */
  pollInterval: number;
}

/** One live connection attempt carrying any number of job subscriptions. */
export interface Transport {
  readonly kind: TransportKind;
  /** Watch a job from `since` (the last seq the client has; undefined: snapshot + live only), with the epoch `since` came with. */
  subscribe(jobId: string, since: number | undefined, epoch?: number): void;
  unsubscribe(jobId: string): void;
  /** Send raw frames (WebSocket only; false if not supported or not open). */
  send(frame: object): boolean;
  /** Close and report nothing more. */
  close(): void;
}

/** Where a subscribe starts: the last seq held and its epoch. */
export interface Position {
  since: number | undefined;
  epoch: number | undefined;
}

/** Decodes a WebSocket message payload (string, Buffer/Uint8Array or ArrayBuffer) to text. */
export function messageText(data: unknown): string | undefined {
  if (typeof data === 'string') return data;
  if (data instanceof ArrayBuffer) return new TextDecoder().decode(data);
  if (ArrayBuffer.isView(data)) return new TextDecoder().decode(data as Uint8Array);
  return undefined;
}

export function authHeaders(token: string | undefined): Record<string, string> {
  return token ? { authorization: `Bearer ${token}` } : {};
}
