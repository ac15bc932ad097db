"""progress-channel's `ProcessingJobLifecycle` on jobwire: one method per status change.

Jobs may be given as ids or as objects with an `id` (a ProcessingJob row); progress is a
percentage (0-100), as progress-channel's messages carry it.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from .._core import check_job_id
from ..client import Client
from ..job import Job


class ProcessingJobLifecycle:
    def __init__(self, client: Optional[Client] = None, *, project: Optional[str] = None) -> None:
        self._client = client
        self.project = project

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client()
        return self._client

    def _job(self, job: Any) -> Job:
        jid = getattr(job, "id", job)
        return self.client.job(check_job_id(jid), project=self.project)

    def mark_queued(self, job: Any, message: Optional[str] = None) -> None:
        self._job(job).status("queued", message)

    def mark_started(self, job: Any, message: Optional[str] = None) -> None:
        self._job(job).start(message)

    def mark_progress(self, job: Any, progress: float, message: Optional[str] = None,
                      metadata: Optional[Mapping[str, Any]] = None,
                      stage: Optional[str] = None) -> None:
        self._job(job).progress(progress, message=message, metadata=metadata, stage=stage)

    def mark_completed(self, job: Any, result: Any = None, message: Optional[str] = None) -> None:
        self._job(job).complete(result, message)

    def mark_failed(self, job: Any, error: Any, message: Optional[str] = None) -> None:
        self._job(job).fail(error, message)

    def mark_cancelled(self, job: Any, reason: Optional[str] = None) -> None:
        self._job(job).cancel(reason)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
