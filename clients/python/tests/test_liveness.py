"""Liveness and cooperative cancel against the real server: heartbeats, stalls,
cancel requests reaching the worker (replies, the control stream), the `with` block."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any, Dict, List

import pytest

import jobwire
from conftest import Server, wait_for


def uid(prefix: str = "lv") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def types(c: jobwire.Client, jid: str) -> List[str]:
    return [e["type"] for e in c.history(jid)]


def watch_in_thread(c: jobwire.Client, jid: str) -> List[Dict[str, Any]]:
    frames: List[Dict[str, Any]] = []
    threading.Thread(target=lambda: frames.extend(c.watch(jid, since=0)), daemon=True).start()
    return frames


def test_liveness_settings_are_checked_and_stored(server: Server) -> None:
    with jobwire.Client(server.url) as c:
        snap = c.create_job(uid(), heartbeat_timeout=30, stall_fail_after=120, cancel_timeout=60)
        assert (snap["heartbeat_timeout"], snap["stall_fail_after"], snap["cancel_timeout"]) == (
            30, 120, 60)
        assert "heartbeat_timeout" not in c.create_job(uid())  # off by default
        for bad in (0, -1, 86401, float("nan"), "30", True):
            with pytest.raises(jobwire.InvalidRequest):
                c.create_job(uid(), heartbeat_timeout=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            c.job(uid(), heartbeat_every=0)
        job = c.job(uid(), cancel_timeout=5)
        job.start()
        assert c.get_job(job.id)["cancel_timeout"] == 5


def test_heartbeat_renews_the_deadline_and_returns_the_cancel_flag(server: Server) -> None:
    with jobwire.Client(server.url, flush_interval=60) as c, jobwire.Client(server.url) as other:
        job = c.job(uid(), heartbeat_timeout=1)
        job.start()
        for _ in range(7):  # 2.1 s of heartbeats, 0.3 s apart: never stalled
            assert job.heartbeat() is False
            time.sleep(0.3)
        assert "stalled" not in types(c, job.id)
        assert types(c, job.id) == ["created", "status"]  # a bare heartbeat stores nothing
        job.progress(30)  # queued: goes out before the heartbeat's own progress
        assert job.heartbeat(progress=40, checkpoint={"frame": 812}) is False
        snap = c.get_job(job.id)
        assert snap["progress"] == 40 and snap["checkpoint"] == {"frame": 812}
        assert [e.get("progress") for e in c.history(job.id) if e["type"] == "progress"] == [
            30, 40]
        assert not job.cancel_requested
        assert other.cancel(job.id).cancel_requested
        assert job.heartbeat() is True and job.cancel_requested
        assert c.heartbeat(job.id) is True  # the client-level call too
        with pytest.raises(jobwire.CancelRequested):
            job.raise_if_cancelled()
        job.confirm_cancelled()
        assert c.get_job(job.id)["status"] == "cancelled"


def test_silent_job_is_seen_stalled_then_recovered(server: Server) -> None:
    with jobwire.Client(server.url) as c:
        job = c.job(uid(), heartbeat_timeout=1)
        job.start()
        frames = watch_in_thread(c, job.id)
        stalled = wait_for(lambda: [f for f in frames if f.get("type") == "stalled"], 3,
                           "a stalled event")
        assert stalled[0]["heartbeat_timeout"] == 1 and stalled[0]["status"] == "in_progress"
        assert "stalled_since" in c.get_job(job.id)
        time.sleep(0.3)
        job.heartbeat()
        rec = wait_for(lambda: [f for f in frames if f.get("type") == "recovered"], 3,
                       "a recovered event")
        assert rec[0]["stalled_for"] >= 0.3 and rec[0]["seq"] > stalled[0]["seq"]
        assert "stalled_since" not in c.get_job(job.id)
        job.complete()
        wait_for(lambda: frames and frames[-1].get("type") == "completed", 3, "the watch's end")


def test_unconfirmed_cancel_and_a_lost_worker_end_by_timeout(server: Server) -> None:
    with jobwire.Client(server.url) as c:
        cancelled = c.job(uid(), cancel_timeout=1)
        cancelled.start()
        lost = c.job(uid(), heartbeat_timeout=0.5, stall_fail_after=0.5)
        lost.start()
        assert not c.cancel(cancelled.id).ended

        def ended() -> bool:
            return all(c.get_job(j.id)["status"] in ("cancelled", "failed")
                       for j in (cancelled, lost))

        wait_for(ended, 4, "both timeouts")
        assert c.get_job(cancelled.id)["error"] == "cancel_timeout"
        assert c.get_job(lost.id)["status"] == "failed"
        assert c.get_job(lost.id)["error"] == "worker_lost"
        with pytest.raises(jobwire.JobTerminal):  # the worker learns it lost the job
            lost.heartbeat()


def test_cancel_from_another_client_reaches_on_cancel_within_a_second(server: Server) -> None:
    with jobwire.Client(server.url) as c, jobwire.Client(server.url) as other:
        job = c.job(uid())
        job.start()
        called: List[float] = []
        fired = threading.Event()

        def stop() -> None:
            called.append(time.monotonic())
            fired.set()

        job.on_cancel(stop)
        time.sleep(0.5)  # the listener is connected: the request arrives live
        assert not called and not job.cancel_requested
        t0 = time.monotonic()
        res = other.cancel(job.id, reason="user clicked stop")
        assert (res.ended, res.status, res.cancel_requested) == (False, "in_progress", True)
        assert fired.wait(1.0), "on_cancel not called within 1 s"
        assert called[0] - t0 < 1.0
        assert job.cancel_requested
        with pytest.raises(jobwire.CancelRequested) as ei:
            job.raise_if_cancelled()
        assert ei.value.reason == "user clicked stop" and ei.value.job_id == job.id
        assert other.cancel(job.id).seq == res.seq  # asked twice: one request
        late: List[int] = []
        job.on_cancel(lambda: late.append(1))  # added after the request: called at once
        wait_for(lambda: late, 2, "the late callback")
        job.confirm_cancelled()
        snap = c.get_job(job.id)
        assert snap["status"] == "cancelled" and snap["cancel_requested"]["reason"] == (
            "user clicked stop")
        listener = job._listener
        assert listener is not None
        listener.join(3)
        assert not listener.is_alive()  # the stream ended with the job
        assert len(called) == 1


def test_on_cancel_when_the_request_came_before_the_listener(server: Server) -> None:
    with jobwire.Client(server.url) as c:
        job = c.job(uid())
        job.start()
        c.cancel(job.id, reason="early")
        fired = threading.Event()
        job.on_cancel(fired.set)  # the first frame of the stream says it is requested
        assert fired.wait(1.0)
        assert job.cancel_requested
        job.confirm_cancelled()


def test_raise_if_cancelled_inside_with_ends_the_job_cancelled(server: Server) -> None:
    with jobwire.Client(server.url) as c, jobwire.Client(server.url) as other:
        reached = False
        with c.job(uid()) as job:
            for i in range(100):
                if i == 3:
                    other.cancel(job.id, reason="no longer needed")
                job.heartbeat(progress=i)
                job.raise_if_cancelled()
                time.sleep(0.01)
        reached = True  # CancelRequested of this job stops at the with block
        assert reached
        snap = c.get_job(job.id)
        assert snap["status"] == "cancelled" and snap["progress"] == 3
        evs = list(c.history(job.id))
        # the heartbeat after the request carried progress 3, and told the worker
        assert [e["type"] for e in evs[-3:]] == ["cancel_requested", "progress", "cancelled"]
        assert c.get_job(job.id)["cancel_requested"]["reason"] == "no longer needed"


def test_other_exceptions_after_a_cancel_end_cancelled_and_propagate(server: Server) -> None:
    with jobwire.Client(server.url) as c:
        with pytest.raises(KeyError), c.job(uid()) as job:
            c.cancel(job.id)
            job.heartbeat()
            raise KeyError("the subprocess was killed")
        assert c.get_job(job.id)["status"] == "cancelled"
        assert any(e["type"] == "log" and e["level"] == "error" for e in c.history(job.id))
        # Without a cancel request an exception still fails the job.
        with pytest.raises(KeyError), c.job(uid()) as j2:
            raise KeyError("x")
        assert c.get_job(j2.id)["status"] == "failed"
        # Another job's CancelRequested is an ordinary exception here.
        with pytest.raises(jobwire.CancelRequested), c.job(uid()) as j3:
            raise jobwire.CancelRequested(job_id="some-other-job")
        assert c.get_job(j3.id)["status"] == "failed"


def test_publish_replies_carry_the_cancel_flag(server: Server) -> None:
    with jobwire.Client(server.url, flush_interval=0.05) as c, \
            jobwire.Client(server.url) as other:
        job = c.job(uid())
        job.start()
        job.step("a")
        assert not job.cancel_requested
        other.cancel(job.id)
        job.step("b")  # an immediate call: its reply says so
        assert job.cancel_requested
        j2 = c.job(uid())
        j2.start()
        other.cancel(j2.id)
        j2.progress(10)  # queued: the background flusher's reply says so
        wait_for(lambda: j2.cancel_requested, 2, "the flusher's reply")
        job.confirm_cancelled()
        j2.confirm_cancelled()


def test_heartbeat_on_unknown_and_terminal_jobs(server: Server) -> None:
    with jobwire.Client(server.url) as c:
        with pytest.raises(jobwire.JobNotFound) as ei:
            c.job(uid("ghost"), create=False).heartbeat()
        assert ei.value.code == "job_not_found" and ei.value.http_status == 404
        with pytest.raises(jobwire.JobNotFound):
            c.heartbeat(uid("ghost"))
        job = c.job(uid())
        job.complete()
        with pytest.raises(jobwire.JobTerminal) as et:
            c.job(job.id, create=False).heartbeat()
        assert et.value.code == "job_terminal" and et.value.http_status == 409
        with pytest.raises(jobwire.InvalidEvent):
            c.heartbeat(job.id, progress=120)  # refused before sending


def test_cancel_results_pending_forced_and_terminal(server: Server) -> None:
    with jobwire.Client(server.url) as c:
        pending = c.create_job(uid())["id"]
        res = c.cancel(pending, reason="not needed")
        assert res.ended and res.status == "cancelled" and res.seq == 2
        running = c.job(uid())
        running.start()
        forced = c.cancel(running.id, force=True)
        assert forced.ended and c.get_job(running.id)["status"] == "cancelled"
        with pytest.raises(jobwire.JobTerminal):
            c.cancel(running.id)


def test_heartbeat_every_keeps_a_busy_job_alive(server: Server) -> None:
    with jobwire.Client(server.url) as c:
        with c.job(uid(), heartbeat_timeout=1, heartbeat_every=0.3) as job:
            time.sleep(2.0)  # no call at all: the background heartbeat covers it
        assert "stalled" not in types(c, job.id)
        assert job._beater is None
        assert not [t for t in threading.enumerate() if t.name == f"jobwire-beat-{job.id}"]
        # Control: the same silence without heartbeat_every stalls.
        with c.job(uid(), heartbeat_timeout=1) as j2:
            wait_for(lambda: "stalled_since" in c.get_job(j2.id), 3, "a stall")


def test_async_heartbeat_on_cancel_and_with(server: Server) -> None:
    async def main() -> None:
        async with jobwire.AsyncClient(server.url) as c, jobwire.AsyncClient(server.url) as other:
            fired = asyncio.Event()

            async def stop() -> None:
                fired.set()

            async with c.job(uid(), heartbeat_timeout=1, heartbeat_every=0.3) as job:
                job.on_cancel(stop)
                assert await job.heartbeat(progress=5) is False
                await asyncio.sleep(1.5)  # the heartbeat task keeps it alive
                await asyncio.sleep(0.2)
                t0 = time.monotonic()
                res = await other.cancel(job.id, reason="async stop")
                assert not res.ended
                await asyncio.wait_for(fired.wait(), 1.0)
                assert time.monotonic() - t0 < 1.0 and job.cancel_requested
                job.raise_if_cancelled()
            snap = await c.get_job(job.id)
            assert snap["status"] == "cancelled"
            evs = [e async for e in c.history(job.id)]
            assert "stalled" not in [e["type"] for e in evs]
            assert evs[-1]["type"] == "cancelled"
            assert snap["cancel_requested"]["reason"] == "async stop"
            with pytest.raises(jobwire.JobNotFound):
                await c.job(uid("ghost"), create=False).heartbeat()

    asyncio.run(main())


def test_on_cancel_listener_reconnects_after_a_server_restart(fresh_server: Server) -> None:
    with jobwire.Client(fresh_server.url) as c:
        job = c.job(uid())
        job.start()
        fired = threading.Event()
        job.on_cancel(fired.set)
        time.sleep(0.3)
        fresh_server.kill9()
        fresh_server.start()  # same port and data: the job is still in progress
        res = c.cancel(job.id, reason="after restart")
        assert not res.ended
        assert fired.wait(3.0), "the listener did not come back"
        job.confirm_cancelled()
