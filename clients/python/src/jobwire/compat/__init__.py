"""Drop-in replacements for the publishers of systems that move to jobwire.

Change one import and keep the calls:
- `ProgressReporter` (titan): async `report(job_id, stage, progress 0-1, message, ...)`.
- `Publisher` and the ready `publisher` (a6hub): `publish_status/progress/log/step/...`.
- `ProgressUpdater` (project-updates): one job per operation of a project.
- `ProcessingJobLifecycle` (progress-channel): `mark_queued/started/progress/...`.

Constructed bare, they read JOBWIRE_URL, JOBWIRE_TOKEN / JOBWIRE_API_KEY. Jobs are
created on first use (or found, if the application created them).
"""

from __future__ import annotations

from .a6hub import Publisher, publisher
from .progress_channel import ProcessingJobLifecycle
from .project_updates import ProgressUpdater
from .titan import ProgressReporter

__all__ = ["ProcessingJobLifecycle", "ProgressReporter", "ProgressUpdater", "Publisher",
           "publisher"]
