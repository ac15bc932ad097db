"""What the sync and asyncio clients share: configuration, retry policy, request shaping.

Nothing here does I/O. `Request` is what to send; `parse_response` turns an answer into
data or a typed error; `RetryPolicy` says whether and how long to wait before a retry.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union
from urllib.parse import quote

from .errors import InvalidEvent, InvalidJobId, InvalidRequest, ServerError, from_response

DEFAULT_URL = "http://127.0.0.1:8000"
USER_AGENT = "jobwire-python/0.1.0"
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
TERMINAL_TYPES = TERMINAL_STATUSES
STATUSES = frozenset({"pending", "queued", "in_progress", *TERMINAL_STATUSES})
MAX_BATCH_EVENTS = 1000  # the server's limit per publish
_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

JSON = Any
Event = Dict[str, Any]
Snapshot = Dict[str, Any]
TokenSource = Union[str, Callable[[], str]]


def dumps(value: Any) -> str:
    """Compact JSON; NaN/Infinity are refused because they are not JSON."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def check_json(value: Any, what: str) -> None:
    """Raise InvalidEvent if `value` cannot be sent as JSON."""
    try:
        dumps(value)
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(f"{what} is not JSON-serialisable: {exc}") from None


def check_job_id(job_id: Any, what: str = "job id") -> str:
    """Return job_id if it is 1-128 of [A-Za-z0-9._:-] (ints are accepted as text)."""
    if isinstance(job_id, int) and not isinstance(job_id, bool):
        job_id = str(job_id)
    if not isinstance(job_id, str) or not _ID_RE.match(job_id):
        raise InvalidJobId(f"bad {what} {job_id!r}: use 1-128 characters of [A-Za-z0-9._:-]")
    return job_id


def new_job_id() -> str:
    """An id in the server's own format (UUID v4 hex), made here so a create can be retried."""
    return uuid.uuid4().hex


def new_event_id_prefix() -> str:
    """48 random bits per handle or call: distinct publishers of one job never share ids.

    Kept short because the server's cost per event grows with the key length."""
    return secrets.token_hex(6)


def check_progress(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidEvent(f"progress must be a number from 0 to 100, got {value!r}")
    f = float(value)
    if not (0.0 <= f <= 100.0):  # also refuses NaN
        raise InvalidEvent(f"progress must be from 0 to 100, got {value!r}")
    return f


def progress_from(current: Any, total: Any) -> float:
    for name, v in (("current", current), ("total", total)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InvalidEvent(f"{name} must be a finite number, got {v!r}")
    if total <= 0:
        raise InvalidEvent(f"total must be > 0, got {total!r}")
    if current < 0 or current > total:
        raise InvalidEvent(f"current must be from 0 to total ({total!r}), got {current!r}")
    return float(current) * 100.0 / float(total)


def check_event(event: Any) -> Event:
    """Light client-side checks of one publish input; the server does the full ones."""
    if not isinstance(event, Mapping):
        raise InvalidEvent(f"an event must be a dict, got {type(event).__name__}")
    typ = event.get("type")
    if not isinstance(typ, str) or not typ:
        raise InvalidEvent("an event needs a 'type'")
    if typ == "progress":
        check_progress(event.get("progress"))
    meta = event.get("metadata")
    if meta is not None and not isinstance(meta, Mapping):
        raise InvalidEvent("metadata must be a dict")
    return dict(event)


def resolve_token(token: Optional[TokenSource]) -> Optional[str]:
    if token is None:
        return None
    return token() if callable(token) else token


@dataclass
class Config:
    """Where the server is and how to authenticate; `from_env` fills the blanks."""

    url: str = DEFAULT_URL
    token: Optional[TokenSource] = None
    api_key: Optional[str] = None
    timeout: float = 10.0

    @classmethod
    def from_env(
        cls,
        url: Optional[str] = None,
        token: Optional[TokenSource] = None,
        api_key: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> Config:
        url = url or os.environ.get("JOBWIRE_URL") or DEFAULT_URL
        if token is None and api_key is None:
            token = os.environ.get("JOBWIRE_TOKEN") or None
            api_key = os.environ.get("JOBWIRE_API_KEY") or None
        if token is not None and api_key is not None:
            raise ValueError("give token or api_key, not both")
        return cls(url=url.rstrip("/"), token=token, api_key=api_key,
                   timeout=10.0 if timeout is None else timeout)

    def headers(self) -> Dict[str, str]:
        h = {"User-Agent": USER_AGENT, "Content-Type": "application/json"}
        # API keys use the same header as JWTs: the server tells them apart by `jwk_`.
        cred = self.api_key or resolve_token(self.token)
        if cred:
            h["Authorization"] = f"Bearer {cred}"
        return h

    @property
    def ws_url(self) -> str:
        if self.url.startswith("https://"):
            return "wss://" + self.url[len("https://"):]
        if self.url.startswith("http://"):
            return "ws://" + self.url[len("http://"):]
        return self.url

    @property
    def refreshable(self) -> bool:
        return callable(self.token)


@dataclass
class RetryPolicy:
    """Jittered exponential backoff: delay n = uniform(0.5, 1) * min(max_delay, base * 2**n).

    `attempts` bounds a direct call; `deadline` (seconds) bounds the background flusher.
    A `Retry-After` from the server replaces the computed delay when it is longer.
    """

    attempts: int = 3
    base: float = 0.5
    max_delay: float = 8.0
    deadline: float = 60.0
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def delay(self, retry: int, retry_after: Optional[float] = None) -> float:
        d = min(self.max_delay, self.base * (2.0 ** retry)) * self.rng.uniform(0.5, 1.0)
        if retry_after is not None and retry_after > d:
            d = retry_after + self.rng.uniform(0.0, 0.1)
        return d


def retryable(exc: BaseException) -> bool:
    """Connection errors, timeouts, 5xx and 429 are retried; other answers are final."""
    if isinstance(exc, ServerError):
        s = exc.http_status or 0
        return s >= 500 or s == 429
    return True  # transport-level failures


@dataclass
class Request:
    method: str
    path: str
    params: Optional[Dict[str, Any]] = None
    body: Optional[str] = None  # serialised once, so retries send the same bytes
    ok: Sequence[int] = (200, 201)


def job_path(job_id: str, suffix: str = "") -> str:
    return f"/v1/jobs/{quote(job_id, safe='')}{suffix}"


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def parse_response(status: int, text: str, retry_after: Optional[str], req: Request) -> Any:
    """The decoded JSON of a success, or raise the typed ServerError."""
    if status in req.ok:
        return json.loads(text) if text else None
    try:
        body = json.loads(text) if text else {}
    except ValueError:
        body = {}
    raise from_response(status, body, parse_retry_after(retry_after))


MAX_LIVENESS_SECONDS = 86400.0


@dataclass(frozen=True)
class Liveness:
    """The liveness settings of a job at create (seconds; None = off, the default)."""

    heartbeat_timeout: Optional[float] = None
    stall_fail_after: Optional[float] = None
    cancel_timeout: Optional[float] = None

    def __post_init__(self) -> None:
        for name in ("heartbeat_timeout", "stall_fail_after", "cancel_timeout"):
            check_seconds(getattr(self, name), name)

    def fields(self) -> Dict[str, float]:
        out: Dict[str, float] = {}
        for name in ("heartbeat_timeout", "stall_fail_after", "cancel_timeout"):
            v = getattr(self, name)
            if v is not None:
                out[name] = v
        return out


def check_seconds(value: Any, what: str) -> Optional[float]:
    """None, or a number of seconds > 0 and <= 86400 (InvalidRequest otherwise)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        0.0 < float(value) <= MAX_LIVENESS_SECONDS
    ):
        raise InvalidRequest(f"{what} must be a number of seconds > 0 and <= 86400, got {value!r}")
    return float(value)


def create_request(
    job_id: Optional[str], project: Optional[str], metadata: Optional[Mapping[str, Any]],
    liveness: Optional[Liveness] = None,
) -> Request:
    body: Dict[str, Any] = {"id": check_job_id(job_id) if job_id is not None else new_job_id()}
    if project is not None:
        body["project"] = check_job_id(project, "project")
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise InvalidEvent("metadata must be a dict")
        body["metadata"] = dict(metadata)
    if liveness is not None:
        # Only the fields that are set: a server without liveness refuses unknown fields.
        body.update(liveness.fields())
    check_json(body, "job metadata")
    return Request("POST", "/v1/jobs", body=dumps(body))


def heartbeat_request(job_id: str, progress: Any = None, checkpoint: Any = None) -> Request:
    """`POST /v1/jobs/{id}/heartbeat`; without progress or checkpoint the body is empty."""
    body: Dict[str, Any] = {}
    if progress is not None:
        body["progress"] = check_progress(progress)
    if checkpoint is not None:
        check_json(checkpoint, "checkpoint")
        body["checkpoint"] = checkpoint
    path = job_path(check_job_id(job_id), "/heartbeat")
    return Request("POST", path, body=dumps(body) if body else None)


def cancel_request(job_id: str, reason: Optional[str], force: bool) -> Request:
    body: Dict[str, Any] = {"event_id": f"{new_event_id_prefix()}-c"}
    if reason is not None:
        if not isinstance(reason, str):
            raise InvalidRequest(f"reason must be a string, got {type(reason).__name__}")
        body["reason"] = reason
    if force:
        body["force"] = True  # sent only when set: older servers refuse unknown fields
    return Request("POST", job_path(check_job_id(job_id), "/cancel"), body=dumps(body))


@dataclass(frozen=True)
class CancelResult:
    """The server's answer to `cancel()`.

    `ended` is True when the job is over (it was pending or queued, or `force=True`);
    otherwise the cancel was only requested (`cancel_requested`) and the worker is
    expected to stop and confirm, or the job's `cancel_timeout` ends it.
    """

    job_id: str
    seq: int
    status: str
    cancel_requested: bool
    reply: Dict[str, Any] = field(repr=False, compare=False)

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_reply(cls, job_id: str, reply: Mapping[str, Any]) -> CancelResult:
        seqs = reply.get("seqs") or [0]
        # A server without liveness ends the job at once and answers only job_id and seqs.
        status = str(reply.get("status") or "cancelled")
        return cls(job_id=str(reply.get("job_id", job_id)), seq=int(seqs[0]), status=status,
                   cancel_requested=bool(reply.get("cancel_requested", False)),
                   reply=dict(reply))


def stamp_events(
    events: Union[Event, Sequence[Event]], prefix: Optional[str] = None
) -> List[Event]:
    """Checked copies of the events, each with an event_id (kept if the caller gave one)."""
    items = [events] if isinstance(events, Mapping) else list(events)
    if not items:
        raise InvalidEvent("publish needs at least one event")
    if len(items) > MAX_BATCH_EVENTS:
        raise InvalidEvent(f"a publish takes at most {MAX_BATCH_EVENTS} events, got {len(items)}")
    prefix = prefix or new_event_id_prefix()
    out = []
    for i, ev in enumerate(items):
        e = check_event(ev)
        if "event_id" not in e:
            e["event_id"] = f"{prefix}-{i}"
        out.append(e)
    check_json(out, "event")
    return out


def list_params(status: Optional[str], project: Optional[str], limit: int) -> Dict[str, Any]:
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; one of {sorted(STATUSES)}")
    p: Dict[str, Any] = {"limit": limit}
    if status is not None:
        p["status"] = status
    if project is not None:
        p["project"] = project
    return p


def is_terminal_event(frame: Mapping[str, Any]) -> bool:
    return frame.get("type") in TERMINAL_TYPES and "seq" in frame
