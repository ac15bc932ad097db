"""The sync Client against the real server: CRUD, publish, history, list, cancel, watch."""

from __future__ import annotations

import threading
import uuid
from typing import Any, Dict, List

import pytest

import jobwire
from conftest import Server, wait_for


def uid(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_create_get_is_idempotent_and_reads_env(server: Server, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    monkeypatch.setenv("JOBWIRE_URL", server.url)
    with jobwire.Client() as c:
        jid = uid()
        snap = c.create_job(jid, project="video", metadata={"owner": "ana"})
        assert (snap["id"], snap["status"], snap["seq"]) == (jid, "pending", 1)
        again = c.create_job(jid, project="video", metadata={"owner": "ana"})
        assert again["seq"] == 1
        with pytest.raises(jobwire.JobExists) as ei:
            c.create_job(jid, project="other")
        assert (ei.value.code, ei.value.number, ei.value.http_status) == ("job_exists", 2002, 409)
        assert c.get_job(jid)["metadata"] == {"owner": "ana"}
        # A create without id gets an id made by the SDK (so a retry cannot make two jobs).
        auto = c.create_job()
        assert len(auto["id"]) == 32


def test_publish_single_and_batch_with_stable_event_ids(server: Server) -> None:
    with jobwire.Client(server.url) as c:
        jid = c.create_job(uid())["id"]
        assert c.publish(jid, {"type": "progress", "progress": 10}) == [2]
        seqs = c.publish(jid, [{"type": "log", "line": "a"}, {"type": "step", "step": "s1"}])
        assert seqs == [3, 4]
        # An explicit event_id makes a retry a no-op that answers the original seq.
        ev = {"type": "log", "line": "once", "event_id": "my-key"}
        assert c.publish(jid, ev) == c.publish(jid, ev) == [5]
        hist = list(c.history(jid))
        assert [e["seq"] for e in hist] == [1, 2, 3, 4, 5]
        assert all("event_id" in e for e in hist[1:])  # the SDK stamped every event
        assert [e["seq"] for e in c.history(jid, since=3)] == [4, 5]


def test_server_errors_are_typed(server: Server) -> None:
    with jobwire.Client(server.url) as c:
        with pytest.raises(jobwire.JobNotFound) as ei:
            c.publish(uid("missing"), {"type": "log", "line": "x"})
        assert ei.value.code == "job_not_found" and ei.value.number == 2001
        jid = c.create_job(uid())["id"]
        with pytest.raises(jobwire.InvalidTransition):
            c.publish(jid, {"type": "completed"})  # pending -> completed is refused
        with pytest.raises(jobwire.InvalidEvent):
            c.publish(jid, {"type": "progress", "progress": 50, "bogus": 1})  # server check
        with pytest.raises(jobwire.InvalidEvent):
            c.publish(jid, {"type": "progress", "progress": 150})  # client check
        with pytest.raises(jobwire.InvalidJobId):
            c.get_job("bad id!")
        c.cancel(jid, reason="stop")
        with pytest.raises(jobwire.JobTerminal):
            c.publish(jid, {"type": "log", "line": "late"})
        assert c.get_job(jid)["status"] == "cancelled"


def test_list_jobs_iterates_every_page(server: Server) -> None:
    project = uid("proj")
    with jobwire.Client(server.url) as c:
        ids = sorted(c.create_job(uid(), project=project)["id"] for _ in range(7))
        got = [j["id"] for j in c.list_jobs(project=project, page_size=2)]
        assert got == ids
        c.cancel(ids[0])
        assert [j["id"] for j in c.list_jobs(project=project, status="cancelled")] == ids[:1]


def test_history_pages_through_long_histories(server: Server) -> None:
    with jobwire.Client(server.url) as c:
        jid = c.create_job(uid())["id"]
        for i in range(3):
            c.publish(jid, [{"type": "log", "line": f"{i}-{k}"} for k in range(1000)])
        seqs = [e["seq"] for e in c.history(jid, page_size=700)]
        assert seqs == list(range(1, 3002))


def test_watch_yields_snapshot_then_events_in_order_and_ends(server: Server) -> None:
    with jobwire.Client(server.url) as c:
        jid = c.create_job(uid())["id"]
        c.publish(jid, {"type": "log", "line": "before"})
        frames: List[Dict[str, Any]] = []
        started = threading.Event()

        def watcher() -> None:
            for f in c.watch(jid, since=0):
                frames.append(f)
                started.set()

        t = threading.Thread(target=watcher, daemon=True)
        t.start()
        started.wait(5)
        c.publish(jid, [{"type": "progress", "progress": 50}, {"type": "log", "line": "x"}])
        c.publish(jid, {"type": "completed", "result": {"ok": True}})
        t.join(10)
        assert not t.is_alive()
        assert frames[0]["type"] == "snapshot"
        assert [f["seq"] for f in frames[1:]] == [1, 2, 3, 4, 5]
        assert frames[-1]["type"] == "completed"
        # A finished job: snapshot, replay, then the watch ends by itself.
        again = list(c.watch(jid, since=3))
        assert [f.get("seq") for f in again[1:]] == [4, 5]
        assert list(c.watch(jid))[0]["job"]["status"] == "completed"


def test_watch_unknown_job_raises_job_not_found(server: Server) -> None:
    with jobwire.Client(server.url) as c, pytest.raises(jobwire.JobNotFound):
        list(c.watch(uid("nope")))


def test_watch_resumes_across_a_server_restart_without_loss_or_duplicate(
    fresh_server: Server,
) -> None:
    s = fresh_server
    with jobwire.Client(s.url) as c:
        jid = c.create_job(uid())["id"]
        frames: List[Dict[str, Any]] = []
        seen = threading.Event()

        def watcher() -> None:
            for f in c.watch(jid):
                frames.append(f)
                if f.get("seq") == 3:
                    seen.set()

        t = threading.Thread(target=watcher, daemon=True)
        t.start()
        wait_for(lambda: frames, what="snapshot")
        c.publish(jid, [{"type": "log", "line": "a"}, {"type": "log", "line": "b"}])
        assert seen.wait(5)
        s.kill9()
        s.start()
        c.publish(jid, [{"type": "log", "line": f"after-{i}"} for i in range(5)])
        c.publish(jid, {"type": "failed", "error": "boom"})
        t.join(20)
        assert not t.is_alive()
        assert [f["seq"] for f in frames[1:]] == list(range(2, 10))
        assert frames[-1]["type"] == "failed"
