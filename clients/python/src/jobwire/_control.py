"""Cancel state of a worker's handle and the control stream's decoding (no I/O).

`CancelState` is what `Job` and `AsyncJob` share: the sticky `cancel_requested` flag
(set from publish and heartbeat replies and from the control stream), who asked and
why, and the `on_cancel` callbacks not yet called. `SseDecoder` turns the lines of
`GET /v1/jobs/{id}/control` (SSE) into `(event, data)` messages; `CancelState.on_control`
reads one control frame and says whether the stream is over.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable, List, Mapping, Optional, Tuple

from ._core import TERMINAL_STATUSES
from .errors import CancelRequested

# The server sends a keepalive comment every 15 s: no byte for this long means the
# connection is dead, and the listener reconnects.
CONTROL_READ_TIMEOUT = 45.0

Callback = Callable[[], Any]


class CancelState:
    """Whether a cancel was requested for one job, and the callbacks waiting for it."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.requested = False
        self.by: Optional[str] = None
        self.reason: Optional[str] = None
        self._pending: List[Callback] = []
        self._lock = threading.Lock()

    def mark(self, by: Any = None, reason: Any = None) -> None:
        with self._lock:
            self.requested = True
            if isinstance(by, str) and self.by is None:
                self.by = by
            if isinstance(reason, str) and self.reason is None:
                self.reason = reason

    def from_reply(self, reply: Any) -> None:
        """A publish or heartbeat reply: `cancel_requested` only ever turns the flag on."""
        if isinstance(reply, Mapping) and reply.get("cancel_requested") is True:
            self.mark()

    def error(self) -> CancelRequested:
        who = f" by {self.by}" if self.by else ""
        why = f": {self.reason}" if self.reason else ""
        return CancelRequested(f"job {self.job_id}: cancel requested{who}{why}",
                               job_id=self.job_id, by=self.by, reason=self.reason)

    def add(self, callback: Callback) -> None:
        with self._lock:
            self._pending.append(callback)

    def due(self) -> List[Callback]:
        """The callbacks to call now (each is returned once), if a cancel was requested."""
        with self._lock:
            if not self.requested or not self._pending:
                return []
            out, self._pending = self._pending, []
            return out

    def on_control(self, frame: Mapping[str, Any]) -> bool:
        """Apply one control frame; True when the stream is over (the job ended)."""
        typ = frame.get("type")
        if typ == "state":
            if frame.get("cancel_requested") is True:
                req = frame.get("cancel")  # the server also sends {"at", "by"?, "reason"?}
                req = req if isinstance(req, Mapping) else frame
                self.mark(req.get("by"), req.get("reason"))
            return frame.get("status") in TERMINAL_STATUSES
        if typ == "cancel_requested":
            self.mark(frame.get("by"), frame.get("reason"))
            return False
        return typ == "end"


class SseDecoder:
    """Server-sent events, line by line: returns `(event, data)` when a message is complete."""

    def __init__(self) -> None:
        self.event = ""
        self.data: List[str] = []

    def line(self, line: str) -> Optional[Tuple[str, str]]:
        line = line.rstrip("\r\n")
        if not line:
            out = (self.event or "message", "\n".join(self.data)) if self.data else None
            self.event, self.data = "", []
            return out
        if line.startswith(":"):  # keepalive comment
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self.event = value
        elif name == "data":
            self.data.append(value)
        return None


def control_frame(event: str, data: str) -> Optional[Mapping[str, Any]]:
    """The JSON object of a `control` message (None for anything else)."""
    if event not in ("control", "message"):
        return None
    try:
        frame = json.loads(data)
    except ValueError:
        return None
    return frame if isinstance(frame, Mapping) else None
