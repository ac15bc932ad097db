/**
 * @jobwire/react: React hooks over one shared @jobwire/client.
 *
 * # Layout
 * - provider.tsx: JobwireProvider, useJobwire
 * - useJob.ts: useJob, useConnection
 * - useJobs.ts: useJobs (project channel list)
 * - compat.ts: useJobWebSocket (a6hub) and useJobProgress (titan) drop-ins
 * - store.ts: the useSyncExternalStore adapters
 */
export { JobwireProvider, useJobwire } from './provider.js';
export { useJob, useConnection } from './useJob.js';
export type { UseJobOptions, UseJobResult } from './useJob.js';
export { useJobs } from './useJobs.js';
export type { UseJobsOptions, UseJobsResult } from './useJobs.js';
export { useJobWebSocket, useJobProgress, toJobProgress } from './compat.js';
export type { UseJobWebSocketOptions, UseJobWebSocketResult, JobProgress } from './compat.js';
