"""`Job`: the worker's handle for one job (synchronous), with batching and ordered delivery.

`progress()` and `log()` only queue (microseconds); the client's flusher sends them as
one batch every `flush_interval`. `start`, `status`, `step`, `custom` and the terminal
calls send at once, after everything queued before them, and return when the server
has stored them (or raise its typed error).
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Type

from . import _handle as h
from ._core import create_request, job_path, new_job_id, retryable
from ._queue import PER_EVENT_CODES, EventQueue
from .errors import DeliveryError, JobExists, JobwireError, ServerError

if TYPE_CHECKING:
    from .client import Client

log = logging.getLogger("jobwire")


class Job:
    """Handle for one job; get it from `Client.job()`. Use `with` to complete or fail it."""

    def __init__(
        self, client: Client, job_id: Optional[str], *, project: Optional[str],
        metadata: Optional[Mapping[str, Any]], create: bool,
    ) -> None:
        self.client = client
        self.id = job_id or new_job_id()
        self._create = create_request(self.id, project, metadata) if create else None
        self._q = EventQueue(client.max_batch)
        self._send_lock = threading.Lock()
        self._started = False
        self._failing_since: Optional[float] = None
        self._retry_at = 0.0
        self._retries = 0
        self._stalled = False
        self._transient = False  # forget the handle once idle (fire-and-forget users)

    # ---- what a worker calls ----

    def start(self, message: Optional[str] = None) -> None:
        """Mark the job in_progress (no error if it already is)."""
        self._started = True
        self._immediate(h.status_event("in_progress", message), optional=True)

    def status(self, status: str, message: Optional[str] = None) -> None:
        """Set `queued` or `in_progress`."""
        ev = h.status_event(status, message)
        self._started = self._started or status == "in_progress"
        self._immediate(ev)

    def progress(
        self, value: Optional[float] = None, *, current: Optional[float] = None,
        total: Optional[float] = None, stage: Optional[str] = None,
        message: Optional[str] = None, metadata: Optional[Mapping[str, Any]] = None,
    ) -> None:
        """Queue a progress update (0-100, or current/total); consecutive ones coalesce."""
        pct = h.progress_value(value, current, total)
        if stage is not None and not isinstance(stage, str):
            h.opt_str(stage, "stage")
        if message is not None and not isinstance(message, str):
            h.opt_str(message, "message")
        self._started = True
        self._q.push_progress(pct, stage, message, h.check_meta(metadata) if metadata else None)
        self.client._kick()

    def step(self, name: str, label: Optional[str] = None, message: Optional[str] = None) -> None:
        self._started = True
        self._immediate(h.step_event(name, label, message))

    def log(self, line: str, level: Optional[str] = None) -> None:
        """Queue a log line; lines go out in batches."""
        self._q.push_log(h.log_event(line, level))
        self.client._kick()

    def custom(self, name: str, data: Any = None) -> None:
        self._immediate(h.custom_event(name, data))

    def complete(self, result: Any = None, message: Optional[str] = None,
                 metadata: Optional[Mapping[str, Any]] = None) -> None:
        """Complete the job with a JSON-serialisable result (starts it first if needed)."""
        ev = h.with_meta(h.completed_event(result, message), metadata)
        self._ensure_started()
        self._immediate(ev)

    def fail(self, error: Any, message: Optional[str] = None,
             metadata: Optional[Mapping[str, Any]] = None) -> None:
        """Fail the job with an error string (or an exception: its type and message)."""
        self._immediate(h.with_meta(h.failed_event(error, message), metadata))

    def cancel(self, reason: Optional[str] = None) -> None:
        ev: Dict[str, Any] = {"type": "cancelled"}
        if reason is not None:
            ev["reason"] = h.opt_str(reason, "reason")
        self._immediate(ev)

    @property
    def finished(self) -> bool:
        """A terminal event has been queued."""
        return self._q.terminal_queued

    @property
    def last_seq(self) -> int:
        return self._q.last_seq

    @property
    def errors(self) -> List[JobwireError]:
        """Refusals of queued events (progress, logs) nobody waited on; the newest 20."""
        return list(self._q.background_errors)

    @property
    def dropped(self) -> int:
        """Log lines dropped because too many were pending (server unreachable too long)."""
        return self._q.dropped

    def flush(self) -> None:
        """Send what is queued now (direct-call retries); DeliveryError if it could not."""
        self._drain(None, self.client.retry.attempts)

    def __enter__(self) -> Job:
        self.start()
        return self

    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if exc_type is None or exc is None:
            if not self.finished:
                self.complete()
            else:
                self.flush()
            return
        if not self.finished:
            evs = h.exception_events(exc_type, exc, tb)
            for ev in evs[:-1]:
                self._q.push_log(ev)
            try:
                self._immediate(evs[-1])
            except JobwireError as err:
                log.warning("jobwire: could not fail job %s: %s", self.id, err)
        # the exception propagates

    # ---- delivery ----

    def enqueue_status(self, status: str, message: Optional[str] = None) -> None:
        """Queue a status change for the flusher without waiting; no error if the job is
        already past it (used where a caller must not block, e.g. Celery's publish hook)."""
        self._q.push(h.status_event(status, message), optional=True)
        self.client._kick()
        self.client._wake_now()

    def _ensure_started(self) -> None:
        if not self._started:
            self._started = True
            self._q.push(h.status_event("in_progress", None), optional=True)

    def _immediate(self, ev: Dict[str, Any], optional: bool = False) -> None:
        pos = self._q.push(ev, optional=optional)
        self._drain(pos, self.client.retry.attempts)
        err = self._q.take_error(pos)
        if err is not None:
            raise err

    def _ensure_created(self, attempts: int) -> None:
        if self._create is None:
            return
        try:
            self.client._send(self._create, attempts)
        except JobExists:
            pass  # it exists (created elsewhere, with another project or metadata): use it
        self._create = None

    def _drain(self, until: Optional[int], attempts: int) -> None:
        """Send batches in order until position `until` (None: all) is acknowledged."""
        with self._send_lock:
            try:
                self._drain_locked(until, attempts)
            except JobwireError as exc:
                if retryable(exc):
                    raise DeliveryError(
                        f"job {self.id}: {exc}; events stay queued and are retried",
                        self._q.pending_count(),
                    ) from exc
                raise
            self._failing_since, self._retries, self._stalled = None, 0, False
        if not self._q.has_work() and (self._q.terminal_queued or self._transient):
            self.client._forget(self)

    def _drain_locked(self, until: Optional[int], attempts: int) -> None:
        q = self._q
        path = job_path(self.id, "/events")
        from ._core import Request

        while until is None or q.acked < until:
            b = q.front()
            if b is None:
                return
            self._ensure_created(attempts)
            try:
                res = self.client._send(Request("POST", path, body=b.body), attempts)
            except ServerError as exc:
                if retryable(exc):
                    raise
                q.refused_batch(b, exc)
                final = len(b.entries) == 1 or exc.code not in PER_EVENT_CODES
                waited = until is not None and any(e.pos == until for e in b.entries)
                if final and not waited and not (
                    b.entries[0].optional and exc.code in ("invalid_transition", "job_terminal")
                ):
                    log.warning("jobwire: job %s refused %d queued event(s) (%s): %s",
                                self.id, len(b.entries), b.entries[0].event["type"], exc)
                continue
            q.acked_batch(b, list(res["seqs"]))

    def _background_flush(self) -> None:
        """One attempt per batch from the flusher; failures back off without blocking callers."""
        if not self._q.has_work() or self._stalled:
            return
        now = time.monotonic()
        if now < self._retry_at:
            return
        if not self._send_lock.acquire(blocking=False):
            return
        try:
            self._drain_locked(None, 1)
            self._failing_since, self._retries = None, 0
        except JobwireError as exc:
            if not retryable(exc):  # e.g. the create was refused: stop until a direct call
                self._stalled = True
                self._q.record(exc)
                log.error("jobwire: job %s: %s; %d events kept", self.id, exc,
                          self._q.pending_count())
                return
            self._failing_since = self._failing_since or now
            if now - self._failing_since > self.client.background_retry_for:
                self._stalled = True
                log.error("jobwire: job %s: %d events undelivered after %.0fs (%s); "
                          "flush() or close() will try again", self.id,
                          self._q.pending_count(), now - self._failing_since, exc)
                return
            ra = exc.retry_after if isinstance(exc, ServerError) else None
            self._retry_at = now + self.client.retry.delay(self._retries, ra)
            self._retries += 1
        finally:
            self._send_lock.release()
        if not self._q.has_work() and (self._q.terminal_queued or self._transient):
            self.client._forget(self)
