/**
 * Drop-ins for hooks users run today, so a team swaps one import and keeps its components:
 * a6hub's `useJobWebSocket(options)` and titan's `useJobProgress(jobId)`. Both run over the
 * shared client, so they resume without loss or duplicates.
 */
import { useEffect, useMemo, useRef, useSyncExternalStore } from 'react';
import type { Jobwire, JobView } from '@jobwire/client';
import { useJobwire } from './provider.js';
import { jobStore } from './store.js';
import { useConnection } from './useJob.js';

/** a6hub's options (`hooks/useJobWebSocket.ts`). */
export interface UseJobWebSocketOptions {
  jobId: string | number | null | undefined;
  /** false: no connection (a6hub pages fall back to polling then). Default true. */
  enabled?: boolean;
  /** Status names as a6hub uses them: jobwire's `in_progress` is reported as `running`. */
  onStatusChange?: (status: string) => void;
  /** progress 0-100, the current step (the event's stage, else the current step), steps done so far. */
  onProgressUpdate?: (progress: number, step: string, completedSteps: string[]) => void;
  /** One call per log line, each once, ending in `\n` (a6hub pages append: `prev + line`). */
  onLogUpdate?: (logLine: string) => void;
  onStepChange?: (stepName: string, stepLabel: string) => void;
  /** Once per job, when it ends: `completed`, `failed` or `cancelled`, with its message. */
  onComplete?: (status: string, message: string) => void;
  /** The job's error (failed), or a connection error message. */
  onError?: (errorMessage: string) => void;
  client?: Jobwire;
}

export interface UseJobWebSocketResult {
  isConnected: boolean;
  connectionError: string | null;
}

const a6Status = (s: string): string => (s === 'in_progress' ? 'running' : s);

/** a6hub's `useJobWebSocket`, driven by the reduced view: each change is reported once, in order. */
export function useJobWebSocket(options: UseJobWebSocketOptions): UseJobWebSocketResult {
  const client = useJobwire(options.client);
  const enabled = options.enabled ?? true;
  const id = enabled && options.jobId !== null && options.jobId !== undefined ? String(options.jobId) : null;
  const cb = useRef(options);
  cb.current = options;
  const store = useMemo(() => jobStore(client, id), [client, id]);
  const connection = useConnection(client);

  useEffect(() => {
    if (id === null) return;
    let prev: JobView | null = null;
    let completed = false;
    let errored = false;
    return store.onRaw((v) => {
      if (!v) {
        const e = store.error();
        if (e && !errored) {
          errored = true;
          cb.current.onError?.(e.message);
        }
        return;
      }
      const o = cb.current;
      if (!prev || prev.status !== v.status) o.onStatusChange?.(a6Status(v.status));
      if (!prev || prev.step?.step !== v.step?.step) {
        if (v.step) o.onStepChange?.(v.step.step, v.step.label ?? v.step.step);
      }
      if (!prev || prev.progress !== v.progress || prev.stage !== v.stage || prev.completedSteps !== v.completedSteps) {
        o.onProgressUpdate?.(v.progress, v.stage ?? v.step?.step ?? '', [...v.completedSteps]);
      }
      const lastNumber = prev && prev.logs.length ? prev.logs[prev.logs.length - 1]!.number : 0;
      for (const l of v.logs) if (l.number > lastNumber) o.onLogUpdate?.(l.line.endsWith('\n') ? l.line : `${l.line}\n`);
      if (v.isTerminal && !completed) {
        completed = true;
        if (v.status === 'failed' && v.error) o.onError?.(v.error);
        o.onComplete?.(v.status, v.message ?? v.error ?? '');
      }
      prev = v;
    });
  }, [store, id]);

  const lastError = useRef<string | null>(null);
  const connErr = id !== null && connection.state !== 'open' && connection.error ? connection.error.message : null;
  useEffect(() => {
    if (connErr && connErr !== lastError.current) cb.current.onError?.(connErr);
    lastError.current = connErr;
  }, [connErr]);
  return { isConnected: id !== null && connection.state === 'open', connectionError: connErr };
}

/** titan's `JobProgress` shape. */
export interface JobProgress {
  job_id: string;
  status: 'processing' | 'completed' | 'failed';
  stage: string;
  /** 0 to 1. */
  progress: number;
  message: string;
  timestamp: string;
  metadata?: Record<string, unknown>;
  result?: any;
  error?: string;
}

/** titan's mapping: every unfinished status is `processing`; `cancelled` is reported as `failed`. */
export function toJobProgress(v: JobView): JobProgress {
  const status = v.status === 'completed' ? 'completed' : v.status === 'failed' || v.status === 'cancelled' ? 'failed' : 'processing';
  const p: JobProgress = {
    job_id: v.id,
    status,
    stage: v.stage ?? v.step?.step ?? '',
    progress: v.progress / 100,
    message: v.message ?? '',
    timestamp: v.updatedAt,
    metadata: { ...v.metadata },
  };
  if (v.result !== undefined) p.result = v.result;
  if (v.status === 'failed') p.error = v.error ?? v.message ?? 'failed';
  if (v.status === 'cancelled') p.error = v.message ?? 'cancelled';
  return p;
}

/** titan's `useJobProgress(jobId)` returning `{ progress, isConnected, error }`. */
export function useJobProgress(jobId: string, opts: { client?: Jobwire } = {}): {
  progress: JobProgress | null;
  isConnected: boolean;
  error: string | null;
} {
  const client = useJobwire(opts.client);
  const store = useMemo(() => jobStore(client, jobId || null), [client, jobId]);
  const view = useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
  const connection = useConnection(client);
  const progress = useMemo(() => (view ? toJobProgress(view) : null), [view]);
  const subErr = store.error();
  const error = subErr ? subErr.message : connection.state !== 'open' && connection.error ? 'WebSocket connection error' : null;
  return { progress, isConnected: connection.state === 'open', error };
}
