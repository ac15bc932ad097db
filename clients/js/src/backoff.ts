/** Full-jitter exponential backoff (the centrifuge-js defaults: 500 ms to 20 s). */

export interface BackoffOptions {
  /** First delay bound in ms (default 500). */
  minDelay: number;
  /** Largest delay bound in ms (default 20000). */
  maxDelay: number;
}

/** Delay before retry number `attempt` (0-based): uniform in [0, min(max, min * 2^attempt)]. */
export function fullJitter(attempt: number, opts: BackoffOptions, random: () => number = Math.random): number {
  const cap = Math.min(opts.maxDelay, opts.minDelay * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * cap);
}

/** Waits `ms`, or rejects early with the signal's reason. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
