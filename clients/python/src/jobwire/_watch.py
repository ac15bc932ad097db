"""The watch state machine shared by the sync and asyncio clients (no I/O).

It keeps the last seq seen and the server's epoch (sent back with `since` so the server
can tell a watcher that it holds events a crash took back), turns frames into "yield
this / skip / done", and decides what a close code means (done, reconnect, refresh the
token, or raise).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple
from urllib.parse import quote

from ._core import TERMINAL_STATUSES, is_terminal_event
from .errors import JobNotFound, JobwireError, TokenExpired, WatchClosed, close_action, error_for

_CONTROL = frozenset({"heartbeat", "pong", "authenticated", "unsubscribed", "ready"})
# Server frames that are neither events nor errors, yielded as they come (with additions).
NOTICES = frozenset({"history_truncated", "rewound"})


class WatchState:
    """Position and progress of one watch: yields a snapshot once, then events in seq order."""

    def __init__(self, job_id: str, since: Optional[int], epoch: Optional[int] = None) -> None:
        self.job_id = job_id
        self.since = since  # last seq we hold; None = "live only" until the first snapshot
        self.epoch = epoch  # the server's epoch `since` came with (None: Redis, or unknown)
        self.snapshot: Optional[Dict[str, Any]] = None  # the last snapshot frame received
        self.snapshot_seen = False
        self.done = False

    def path(self) -> str:
        p = f"/v1/jobs/{quote(self.job_id, safe='')}/ws"
        if self.since is None:
            return p
        return f"{p}?since={self.since}" + ("" if self.epoch is None else f"&epoch={self.epoch}")

    def on_frame(self, frame: Mapping[str, Any]) -> Tuple[Optional[Dict[str, Any]], bool]:
        """Return (frame to yield or None, watch finished)."""
        typ = frame.get("type")
        if typ == "snapshot":
            job = frame.get("job") or {}
            seq = int(frame.get("seq", 0))
            first = not self.snapshot_seen
            self.snapshot_seen = True
            self.snapshot = dict(frame)
            epoch = _epoch(frame)
            same_epoch = self.epoch is None or epoch is None or epoch == self.epoch
            if epoch is not None:
                self.epoch = epoch
            if self.since is None:
                self.since = seq
            # A terminal job whose last event we already hold: nothing more will come,
            # unless the epoch moved on (a `rewound` may follow; the server closes 1000).
            done = job.get("status") in TERMINAL_STATUSES and self.since >= seq and same_epoch
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
        if typ == "rewound":
            return self._rewound(frame)
        if typ in NOTICES:
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

    def _rewound(self, frame: Mapping[str, Any]) -> Tuple[Optional[Dict[str, Any]], bool]:
        """Events from `from` on were taken back: resume from `from - 1`, so the ones the
        server writes again under those seqs are accepted; the caller rebuilds from the
        snapshot that came just before (added to the yielded notice as `snapshot`)."""
        if frame.get("job_id") not in (None, self.job_id):
            return None, False
        start = max(int(frame.get("from", 1)), 1)
        epoch = _epoch(frame)
        if epoch is not None:
            self.epoch = epoch
        if self.since is not None:
            self.since = min(self.since, start - 1)
        out = dict(frame)
        out["snapshot"] = self.snapshot
        snap = self.snapshot or {}
        job = snap.get("job") or {}
        # A terminal job whose events up to its seq are all below `from`: nothing follows.
        done = job.get("status") in TERMINAL_STATUSES and start - 1 >= int(snap.get("seq", 0))
        self.done = done
        return out, done

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


def _epoch(frame: Mapping[str, Any]) -> Optional[int]:
    e = frame.get("epoch")
    return e if isinstance(e, int) and not isinstance(e, bool) else None


def handshake_error(status: int, body: bytes) -> JobwireError:
    """The typed error for an HTTP answer to the WebSocket upgrade."""
    import json

    from .errors import from_response

    try:
        parsed = json.loads(body.decode("utf-8")) if body else {}
    except ValueError:
        parsed = {}
    return from_response(status, parsed, None)
