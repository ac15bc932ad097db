"""Delivery through failures: kill -9 and restart, rate limits, token expiry, API keys."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Dict, List

import httpx
import pytest

import jobwire
from conftest import SECRET, Server, free_port, token, wait_for


def uid(prefix: str = "d") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_kill9_while_a_worker_publishes_loses_nothing_and_repeats_nothing(
    fresh_server: Server,
) -> None:
    s = fresh_server
    n = 3000
    with jobwire.Client(s.url, flush_interval=0.02, max_batch=50) as c:
        job = c.job(uid(), project="crash")
        job.start()
        done = threading.Event()

        def worker() -> None:
            for i in range(n):
                job.log(f"line {i}")
                job.progress(current=i + 1, total=n)
                if i % 10 == 0:
                    time.sleep(0.005)  # about 1.5 s of work, so the kill lands mid-stream
            done.set()

        t = threading.Thread(target=worker)
        t.start()
        # Kill once some batches are acknowledged and the worker is still sending.
        wait_for(lambda: job.last_seq > 300, 10, "first batches")
        assert not done.is_set()
        s.kill9()
        time.sleep(0.5)
        s.start()
        assert done.wait(30)
        t.join()
        job.complete({"lines": n})
        evs = list(c.history(job.id))
        lines = [e["line"] for e in evs if e["type"] == "log"]
        assert lines == [f"line {i}" for i in range(n)]  # every line once, in order
        assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
        ids = [e["event_id"] for e in evs if "event_id" in e]
        assert len(ids) == len(set(ids))
        prog = [e["progress"] for e in evs if e["type"] == "progress"]
        assert prog == sorted(prog) and prog[-1] == 100.0
        assert evs[-1]["type"] == "completed"
        assert job.errors == []


def test_direct_call_exhausts_retries_then_the_queued_event_is_delivered_once() -> None:
    port = free_port()
    c = jobwire.Client(f"http://127.0.0.1:{port}",
                       retry=jobwire.RetryPolicy(attempts=2, base=0.01), flush_interval=60)
    job = c.job(uid())
    job.log("first")
    with pytest.raises(jobwire.DeliveryError) as ei:
        job.step("render")
    assert isinstance(ei.value, jobwire.TransportError) and ei.value.pending == 2
    s = Server(["--heartbeat-interval", "1s"])
    s.port = port
    s.start()
    try:
        job.step("encode")
        job.complete()
        evs = [(e["type"], e.get("line") or e.get("step")) for e in c.history(job.id)]
        assert evs == [("created", None), ("log", "first"), ("step", "render"),
                       ("step", "encode"), ("completed", None)]
        c.close()
    finally:
        s.close()


def test_publish_retries_through_a_restart_with_the_same_event_ids(fresh_server: Server) -> None:
    s = fresh_server
    c = jobwire.Client(s.url, retry=jobwire.RetryPolicy(attempts=20, base=0.1, max_delay=0.5))
    jid = c.create_job(uid())["id"]
    s.kill9()
    out: Dict[str, Any] = {}

    def publish() -> None:
        out["seqs"] = c.publish(jid, [{"type": "log", "line": "a"}, {"type": "log", "line": "b"}])

    t = threading.Thread(target=publish)
    t.start()
    time.sleep(0.5)
    s.start()
    t.join(20)
    assert out["seqs"] == [2, 3]
    assert [e["seq"] for e in c.history(jid)] == [1, 2, 3]
    c.close()


@pytest.fixture
def limited() -> Any:
    s = Server(["--publish-rate", "5", "--publish-burst", "5"]).start()
    yield s
    s.close()


def test_rate_limited_is_typed_with_retry_after_and_retried_after_it(limited: Server) -> None:
    once = jobwire.Client(limited.url, retry=jobwire.RetryPolicy(attempts=1))
    jid = once.create_job(uid())["id"]  # costs 1 of the bucket of 5
    once.publish(jid, [{"type": "log", "line": str(i)} for i in range(4)])
    with pytest.raises(jobwire.RateLimited) as ei:
        once.publish(jid, {"type": "log", "line": "over"})
    e = ei.value
    assert (e.code, e.number, e.http_status) == ("rate_limited", 3007, 429)
    assert e.retry_after is not None and e.retry_after >= 1
    # The default policy waits Retry-After and then succeeds; the refused call stored nothing.
    patient = jobwire.Client(limited.url)
    t0 = time.monotonic()
    patient.publish(jid, [{"type": "log", "line": "x"} for _ in range(5)])
    patient.publish(jid, {"type": "log", "line": "late"})
    assert time.monotonic() - t0 >= 0.9
    lines = [ev["line"] for ev in patient.history(jid) if ev["type"] == "log"]
    assert lines == ["0", "1", "2", "3", "x", "x", "x", "x", "x", "late"]
    once.close()
    patient.close()


@pytest.fixture
def auth_server() -> Any:
    s = Server(["--jwt-secret", SECRET, "--heartbeat-interval", "1s"]).start()
    yield s
    s.close()


def test_expired_token_is_typed_and_a_token_callable_is_refreshed(auth_server: Server) -> None:
    u = auth_server.url
    with pytest.raises(jobwire.Unauthorized):
        jobwire.Client(u).create_job(uid())
    with pytest.raises(jobwire.TokenExpired) as ei:
        jobwire.Client(u, token=token(exp_in=-60)).create_job(uid())
    assert (ei.value.code, ei.value.number, ei.value.http_status) == ("token_expired", 3002, 401)
    calls: List[float] = []

    def provider() -> str:
        calls.append(time.time())
        return token(exp_in=-60 if len(calls) == 1 else 3600)

    c = jobwire.Client(u, token=provider)
    assert c.create_job(uid())["status"] == "pending"
    assert len(calls) == 2
    c.close()


def test_watch_survives_token_expiry_with_a_token_callable(auth_server: Server) -> None:
    admin = jobwire.Client(auth_server.url, token=token())
    jid = admin.create_job(uid())["id"]
    admin.publish(jid, {"type": "status", "status": "in_progress"})
    tokens: List[str] = []

    def provider() -> str:
        tokens.append(token(exp_in=1))  # the server adds 5 s of leeway
        return tokens[-1]

    watcher = jobwire.Client(auth_server.url, token=provider)
    frames: List[Dict[str, Any]] = []
    t = threading.Thread(target=lambda: frames.extend(watcher.watch(jid, since=0)), daemon=True)
    t.start()
    deadline = time.monotonic() + 9
    i = 0
    while time.monotonic() < deadline:
        admin.publish(jid, {"type": "log", "line": f"l{i}"})
        i += 1
        time.sleep(0.05)
    admin.publish(jid, {"type": "completed"})
    t.join(20)
    assert not t.is_alive()
    assert len(tokens) >= 2  # it reconnected with a fresh token after the 4501 close
    assert [f["seq"] for f in frames[1:]] == list(range(1, i + 4))
    admin.close()
    watcher.close()


def test_api_key_goes_in_the_bearer_header(auth_server: Server,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    r = httpx.post(f"{auth_server.url}/v1/keys", json={"scopes": ["jobs:admin"]},
                   headers={"Authorization": f"Bearer {token()}"})
    assert r.status_code == 201, r.text
    monkeypatch.setenv("JOBWIRE_URL", auth_server.url)
    monkeypatch.setenv("JOBWIRE_API_KEY", r.json()["secret"])
    with jobwire.Client() as c:
        job = c.job(uid())
        job.log("via key")
        job.complete()
        assert c.get_job(job.id)["status"] == "completed"
    with pytest.raises(jobwire.InvalidApiKey):
        jobwire.Client(auth_server.url, api_key="jwk_aaaaaaaaaaaa_" + "b" * 43).get_job("x")


def test_async_worker_rides_out_a_kill9(fresh_server: Server) -> None:
    import asyncio

    s = fresh_server
    n = 1500

    async def main() -> List[str]:
        async with jobwire.AsyncClient(s.url, flush_interval=0.02, max_batch=50) as c:
            job = c.job(uid("a"))
            await job.start()
            for i in range(n):
                await job.log(f"line {i}")
                if i == 500:
                    s.kill9()  # lines 500-999 are queued while the server is down
                    assert job.last_seq > 2  # some batches had landed before
                if i == 1000:
                    assert job._retries > 0  # the flusher tried and backed off
                    s.start()
                if i % 20 == 0:
                    await asyncio.sleep(0.01)
            await job.complete()
            return [e["line"] async for e in c.history(job.id) if e["type"] == "log"]

    assert asyncio.run(main()) == [f"line {i}" for i in range(n)]


def test_exit_hook_delivers_what_is_queued(server: Server) -> None:
    import subprocess
    import sys

    jid = uid("exit")
    code = (
        "import jobwire\n"
        f"c = jobwire.Client({server.url!r}, flush_interval=60)\n"
        f"j = c.job({jid!r})\n"
        "for i in range(300): j.log(str(i))\n"
        "j.progress(50)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
    with jobwire.Client(server.url) as c:
        snap = c.get_job(jid)
        assert snap["log_count"] == 300 and snap["progress"] == 50.0


class LossyProxy:
    """A TCP proxy that forwards requests but swallows the first `drop` replies (closing
    the connection instead), as when a reply is lost after the server committed."""

    def __init__(self, upstream_port: int, drop: int) -> None:
        import socket

        self.upstream = upstream_port
        self.drop = drop
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pipe, args=(client, up, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(up, client, True), daemon=True).start()

    def _pipe(self, src: Any, dst: Any, is_reply: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if is_reply:
                    with self.lock:
                        swallow = self.drop > 0
                        if swallow:
                            self.drop -= 1
                    if swallow:
                        break  # the reply is lost; close both sides
                dst.sendall(data)
        except OSError:
            pass
        import socket

        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes the other direction's recv, sends FIN
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.sock.close()


def test_a_lost_reply_is_retried_and_stored_once(server: Server) -> None:
    direct = jobwire.Client(server.url)
    jid = direct.create_job(uid("lost"))["id"]
    proxy = LossyProxy(server.port, drop=1)
    try:
        c = jobwire.Client(f"http://127.0.0.1:{proxy.port}",
                           retry=jobwire.RetryPolicy(attempts=3, base=0.05))
        seqs = c.publish(jid, [{"type": "log", "line": "a"}, {"type": "log", "line": "b"}])
        assert seqs == [2, 3]  # the retry got the seqs of the first, committed attempt
        assert proxy.drop == 0
        job = c.job(jid, create=False)
        proxy.drop = 1
        for i in range(10):
            job.log(f"q{i}")
        job.flush()
        c.close()
    finally:
        proxy.close()
    lines = [e["line"] for e in direct.history(jid) if e["type"] == "log"]
    assert lines == ["a", "b"] + [f"q{i}" for i in range(10)]
    direct.close()
