"""`Job`: the worker's handle for one job (synchronous), with batching and ordered delivery.

`progress()` and `log()` only queue (microseconds); the client's flusher sends them as
one batch every `flush_interval`. `start`, `status`, `step`, `custom` and the terminal
calls send at once, after everything queued before them, and return when the server
has stored them (or raise its typed error).

Liveness: `heartbeat()` renews the job's deadline; `heartbeat_every` does it from a
daemon thread while the `with` block runs. Cancel: every publish and heartbeat reply
refreshes `cancel_requested`; `on_cancel` also listens on the control stream (a daemon
thread, reconnecting until the job ends).
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Type

import httpx

from . import _handle as h
from ._control import CONTROL_READ_TIMEOUT, CancelState, SseDecoder, control_frame
from ._core import (
    Liveness,
    Request,
    create_request,
    heartbeat_request,
    job_path,
    new_job_id,
    parse_response,
    retryable,
)
from ._queue import PER_EVENT_CODES, EventQueue
from .errors import (
    CancelRequested,
    DeliveryError,
    JobExists,
    JobNotFound,
    JobTerminal,
    JobwireError,
    ServerError,
    TokenExpired,
    Unauthorized,
)

if TYPE_CHECKING:
    from .client import Client

log = logging.getLogger("jobwire")


class Job:
    """Handle for one job; get it from `Client.job()`. Use `with` to complete or fail it."""

    def __init__(
        self, client: Client, job_id: Optional[str], *, project: Optional[str],
        metadata: Optional[Mapping[str, Any]], create: bool,
        liveness: Optional[Liveness] = None, heartbeat_every: Optional[float] = None,
    ) -> None:
        self.client = client
        self.id = job_id or new_job_id()
        self._create = create_request(self.id, project, metadata, liveness) if create else None
        self.heartbeat_every = heartbeat_every
        self._cancel = CancelState(self.id)
        self._last_contact = 0.0  # monotonic time of the last stored publish or heartbeat
        self._beat_stop = threading.Event()
        self._beater: Optional[threading.Thread] = None
        self._listen_stop = threading.Event()
        self._listener: Optional[threading.Thread] = None
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
        """End the job `cancelled` now (the worker's own decision, or its confirmation)."""
        ev: Dict[str, Any] = {"type": "cancelled"}
        if reason is not None:
            ev["reason"] = h.opt_str(reason, "reason")
        self._immediate(ev)

    def confirm_cancelled(self, reason: Optional[str] = None) -> None:
        """Confirm a requested cancel: publish `cancelled` (terminal).

        The request's own reason stays in the snapshot's `cancel_requested`."""
        self.cancel(reason)

    # ---- liveness and cancel ----

    def heartbeat(self, progress: Optional[float] = None, checkpoint: Any = None) -> bool:
        """Tell the server the worker is alive; True if a cancel was requested.

        With `progress` (0-100) a progress event is stored; with `checkpoint` (any JSON)
        the snapshot keeps it. Events queued before are sent first, so order holds.
        Raises JobNotFound, JobTerminal (the job is over) or DeliveryError/TransportError.
        """
        req = heartbeat_request(self.id, progress, checkpoint)
        if req.body is not None:
            self._started = True
            self._drain(None, self.client.retry.attempts)  # what was queued goes first
        if self._create is not None:
            with self._send_lock:
                self._ensure_created(self.client.retry.attempts)
        self._cancel.from_reply(self.client._send(req))
        self._last_contact = time.monotonic()
        return self._cancel.requested

    @property
    def cancel_requested(self) -> bool:
        """True once a cancel was requested (seen in a reply or on the control stream)."""
        return self._cancel.requested

    def raise_if_cancelled(self) -> None:
        """Raise CancelRequested if a cancel was requested (no I/O: cheap in a loop)."""
        if self._cancel.requested:
            raise self._cancel.error()

    def on_cancel(self, callback: Callable[[], Any]) -> None:
        """Call `callback()` once, from a daemon thread, when a cancel is requested.

        Starts a listener on the job's control stream (`GET /v1/jobs/{id}/control`,
        SSE) that reconnects with backoff until the job ends. Creates the job first if
        this handle has not yet. A callback added after the request is called at once.
        """
        if not callable(callback):
            raise TypeError("on_cancel needs a callable")
        self._cancel.add(callback)
        if self._cancel.requested:
            self._fire_due()
        if self._listener is not None and self._listener.is_alive():
            return
        if self._create is not None:
            with self._send_lock:
                self._ensure_created(self.client.retry.attempts)
        self._listen_stop.clear()
        self._listener = threading.Thread(
            target=self._listen, name=f"jobwire-control-{self.id}", daemon=True
        )
        self._listener.start()

    def _fire_due(self) -> None:
        due = self._cancel.due()
        if due:
            threading.Thread(target=_call_all, args=(due, self.id),
                             name=f"jobwire-on-cancel-{self.id}", daemon=True).start()

    def _listen(self) -> None:
        """The control-stream listener (its own thread): until `end` or stopped.

        It has its own connection, so many listeners never starve the client's pool."""
        client = self.client
        timeout = httpx.Timeout(client.config.timeout, read=CONTROL_READ_TIMEOUT)
        with httpx.Client(base_url=client.config.url, timeout=timeout) as http:
            retry = 0
            while not self._listen_stop.is_set() and not client._closed:
                try:
                    if self._listen_once(http):
                        return
                    retry = 0
                except (TokenExpired, Unauthorized) as exc:
                    if not client.config.refreshable:
                        log.warning("jobwire: control stream of job %s: %s", self.id, exc)
                        return
                    client._refresh_token()
                except JobTerminal:
                    return
                except ServerError as exc:
                    if not retryable(exc):  # e.g. the job does not exist
                        log.warning("jobwire: control stream of job %s: %s", self.id, exc)
                        return
                except (httpx.HTTPError, OSError):
                    pass  # dropped or refused: reconnect
                if self._listen_stop.wait(client.retry.delay(retry)):
                    return
                retry += 1

    def _listen_once(self, http: httpx.Client) -> bool:
        """One connection to the control stream; True once the job ended (or stopped)."""
        path = job_path(self.id, "/control")
        headers = dict(self.client._headers, Accept="text/event-stream")
        with http.stream("GET", path, headers=headers) as r:
            if r.status_code != 200:
                r.read()
                parse_response(r.status_code, r.text, r.headers.get("retry-after"),
                               Request("GET", path, ok=(200,)))
            dec = SseDecoder()
            for line in r.iter_lines():
                msg = dec.line(line)
                frame = control_frame(*msg) if msg is not None else None
                if frame is None:
                    continue
                done = self._cancel.on_control(frame)
                _call_all(self._cancel.due(), self.id)
                if done or self._listen_stop.is_set():
                    return True
        return False

    def _beat(self) -> None:
        """The automatic heartbeat (its own thread): only when nothing else renewed lately."""
        every = self.heartbeat_every or 0.0
        while True:
            wait = every - (time.monotonic() - self._last_contact)
            if wait > 0:
                if self._beat_stop.wait(wait):
                    return
                continue
            try:
                self.heartbeat()
            except (JobNotFound, JobTerminal):
                return
            except JobwireError as exc:
                log.warning("jobwire: heartbeat of job %s failed: %s", self.id, exc)
                if self._beat_stop.wait(min(every, 1.0)):
                    return

    def _stop_background(self) -> None:
        self._beat_stop.set()
        t = self._beater
        if t is not None and t is not threading.current_thread():
            t.join(timeout=self.client.config.timeout)
        self._beater = None

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
        if self.heartbeat_every:
            self._beat_stop.clear()
            self._last_contact = time.monotonic()
            self._beater = threading.Thread(target=self._beat, name=f"jobwire-beat-{self.id}",
                                            daemon=True)
            self._beater.start()
        return self

    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool:
        self._stop_background()
        if exc_type is None or exc is None:
            if not self.finished:
                self.complete()
            else:
                self.flush()
            return False
        own = isinstance(exc, CancelRequested) and exc.job_id in (None, self.id)
        if not self.finished:
            evs = h.exception_events(exc_type, exc, tb)
            if own:
                evs = []
            elif self._cancel.requested:  # e.g. the on_cancel callback killed the work
                evs = [*evs[:-1], {"type": "cancelled"}]
            for ev in evs[:-1]:
                self._q.push_log(ev)
            try:
                if own:
                    self.confirm_cancelled()
                else:
                    self._immediate(evs[-1])
            except JobwireError as err:
                log.warning("jobwire: could not end job %s: %s", self.id, err)
        return own  # CancelRequested of this job stops here; anything else propagates

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
            self._done()

    def _drain_locked(self, until: Optional[int], attempts: int) -> None:
        q = self._q
        path = job_path(self.id, "/events")
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
            self._cancel.from_reply(res)
            self._last_contact = time.monotonic()

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
            self._done()

    def _done(self) -> None:
        if self._q.terminal_queued:
            self._listen_stop.set()
            self._beat_stop.set()
        self.client._forget(self)


def _call_all(callbacks: List[Callable[[], Any]], job_id: str) -> None:
    for cb in callbacks:
        try:
            cb()
        except Exception:
            log.exception("jobwire: on_cancel callback of job %s raised", job_id)
