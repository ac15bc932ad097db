"""`AsyncJob`: the worker's handle for one job under asyncio (the twin of `Job`).

`progress()` and `log()` only queue; the client's flusher task sends them. Liveness and
cancel as on `Job`: `heartbeat()`, `heartbeat_every` (a task while `async with` runs),
`cancel_requested` from every reply, `on_cancel` (a task on the control stream).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Set, Type

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
    from .aio import AsyncClient

log = logging.getLogger("jobwire")


class AsyncJob:
    """Handle for one job under asyncio; get it from `AsyncClient.job()`; `async with` it."""

    def __init__(
        self, client: AsyncClient, job_id: Optional[str], *, project: Optional[str],
        metadata: Optional[Mapping[str, Any]], create: bool,
        liveness: Optional[Liveness] = None, heartbeat_every: Optional[float] = None,
    ) -> None:
        self.client = client
        self.id = job_id or new_job_id()
        self._create = create_request(self.id, project, metadata, liveness) if create else None
        self.heartbeat_every = heartbeat_every
        self._cancel = CancelState(self.id)
        self._last_contact = 0.0
        self._beater: Optional[asyncio.Task[None]] = None
        self._listener: Optional[asyncio.Task[None]] = None
        self._tasks: Set[asyncio.Task[None]] = set()  # callbacks fired outside the listener
        self._q = EventQueue(client.max_batch)
        self._lock: Optional[asyncio.Lock] = None
        self._started = False
        self._failing_since: Optional[float] = None
        self._retry_at = 0.0
        self._retries = 0
        self._stalled = False

    def _send_lock(self) -> asyncio.Lock:
        self.client._bind()
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def start(self, message: Optional[str] = None) -> None:
        self._started = True
        await self._immediate(h.status_event("in_progress", message), optional=True)

    async def status(self, status: str, message: Optional[str] = None) -> None:
        ev = h.status_event(status, message)
        self._started = self._started or status == "in_progress"
        await self._immediate(ev)

    async def progress(
        self, value: Optional[float] = None, *, current: Optional[float] = None,
        total: Optional[float] = None, stage: Optional[str] = None,
        message: Optional[str] = None, metadata: Optional[Mapping[str, Any]] = None,
    ) -> None:
        pct = h.progress_value(value, current, total)
        if stage is not None and not isinstance(stage, str):
            h.opt_str(stage, "stage")
        if message is not None and not isinstance(message, str):
            h.opt_str(message, "message")
        self._started = True
        self._q.push_progress(pct, stage, message, h.check_meta(metadata) if metadata else None)
        self.client._kick()

    async def step(self, name: str, label: Optional[str] = None, message: Optional[str] = None,
                   ) -> None:
        self._started = True
        await self._immediate(h.step_event(name, label, message))

    async def log(self, line: str, level: Optional[str] = None) -> None:
        self._q.push_log(h.log_event(line, level))
        self.client._kick()

    async def custom(self, name: str, data: Any = None) -> None:
        await self._immediate(h.custom_event(name, data))

    async def complete(self, result: Any = None, message: Optional[str] = None,
                 metadata: Optional[Mapping[str, Any]] = None) -> None:
        ev = h.with_meta(h.completed_event(result, message), metadata)
        if not self._started:
            self._started = True
            self._q.push(h.status_event("in_progress", None), optional=True)
        await self._immediate(ev)

    async def fail(self, error: Any, message: Optional[str] = None,
             metadata: Optional[Mapping[str, Any]] = None) -> None:
        await self._immediate(h.with_meta(h.failed_event(error, message), metadata))

    async def cancel(self, reason: Optional[str] = None) -> None:
        ev: Dict[str, Any] = {"type": "cancelled"}
        if reason is not None:
            ev["reason"] = h.opt_str(reason, "reason")
        await self._immediate(ev)

    async def confirm_cancelled(self, reason: Optional[str] = None) -> None:
        await self.cancel(reason)

    # ---- liveness and cancel (as on `Job`) ----

    async def heartbeat(self, progress: Optional[float] = None, checkpoint: Any = None) -> bool:
        req = heartbeat_request(self.id, progress, checkpoint)
        if req.body is not None:
            self._started = True
            await self._drain(None, self.client.retry.attempts)
        if self._create is not None:
            async with self._send_lock():
                await self._ensure_created(self.client.retry.attempts)
        self._cancel.from_reply(await self.client._send(req))
        self._last_contact = time.monotonic()
        return self._cancel.requested

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.requested

    def raise_if_cancelled(self) -> None:
        """Raise CancelRequested if a cancel was requested (no I/O, so not a coroutine)."""
        if self._cancel.requested:
            raise self._cancel.error()

    def on_cancel(self, callback: Callable[[], Any]) -> None:
        """Call `callback()` (a function or a coroutine function) once when a cancel is
        requested; a task on the running loop listens on the control stream."""
        if not callable(callback):
            raise TypeError("on_cancel needs a callable")
        self._cancel.add(callback)
        loop = asyncio.get_running_loop()
        if self._cancel.requested:
            t = loop.create_task(_call_all(self._cancel.due(), self.id))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)
        if self._listener is None or self._listener.done():
            self._listener = loop.create_task(self._listen())

    async def _listen(self) -> None:
        """The control-stream listener task, on its own connection, until the job ends."""
        client = self.client
        if self._create is not None:
            try:
                async with self._send_lock():
                    await self._ensure_created(client.retry.attempts)
            except JobwireError as exc:
                log.warning("jobwire: control stream of job %s: %s", self.id, exc)
                return
        timeout = httpx.Timeout(client.config.timeout, read=CONTROL_READ_TIMEOUT)
        async with httpx.AsyncClient(base_url=client.config.url, timeout=timeout) as http:
            retry = 0
            while not client._closed:
                try:
                    if await self._listen_once(http):
                        return
                    retry = 0
                except (TokenExpired, Unauthorized) as exc:
                    if not client.config.refreshable:
                        log.warning("jobwire: control stream of job %s: %s", self.id, exc)
                        return
                    client._headers = client.config.headers()
                except JobTerminal:
                    return
                except ServerError as exc:
                    if not retryable(exc):
                        log.warning("jobwire: control stream of job %s: %s", self.id, exc)
                        return
                except (httpx.HTTPError, OSError):
                    pass
                await asyncio.sleep(client.retry.delay(retry))
                retry += 1

    async def _listen_once(self, http: httpx.AsyncClient) -> bool:
        path = job_path(self.id, "/control")
        headers = dict(self.client._headers, Accept="text/event-stream")
        async with http.stream("GET", path, headers=headers) as r:
            if r.status_code != 200:
                await r.aread()
                parse_response(r.status_code, r.text, r.headers.get("retry-after"),
                               Request("GET", path, ok=(200,)))
            dec = SseDecoder()
            async for line in r.aiter_lines():
                msg = dec.line(line)
                frame = control_frame(*msg) if msg is not None else None
                if frame is None:
                    continue
                done = self._cancel.on_control(frame)
                await _call_all(self._cancel.due(), self.id)
                if done:
                    return True
        return False

    async def _beat(self) -> None:
        every = self.heartbeat_every or 0.0
        while True:
            wait = every - (time.monotonic() - self._last_contact)
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            try:
                await self.heartbeat()
            except (JobNotFound, JobTerminal):
                return
            except JobwireError as exc:
                log.warning("jobwire: heartbeat of job %s failed: %s", self.id, exc)
                await asyncio.sleep(min(every, 1.0))

    async def _stop_beat(self) -> None:
        t, self._beater = self._beater, None
        if t is not None and not t.done():
            t.cancel()
            try:
                await t
            except asyncio.CancelledError:
                pass

    @property
    def finished(self) -> bool:
        return self._q.terminal_queued

    @property
    def last_seq(self) -> int:
        return self._q.last_seq

    @property
    def errors(self) -> List[JobwireError]:
        return list(self._q.background_errors)

    async def flush(self) -> None:
        await self._drain(None, self.client.retry.attempts)

    async def __aenter__(self) -> AsyncJob:
        await self.start()
        if self.heartbeat_every:
            self._last_contact = time.monotonic()
            self._beater = asyncio.get_running_loop().create_task(self._beat())
        return self

    async def __aexit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool:
        await self._stop_beat()
        if exc_type is None or exc is None:
            if not self.finished:
                await self.complete()
            else:
                await self.flush()
            return False
        own = isinstance(exc, CancelRequested) and exc.job_id in (None, self.id)
        if not self.finished:
            evs = [] if own else h.exception_events(exc_type, exc, tb)
            if evs and self._cancel.requested:
                evs[-1] = {"type": "cancelled"}
            for ev in evs[:-1]:
                self._q.push_log(ev)
            try:
                if own:
                    await self.confirm_cancelled()
                else:
                    await self._immediate(evs[-1])
            except JobwireError as err:
                log.warning("jobwire: could not end job %s: %s", self.id, err)
        return own

    # ---- delivery ----

    async def _immediate(self, ev: Dict[str, Any], optional: bool = False) -> None:
        pos = self._q.push(ev, optional=optional)
        await self._drain(pos, self.client.retry.attempts)
        err = self._q.take_error(pos)
        if err is not None:
            raise err

    async def _drain(self, until: Optional[int], attempts: int) -> None:
        async with self._send_lock():
            try:
                await self._drain_locked(until, attempts)
            except JobwireError as exc:
                if retryable(exc):
                    raise DeliveryError(
                        f"job {self.id}: {exc}; events stay queued and are retried",
                        self._q.pending_count(),
                    ) from exc
                raise
            self._failing_since, self._retries, self._stalled = None, 0, False
        if not self._q.has_work() and self._q.terminal_queued:
            self._done()

    async def _ensure_created(self, attempts: int) -> None:
        if self._create is None:
            return
        try:
            await self.client._send(self._create, attempts)
        except JobExists:
            pass
        self._create = None

    async def _drain_locked(self, until: Optional[int], attempts: int) -> None:
        q = self._q
        path = job_path(self.id, "/events")
        while until is None or q.acked < until:
            b = q.front()
            if b is None:
                return
            await self._ensure_created(attempts)
            try:
                res = await self.client._send(Request("POST", path, body=b.body), attempts)
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

    async def _background_flush(self) -> None:
        if not self._q.has_work() or self._stalled:
            return
        now = time.monotonic()
        if now < self._retry_at:
            return
        lock = self._send_lock()
        if lock.locked():
            return
        async with lock:
            try:
                await self._drain_locked(None, 1)
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
                    log.error("jobwire: job %s: %d events undelivered (%s); flush() or close() "
                              "will try again", self.id, self._q.pending_count(), exc)
                    return
                ra = exc.retry_after if isinstance(exc, ServerError) else None
                self._retry_at = now + self.client.retry.delay(self._retries, ra)
                self._retries += 1
        if not self._q.has_work() and self._q.terminal_queued:
            self._done()

    def _done(self) -> None:
        """The terminal event is stored: the listener has nothing left to wait for."""
        t = self._listener
        if t is not None and not t.done() and t is not asyncio.current_task():
            t.cancel()
        self.client._forget(self)


async def _call_all(callbacks: List[Callable[[], Any]], job_id: str) -> None:
    for cb in callbacks:
        try:
            r = cb()
            if inspect.isawaitable(r):
                await r
        except Exception:
            log.exception("jobwire: on_cancel callback of job %s raised", job_id)
