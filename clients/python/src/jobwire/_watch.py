"""The watch state machine shared by the sync and asyncio clients (no I/O).

It keeps the last seq seen, turns frames into "yield this / skip / done", and decides
what a close code means (done, reconnect, refresh the token, or raise).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple
from urllib.parse import quote

from ._core import TERMINAL_STATUSES, is_terminal_event
from .errors import JobNotFound, JobwireError, TokenExpired, WatchClosed, close_action, error_for

_CONTROL = frozenset({"heartbeat", "pong", "authenticated", "unsubscribed", "ready"})


class WatchState:
    """Position and progress of one watch: yields a snapshot once, then events in seq order."""

    def __init__(self, job_id: str, since: Optional[int]) -> None:
        self.job_id = job_id
        self.since = since  # last seq we hold; None = "live only" until the first snapshot
        self.snapshot_seen = False
        self.done = False

    def path(self) -> str:
        p = f"/v1/jobs/{quote(self.job_id, safe='')}/ws"
        return p if self.since is None else f"{p}?since={self.since}"

    def on_frame(self, frame: Mapping[str, Any]) -> Tuple[Optional[Dict[str, Any]], bool]:
        """Return (frame to yield or None, watch finished)."""
        typ = frame.get("type")
        if typ == "snapshot":
            job = frame.get("job") or {}
            seq = int(frame.get("seq", 0))
            first = not self.snapshot_seen
            self.snapshot_seen = True
            if self.since is None:
                self.since = seq
            # A terminal job whose last event we already hold: nothing more will come.
            done = job.get("status") in TERMINAL_STATUSES and self.since >= seq
            self.done = done
            return (dict(frame) if first else None), done
        if typ == "error":
            if frame.get("job_id") not in (None, self.job_id):
                return None, False
            raise error_for(
                str(frame.get("code")), str(frame.get("message", "")),
                number=int(frame.get("number", 0) or 0), job_id=self.job_id,
            )
        if typ in _CONTROL:
            return None, False
        if typ == "history_truncated":
            return dict(frame), False
        if "seq" in frame:
            if frame.get("job_id") not in (None, self.job_id):
                return None, False
            seq = int(frame["seq"])
            if self.since is not None and seq <= self.since:
                return None, False  # already delivered (replay after a reconnect)
            self.since = seq
            done = is_terminal_event(frame)
            self.done = done
            return dict(frame), done
        return None, False

    def on_close(self, code: Optional[int], reason: str, refreshable: bool) -> str:
        """After a close: "done", "reconnect" or "refresh"; raises when the watch must stop."""
        if self.done:
            return "done"
        action = close_action(code)
        if code == 1000:
            return "done"
        if action == "reconnect":
            return "reconnect"
        if action == "refresh_token":
            if refreshable:
                return "refresh"
            raise TokenExpired(f"websocket closed {code}: {reason}", job_id=self.job_id)
        if code == 4504:
            raise JobNotFound(reason or "job not found", job_id=self.job_id)
        raise WatchClosed(code or 0, reason)


def handshake_error(status: int, body: bytes) -> JobwireError:
    """The typed error for an HTTP answer to the WebSocket upgrade."""
    import json

    from .errors import from_response

    try:
        parsed = json.loads(body.decode("utf-8")) if body else {}
    except ValueError:
        parsed = {}
    return from_response(status, parsed, None)
