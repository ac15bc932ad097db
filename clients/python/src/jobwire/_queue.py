"""A job's outgoing event queue: ordering, progress coalescing, batching (no I/O).

Events leave in the order they were queued. Consecutive progress updates coalesce into
one (latest value wins; stage, message and metadata merge as the server would fold
them). A batch gets its event_ids when it is cut and keeps them, and its serialised
bytes, until it is acknowledged, so every retry is the same request.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any, Deque, Dict, List, Optional

from ._core import dumps, new_event_id_prefix
from .errors import InvalidEvent, InvalidTransition, JobTerminal, JobwireError, ServerError

log = logging.getLogger("jobwire")

MAX_BATCH_BYTES = 512 * 1024  # half the server's default body limit
MAX_PENDING_LOGS = 200_000  # past this, new log lines are dropped (counted in `dropped`)
# Refusals that one event can cause: a batch refused so is retried event by event, so
# the other events still land. Any other refusal (auth, unknown job) refuses the batch.
PER_EVENT_CODES = frozenset({"invalid_event", "invalid_transition", "job_terminal",
                             "payload_too_large", "malformed_json"})


class Entry:
    """One queued event; `pos` orders entries, `optional` marks implicit starts."""

    __slots__ = ("event", "optional", "pos")

    def __init__(self, event: Dict[str, Any], pos: int, optional: bool = False) -> None:
        self.event = event
        self.pos = pos
        self.optional = optional


class Batch:
    __slots__ = ("body", "entries")

    def __init__(self, entries: List[Entry], body: str) -> None:
        self.entries = entries
        self.body = body


class EventQueue:
    """Pending entries + the batches cut but not yet acknowledged; guarded by `lock`.

    The lock is held only for list operations (microseconds), never across I/O.
    """

    def __init__(self, max_batch: int) -> None:
        self.lock = threading.Lock()
        self.pending: Deque[Entry] = deque()
        self.inflight: List[Batch] = []  # front first; a failed batch may be split in place
        self.max_batch = max_batch
        self.tail_progress: Optional[Entry] = None
        self.enqueued = 0  # positions handed out
        self.acked = 0  # every entry with pos <= acked is acknowledged or refused
        self.errors: Dict[int, JobwireError] = {}  # refusals of entries a caller waits on
        self.background_errors: List[JobwireError] = []  # last refusals of other entries
        self.pending_logs = 0
        self.dropped = 0
        self.prefix = new_event_id_prefix()
        self.next_id = 0
        self.terminal_queued = False
        self.last_seq = 0

    # ---- producers (worker thread) ----

    def push(self, event: Dict[str, Any], optional: bool = False) -> int:
        with self.lock:
            self.enqueued += 1
            e = Entry(event, self.enqueued, optional)
            self.pending.append(e)
            self.tail_progress = None
            if event["type"] in ("completed", "failed", "cancelled"):
                self.terminal_queued = True
            return e.pos

    def push_log(self, event: Dict[str, Any]) -> None:
        with self.lock:
            if self.pending_logs >= MAX_PENDING_LOGS:
                self.dropped += 1
                if self.dropped == 1:
                    log.warning("jobwire: %d log lines pending; dropping new ones",
                                self.pending_logs)
                return
            self.pending_logs += 1
            self.enqueued += 1
            self.pending.append(Entry(event, self.enqueued))
            self.tail_progress = None

    def push_progress(
        self, value: float, stage: Optional[str], message: Optional[str],
        metadata: Optional[Dict[str, Any]],
    ) -> None:
        with self.lock:
            tail = self.tail_progress
            if tail is not None:  # coalesce with the newest queued event, a progress one
                ev = tail.event
                ev["progress"] = value
                if stage is not None:
                    ev["stage"] = stage
                if message is not None:
                    ev["message"] = message
                if metadata:
                    old = ev.get("metadata")
                    if old is None:
                        ev["metadata"] = dict(metadata)
                    else:
                        old.update(metadata)
                return
            ev = {"type": "progress", "progress": value}
            if stage is not None:
                ev["stage"] = stage
            if message is not None:
                ev["message"] = message
            if metadata:
                ev["metadata"] = dict(metadata)
            self.enqueued += 1
            tail = Entry(ev, self.enqueued)
            self.pending.append(tail)
            self.tail_progress = tail

    # ---- the sender (one at a time per job) ----

    def has_work(self) -> bool:
        return bool(self.pending or self.inflight)

    def front(self) -> Optional[Batch]:
        """The batch to send next: the oldest unacknowledged one, else a newly cut one."""
        with self.lock:
            if self.inflight:
                return self.inflight[0]
            if not self.pending:
                return None
            entries: List[Entry] = []
            parts: List[str] = []
            size = 2
            while self.pending and len(entries) < self.max_batch:
                e = self.pending[0]
                if "event_id" not in e.event:
                    e.event["event_id"] = f"{self.prefix}-{self.next_id}"
                    self.next_id += 1
                try:
                    part = dumps(e.event)
                except (TypeError, ValueError) as exc:
                    self.pending.popleft()
                    self._refused(e, InvalidEvent(f"event is not JSON-serialisable: {exc}"))
                    continue
                if entries and size + len(part) + 1 > MAX_BATCH_BYTES:
                    break
                self.pending.popleft()
                if e is self.tail_progress:
                    self.tail_progress = None
                if e.event["type"] == "log":
                    self.pending_logs -= 1
                entries.append(e)
                parts.append(part)
                size += len(part) + 1
            if not entries:
                return None
            b = Batch(entries, "[" + ",".join(parts) + "]")
            self.inflight.append(b)
            return b

    def acked_batch(self, batch: Batch, seqs: List[int]) -> None:
        with self.lock:
            self.inflight.remove(batch)
            self.acked = max(self.acked, batch.entries[-1].pos)
            if seqs:
                self.last_seq = max(self.last_seq, max(seqs))

    def refused_batch(self, batch: Batch, exc: ServerError) -> None:
        """A final (non-retryable) refusal: split a batch into single events, or record it."""
        with self.lock:
            i = self.inflight.index(batch)
            if len(batch.entries) > 1 and exc.code in PER_EVENT_CODES:
                singles = [Batch([e], dumps(e.event)) for e in batch.entries]
                self.inflight[i:i + 1] = singles
                return
            self.inflight.pop(i)
            self.acked = max(self.acked, batch.entries[-1].pos)
            for e in batch.entries:
                if e.optional and isinstance(exc, (InvalidTransition, JobTerminal)):
                    continue  # an implicit start (or queued) on a job already past it
                self._refused(e, exc)

    def _refused(self, e: Entry, exc: JobwireError) -> None:
        if e.event["type"] == "log":
            self.pending_logs = max(0, self.pending_logs)
        self.errors[e.pos] = exc
        if len(self.errors) > 1000:
            self.errors.pop(next(iter(self.errors)))
        if not self.background_errors or self.background_errors[-1] is not exc:
            self.background_errors.append(exc)
            del self.background_errors[:-20]

    def record(self, exc: JobwireError) -> None:
        with self.lock:
            self.background_errors.append(exc)
            del self.background_errors[:-20]

    def take_error(self, pos: int) -> Optional[JobwireError]:
        with self.lock:
            return self.errors.pop(pos, None)

    def pending_count(self) -> int:
        with self.lock:
            return len(self.pending) + sum(len(b.entries) for b in self.inflight)
