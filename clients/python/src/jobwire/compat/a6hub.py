"""a6hub's worker `Publisher` (sync) on jobwire, and the module-level `publisher`.

Statuses map as a6hub uses them: "running" is in_progress; `publish_complete(id,
"failed")` and `publish_error` fail the job. A call that only repeats an end the job
already has is ignored. When the server is unreachable the events stay queued (and are
retried) instead of breaking the build; bad input still raises its typed error.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, List, Optional, Sequence

from .._core import check_job_id
from ..client import Client
from ..errors import DeliveryError, InvalidEvent, JobTerminal
from ..job import Job

log = logging.getLogger("jobwire")
_RUNNING = frozenset({"running", "in_progress", "started", "processing"})


class Publisher:
    def __init__(self, client: Optional[Client] = None, *, project: Optional[str] = None) -> None:
        self._client = client
        self._lock = threading.Lock()
        self.project = project

    @property
    def client(self) -> Client:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = Client()
        return self._client

    def _job(self, job_id: Any) -> Job:
        return self.client.job(check_job_id(job_id), project=self.project)

    @staticmethod
    def _safe(call: Any, *args: Any, **kw: Any) -> None:
        try:
            call(*args, **kw)
        except DeliveryError as exc:
            log.warning("jobwire: %s (kept queued)", exc)

    def _end(self, call: Any, *args: Any) -> None:
        try:
            self._safe(call, *args)
        except JobTerminal:
            log.info("jobwire: job already finished; %s%r ignored", call.__name__, args)

    def publish_status(self, job_id: Any, status: str) -> None:
        job = self._job(job_id)
        if status in _RUNNING:
            self._safe(job.start)
        elif status == "queued":
            self._safe(job.status, "queued")
        elif status in ("completed", "failed", "cancelled"):
            self.publish_complete(job_id, status)
        else:
            raise InvalidEvent(f"unknown a6hub status {status!r}")

    def publish_progress(self, job_id: Any, progress: float, step: Optional[str] = None,
                         completed_steps: Optional[Sequence[str]] = None) -> None:
        meta = {"completed_steps": list(completed_steps)} if completed_steps is not None else None
        self._job(job_id).progress(progress, stage=step, metadata=meta)

    def publish_log(self, job_id: Any, log_line: str) -> None:
        """One log event per line of `log_line` (a6hub's lines end with a newline)."""
        if not isinstance(log_line, str):
            raise InvalidEvent("log_line must be a string")
        job = self._job(job_id)
        lines: List[str] = log_line.split("\n")
        if len(lines) > 1 and lines[-1] == "":
            lines.pop()
        for line in lines:
            job.log(line)

    def publish_step(self, job_id: Any, step_name: str, step_label: Optional[str] = None) -> None:
        self._safe(self._job(job_id).step, step_name, step_label)

    def publish_complete(self, job_id: Any, status: str = "completed",
                         message: Optional[str] = None) -> None:
        job = self._job(job_id)
        if job.finished:
            log.info("jobwire: job %s already finished; %r ignored", job.id, status)
            return
        if status == "completed":
            self._end(job.complete, None, message or "Build completed successfully")
        elif status == "failed":
            self._end(job.fail, message or "failed")
        elif status == "cancelled":
            self._end(job.cancel, message)
        else:
            raise InvalidEvent(f"publish_complete takes completed, failed or cancelled, "
                               f"not {status!r}")

    def publish_error(self, job_id: Any, error_message: str) -> None:
        job = self._job(job_id)
        if job.finished:
            log.info("jobwire: job %s already finished; error %r not stored", job.id,
                     error_message)
            return
        self._end(job.fail, error_message)

    def flush(self) -> None:
        self.client.flush()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


publisher = Publisher()
"""The ready instance a6hub's worker code calls (`publisher.publish_status(...)`)."""
