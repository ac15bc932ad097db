/** Typed errors of the client: every failure carries a protocol code name callers can branch on. */

/** An error from the server (HTTP error body, WebSocket `error` frame or close code) or from the client itself. */
export class JobwireError extends Error {
  /** The code name: a server error code (`job_not_found`), a close-code name (`token_expired`), or a client code (`network`, `timeout`, `bad_option`). */
  readonly code: string;
  /** The server's stable error number, or the WebSocket close code, when there is one. */
  readonly number: number | undefined;
  /** The HTTP status, for HTTP answers. */
  readonly status: number | undefined;
  /** The `Retry-After` of a 429/503 answer, in milliseconds. */
  readonly retryAfterMs: number | undefined;
  constructor(
    code: string,
    message: string,
    extra: { number?: number; status?: number; retryAfterMs?: number; cause?: unknown } = {},
  ) {
    super(message);
    this.name = 'JobwireError';
    this.code = code;
    this.number = extra.number;
    this.status = extra.status;
    this.retryAfterMs = extra.retryAfterMs;
    if (extra.cause !== undefined) (this as { cause?: unknown }).cause = extra.cause;
  }
}

/**
 * The client gave up for good: retrying cannot help (refused token without `getToken`,
 * origin not allowed, a close code whose action is `stop`). `getToken` may also throw it
 * to say "the user is logged out".
 */
export class StopRetrying extends JobwireError {
  constructor(code: string, message: string, extra: { number?: number; status?: number; cause?: unknown } = {}) {
    super(code, message, extra);
    this.name = 'StopRetrying';
  }
}

/** Builds a JobwireError from an HTTP response with the server's `{"error":{code,number,message}}` body. */
export async function errorFromResponse(res: Response): Promise<JobwireError> {
  let code = `http_${res.status}`;
  let message = `HTTP ${res.status}`;
  let number: number | undefined;
  try {
    const body = (await res.json()) as { error?: { code?: string; message?: string; number?: number } };
    if (body && body.error && typeof body.error.code === 'string') {
      code = body.error.code;
      message = body.error.message ?? message;
      number = body.error.number;
    }
  } catch {
    // not a JSON error body (a proxy's page): keep the HTTP status as the code
  }
  const retryAfter = res.headers.get('retry-after');
  const extra: { number?: number; status: number; retryAfterMs?: number } = { status: res.status };
  if (number !== undefined) extra.number = number;
  if (retryAfter !== null && /^\d+(\.\d+)?$/.test(retryAfter.trim())) extra.retryAfterMs = Number(retryAfter) * 1000;
  return new JobwireError(code, message, extra);
}
