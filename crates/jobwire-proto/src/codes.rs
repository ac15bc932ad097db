//! The numbered table of wire codes. Every error the server sends (HTTP body or
//! WebSocket `error` frame) carries one [`ErrorCode`]; every close it initiates carries
//! one [`CloseCode`]. docs/protocol.md mirrors these tables and a test keeps them in
//! step; the client libraries mirror them too.

use serde::{Deserialize, Serialize};

macro_rules! error_codes {
    ($( $variant:ident = ($num:literal, $name:literal, $http:literal, $doc:literal), )*) => {
        /// A stable, documented error code. `as_str` is what goes on the wire.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum ErrorCode {
            $( #[doc = $doc] $variant, )*
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant, )* ];

            /// The snake_case name sent on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => $name, )* }
            }

            /// The stable number of this code (clients may switch on it).
            pub fn number(self) -> u16 {
                match self { $( ErrorCode::$variant => $num, )* }
            }

            /// The HTTP status this code maps to.
            pub fn http_status(self) -> u16 {
                match self { $( ErrorCode::$variant => $http, )* }
            }

            /// One line saying what the code means.
            pub fn description(self) -> &'static str {
                match self { $( ErrorCode::$variant => $doc, )* }
            }
        }
    };
}

error_codes! {
    BadRequest = (1000, "bad_request", 400, "The request is malformed: a bad query parameter, a frame missing a required field, or a plain GET on a WebSocket endpoint."),
    MalformedJson = (1001, "malformed_json", 400, "The body or frame is not valid JSON."),
    InvalidEvent = (1002, "invalid_event", 422, "The event is invalid: unknown type, missing field, field of the wrong type, or value out of range."),
    InvalidJobId = (1003, "invalid_job_id", 422, "The job id is not 1-128 characters of [A-Za-z0-9._:-]."),
    UnknownMessageType = (1004, "unknown_message_type", 400, "The WebSocket frame has an unknown or missing `type`."),
    PayloadTooLarge = (1005, "payload_too_large", 413, "The body or frame exceeds the configured size limit."),
    RouteNotFound = (1006, "route_not_found", 404, "No endpoint at this path."),
    InvalidRequest = (1008, "invalid_request", 422, "A request field (other than an event) has the wrong type or an invalid value."),
    RequestTimeout = (1009, "request_timeout", 408, "The request body did not fully arrive within the body timeout; the connection is closed."),
    MethodNotAllowed = (1007, "method_not_allowed", 405, "The endpoint exists but not for this HTTP method."),
    JobNotFound = (2001, "job_not_found", 404, "No such job (or it expired)."),
    JobExists = (2002, "job_exists", 409, "A different job with this id already exists."),
    InvalidTransition = (2003, "invalid_transition", 409, "The status transition is not allowed by the job state machine."),
    JobTerminal = (2004, "job_terminal", 409, "The job is completed, failed or cancelled; it accepts no more events."),
    AlreadySubscribed = (2005, "already_subscribed", 409, "This connection already watches that job."),
    NotSubscribed = (2006, "not_subscribed", 409, "This connection does not watch that job."),
    TooManySubscriptions = (2007, "too_many_subscriptions", 429, "The connection reached its subscription limit."),
    InvalidParent = (2008, "invalid_parent", 422, "The `parent` of a new job is missing, finished, the job itself, too deep (8 levels), or already has 1000 children."),
    Unauthorized = (3001, "unauthorized", 401, "No valid token: missing, malformed, bad signature, wrong algorithm, or wrong audience/issuer."),
    TokenExpired = (3002, "token_expired", 401, "The token has expired or is not valid yet; get a fresh one."),
    Forbidden = (3003, "forbidden", 403, "The token is valid but lacks the scope (or allow-list entry) for this action."),
    OriginNotAllowed = (3004, "origin_not_allowed", 403, "The request's Origin is not in the server's allow-list."),
    TooManyConnections = (3005, "too_many_connections", 429, "A connection limit (total, per IP or per tenant) is reached; retry later."),
    InvalidApiKey = (3006, "invalid_api_key", 401, "The API key is malformed, unknown or revoked."),
    RateLimited = (3007, "rate_limited", 429, "The publish rate limit of this API key, tenant or client is exceeded; retry after `Retry-After` seconds."),
    KeyNotFound = (3008, "key_not_found", 404, "No such API key in the caller's tenant."),
    AuthDisabled = (3009, "auth_disabled", 409, "The server runs without authentication (development mode): API keys and `auth` frames have nothing to act on."),
    StorageUnavailable = (5001, "storage_unavailable", 503, "The store could not make the write durable; nothing was acknowledged. Retry."),
    StorageFull = (5004, "storage_full", 507, "The store is out of space (a full disk, or Redis at `maxmemory`); nothing was acknowledged. Retry once space is freed."),
    ShuttingDown = (5002, "shutting_down", 503, "The server is shutting down; retry against another instance or later."),
    Internal = (5003, "internal", 500, "An internal error; details are in the server log."),
}

/// What a client does after the server closes with a given [`CloseCode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseAction {
    /// Reconnect with backoff and resume every subscription with `since`.
    Reconnect,
    /// Get a fresh token (e.g. from `getToken()`), then reconnect and resume.
    RefreshToken,
    /// Do not reconnect without changing the request.
    Stop,
}

impl CloseAction {
    /// The snake_case name used in the exported table (`codes.json`).
    pub fn as_str(self) -> &'static str {
        match self {
            CloseAction::Reconnect => "reconnect",
            CloseAction::RefreshToken => "refresh_token",
            CloseAction::Stop => "stop",
        }
    }
}

macro_rules! close_codes {
    ($( $variant:ident = ($num:literal, $name:literal, $action:ident, $doc:literal), )*) => {
        /// WebSocket close codes the server uses. 4000-4499: reconnect and resume with
        /// `since`; 4500-4999: do not reconnect without changing the request (4501: not
        /// without a fresh token).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum CloseCode {
            $( #[doc = $doc] $variant, )*
        }

        impl CloseCode {
            /// Every close code, in table order.
            pub const ALL: &'static [CloseCode] = &[ $( CloseCode::$variant, )* ];

            /// The numeric close code.
            pub fn number(self) -> u16 {
                match self { $( CloseCode::$variant => $num, )* }
            }

            /// The snake_case name used in the exported table (`codes.json`).
            pub fn as_str(self) -> &'static str {
                match self { $( CloseCode::$variant => $name, )* }
            }

            /// What a client should do after this close.
            pub fn action(self) -> CloseAction {
                match self { $( CloseCode::$variant => CloseAction::$action, )* }
            }

            /// Whether a client should reconnect as it is (resuming with `since`).
            pub fn reconnect(self) -> bool {
                self.action() == CloseAction::Reconnect
            }

            /// One line saying what the code means.
            pub fn description(self) -> &'static str {
                match self { $( CloseCode::$variant => $doc, )* }
            }
        }
    };
}

close_codes! {
    Normal = (1000, "normal", Stop, "The watched job reached a terminal state; its last event was delivered."),
    MessageTooBig = (1009, "message_too_big", Stop, "A frame exceeded the hard WebSocket message limit."),
    InternalError = (1011, "internal_error", Reconnect, "The server hit an internal error on this connection."),
    ServiceRestart = (1012, "service_restart", Reconnect, "The server is restarting or shutting down; reconnect with `since`."),
    IdleTimeout = (4000, "idle_timeout", Reconnect, "Nothing was received from the client within the idle timeout."),
    SlowConsumer = (4001, "slow_consumer", Reconnect, "The client read too slowly and its outbound queue overflowed; reconnect with `since`."),
    Resync = (4002, "resync", Reconnect, "The server lost part of this job's live stream (e.g. after a long Redis outage); reconnect with `since`."),
    TokenExpired = (4501, "token_expired", RefreshToken, "The token expired; reconnect with a fresh one (or send an `auth` frame before expiry)."),
    JobNotFound = (4504, "job_not_found", Stop, "The job watched by a single-job socket does not exist."),
}

/// The whole table as JSON: what `codes.json` at this crate's root holds, and what the
/// Python and JavaScript clients check their mirrored tables against.
pub fn table_json() -> serde_json::Value {
    let errors: Vec<_> = ErrorCode::ALL
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": c.as_str(),
                "number": c.number(),
                "http_status": c.http_status(),
                "description": c.description(),
            })
        })
        .collect();
    let closes: Vec<_> = CloseCode::ALL
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": c.as_str(),
                "number": c.number(),
                "action": c.action().as_str(),
                "description": c.description(),
            })
        })
        .collect();
    serde_json::json!({ "error_codes": errors, "close_codes": closes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// `codes.json` is generated from this table; regenerate with
    /// `JOBWIRE_BLESS=1 cargo test -p jobwire-proto codes_json`.
    #[test]
    fn codes_json_is_up_to_date() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/codes.json");
        let want = serde_json::to_string_pretty(&table_json()).unwrap_or_default() + "\n";
        if std::env::var_os("JOBWIRE_BLESS").is_some() {
            std::fs::write(path, &want).unwrap_or_else(|e| panic!("write {path}: {e}"));
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "{path} is stale: run JOBWIRE_BLESS=1 cargo test -p jobwire-proto codes_json"
        );
    }

    #[test]
    fn numbers_and_names_are_unique() {
        let nums: HashSet<_> = ErrorCode::ALL.iter().map(|c| c.number()).collect();
        let names: HashSet<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(nums.len(), ErrorCode::ALL.len());
        assert_eq!(names.len(), ErrorCode::ALL.len());
        let closes: HashSet<_> = CloseCode::ALL.iter().map(|c| c.number()).collect();
        assert_eq!(closes.len(), CloseCode::ALL.len());
    }

    #[test]
    fn serde_name_matches_as_str() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(code).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn close_code_ranges_say_whether_to_reconnect() {
        for c in CloseCode::ALL {
            let n = c.number();
            if (4000..4500).contains(&n) {
                assert!(c.reconnect(), "{c:?}");
            }
            if (4500..5000).contains(&n) {
                assert!(!c.reconnect(), "{c:?}");
            }
        }
    }
}
