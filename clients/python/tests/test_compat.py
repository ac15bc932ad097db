"""The drop-in publishers, driven by the systems' own example code (only the import changed)."""

from __future__ import annotations

import asyncio
import importlib
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any, List

import pytest

import jobwire
from conftest import Server

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))


def uid(prefix: str = "c") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def env(server: Server, monkeypatch: pytest.MonkeyPatch) -> jobwire.Client:
    monkeypatch.setenv("JOBWIRE_URL", server.url)
    return jobwire.Client(server.url)


def test_titan_process_video_example(env: jobwire.Client) -> None:
    ex = importlib.import_module("titan_example")
    jid = uid("job")
    asyncio.run(ex.process_video(jid))
    snap = env.get_job(jid)
    assert snap["status"] == "completed"
    assert snap["result"] == {"video_url": f"https://cdn.example.com/videos/{jid}.mp4",
                              "duration": 66.67, "frames": 2000}
    assert snap["message"] == "Video rendering completed"
    assert snap["stage"] == "rendering" and snap["metadata"]["current_frame"] == 1999
    evs = list(env.history(jid))
    prog = [e for e in evs if e["type"] == "progress"]
    assert 1 <= len(prog) < 200  # 2001 reports, coalesced
    assert prog[-1]["progress"] == pytest.approx(1999 / 2000 * 100)
    assert [e["type"] for e in evs][-1] == "completed"

    async def more() -> Any:
        from jobwire.compat import ProgressReporter

        r = ProgressReporter()
        await r.initialize()
        status = await r.get_status(jid)
        assert await r.get_status(uid("none")) is None
        other = uid("job")
        await r.report(other, "decode", 0.25, "quarter")
        with pytest.raises(jobwire.InvalidEvent):
            await r.report(other, "decode", 25, "percent is not a fraction")
        await r.report_error(other, "Failed to decode video", stage="rendering")
        failed = await r.get_status(other)
        await r.close()
        return status, failed

    status, failed = asyncio.run(more())
    assert status["status"] == "completed" and status["progress"] == 1.0
    assert status["result"]["frames"] == 2000
    assert failed["status"] == "failed" and failed["error"] == "Failed to decode video"
    assert failed["metadata"]["stage"] == "rendering" and failed["progress"] == 0.25


def test_a6hub_publisher_calls(env: jobwire.Client) -> None:
    ex = importlib.import_module("a6hub_example")
    job_id = int(uuid.uuid4().int % 10**9)  # a6hub's job ids are integers
    ex.run(job_id)
    ex.publisher.flush()
    jid = str(job_id)
    evs = [(e["type"], e.get("progress") or e.get("line") or e.get("step"))
           for e in env.history(jid)]
    assert evs == [("created", None), ("status", None), ("progress", 45.0),
                   ("log", "Running synthesis..."), ("step", "synthesis"), ("completed", None)]
    snap = env.get_job(jid)
    assert snap["status"] == "completed" and snap["metadata"]["completed_steps"] == ["step1",
                                                                                      "step2"]
    other = uid("build")
    ex.publisher.publish_status(other, "running")
    ex.publisher.publish_error(other, "Build failed: Synthesis error")
    ex.publisher.publish_complete(other, "failed")  # the end it already has: ignored
    assert env.get_job(other)["error"] == "Build failed: Synthesis error"


class _Req(SimpleNamespace):
    title: str


def test_project_updates_services(env: jobwire.Client) -> None:
    ex = importlib.import_module("project_updates_example")
    pid = uuid.uuid4()

    class Analyzer(ex.RCAnalyzer):  # type: ignore[misc,name-defined]
        def _extract_text(self, path: str) -> str:
            return "text"

        async def _call_claude_api(self, text: str) -> dict:
            return {"ok": True}

    class Matcher(ex.ContentMatcher):  # type: ignore[misc,name-defined]
        async def _get_requirements(self, project_id: Any) -> List[Any]:
            return [_Req(title=f"R{i}") for i in range(4)]

        async def _match_requirement(self, req: Any, company_id: Any) -> None:
            return None

    class Generator(ex.AIContentGenerator):  # type: ignore[misc,name-defined]
        async def generate_section(self, project_id: Any, section_type: Any, company_id: Any
                                   ) -> Any:
            return SimpleNamespace(quality_score=0.9)

    async def main() -> None:
        progress = ex.ProgressUpdater(None)  # the document passes its connection_manager
        assert await Analyzer(None, progress).analyze_rc("rc.pdf", pid) == {"ok": True}
        await Matcher(None, None, progress).match_requirements(pid, uuid.uuid4())
        sections = [SimpleNamespace(value=v) for v in ("intro", "method")]
        await Generator(None, None, progress).generate_sections(pid, sections, uuid.uuid4())

        async def ok() -> dict:
            return {"pages": 3}

        async def boom() -> dict:
            raise RuntimeError("claude timeout")

        await ex.handle(progress, pid, ok)
        with pytest.raises(RuntimeError):
            await ex.handle(progress, pid, boom)
        await progress.close()

    asyncio.run(main())
    jobs = {j["metadata"]["operation"]: j for j in env.list_jobs(project=str(pid))}
    assert set(jobs) == {"rc_analysis", "matching", "generation", "operation", "operation_name"}
    rc = jobs["rc_analysis"]
    assert rc["status"] == "completed" and rc["message"] == "Analysis complete!"
    names = [e.get("name") for e in env.history(rc["id"]) if e["type"] == "custom"]
    assert names == ["rc_analysis_progress"] * 3
    m = list(env.history(jobs["matching"]["id"]))
    data = [e["data"] for e in m if e["type"] == "custom"]
    assert [d["requirements_completed"] for d in data] == [0, 1, 2, 3, 4]
    assert jobs["matching"]["progress"] == 100.0
    g = [e["data"] for e in env.history(jobs["generation"]["id"]) if e["type"] == "custom"]
    assert [d["quality_score"] for d in g] == [None, 0.9, None, 0.9]
    assert jobs["operation"]["status"] == "completed"
    assert jobs["operation"]["result"] == {"pages": 3}
    assert jobs["operation_name"]["status"] == "failed"
    assert jobs["operation_name"]["error"] == "claude timeout"


def test_progress_channel_lifecycle(env: jobwire.Client) -> None:
    from jobwire.compat import ProcessingJobLifecycle

    life = ProcessingJobLifecycle()
    job = SimpleNamespace(id=uid("job"))
    life.mark_queued(job)
    life.mark_started(job)
    life.mark_progress(job, 75.0, message="Processing stage 3", metadata={"stage": "stage_3"})
    life.mark_completed(job, {"rows": 10})
    life.close()
    evs = [e["type"] for e in env.history(job.id)]
    assert evs == ["created", "status", "status", "progress", "completed"]
    snap = env.get_job(job.id)
    assert snap["metadata"] == {"stage": "stage_3"} and snap["result"] == {"rows": 10}
    life2 = ProcessingJobLifecycle()
    life2.mark_failed("job-x-" + uuid.uuid4().hex[:6], "Job not found in store")
    life2.close()
