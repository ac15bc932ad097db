"""`AsyncClient` and `AsyncJob`: the asyncio twins of `Client` and `Job`.

Same surface, same delivery rules: `await job.progress()` and `await job.log()` only
queue; a flusher task (one per client and event loop) sends batches every
`flush_interval`; the other calls send at once, in order. The client follows the
running event loop, so a publisher used from several `asyncio.run()` calls keeps working.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from types import TracebackType
from typing import Any, AsyncIterator, Dict, List, Mapping, Optional, Sequence, Type, Union

import httpx

from . import _handle as h
from ._core import (
    Config,
    Event,
    Request,
    RetryPolicy,
    Snapshot,
    TokenSource,
    check_job_id,
    create_request,
    dumps,
    job_path,
    list_params,
    new_job_id,
    parse_response,
    retryable,
    stamp_events,
)
from ._queue import PER_EVENT_CODES, EventQueue
from ._watch import WatchState, handshake_error
from .errors import (
    DeliveryError,
    JobExists,
    JobwireError,
    ServerError,
    TokenExpired,
    TransportError,
    Unauthorized,
)

log = logging.getLogger("jobwire")


class AsyncClient:
    """The asyncio client; arguments as for `Client` (and the same environment variables)."""

    def __init__(
        self,
        url: Optional[str] = None,
        *,
        token: Optional[TokenSource] = None,
        api_key: Optional[str] = None,
        timeout: Optional[float] = None,
        retry: Optional[RetryPolicy] = None,
        background_retry_for: float = 60.0,
        flush_interval: float = 0.25,
        max_batch: int = 500,
    ) -> None:
        if not 1 <= max_batch <= 1000:
            raise ValueError("max_batch must be from 1 to 1000")
        if flush_interval <= 0:
            raise ValueError("flush_interval must be > 0")
        self.config = Config.from_env(url, token, api_key, timeout)
        self.retry = retry or RetryPolicy()
        self.background_retry_for = background_retry_for
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self._headers = self.config.headers()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._http: Optional[httpx.AsyncClient] = None
        self._flusher: Optional[asyncio.Task[None]] = None
        self._wake: Optional[asyncio.Event] = None
        self._jobs: Dict[str, AsyncJob] = {}
        self._closed = False

    # ---- plumbing ----

    def _bind(self) -> httpx.AsyncClient:
        """The HTTP pool of the running loop (a new one if the loop changed)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._http is None:
            self._loop = loop
            self._http = httpx.AsyncClient(base_url=self.config.url, timeout=self.config.timeout)
            self._flusher = None
            self._wake = asyncio.Event()
            for j in self._jobs.values():
                j._lock = None
        return self._http

    async def _send_once(self, req: Request) -> Any:
        http = self._bind()
        try:
            r = await http.request(
                req.method, req.path, params=req.params, content=req.body, headers=self._headers
            )
        except httpx.HTTPError as exc:
            raise TransportError(f"{req.method} {req.path}: {type(exc).__name__}: {exc}") from exc
        return parse_response(r.status_code, r.text, r.headers.get("retry-after"), req)

    async def _send(self, req: Request, attempts: Optional[int] = None) -> Any:
        policy = self.retry
        attempts = policy.attempts if attempts is None else attempts
        refreshed = False
        n = 0
        while True:
            try:
                return await self._send_once(req)
            except (TokenExpired, Unauthorized) as exc:
                if self.config.refreshable and not refreshed:
                    refreshed = True
                    self._headers = self.config.headers()
                    continue
                raise exc from None
            except JobwireError as exc:
                n += 1
                if not retryable(exc) or n >= attempts:
                    raise
                ra = exc.retry_after if isinstance(exc, ServerError) else None
                await asyncio.sleep(policy.delay(n - 1, ra))

    # ---- the API ----

    async def create_job(
        self, job_id: Optional[str] = None, *, project: Optional[str] = None,
        metadata: Optional[Mapping[str, Any]] = None,
    ) -> Snapshot:
        out: Snapshot = (await self._send(create_request(job_id, project, metadata)))["job"]
        return out

    async def get_job(self, job_id: str) -> Snapshot:
        out: Snapshot = await self._send(Request("GET", job_path(check_job_id(job_id))))
        return out

    async def list_jobs(
        self, *, status: Optional[str] = None, project: Optional[str] = None, page_size: int = 100,
    ) -> AsyncIterator[Snapshot]:
        params = list_params(status, project, page_size)
        while True:
            page = await self._send(Request("GET", "/v1/jobs", params=dict(params)))
            for j in page["jobs"]:
                yield j
            if not page.get("next"):
                return
            params["after"] = page["next"]

    async def publish(self, job_id: str, events: Union[Event, Sequence[Event]]) -> List[int]:
        stamped = stamp_events(events)
        body = dumps(stamped[0] if isinstance(events, Mapping) else stamped)
        path = job_path(check_job_id(job_id), "/events")
        res = await self._send(Request("POST", path, body=body))
        return list(res["seqs"])

    async def history(
        self, job_id: str, since: int = 0, *, page_size: int = 1000,
    ) -> AsyncIterator[Event]:
        job_id = check_job_id(job_id)
        end: Optional[int] = None
        while True:
            page = await self._send(Request(
                "GET", job_path(job_id, "/events"), params={"since": since, "limit": page_size}
            ))
            if end is None:
                end = int(page["seq"])
            for ev in page["events"]:
                if ev["seq"] > end:
                    return
                yield ev
            since = int(page["next_since"])
            if not page["events"] or since >= end:
                return

    async def cancel(self, job_id: str, reason: Optional[str] = None) -> int:
        body: Dict[str, Any] = {"event_id": stamp_events({"type": "cancelled"})[0]["event_id"]}
        if reason is not None:
            body["reason"] = reason
        path = job_path(check_job_id(job_id), "/cancel")
        res = await self._send(Request("POST", path, body=dumps(body)))
        return int(res["seqs"][0])

    async def watch(
        self, job_id: str, since: Optional[int] = None, *, reconnect_for: float = 60.0,
    ) -> AsyncIterator[Dict[str, Any]]:
        """As `Client.watch`: snapshot, then every event in order, resuming after drops."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

        state = WatchState(check_job_id(job_id), since)
        failing_since: Optional[float] = None
        retry = 0
        while True:
            code: Optional[int] = None
            reason = ""
            try:
                async with connect(
                    self.config.ws_url + state.path(),
                    additional_headers=dict(self._headers),
                    open_timeout=self.config.timeout,
                    max_size=None,
                ) as ws:
                    failing_since, retry = None, 0
                    while True:
                        try:
                            msg = await ws.recv()
                        except ConnectionClosed as cc:
                            code = cc.rcvd.code if cc.rcvd else None
                            reason = cc.rcvd.reason if cc.rcvd else ""
                            break
                        frame, done = state.on_frame(json.loads(msg))
                        if frame is not None:
                            yield frame
                        if done:
                            return
            except InvalidStatus as exc:
                err = handshake_error(exc.response.status_code, exc.response.body or b"")
                if isinstance(err, (TokenExpired, Unauthorized)) and self.config.refreshable:
                    self._headers = self.config.headers()
                    continue
                if not retryable(err):
                    raise err from None
                reason = str(err)
            except (OSError, WebSocketException, asyncio.TimeoutError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            action = state.on_close(code, reason, self.config.refreshable)
            if action == "done":
                return
            if action == "refresh":
                self._headers = self.config.headers()
                continue
            now = time.monotonic()
            failing_since = failing_since or now
            if now - failing_since > reconnect_for:
                raise TransportError(
                    f"watch {job_id}: no connection for {reconnect_for}s: {reason}"
                )
            await asyncio.sleep(self.retry.delay(retry))
            retry += 1

    # ---- worker handles and the flusher ----

    def job(
        self, job_id: Optional[str] = None, *, project: Optional[str] = None,
        metadata: Optional[Mapping[str, Any]] = None, create: bool = True,
    ) -> AsyncJob:
        jid = check_job_id(job_id) if job_id is not None else None
        if jid is not None and jid in self._jobs:
            return self._jobs[jid]
        j = AsyncJob(self, jid, project=project, metadata=metadata, create=create)
        self._jobs[j.id] = j
        return j

    def _forget(self, job: AsyncJob) -> None:
        if self._jobs.get(job.id) is job:
            del self._jobs[job.id]

    def _kick(self) -> None:
        self._bind()
        if (self._flusher is None or self._flusher.done()) and not self._closed:
            self._flusher = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        wake = self._wake
        assert wake is not None
        while not self._closed:
            try:
                await asyncio.wait_for(wake.wait(), self.flush_interval)
            except asyncio.TimeoutError:
                pass
            wake.clear()
            for j in list(self._jobs.values()):
                try:
                    await j._background_flush()
                except Exception:
                    log.exception("jobwire: flusher error for job %s", j.id)

    async def flush(self) -> None:
        for j in list(self._jobs.values()):
            await j.flush()

    async def close(self, timeout: Optional[float] = 10.0) -> None:
        """Flush what is pending (within `timeout`), stop the flusher, close the HTTP pool."""
        if self._closed:
            return
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            while any(j._q.has_work() for j in self._jobs.values()):
                try:
                    await self.flush()
                except TransportError:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise
                    await asyncio.sleep(self.retry.delay(0))
        finally:
            self._closed = True
            f = self._flusher
            if f is not None and not f.done():
                f.cancel()
            if self._http is not None and self._loop is asyncio.get_running_loop():
                await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncJob:
    """Handle for one job under asyncio; get it from `AsyncClient.job()`; `async with` it."""

    def __init__(
        self, client: AsyncClient, job_id: Optional[str], *, project: Optional[str],
        metadata: Optional[Mapping[str, Any]], create: bool,
    ) -> None:
        self.client = client
        self.id = job_id or new_job_id()
        self._create = create_request(self.id, project, metadata) if create else None
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
        return self

    async def __aexit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if exc_type is None or exc is None:
            if not self.finished:
                await self.complete()
            else:
                await self.flush()
            return
        if not self.finished:
            evs = h.exception_events(exc_type, exc, tb)
            for ev in evs[:-1]:
                self._q.push_log(ev)
            try:
                await self._immediate(evs[-1])
            except JobwireError as err:
                log.warning("jobwire: could not fail job %s: %s", self.id, err)

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
            self.client._forget(self)

    async def _drain_locked(self, until: Optional[int], attempts: int) -> None:
        q = self._q
        path = job_path(self.id, "/events")
        while until is None or q.acked < until:
            b = q.front()
            if b is None:
                return
            if self._create is not None:
                try:
                    await self.client._send(self._create, attempts)
                except JobExists:
                    pass
                self._create = None
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
            self.client._forget(self)
