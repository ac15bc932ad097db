"""Test support: the real jobwire binary on an ephemeral port, JWTs, free ports.

The binary comes from $JOBWIRE_BIN (default <repo>/target/debug/jobwire); a missing
binary fails the suite loudly instead of skipping it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[3]
SECRET = "test-secret-0123456789-0123456789-abcdef"


def jobwire_bin() -> str:
    path = os.environ.get("JOBWIRE_BIN") or str(REPO / "target" / "debug" / "jobwire")
    if not os.access(path, os.X_OK):
        pytest.fail(f"jobwire binary not found at {path}: build it (cargo build) or set JOBWIRE_BIN",
                    pytrace=False)
    return path


class Server:
    """One `jobwire serve` process; `kill9()` + `start()` restarts it on the same port and data."""

    def __init__(self, args: Optional[List[str]] = None,
                 env: Optional[Dict[str, str]] = None) -> None:
        self.args = args or []
        self.env = env  # extra environment of the next start() (e.g. test hooks)
        self.tmp = tempfile.TemporaryDirectory(prefix="jw-py-")
        self.data_dir = os.path.join(self.tmp.name, "data")
        self.port = 0
        self.proc: Optional[subprocess.Popen[str]] = None
        self.log = open(os.path.join(self.tmp.name, "server.log"), "a")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> Server:
        cmd = [jobwire_bin(), "serve", "--listen", f"127.0.0.1:{self.port}",
               "--data-dir", self.data_dir, *self.args]
        deadline = time.monotonic() + timeout
        while True:
            env = {**os.environ, **self.env} if self.env else None
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                         env=env)
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                break
            self.proc.wait()
            if time.monotonic() > deadline:  # e.g. the old port not yet free after a kill
                raise RuntimeError(f"jobwire did not start: {line!r}; see {self.log.name}")
            time.sleep(0.1)
        self.port = int(m.group(1))
        out = self.proc.stdout
        threading.Thread(target=lambda: [None for _ in out], daemon=True).start()
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def close(self) -> None:
        self.stop()
        self.log.close()
        self.tmp.cleanup()


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """A development-mode server shared by the tests that do not restart it."""
    s = Server(["--heartbeat-interval", "1s"]).start()
    yield s
    s.close()


@pytest.fixture
def fresh_server() -> Iterator[Server]:
    s = Server(["--heartbeat-interval", "1s"]).start()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("JOBWIRE_URL", "JOBWIRE_TOKEN", "JOBWIRE_API_KEY"):
        monkeypatch.delenv(k, raising=False)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims: Dict[str, Any], secret: str = SECRET) -> str:
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


def token(exp_in: float = 3600, scope: str = "jobs:admin", tenant: str = "acme",
          sub: str = "worker") -> str:
    return make_jwt({"sub": sub, "tenant": tenant, "scope": scope,
                     "exp": int(time.time() + exp_in)})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(pred: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
