/** The token source: a fixed token and/or `getToken()`, JWT expiry reading, and single-flight refreshes. */
import { StopRetrying } from './errors.js';

export type GetToken = () => string | null | undefined | Promise<string | null | undefined>;

/** Reads a JWT's `exp` (unix seconds) without verifying it; undefined for API keys and opaque tokens. */
export function tokenExpiry(token: string): number | undefined {
  const parts = token.split('.');
  if (parts.length !== 3 || !parts[1]) return undefined;
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = JSON.parse(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4))) as { exp?: unknown };
    return typeof json.exp === 'number' ? json.exp : undefined;
  } catch {
    return undefined;
  }
}

/** Holds the current token; refreshes through `getToken` (one call in flight at a time). */
export class TokenSource {
  private token: string | undefined;
  private readonly getToken: GetToken | undefined;
  private inflight: Promise<string | undefined> | null = null;

  constructor(token: string | undefined, getToken: GetToken | undefined) {
    this.token = token || undefined;
    this.getToken = getToken;
  }

  get current(): string | undefined {
    return this.token;
  }

  get canRefresh(): boolean {
    return this.getToken !== undefined;
  }

  /** The token to connect with: asks `getToken` when there is none or it has expired by its `exp`. */
  async forConnect(): Promise<string | undefined> {
    if (this.token !== undefined) {
      const exp = tokenExpiry(this.token);
      if (exp === undefined || exp * 1000 > Date.now() || !this.canRefresh) return this.token;
    }
    if (!this.canRefresh) return this.token;
    return this.refresh();
  }

  /** Asks `getToken` for a fresh token. Throws StopRetrying when there is no `getToken`. */
  refresh(): Promise<string | undefined> {
    if (!this.getToken) {
      return Promise.reject(new StopRetrying('token_expired', 'the token was refused and no getToken() is configured'));
    }
    if (!this.inflight) {
      const get = this.getToken;
      this.inflight = (async () => {
        try {
          const t = await get();
          this.token = t || undefined;
          return this.token;
        } finally {
          this.inflight = null;
        }
      })();
    }
    return this.inflight;
  }

  /** Milliseconds until the token should be refreshed ahead of its expiry, or undefined (no exp / no getToken). */
  refreshDelay(now = Date.now()): number | undefined {
    if (!this.token || !this.canRefresh) return undefined;
    const exp = tokenExpiry(this.token);
    if (exp === undefined) return undefined;
    const left = exp * 1000 - now;
    const margin = Math.min(30_000, Math.max(1_000, left * 0.2));
    return Math.max(0, left - margin);
  }
}
