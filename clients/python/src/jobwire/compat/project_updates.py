"""project-updates' `ProgressUpdater` (async) on jobwire: one job per operation of a project.

Each operation (rc_analysis, matching, generation, document_generation, or the name
given to `send_error` / `send_completion`) of a project runs as one job in the project
`str(project_id)` (with `metadata.operation`). Progress calls publish a `custom` event
named as project-updates named its messages (`rc_analysis_progress`, ...) with the same
fields, plus a jobwire `progress` event, so both old and new clients follow;
`send_error` / `send_completion` publish `failed` / `completed`, which jobwire's
project-updates dialect sends as the system's `error` / `completion` messages (a custom
event as well would reach those clients twice). A new job starts for an operation once
its previous job has finished.
"""

from __future__ import annotations

import uuid
from typing import Any, Dict, Optional, Tuple

from ..aio import AsyncClient, AsyncJob
from ..errors import InvalidEvent


class ProgressUpdater:
    def __init__(self, connection_manager: Any = None, *,
                 client: Optional[AsyncClient] = None) -> None:
        """`connection_manager` is accepted for the old call shape and not used."""
        del connection_manager
        self._client = client
        self._jobs: Dict[Tuple[str, str], AsyncJob] = {}

    @property
    def client(self) -> AsyncClient:
        if self._client is None:
            self._client = AsyncClient()
        return self._client

    def job_for(self, project_id: Any, operation: str) -> AsyncJob:
        """The current job of (project, operation); a new one when the last has finished."""
        if not isinstance(operation, str) or not operation:
            raise InvalidEvent("operation must be a non-empty string")
        key = (str(project_id), operation)
        job = self._jobs.get(key)
        if job is None or job.finished:
            safe_op = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in operation)
            jid = f"{safe_op[:80]}-{uuid.uuid4().hex[:12]}"
            job = self.client.job(jid, project=key[0], metadata={"operation": operation})
            self._jobs[key] = job
        return job

    async def _progress(self, project_id: Any, operation: str, name: str,
                        data: Dict[str, Any], progress: Any, stage: Optional[str],
                        message: Optional[str]) -> AsyncJob:
        job = self.job_for(project_id, operation)
        await job.progress(progress, stage=stage, message=message)
        await job.custom(name, data)  # sends the queued progress first, in order
        return job

    async def _maybe_finish(self, job: AsyncJob, status: str, message: Optional[str]) -> None:
        if status == "completed":
            await job.complete(None, message)
        elif status == "failed":
            await job.fail(message or "failed")

    async def send_rc_analysis_progress(self, project_id: Any, status: str, progress: int,
                                        message: str) -> None:
        data = {"status": status, "progress": progress, "message": message}
        job = await self._progress(project_id, "rc_analysis", "rc_analysis_progress", data,
                                   progress, status, message)
        await self._maybe_finish(job, status, message)

    async def send_matching_progress(self, project_id: Any, current_requirement: str,
                                     requirements_completed: int, requirements_total: int,
                                     progress: int) -> None:
        data = {"current_requirement": current_requirement,
                "requirements_completed": requirements_completed,
                "requirements_total": requirements_total, "progress": progress}
        await self._progress(project_id, "matching", "matching_progress", data, progress,
                             current_requirement, None)

    async def send_generation_progress(self, project_id: Any, current_section: str,
                                       sections_completed: int, sections_total: int,
                                       progress: int, quality_score: Optional[float] = None,
                                       ) -> None:
        data = {"current_section": current_section, "sections_completed": sections_completed,
                "sections_total": sections_total, "progress": progress,
                "quality_score": quality_score}
        await self._progress(project_id, "generation", "generation_progress", data, progress,
                             current_section, None)

    async def send_document_generation_progress(self, project_id: Any, status: str,
                                                progress: int, message: str) -> None:
        data = {"status": status, "progress": progress, "message": message}
        job = await self._progress(project_id, "document_generation",
                                   "document_generation_progress", data, progress, status,
                                   message)
        await self._maybe_finish(job, status, message)

    async def send_error(self, project_id: Any, operation: str, error_message: str) -> None:
        await self.job_for(project_id, operation).fail(error_message)

    async def send_completion(self, project_id: Any, operation: str, result: Dict[str, Any],
                              ) -> None:
        await self.job_for(project_id, operation).complete(result)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
