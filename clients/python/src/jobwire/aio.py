"""`AsyncClient` (and `AsyncJob`, from `_aio_job`): the asyncio twins of `Client` and `Job`.

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
from typing import Any, AsyncIterator, Dict, List, Mapping, Optional, Sequence, Union

import httpx

from ._aio_job import AsyncJob
from ._core import (
    CancelResult,
    Config,
    Event,
    Liveness,
    Request,
    RetryPolicy,
    Snapshot,
    TokenSource,
    cancel_request,
    check_job_id,
    check_seconds,
    create_request,
    dumps,
    heartbeat_request,
    job_path,
    list_params,
    parse_response,
    retryable,
    stamp_events,
)
from ._watch import WatchState, handshake_error
from .errors import (
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
        heartbeat_timeout: Optional[float] = None, stall_fail_after: Optional[float] = None,
        cancel_timeout: Optional[float] = None,
    ) -> Snapshot:
        live = Liveness(heartbeat_timeout, stall_fail_after, cancel_timeout)
        out: Snapshot = (await self._send(create_request(job_id, project, metadata, live)))["job"]
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

    async def cancel(self, job_id: str, reason: Optional[str] = None, *,
                     force: bool = False) -> CancelResult:
        """As `Client.cancel`: ends a job nobody started, else requests the cancel."""
        jid = check_job_id(job_id)
        return CancelResult.from_reply(jid, await self._send(cancel_request(jid, reason, force)))

    async def heartbeat(self, job_id: str, progress: Optional[float] = None,
                        checkpoint: Any = None) -> bool:
        res = await self._send(heartbeat_request(job_id, progress, checkpoint))
        return bool(isinstance(res, Mapping) and res.get("cancel_requested") is True)

    async def watch(
        self, job_id: str, since: Optional[int] = None, *, reconnect_for: float = 60.0,
        epoch: Optional[int] = None,
    ) -> AsyncIterator[Dict[str, Any]]:
        """As `Client.watch`: snapshot, then every event in order, resuming after drops
        (with the server's epoch), and a `rewound` frame when a crash took events back."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

        state = WatchState(check_job_id(job_id), since, epoch)
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
        heartbeat_timeout: Optional[float] = None, stall_fail_after: Optional[float] = None,
        cancel_timeout: Optional[float] = None, heartbeat_every: Optional[float] = None,
    ) -> AsyncJob:
        """As `Client.job`; `heartbeat_every` runs a task while `async with` runs."""
        jid = check_job_id(job_id) if job_id is not None else None
        every = check_seconds(heartbeat_every, "heartbeat_every")
        live = Liveness(heartbeat_timeout, stall_fail_after, cancel_timeout)
        if jid is not None and jid in self._jobs:
            j = self._jobs[jid]
            if every is not None:
                j.heartbeat_every = every
            return j
        j = AsyncJob(self, jid, project=project, metadata=metadata, create=create,
                     liveness=live, heartbeat_every=every)
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


__all__ = ["AsyncClient", "AsyncJob"]
