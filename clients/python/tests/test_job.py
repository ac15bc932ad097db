"""The worker's handle: batching, coalescing, order, the context manager, typed input errors."""

from __future__ import annotations

import time
import uuid

import pytest

import jobwire
from conftest import Server, wait_for


def uid(prefix: str = "j") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def types(c: jobwire.Client, jid: str) -> list:
    return [e["type"] for e in c.history(jid)]


def test_handle_creates_the_job_and_sends_in_call_order(server: Server) -> None:
    with jobwire.Client(server.url) as c:
        job = c.job(uid(), project="video", metadata={"owner": "ana"})
        job.start()
        job.progress(10, stage="decode")
        job.log("decoded")
        job.step("render", "Render frames")
        job.progress(current=900, total=2000, message="frame 900/2000")
        job.custom("rc_analysis_progress", {"chunks": 128})
        job.complete({"url": "s3://x"})
        evs = list(c.history(job.id))
        assert [e["type"] for e in evs] == [
            "created", "status", "progress", "log", "step", "progress", "custom", "completed"]
        assert evs[5]["progress"] == 45.0 and evs[5]["message"] == "frame 900/2000"
        snap = c.get_job(job.id)
        assert snap["project"] == "video" and snap["result"] == {"url": "s3://x"}
        assert c.job(job.id) is not job  # a finished handle is forgotten by the client


def test_progress_coalesces_and_logs_batch_in_one_request(server: Server) -> None:
    with jobwire.Client(server.url, flush_interval=60) as c:  # only explicit flushes
        job = c.job(uid())
        job.start()
        for i in range(1000):
            job.progress(i / 10, metadata={"i": i} if i % 100 == 0 else None)
        job.log("a")
        job.log("b")
        job.progress(99.5, stage="final")
        job.flush()
        evs = list(c.history(job.id))
        assert [e["type"] for e in evs] == ["created", "status", "progress", "log", "log",
                                            "progress"]
        assert evs[2]["progress"] == 99.9
        assert evs[2]["metadata"] == {"i": 900}  # merged as the server would have folded it
        assert evs[3]["timestamp"] == evs[5]["timestamp"]  # one batch: one commit group
        assert c.get_job(job.id)["progress"] == 99.5


def test_background_flusher_sends_without_an_explicit_flush(server: Server) -> None:
    with jobwire.Client(server.url, flush_interval=0.05) as c:
        job = c.job(uid())
        job.log("queued only")

        def logged() -> bool:
            try:
                return bool(c.get_job(job.id)["log_count"] == 1)
            except jobwire.JobNotFound:
                return False

        wait_for(logged, 5, "the flusher")


def test_max_batch_bounds_each_request(server: Server) -> None:
    import json

    with jobwire.Client(server.url, flush_interval=60, max_batch=10) as c:
        sizes = []
        real = c._send_once

        def spy(req):  # type: ignore[no-untyped-def]
            if req.path.endswith("/events") and req.method == "POST":
                sizes.append(len(json.loads(req.body)))
            return real(req)

        c._send_once = spy  # type: ignore[method-assign]
        job = c.job(uid())
        for i in range(35):
            job.log(f"l{i}")
        job.flush()
        assert sizes == [10, 10, 10, 5]
        lines = [e["line"] for e in c.history(job.id) if e["type"] == "log"]
        assert lines == [f"l{i}" for i in range(35)]


def test_context_manager_completes_on_normal_exit(server: Server) -> None:
    with jobwire.Client(server.url) as c:
        with c.job(uid()) as job:
            job.progress(50)
        assert c.get_job(job.id)["status"] == "completed"


def test_context_manager_fails_with_type_message_and_traceback_then_reraises(
    server: Server,
) -> None:
    with jobwire.Client(server.url) as c:
        with pytest.raises(KeyError), c.job(uid()) as job:
            job.log("working")

            def inner() -> None:
                raise KeyError("frame 7")

            inner()
        snap = c.get_job(job.id)
        assert snap["status"] == "failed"
        assert snap["error"] == "KeyError: 'frame 7'"
        lines = [e["line"] for e in c.history(job.id) if e["type"] == "log"]
        assert lines[0] == "working"
        assert lines[1].startswith("Traceback (most recent call last)")
        assert any("in inner" in ln for ln in lines) and lines[-1] == "KeyError: 'frame 7'"


def test_complete_on_a_fresh_handle_starts_it_first_and_tolerates_started(server: Server) -> None:
    with jobwire.Client(server.url) as c:
        jid = c.create_job(uid())["id"]
        c.publish(jid, {"type": "status", "status": "in_progress"})
        job = c.job(jid, create=False)
        job.start()  # already in_progress: no error
        job.complete("done")
        assert types(c, jid) == ["created", "status", "completed"]


def test_bad_input_gets_typed_errors_before_sending(server: Server) -> None:
    with jobwire.Client(server.url) as c:
        job = c.job(uid())
        with pytest.raises(jobwire.InvalidEvent):
            job.progress(101)
        with pytest.raises(jobwire.InvalidEvent):
            job.progress(-1)
        with pytest.raises(jobwire.InvalidEvent):
            job.progress(float("nan"))
        with pytest.raises(jobwire.InvalidEvent):
            job.progress(current=3, total=2)
        with pytest.raises(jobwire.InvalidEvent):
            job.progress(current=1, total=0)
        with pytest.raises(ValueError):  # InvalidEvent is also a ValueError
            job.progress("50")  # type: ignore[arg-type]
        with pytest.raises(jobwire.InvalidEvent, match="result is not JSON-serialisable"):
            job.complete({"when": object()})
        with pytest.raises(jobwire.InvalidEvent):
            job.status("completed")
        with pytest.raises(jobwire.InvalidEvent):
            job.log(b"bytes")  # type: ignore[arg-type]
        with pytest.raises(jobwire.InvalidJobId):
            c.job("has space")
        # Nothing of the refused calls reached the server: the job does not even exist.
        with pytest.raises(jobwire.JobNotFound):
            c.get_job(job.id)
        job.complete({"when": "now"})  # still usable
        assert c.get_job(job.id)["status"] == "completed"


def test_server_refusals_of_immediate_calls_raise_typed(server: Server) -> None:
    with jobwire.Client(server.url) as c:
        job = c.job(uid())
        job.complete()
        with pytest.raises(jobwire.JobTerminal):
            c.job(job.id, create=False).step("late")
        other = c.job(uid(), create=False)
        with pytest.raises(jobwire.JobNotFound):
            other.step("x")


def test_refused_queued_events_do_not_block_later_ones(server: Server) -> None:
    with jobwire.Client(server.url, flush_interval=60) as c:
        jid = c.create_job(uid())["id"]
        job = c.job(jid, create=False)
        job.log("one")
        job.status("queued")  # fine: pending -> queued
        job.log("two")
        with pytest.raises(jobwire.InvalidTransition):
            job.status("queued")  # refused (already queued); the log before it is kept
        job.log("three")
        job.flush()
        evs = [(e["type"], e.get("line")) for e in c.history(jid)]
        assert evs == [("created", None), ("log", "one"), ("status", None), ("log", "two"),
                       ("log", "three")]


def test_async_client_and_job(server: Server) -> None:
    import asyncio

    async def main() -> None:
        async with jobwire.AsyncClient(server.url) as c:
            async with c.job(uid(), project="p") as job:
                await job.progress(current=1, total=4)
                await job.log("x")
                await job.step("s", "S")
            snap = await c.get_job(job.id)
            assert snap["status"] == "completed" and snap["completed_steps"] == ["s"]
            evs = [e["type"] async for e in c.history(job.id)]
            assert evs == ["created", "status", "progress", "log", "step", "completed"]
            with pytest.raises(RuntimeError):
                async with c.job(uid()) as j2:
                    await j2.log("before")
                    raise RuntimeError("no gpu")
            assert (await c.get_job(j2.id))["error"] == "RuntimeError: no gpu"
            frames = [f async for f in c.watch(job.id, since=0)]
            assert frames[0]["type"] == "snapshot"
            assert [f["seq"] for f in frames[1:]] == [1, 2, 3, 4, 5, 6]
            ids = [j["id"] async for j in c.list_jobs(project="p")]
            assert job.id in ids
            with pytest.raises(jobwire.InvalidEvent):
                await c.job(uid()).complete(result={1, 2})
            t0 = time.perf_counter()
            j3 = c.job(uid())
            for i in range(10000):
                await j3.progress(i / 100)
            assert time.perf_counter() - t0 < 2.0
            await j3.complete()
            assert (await c.get_job(j3.id))["progress"] == 100.0

    asyncio.run(main())


def test_a_refusal_no_single_event_caused_refuses_the_batch_in_one_request(
    server: Server,
) -> None:
    with jobwire.Client(server.url, flush_interval=60) as c:
        calls = []
        real = c._send_once

        def spy(req):  # type: ignore[no-untyped-def]
            calls.append(req.path)
            return real(req)

        c._send_once = spy  # type: ignore[method-assign]
        job = c.job(uid("ghost"), create=False)
        for i in range(100):
            job.log(f"l{i}")
        job.flush()
        assert len(calls) == 1  # not retried event by event
        assert [type(e) for e in job.errors] == [jobwire.JobNotFound]
        assert not job._q.has_work()
