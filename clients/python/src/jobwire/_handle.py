"""Building the events of a worker's handle, shared by `Job` and `AsyncJob` (no I/O)."""

from __future__ import annotations

import traceback
from types import TracebackType
from typing import Any, Dict, List, Mapping, Optional, Type

from ._core import check_json, check_progress, progress_from
from .errors import InvalidEvent


def progress_value(value: Any, current: Any, total: Any) -> float:
    if value is not None:
        if current is not None or total is not None:
            raise InvalidEvent("give progress as a percentage or as current/total, not both")
        return check_progress(value)
    if current is None or total is None:
        raise InvalidEvent("progress needs a percentage or both current= and total=")
    return progress_from(current, total)


def check_meta(metadata: Optional[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise InvalidEvent("metadata must be a dict")
    check_json(metadata, "metadata")
    return dict(metadata)


def opt_str(value: Any, what: str) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    raise InvalidEvent(f"{what} must be a string, got {type(value).__name__}")


def status_event(status: str, message: Optional[str]) -> Dict[str, Any]:
    if status in ("completed", "failed", "cancelled"):
        raise InvalidEvent(f"use complete(), fail() or cancel() for {status!r}")
    if status not in ("queued", "in_progress"):
        raise InvalidEvent(f"a status event sets 'queued' or 'in_progress', not {status!r}")
    ev: Dict[str, Any] = {"type": "status", "status": status}
    if message is not None:
        ev["message"] = opt_str(message, "message")
    return ev


def step_event(name: str, label: Optional[str], message: Optional[str]) -> Dict[str, Any]:
    if not isinstance(name, str) or not name:
        raise InvalidEvent("a step needs a non-empty name")
    ev: Dict[str, Any] = {"type": "step", "step": name}
    if label is not None:
        ev["label"] = opt_str(label, "label")
    if message is not None:
        ev["message"] = opt_str(message, "message")
    return ev


def log_event(line: Any, level: Optional[str]) -> Dict[str, Any]:
    if not isinstance(line, str):
        raise InvalidEvent(f"a log line must be a string, got {type(line).__name__}")
    ev: Dict[str, Any] = {"type": "log", "line": line}
    if level is not None:
        ev["level"] = opt_str(level, "level")
    return ev


def custom_event(name: str, data: Any) -> Dict[str, Any]:
    if not isinstance(name, str) or not name:
        raise InvalidEvent("a custom event needs a non-empty name")
    ev: Dict[str, Any] = {"type": "custom", "name": name}
    if data is not None:
        check_json(data, "custom data")
        ev["data"] = data
    return ev


def with_meta(ev: Dict[str, Any], metadata: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    meta = check_meta(metadata)
    if meta:
        ev["metadata"] = meta
    return ev


def completed_event(result: Any, message: Optional[str]) -> Dict[str, Any]:
    ev: Dict[str, Any] = {"type": "completed"}
    if result is not None:
        check_json(result, "result")
        ev["result"] = result
    if message is not None:
        ev["message"] = opt_str(message, "message")
    return ev


def failed_event(error: Any, message: Optional[str]) -> Dict[str, Any]:
    if isinstance(error, BaseException):
        error = f"{type(error).__name__}: {error}"
    if not isinstance(error, str) or not error:
        raise InvalidEvent("fail() needs a non-empty error string or an exception")
    ev: Dict[str, Any] = {"type": "failed", "error": error}
    if message is not None:
        ev["message"] = opt_str(message, "message")
    return ev


def exception_events(
    exc_type: Type[BaseException], exc: BaseException, tb: Optional[TracebackType]
) -> List[Dict[str, Any]]:
    """The traceback as error-level log lines, then the failed event (type and message)."""
    lines: List[Dict[str, Any]] = []
    for chunk in traceback.format_exception(exc_type, exc, tb):
        for line in chunk.rstrip("\n").split("\n"):
            lines.append({"type": "log", "line": line, "level": "error"})
    msg = str(exc)
    error = f"{exc_type.__name__}: {msg}" if msg else exc_type.__name__
    lines.append({"type": "failed", "error": error})
    return lines
