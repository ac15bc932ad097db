/** `useJobs({ project, status })`: a live list of a project's jobs over its channel socket. */
import { useEffect, useMemo, useState, useSyncExternalStore } from 'react';
import type { ConnectionInfo, Jobwire, JobStatus, JobView, ProjectWatch } from '@jobwire/client';
import { useJobwire } from './provider.js';

export interface UseJobsOptions {
  /** The project; `'*'` is every project of the tenant. */
  project: string;
  /** Only jobs in this status (or these statuses). */
  status?: JobStatus | readonly JobStatus[];
  client?: Jobwire;
}

export interface UseJobsResult {
  jobs: readonly JobView[];
  isConnected: boolean;
  /** The channel's catch-up is done. */
  ready: boolean;
  connection: ConnectionInfo | null;
}

const EMPTY: readonly JobView[] = Object.freeze([]);
const noop = (): (() => void) => () => {};

export function useJobs(opts: UseJobsOptions): UseJobsResult {
  const client = useJobwire(opts.client);
  const [watch, setWatch] = useState<ProjectWatch | null>(null);
  useEffect(() => {
    const w = client.watchProject(opts.project);
    setWatch(w);
    return () => {
      w.close();
      setWatch(null);
    };
  }, [client, opts.project]);
  const all = useSyncExternalStore(
    watch ? (l: () => void) => watch.subscribe(l) : noop,
    () => (watch ? watch.getSnapshot() : EMPTY),
    () => EMPTY,
  );
  const connection = useSyncExternalStore(
    watch ? (l: () => void) => watch.subscribeConnection(l) : noop,
    () => (watch ? watch.getConnection() : null),
    () => null,
  );
  const statusKey = Array.isArray(opts.status) ? opts.status.join(',') : (opts.status as string | undefined) ?? '';
  const jobs = useMemo(() => {
    if (!statusKey) return all;
    const want = new Set(statusKey.split(','));
    return all.filter((j) => want.has(j.status));
  }, [all, statusKey]);
  return { jobs, isConnected: connection?.state === 'open', ready: watch?.ready ?? false, connection };
}
