"""The synchronous client: HTTP calls with retries, the WebSocket watch, and the flusher.

`Client` owns one httpx connection pool, one background flusher thread (started on
first use, restarted after a fork) and the registry of its `Job` handles.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
import weakref
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import httpx

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
from .job import Job

log = logging.getLogger("jobwire")
_LIVE: weakref.WeakSet[Client] = weakref.WeakSet()


class Client:
    """A jobwire client. Arguments left out come from JOBWIRE_URL, JOBWIRE_TOKEN, JOBWIRE_API_KEY.

    `token` may be a callable returning a fresh JWT: it is called again when the server
    answers `token_expired`. `retry` governs direct calls (3 attempts by default);
    `background_retry_for` bounds how long the flusher keeps retrying pending events.
    """

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
        self._cred_lock = threading.Lock()
        self._headers = self.config.headers()
        self._http = self._new_http()
        self._jobs: Dict[str, Job] = {}
        self._jobs_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        _LIVE.add(self)
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _after_fork(ref))

    def _new_http(self) -> httpx.Client:
        return httpx.Client(base_url=self.config.url, timeout=self.config.timeout)

    # ---- plumbing ----

    def _refresh_token(self) -> None:
        with self._cred_lock:
            self._headers = self.config.headers()

    def _send_once(self, req: Request) -> Any:
        try:
            r = self._http.request(
                req.method, req.path, params=req.params, content=req.body, headers=self._headers
            )
        except httpx.HTTPError as exc:  # connection refused/reset, timeouts, protocol errors
            raise TransportError(f"{req.method} {req.path}: {type(exc).__name__}: {exc}") from exc
        return parse_response(r.status_code, r.text, r.headers.get("retry-after"), req)

    def _send(self, req: Request, attempts: Optional[int] = None) -> Any:
        """Send with retries on connection errors, timeouts, 5xx and 429 (Retry-After)."""
        policy = self.retry
        attempts = policy.attempts if attempts is None else attempts
        refreshed = False
        n = 0
        while True:
            try:
                return self._send_once(req)
            except (TokenExpired, Unauthorized) as exc:
                if self.config.refreshable and not refreshed:
                    refreshed = True
                    self._refresh_token()
                    continue
                raise exc from None
            except JobwireError as exc:
                n += 1
                if not retryable(exc) or n >= attempts:
                    raise
                ra = exc.retry_after if isinstance(exc, ServerError) else None
                time.sleep(policy.delay(n - 1, ra))

    # ---- the API ----

    def create_job(
        self, job_id: Optional[str] = None, *, project: Optional[str] = None,
        metadata: Optional[Mapping[str, Any]] = None,
        heartbeat_timeout: Optional[float] = None, stall_fail_after: Optional[float] = None,
        cancel_timeout: Optional[float] = None,
    ) -> Snapshot:
        """Create a job (idempotent for the same id, project and metadata); its snapshot.

        Liveness (seconds, off by default): `heartbeat_timeout` marks the job `stalled`
        when no heartbeat or publish came for that long; `stall_fail_after` then fails
        it (`worker_lost`); `cancel_timeout` ends a requested cancel nobody confirmed.
        """
        live = Liveness(heartbeat_timeout, stall_fail_after, cancel_timeout)
        out: Snapshot = self._send(create_request(job_id, project, metadata, live))["job"]
        return out

    def get_job(self, job_id: str) -> Snapshot:
        out: Snapshot = self._send(Request("GET", job_path(check_job_id(job_id))))
        return out

    def list_jobs(
        self, *, status: Optional[str] = None, project: Optional[str] = None, page_size: int = 100,
    ) -> Iterator[Snapshot]:
        """Every job (optionally of one status or project), fetching pages as you iterate."""
        params = list_params(status, project, page_size)
        while True:
            page = self._send(Request("GET", "/v1/jobs", params=dict(params)))
            yield from page["jobs"]
            if not page.get("next"):
                return
            params["after"] = page["next"]

    def publish(self, job_id: str, events: Union[Event, Sequence[Event]]) -> List[int]:
        """Publish one event or a batch (atomic); each gets an event_id, kept across retries."""
        stamped = stamp_events(events)
        body = dumps(stamped[0] if isinstance(events, Mapping) else stamped)
        res = self._send(Request("POST", job_path(check_job_id(job_id), "/events"), body=body))
        return list(res["seqs"])

    def history(self, job_id: str, since: int = 0, *, page_size: int = 1000) -> Iterator[Event]:
        """Stored events with seq > since, up to the job's seq when the read started."""
        job_id = check_job_id(job_id)
        end: Optional[int] = None
        while True:
            page = self._send(Request(
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

    def cancel(self, job_id: str, reason: Optional[str] = None, *,
               force: bool = False) -> CancelResult:
        """Cancel a job (POST /v1/jobs/{id}/cancel).

        A job no worker started (pending, queued) ends `cancelled` at once. A job in
        progress gets a `cancel_requested` event: its worker should stop and confirm
        (`result.ended` is False). `force=True` ends it now. JobTerminal if it is over.
        """
        jid = check_job_id(job_id)
        return CancelResult.from_reply(jid, self._send(cancel_request(jid, reason, force)))

    def heartbeat(self, job_id: str, progress: Optional[float] = None,
                  checkpoint: Any = None) -> bool:
        """Renew a job's liveness deadline; True if a cancel was requested.

        Prefer `job.heartbeat()` on a worker's handle: it keeps the order of the
        handle's queued events and updates `job.cancel_requested`.
        """
        res = self._send(heartbeat_request(job_id, progress, checkpoint))
        return bool(isinstance(res, Mapping) and res.get("cancel_requested") is True)

    def watch(
        self, job_id: str, since: Optional[int] = None, *, reconnect_for: float = 60.0,
        epoch: Optional[int] = None,
    ) -> Iterator[Dict[str, Any]]:
        """The job's snapshot, then every event in order, until its terminal event.

        Survives dropped connections and server restarts: it reconnects with backoff
        (for up to `reconnect_for` seconds without success) and resumes after the last
        seq it yielded, so no event is lost or repeated. Each resume sends the server's
        `epoch` (from the last snapshot) with `since`; pass `epoch=` with your own `since`
        (the `epoch` of the snapshot or `rewound` frame it came with) to resume from a
        stored position.

        If a server crash took back events this watch already yielded (the embedded
        engine shows events before they are durable), it yields a `rewound` frame
        `{"type": "rewound", "job_id", "since", "from", "epoch", "snapshot"}`: drop what
        you hold with seq >= `from` and rebuild from `snapshot` (the job as the server
        has it now); the events from `from` on follow again, and may differ.
        """
        from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
        from websockets.sync.client import connect

        state = WatchState(check_job_id(job_id), since, epoch)
        failing_since: Optional[float] = None
        retry = 0
        while True:
            try:
                with connect(
                    self.config.ws_url + state.path(),
                    additional_headers=dict(self._headers),
                    open_timeout=self.config.timeout,
                    max_size=None,
                ) as ws:
                    failing_since, retry = None, 0
                    while True:
                        try:
                            msg = ws.recv()
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
                    self._refresh_token()
                    continue
                if not retryable(err):
                    raise err from None
                code, reason = None, str(err)
            except (OSError, WebSocketException, TimeoutError) as exc:
                code, reason = None, f"{type(exc).__name__}: {exc}"
            action = state.on_close(code, reason, self.config.refreshable)
            if action == "done":
                return
            if action == "refresh":
                self._refresh_token()
                continue
            now = time.monotonic()
            failing_since = failing_since or now
            if now - failing_since > reconnect_for:
                raise TransportError(
                    f"watch {job_id}: no connection for {reconnect_for}s: {reason}"
                )
            time.sleep(self.retry.delay(retry))
            retry += 1

    # ---- worker handles and the flusher ----

    def job(
        self, job_id: Optional[str] = None, *, project: Optional[str] = None,
        metadata: Optional[Mapping[str, Any]] = None, create: bool = True,
        heartbeat_timeout: Optional[float] = None, stall_fail_after: Optional[float] = None,
        cancel_timeout: Optional[float] = None, heartbeat_every: Optional[float] = None,
    ) -> Job:
        """The worker's handle for a job (the same handle for the same id).

        With `create=True` the job is created before the first event is sent, or found
        if it exists already (with any project, metadata or liveness settings). The
        liveness settings are as for `create_job`. `heartbeat_every` (seconds) sends a
        heartbeat from a daemon thread while the `with` block runs, unless a publish
        renewed the deadline within that time.
        """
        jid = check_job_id(job_id) if job_id is not None else None
        every = check_seconds(heartbeat_every, "heartbeat_every")
        live = Liveness(heartbeat_timeout, stall_fail_after, cancel_timeout)
        with self._jobs_lock:
            if jid is not None and jid in self._jobs:
                j = self._jobs[jid]
                if every is not None:
                    j.heartbeat_every = every
                return j
            j = Job(self, jid, project=project, metadata=metadata, create=create,
                    liveness=live, heartbeat_every=every)
            self._jobs[j.id] = j
            return j

    def _forget(self, job: Job) -> None:
        with self._jobs_lock:
            if self._jobs.get(job.id) is job:
                del self._jobs[job.id]

    def _kick(self) -> None:
        """Make sure the flusher thread runs (started lazily, and again after a fork)."""
        t = self._thread
        if t is None or not t.is_alive():
            with self._jobs_lock:
                if (self._thread is None or not self._thread.is_alive()) and not self._closed:
                    self._stop.clear()
                    self._thread = threading.Thread(
                        target=self._run, name="jobwire-flusher", daemon=True
                    )
                    self._thread.start()

    def _wake_now(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            with self._jobs_lock:
                jobs = list(self._jobs.values())
            for j in jobs:
                try:
                    j._background_flush()
                except Exception:  # never let the flusher die
                    log.exception("jobwire: flusher error for job %s", j.id)

    def flush(self) -> None:
        """Send everything pending now (with direct-call retries); raise if some is left."""
        with self._jobs_lock:
            jobs = list(self._jobs.values())
        for j in jobs:
            j.flush()

    def close(self, timeout: Optional[float] = 10.0) -> None:
        """Flush what is pending (best effort within `timeout`), stop the flusher, close HTTP."""
        if self._closed:
            return
        try:
            self._flush_until(timeout)
        finally:
            self._closed = True
            self._stop.set()
            self._wake.set()
            if self._thread is not None and self._thread is not threading.current_thread():
                self._thread.join(timeout=5)
            self._http.close()

    def _flush_until(self, timeout: Optional[float]) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        err: Optional[JobwireError] = None
        while True:
            with self._jobs_lock:
                jobs = [j for j in self._jobs.values() if j._q.has_work()]
            if not jobs:
                return
            for j in jobs:
                try:
                    j.flush()
                except TransportError as exc:
                    err = exc
            if deadline is not None and time.monotonic() >= deadline:
                if err is not None:
                    raise err
                return
            if err is not None:
                time.sleep(self.retry.delay(0))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _after_fork(ref: weakref.ref[Client]) -> None:
    c = ref()
    if c is None:
        return
    # The flusher thread and the pooled sockets belong to the parent; start afresh.
    c._thread = None
    c._jobs_lock = threading.Lock()
    c._cred_lock = threading.Lock()
    c._wake = threading.Event()
    c._http = c._new_http()
    c._jobs = {}


@atexit.register
def _flush_at_exit() -> None:
    for c in list(_LIVE):
        try:
            c.close(timeout=10.0)
        except Exception as exc:
            log.warning("jobwire: events left unsent at exit: %s", exc)
