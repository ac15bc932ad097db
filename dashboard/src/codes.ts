/** The wire code tables, mirrored from crates/jobwire-proto/codes.json (test/codes.test.mjs checks they agree). */

export type CloseAction = 'reconnect' | 'refresh_token' | 'stop';

/** WebSocket close codes: number -> [name, what the dashboard does]. */
export const CLOSE_CODES: Record<number, readonly [string, CloseAction]> = {
  1000: ['normal', 'stop'],
  1009: ['message_too_big', 'stop'],
  1011: ['internal_error', 'reconnect'],
  1012: ['service_restart', 'reconnect'],
  4000: ['idle_timeout', 'reconnect'],
  4001: ['slow_consumer', 'reconnect'],
  4002: ['resync', 'reconnect'],
  4501: ['token_expired', 'refresh_token'],
  4504: ['job_not_found', 'stop'],
};

/** Error codes: name -> [number, HTTP status]. */
export const ERROR_CODES: Record<string, readonly [number, number]> = {
  bad_request: [1000, 400],
  malformed_json: [1001, 400],
  invalid_event: [1002, 422],
  invalid_job_id: [1003, 422],
  unknown_message_type: [1004, 400],
  payload_too_large: [1005, 413],
  route_not_found: [1006, 404],
  method_not_allowed: [1007, 405],
  invalid_request: [1008, 422],
  request_timeout: [1009, 408],
  job_not_found: [2001, 404],
  job_exists: [2002, 409],
  invalid_transition: [2003, 409],
  job_terminal: [2004, 409],
  already_subscribed: [2005, 409],
  not_subscribed: [2006, 409],
  too_many_subscriptions: [2007, 429],
  invalid_parent: [2008, 422],
  unauthorized: [3001, 401],
  token_expired: [3002, 401],
  forbidden: [3003, 403],
  origin_not_allowed: [3004, 403],
  too_many_connections: [3005, 429],
  invalid_api_key: [3006, 401],
  rate_limited: [3007, 429],
  key_not_found: [3008, 404],
  auth_disabled: [3009, 409],
  storage_unavailable: [5001, 503],
  shutting_down: [5002, 503],
  internal: [5003, 500],
  storage_full: [5004, 507],
};

/**
 * What to do after a close. Codes outside the table follow the protocol's ranges:
 * 4000-4499 reconnect, 4500-4999 stop; anything else (1006 from a dropped TCP
 * connection, 1001 going away) reconnects with backoff.
 */
export function closeAction(code: number): CloseAction {
  const known = CLOSE_CODES[code];
  if (known) return known[1];
  if (code >= 4500 && code <= 4999) return 'stop';
  return 'reconnect';
}
