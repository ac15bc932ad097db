/** `useJob(jobId)`: a live, gap-free JobView on useSyncExternalStore over the shared client. */
import { useCallback, useMemo, useSyncExternalStore } from 'react';
import type { CancelOptions, CancelResult, ConnectionInfo, Jobwire, JobStatus, JobView, JobwireError, LogLine } from '@jobwire/client';
import { useJobwire } from './provider.js';
import { jobStore } from './store.js';

export interface UseJobOptions {
  /** Start from this seq (see WatchOptions.since). */
  since?: number;
  /** Re-render at most once per this many ms (the final, terminal state is never held back). */
  throttleMs?: number;
  /** A client other than the provider's. */
  client?: Jobwire;
}

export interface UseJobResult {
  job: JobView | null;
  status: JobStatus | null;
  /** 0 to 100. */
  progress: number;
  stage: string | undefined;
  logs: readonly LogLine[];
  isConnected: boolean;
  connection: ConnectionInfo;
  /** The subscription's error (job_not_found, ...) or the connection's, when it gave up. */
  error: JobwireError | null;
  isTerminal: boolean;
  /**
   * Cancels the job (a string is the reason). A running job is only asked to stop: the result says
   * `cancelRequested: true` and `job.cancelRequested` is set until its worker publishes `cancelled`.
   */
  cancel(opts?: string | CancelOptions): Promise<CancelResult>;
}

const NO_LOGS: readonly LogLine[] = Object.freeze([]);

/** The connection state of a client, as React state. */
export function useConnection(override?: Jobwire): ConnectionInfo {
  const client = useJobwire(override);
  return useSyncExternalStore(
    useCallback((l: () => void) => client.subscribeConnection(l), [client]),
    () => client.getConnection(),
    () => client.getConnection(),
  );
}

/** Watches `jobId` (null or undefined: nothing). */
export function useJob(jobId: string | null | undefined, opts: UseJobOptions = {}): UseJobResult {
  const client = useJobwire(opts.client);
  const id = jobId ?? null;
  const store = useMemo(() => jobStore(client, id, pick(opts)), [client, id, opts.since, opts.throttleMs]);
  const job = useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
  const connection = useConnection(client);
  const cancel = useCallback(
    (opts?: string | CancelOptions) => (id === null ? Promise.reject(new Error('useJob: no job to cancel')) : client.cancel(id, opts)),
    [client, id],
  );
  const subError = store.error();
  return {
    job,
    status: job?.status ?? null,
    progress: job?.progress ?? 0,
    stage: job?.stage,
    logs: job?.logs ?? NO_LOGS,
    isConnected: connection.state === 'open',
    connection,
    error: subError ?? (connection.state === 'closed' ? connection.error : null),
    isTerminal: job?.isTerminal ?? false,
    cancel,
  };
}

function pick(o: UseJobOptions): { since?: number; throttleMs?: number } {
  const out: { since?: number; throttleMs?: number } = {};
  if (o.since !== undefined) out.since = o.since;
  if (o.throttleMs !== undefined) out.throttleMs = o.throttleMs;
  return out;
}
