/** Wire codes of jobwire, mirrored from crates/jobwire-proto/codes.json by scripts/codes.mjs (test/codes.test.mjs checks they agree). */

/** What a client does when the server closes its WebSocket with a code. */
export type CloseAction = 'reconnect' | 'refresh_token' | 'stop';

/** WebSocket close codes: number -> name and client action. */
export const CLOSE_CODES: Readonly<Record<number, { readonly name: string; readonly action: CloseAction }>> = {
  1000: { name: 'normal', action: 'stop' },
  1009: { name: 'message_too_big', action: 'stop' },
  1011: { name: 'internal_error', action: 'reconnect' },
  1012: { name: 'service_restart', action: 'reconnect' },
  4000: { name: 'idle_timeout', action: 'reconnect' },
  4001: { name: 'slow_consumer', action: 'reconnect' },
  4002: { name: 'resync', action: 'reconnect' },
  4501: { name: 'token_expired', action: 'refresh_token' },
  4504: { name: 'job_not_found', action: 'stop' },
};

/** Error codes: name -> stable number and HTTP status. */
export const ERROR_CODES: Readonly<Record<string, { readonly number: number; readonly http: number }>> = {
  bad_request: { number: 1000, http: 400 },
  malformed_json: { number: 1001, http: 400 },
  invalid_event: { number: 1002, http: 422 },
  invalid_job_id: { number: 1003, http: 422 },
  unknown_message_type: { number: 1004, http: 400 },
  payload_too_large: { number: 1005, http: 413 },
  route_not_found: { number: 1006, http: 404 },
  invalid_request: { number: 1008, http: 422 },
  request_timeout: { number: 1009, http: 408 },
  method_not_allowed: { number: 1007, http: 405 },
  job_not_found: { number: 2001, http: 404 },
  job_exists: { number: 2002, http: 409 },
  invalid_transition: { number: 2003, http: 409 },
  job_terminal: { number: 2004, http: 409 },
  already_subscribed: { number: 2005, http: 409 },
  not_subscribed: { number: 2006, http: 409 },
  too_many_subscriptions: { number: 2007, http: 429 },
  invalid_parent: { number: 2008, http: 422 },
  unauthorized: { number: 3001, http: 401 },
  token_expired: { number: 3002, http: 401 },
  forbidden: { number: 3003, http: 403 },
  origin_not_allowed: { number: 3004, http: 403 },
  too_many_connections: { number: 3005, http: 429 },
  invalid_api_key: { number: 3006, http: 401 },
  rate_limited: { number: 3007, http: 429 },
  key_not_found: { number: 3008, http: 404 },
  auth_disabled: { number: 3009, http: 409 },
  storage_unavailable: { number: 5001, http: 503 },
  storage_full: { number: 5004, http: 507 },
  shutting_down: { number: 5002, http: 503 },
  internal: { number: 5003, http: 500 },
};

/**
 * The action for a close code. Unknown codes follow the protocol's ranges: 4000-4499
 * reconnect, 4500-4999 stop; anything else (1001, 1006 abnormal closure, ...) reconnects.
 */
export function closeAction(code: number): CloseAction {
  const known = CLOSE_CODES[code];
  if (known) return known.action;
  if (code >= 4500 && code <= 4999) return 'stop';
  return 'reconnect';
}
