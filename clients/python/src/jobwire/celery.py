"""Celery integration: every task becomes a jobwire job (id = the task id).

`install(app, client)` connects Celery's signals: `after_task_publish` queues the job
(without blocking the publisher), `task_prerun` starts it, `task_success` completes it
with the return value when that is JSON-serialisable, `task_failure` fails it with the
exception's type and message (and the traceback as log lines), `task_revoked` cancels
it. `JobwireTask` gives bound tasks `self.job` for progress, steps and logs.

Cancel is cooperative, never `revoke(terminate=True)`: `client.cancel(task_id)` on a
running task only requests it; the task sees it through `self.job.heartbeat()` or
`self.job.cancel_requested` and stops with `self.job.raise_if_cancelled()`. A task
that raises `CancelRequested` (or any exception once a cancel was requested) ends its
job `cancelled`, not `failed`; Celery records the task as failed with that exception.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional

from celery import Celery, Task, signals

from ._core import check_json
from .client import Client
from .errors import CancelRequested, InvalidEvent, JobTerminal, JobwireError
from .job import Job

log = logging.getLogger("jobwire")


class _Integration:
    def __init__(self, app: Celery, client: Client, project: Optional[str]) -> None:
        self.app = app
        self.client = client
        self.project = project

    def job(self, task_id: str, task_name: Optional[str]) -> Job:
        meta: Optional[Dict[str, Any]] = {"task": task_name} if task_name else None
        return self.client.job(task_id, project=self.project, metadata=meta)

    def _mine(self, task: Any) -> bool:
        return getattr(task, "app", self.app) is self.app

    def on_publish(self, sender: Any = None, headers: Any = None, body: Any = None,
                   **_: Any) -> None:
        task_id = (headers or {}).get("id")
        if task_id is None and isinstance(body, dict):  # task protocol 1
            task_id = body.get("id")
        if not task_id:
            return
        name = sender if isinstance(sender, str) else (headers or {}).get("task")
        try:
            job = self.job(str(task_id), name)
            job._transient = True
            job.enqueue_status("queued")
        except JobwireError as exc:
            log.warning("jobwire: could not queue job for task %s: %s", task_id, exc)

    def on_prerun(self, task_id: Optional[str] = None, task: Any = None, **_: Any) -> None:
        if not task_id or not self._mine(task):
            return
        try:
            self.job(task_id, getattr(task, "name", None)).start()
        except JobwireError as exc:
            log.warning("jobwire: could not start job %s: %s", task_id, exc)

    def on_success(self, sender: Any = None, result: Any = None, **_: Any) -> None:
        if not self._mine(sender):
            return
        task_id = getattr(getattr(sender, "request", None), "id", None)
        if not task_id:
            return
        job = self.job(task_id, getattr(sender, "name", None))
        if job.finished:
            return
        try:
            check_json(result, "result")
        except InvalidEvent:
            result = None  # not JSON-serialisable: the job completes without it
        try:
            job.complete(result)
        except JobTerminal:
            pass
        except JobwireError as exc:
            log.warning("jobwire: could not complete job %s: %s", task_id, exc)

    def on_failure(self, sender: Any = None, task_id: Optional[str] = None,
                   exception: Optional[BaseException] = None, einfo: Any = None,
                   **_: Any) -> None:
        if not task_id or not self._mine(sender):
            return
        job = self.job(task_id, getattr(sender, "name", None))
        if job.finished:
            return
        exc = exception if exception is not None else RuntimeError("task failed")
        tb = getattr(einfo, "traceback", None)
        if isinstance(tb, str) and not isinstance(exc, CancelRequested):
            for line in tb.rstrip("\n").split("\n"):
                job.log(line, level="error")
        try:
            if isinstance(exc, CancelRequested) or job.cancel_requested:
                job.confirm_cancelled()
            else:
                job.fail(exc)
        except JobTerminal:
            pass
        except JobwireError as err:
            log.warning("jobwire: could not fail job %s: %s", task_id, err)

    def on_revoked(self, sender: Any = None, request: Any = None, terminated: bool = False,
                   signum: Any = None, expired: bool = False, **_: Any) -> None:
        task_id = getattr(request, "id", None) or getattr(request, "task_id", None)
        if not task_id:
            return
        reason = "expired" if expired else ("terminated" if terminated else "revoked")
        try:
            self.job(task_id, getattr(request, "task_name", None) or getattr(request, "name", None)
                     ).cancel(reason)
        except JobTerminal:
            pass
        except JobwireError as exc:
            log.warning("jobwire: could not cancel job %s: %s", task_id, exc)


def install(app: Celery, client: Optional[Client] = None, *, project: Optional[str] = None,
            ) -> None:
    """Make every task of `app` a jobwire job; `client` defaults to `Client()` (from env)."""
    integ = _Integration(app, client or Client(), project)
    app.jobwire = integ
    signals.after_task_publish.connect(integ.on_publish, weak=False)
    signals.task_prerun.connect(integ.on_prerun, weak=False)
    signals.task_success.connect(integ.on_success, weak=False)
    signals.task_failure.connect(integ.on_failure, weak=False)
    signals.task_revoked.connect(integ.on_revoked, weak=False)


class JobwireTask(Task):  # type: ignore[misc]
    """Base class for bound tasks: `self.job` is the running task's job handle."""

    abstract = True

    @property
    def job(self) -> Job:
        integ: Optional[_Integration] = getattr(self.app, "jobwire", None)
        if integ is None:
            raise RuntimeError("call jobwire.celery.install(app, client) first")
        return integ.job(self.request.id, self.name)
