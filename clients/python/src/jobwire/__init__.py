"""jobwire: publish job progress to a jobwire server and watch jobs live.

# Layout
- `client`: `Client` (sync): HTTP API with retries, `watch()`, the background flusher.
- `aio`: `AsyncClient` (and `AsyncJob`, in `_aio_job`), the same surface for asyncio.
- `_control`: the cancel state of a handle and the control stream's decoding.
- `job`: `Job`, the worker's handle (progress coalescing, log batching, ordered delivery).
- `errors`: `JobwireError` and one class per server error code; the close-code table.
- `celery`: `install(app, client)` and `JobwireTask` (extra `jobwire[celery]`).
- `compat`: drop-in publishers of titan, a6hub, project-updates and progress-channel.
"""

from __future__ import annotations

from ._core import CancelResult, RetryPolicy
from .aio import AsyncClient, AsyncJob
from .client import Client
from .errors import (
    CLOSE_CODES,
    ERROR_CODES,
    AlreadySubscribed,
    AuthDisabled,
    BadRequest,
    CancelRequested,
    DeliveryError,
    Forbidden,
    Internal,
    InvalidApiKey,
    InvalidEvent,
    InvalidJobId,
    InvalidParent,
    InvalidRequest,
    InvalidTransition,
    JobExists,
    JobNotFound,
    JobTerminal,
    JobwireError,
    KeyNotFound,
    MalformedJson,
    MethodNotAllowed,
    NotSubscribed,
    OriginNotAllowed,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    RouteNotFound,
    ServerError,
    ShuttingDown,
    StorageFull,
    StorageUnavailable,
    TokenExpired,
    TooManyConnections,
    TooManySubscriptions,
    TransportError,
    Unauthorized,
    UnknownMessageType,
    WatchClosed,
)
from .job import Job

__version__ = "0.1.0"
__all__ = [
    "CLOSE_CODES",
    "ERROR_CODES",
    "AlreadySubscribed",
    "AsyncClient",
    "AsyncJob",
    "AuthDisabled",
    "BadRequest",
    "CancelRequested",
    "CancelResult",
    "Client",
    "DeliveryError",
    "Forbidden",
    "Internal",
    "InvalidApiKey",
    "InvalidEvent",
    "InvalidJobId",
    "InvalidParent",
    "InvalidRequest",
    "InvalidTransition",
    "Job",
    "JobExists",
    "JobNotFound",
    "JobTerminal",
    "JobwireError",
    "KeyNotFound",
    "MalformedJson",
    "MethodNotAllowed",
    "NotSubscribed",
    "OriginNotAllowed",
    "PayloadTooLarge",
    "RateLimited",
    "RequestTimeout",
    "RetryPolicy",
    "RouteNotFound",
    "ServerError",
    "ShuttingDown",
    "StorageFull",
    "StorageUnavailable",
    "TokenExpired",
    "TooManyConnections",
    "TooManySubscriptions",
    "TransportError",
    "Unauthorized",
    "UnknownMessageType",
    "WatchClosed",
    "__version__",
]
