/**
 * External stores for useSyncExternalStore: a job watch that opens on the first listener and
 * closes on the last (so React's subscribe/unsubscribe drive the server subscription), with an
 * optional render throttle.
 */
import type { Jobwire, JobSubscription, JobView, JobwireError, WatchOptions } from '@jobwire/client';

export interface JobStore {
  subscribe(listener: () => void): () => void;
  getSnapshot(): JobView | null;
  /** The live subscription while someone listens. */
  current(): JobSubscription | null;
  /** Listeners for every change, unthrottled (compat hooks diff views here). */
  onRaw(listener: (view: JobView | null) => void): () => void;
  error(): JobwireError | null;
}

export function jobStore(client: Jobwire, jobId: string | null, opts: { since?: number; throttleMs?: number } = {}): JobStore {
  let sub: JobSubscription | null = null;
  let unlisten: (() => void) | null = null;
  const listeners = new Set<() => void>();
  const raw = new Set<(v: JobView | null) => void>();
  let shown: JobView | null = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let lastEmit = 0;
  let err: JobwireError | null = null;

  const emit = (): void => {
    timer = undefined;
    lastEmit = Date.now();
    shown = sub?.getSnapshot() ?? null;
    listeners.forEach((l) => l());
  };
  const onChange = (): void => {
    const v = sub?.getSnapshot() ?? null;
    raw.forEach((l) => l(v));
    const t = opts.throttleMs ?? 0;
    if (t <= 0) return emit();
    if (timer !== undefined) return;
    const wait = Math.max(0, lastEmit + t - Date.now());
    // Terminal views are never held back: the final state renders at once.
    if (wait === 0 || v?.isTerminal) emit();
    else timer = setTimeout(emit, wait);
  };
  const open = (): void => {
    if (sub || jobId === null) return;
    const w: WatchOptions = { onError: (e) => ((err = e), onChange()) };
    if (opts.since !== undefined) w.since = opts.since;
    sub = client.watch(jobId, w);
    unlisten = sub.subscribe(onChange);
    shown = sub.getSnapshot();
  };
  const closeIfIdle = (): void => {
    if (listeners.size || raw.size || !sub) return;
    unlisten?.();
    sub.close();
    sub = null;
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
  };
  return {
    subscribe(listener) {
      listeners.add(listener);
      open();
      return () => {
        listeners.delete(listener);
        closeIfIdle();
      };
    },
    getSnapshot() {
      if (sub && (opts.throttleMs ?? 0) <= 0) return sub.getSnapshot();
      return shown;
    },
    current: () => sub,
    onRaw(listener) {
      raw.add(listener);
      open();
      listener(sub?.getSnapshot() ?? null);
      return () => {
        raw.delete(listener);
        closeIfIdle();
      };
    },
    error: () => err ?? sub?.error ?? null,
  };
}
