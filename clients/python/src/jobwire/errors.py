"""Every exception the SDK raises, and the server's wire-code tables mirrored in Python.

`ERROR_CODES` and `CLOSE_CODES` mirror crates/jobwire-proto/codes.json; a test checks
that they agree exactly. Server errors map to one class per code (`error_for`).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, NamedTuple, Optional, Tuple, Type


class JobwireError(Exception):
    """Base class of every error the jobwire SDK raises."""


class ServerError(JobwireError):
    """An error answered by the server (or, for bad input, the one it would answer).

    `code` and `number` are the server's code name and stable number; `http_status` is
    the HTTP status of the code's row (None for an unknown code); `message` is the
    server's message; `retry_after` is the `Retry-After` header in seconds, if any.
    """

    code: str = "unknown"
    number: int = 0
    http_status: Optional[int] = None

    def __init__(
        self,
        message: str,
        *,
        code: Optional[str] = None,
        number: Optional[int] = None,
        http_status: Optional[int] = None,
        retry_after: Optional[float] = None,
        job_id: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if number is not None:
            self.number = number
        if http_status is not None:
            self.http_status = http_status
        self.retry_after = retry_after
        self.job_id = job_id

    def __str__(self) -> str:
        return f"{self.code} ({self.number}): {self.message}"


class TransportError(JobwireError):
    """The server could not be reached (connection refused, reset, timeout) after retries."""


class DeliveryError(TransportError):
    """Events are still pending: they stay queued and are retried, with the same event_id."""

    def __init__(self, message: str, pending: int) -> None:
        super().__init__(message)
        self.pending = pending


class WatchClosed(JobwireError):
    """A watch ended because the server closed the WebSocket with a code that says stop."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"websocket closed {code} {reason!r}")
        self.close_code = code
        self.reason = reason


class CancelRequested(JobwireError):
    """Someone asked the job to stop: raised by `job.raise_if_cancelled()`.

    Raised inside `with client.job(...)`, the job ends `cancelled` and this exception
    stops there (it is not re-raised). `by` and `reason` are the request's, when known.
    """

    def __init__(self, message: str = "cancel requested", *, job_id: Optional[str] = None,
                 by: Optional[str] = None, reason: Optional[str] = None) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.by = by
        self.reason = reason

    def __reduce__(self) -> Any:  # keep the fields across pickling (Celery results)
        return (_cancel_requested, (str(self), self.job_id, self.by, self.reason))


def _cancel_requested(message: str, job_id: Optional[str], by: Optional[str],
                      reason: Optional[str]) -> CancelRequested:
    return CancelRequested(message, job_id=job_id, by=by, reason=reason)


# One class per server error code. Input errors are also ValueErrors: the SDK raises
# them too for bad input it refuses before sending (e.g. progress out of range).


class BadRequest(ServerError, ValueError):
    """The request is malformed: a bad query parameter, a frame missing a required field, or a plain GET on a WebSocket endpoint."""

    code = "bad_request"
    number = 1000
    http_status = 400


class MalformedJson(ServerError, ValueError):
    """The body or frame is not valid JSON."""

    code = "malformed_json"
    number = 1001
    http_status = 400


class InvalidEvent(ServerError, ValueError):
    """The event is invalid: unknown type, missing field, field of the wrong type, or value out of range."""

    code = "invalid_event"
    number = 1002
    http_status = 422


class InvalidJobId(ServerError, ValueError):
    """The job id is not 1-128 characters of [A-Za-z0-9._:-]."""

    code = "invalid_job_id"
    number = 1003
    http_status = 422


class UnknownMessageType(ServerError):
    """The WebSocket frame has an unknown or missing `type`."""

    code = "unknown_message_type"
    number = 1004
    http_status = 400


class PayloadTooLarge(ServerError, ValueError):
    """The body or frame exceeds the configured size limit."""

    code = "payload_too_large"
    number = 1005
    http_status = 413


class RouteNotFound(ServerError):
    """No endpoint at this path."""

    code = "route_not_found"
    number = 1006
    http_status = 404


class MethodNotAllowed(ServerError):
    """The endpoint exists but not for this HTTP method."""

    code = "method_not_allowed"
    number = 1007
    http_status = 405


class InvalidRequest(ServerError, ValueError):
    """A request field (other than an event) has the wrong type or an invalid value."""

    code = "invalid_request"
    number = 1008
    http_status = 422


class RequestTimeout(ServerError):
    """The request body did not fully arrive within the body timeout; the connection is closed."""

    code = "request_timeout"
    number = 1009
    http_status = 408


class JobNotFound(ServerError, LookupError):
    """No such job (or it expired)."""

    code = "job_not_found"
    number = 2001
    http_status = 404


class JobExists(ServerError):
    """A different job with this id already exists."""

    code = "job_exists"
    number = 2002
    http_status = 409


class InvalidTransition(ServerError):
    """The status transition is not allowed by the job state machine."""

    code = "invalid_transition"
    number = 2003
    http_status = 409


class JobTerminal(ServerError):
    """The job is completed, failed or cancelled; it accepts no more events."""

    code = "job_terminal"
    number = 2004
    http_status = 409


class AlreadySubscribed(ServerError):
    """This connection already watches that job."""

    code = "already_subscribed"
    number = 2005
    http_status = 409


class NotSubscribed(ServerError):
    """This connection does not watch that job."""

    code = "not_subscribed"
    number = 2006
    http_status = 409


class TooManySubscriptions(ServerError):
    """The connection reached its subscription limit."""

    code = "too_many_subscriptions"
    number = 2007
    http_status = 429


class InvalidParent(ServerError):
    """The `parent` of a new job is missing, finished, the job itself, too deep (8 levels), or already has 1000 children."""

    code = "invalid_parent"
    number = 2008
    http_status = 422


class Unauthorized(ServerError):
    """No valid token: missing, malformed, bad signature, wrong algorithm, or wrong audience/issuer."""

    code = "unauthorized"
    number = 3001
    http_status = 401


class TokenExpired(ServerError):
    """The token has expired or is not valid yet; get a fresh one."""

    code = "token_expired"
    number = 3002
    http_status = 401


class Forbidden(ServerError):
    """The token is valid but lacks the scope (or allow-list entry) for this action."""

    code = "forbidden"
    number = 3003
    http_status = 403


class OriginNotAllowed(ServerError):
    """The request's Origin is not in the server's allow-list."""

    code = "origin_not_allowed"
    number = 3004
    http_status = 403


class TooManyConnections(ServerError):
    """A connection limit (total, per IP or per tenant) is reached; retry later."""

    code = "too_many_connections"
    number = 3005
    http_status = 429


class InvalidApiKey(ServerError):
    """The API key is malformed, unknown or revoked."""

    code = "invalid_api_key"
    number = 3006
    http_status = 401


class RateLimited(ServerError):
    """The publish rate limit of this API key, tenant or client is exceeded; retry after `Retry-After` seconds."""

    code = "rate_limited"
    number = 3007
    http_status = 429


class KeyNotFound(ServerError):
    """No such API key in the caller's tenant."""

    code = "key_not_found"
    number = 3008
    http_status = 404


class AuthDisabled(ServerError):
    """The server runs without authentication (development mode): API keys and `auth` frames have nothing to act on."""

    code = "auth_disabled"
    number = 3009
    http_status = 409


class StorageUnavailable(ServerError):
    """The store could not make the write durable; nothing was acknowledged. Retry."""

    code = "storage_unavailable"
    number = 5001
    http_status = 503


class ShuttingDown(ServerError):
    """The server is shutting down; retry against another instance or later."""

    code = "shutting_down"
    number = 5002
    http_status = 503


class Internal(ServerError):
    """An internal error; details are in the server log."""

    code = "internal"
    number = 5003
    http_status = 500


class StorageFull(ServerError):
    """The store is out of space (a full disk, or Redis at `maxmemory`); nothing was acknowledged. Retry once space is freed."""

    code = "storage_full"
    number = 5004
    http_status = 507


class ErrorCode(NamedTuple):
    name: str
    number: int
    http_status: int
    exception: Type[ServerError]


ERROR_CODES: Tuple[ErrorCode, ...] = tuple(
    ErrorCode(c.code, c.number, int(c.http_status or 0), c)
    for c in (
        BadRequest, MalformedJson, InvalidEvent, InvalidJobId, UnknownMessageType,
        PayloadTooLarge, RouteNotFound, MethodNotAllowed, InvalidRequest, RequestTimeout,
        JobNotFound, JobExists, InvalidTransition, JobTerminal, AlreadySubscribed,
        NotSubscribed, TooManySubscriptions, InvalidParent, Unauthorized, TokenExpired, Forbidden,
        OriginNotAllowed, TooManyConnections, InvalidApiKey, RateLimited, KeyNotFound,
        AuthDisabled, StorageUnavailable, ShuttingDown, Internal, StorageFull,
    )
)
_BY_NAME: Dict[str, ErrorCode] = {c.name: c for c in ERROR_CODES}


class CloseCode(NamedTuple):
    name: str
    number: int
    action: str  # "reconnect" | "refresh_token" | "stop"


CLOSE_CODES: Tuple[CloseCode, ...] = (
    CloseCode("normal", 1000, "stop"),
    CloseCode("message_too_big", 1009, "stop"),
    CloseCode("internal_error", 1011, "reconnect"),
    CloseCode("service_restart", 1012, "reconnect"),
    CloseCode("idle_timeout", 4000, "reconnect"),
    CloseCode("slow_consumer", 4001, "reconnect"),
    CloseCode("resync", 4002, "reconnect"),
    CloseCode("token_expired", 4501, "refresh_token"),
    CloseCode("job_not_found", 4504, "stop"),
)
_CLOSE_BY_NUMBER: Dict[int, CloseCode] = {c.number: c for c in CLOSE_CODES}


def close_action(number: Optional[int]) -> str:
    """What a watcher does after a close: the table's action, else the protocol's ranges.

    4000-4499 reconnect, 4500-4999 stop; other unknown codes (and an abnormal close
    without a code) reconnect.
    """
    if number is None:
        return "reconnect"
    known = _CLOSE_BY_NUMBER.get(number)
    if known is not None:
        return known.action
    if 4500 <= number <= 4999:
        return "stop"
    return "reconnect"


def error_for(
    code: Optional[str],
    message: str,
    *,
    number: Optional[int] = None,
    http_status: Optional[int] = None,
    retry_after: Optional[float] = None,
    job_id: Optional[str] = None,
) -> ServerError:
    """The typed exception for a server error code (a plain ServerError if unknown)."""
    row = _BY_NAME.get(code or "")
    cls: Type[ServerError] = row.exception if row else ServerError
    return cls(
        message,
        code=code if row is None and code else None,
        number=number if row is None else None,
        http_status=http_status if row is None else None,
        retry_after=retry_after,
        job_id=job_id,
    )


def from_response(status: int, body: Mapping[str, Any], retry_after: Optional[float]) -> ServerError:
    """The typed exception for an HTTP error answer `{"error":{"code","number","message"}}`."""
    err = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(err, Mapping):
        return ServerError(f"HTTP {status}", code="http_error", http_status=status,
                           retry_after=retry_after)
    return error_for(
        str(err.get("code", "unknown")),
        str(err.get("message", "")),
        number=int(err.get("number", 0) or 0),
        http_status=status,
        retry_after=retry_after,
    )
