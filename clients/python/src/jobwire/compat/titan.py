"""titan's `ProgressReporter` (async) on jobwire: same methods, progress from 0 to 1."""

from __future__ import annotations

from typing import Any, Dict, Optional

from .._core import check_job_id
from ..aio import AsyncClient, AsyncJob
from ..errors import InvalidEvent, JobNotFound

_TITAN_STATUS = {"completed": "completed", "failed": "failed", "cancelled": "cancelled"}


class ProgressReporter:
    """Reports progress of titan jobs; the job is created on its first report."""

    def __init__(self, client: Optional[AsyncClient] = None, *, project: Optional[str] = None,
                 ) -> None:
        self._client = client
        self._owned = client is None
        self.project = project

    async def initialize(self) -> None:
        if self._client is None:
            self._client = AsyncClient()

    @property
    def client(self) -> AsyncClient:
        if self._client is None:
            self._client = AsyncClient()
        return self._client

    def _job(self, job_id: Any) -> AsyncJob:
        return self.client.job(check_job_id(job_id), project=self.project)

    async def report(self, job_id: str, stage: str, progress: float, message: str,
                     metadata: Optional[Dict[str, Any]] = None) -> None:
        """Queue a progress update; `progress` is a fraction from 0.0 to 1.0."""
        if isinstance(progress, bool) or not isinstance(progress, (int, float)) or not (
            0.0 <= progress <= 1.0
        ):
            raise InvalidEvent(f"progress must be from 0.0 to 1.0, got {progress!r}")
        await self._job(job_id).progress(progress * 100.0, stage=stage, message=message,
                                         metadata=metadata)

    async def report_error(self, job_id: str, error: str, stage: str = "error") -> None:
        await self._job(job_id).fail(error, message=f"Error: {error}",
                                     metadata={"stage": stage})

    async def report_complete(self, job_id: str, result: Any,
                              message: str = "Job completed") -> None:
        await self._job(job_id).complete(result, message=message)

    async def get_status(self, job_id: str) -> Optional[Dict[str, Any]]:
        """The job in titan's shape (progress 0-1, status processing/completed/failed), or None."""
        try:
            snap = await self.client.get_job(check_job_id(job_id))
        except JobNotFound:
            return None
        out: Dict[str, Any] = {
            "job_id": snap["id"],
            "status": _TITAN_STATUS.get(snap["status"], "processing"),
            "stage": snap.get("stage"),
            "progress": float(snap.get("progress", 0.0)) / 100.0,
            "message": snap.get("message"),
            "metadata": snap.get("metadata", {}),
            "timestamp": snap.get("updated_at"),
        }
        for k in ("result", "error"):
            if k in snap:
                out[k] = snap[k]
        return out

    async def close(self) -> None:
        """Deliver what is queued; close the client if this reporter made it."""
        if self._client is None:
            return
        if self._owned:
            await self._client.close()
            self._client = None
        else:
            await self._client.flush()
