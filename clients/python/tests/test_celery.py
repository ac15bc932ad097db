"""jobwire.celery with a real Celery worker process on a real redis-server broker."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

import jobwire
from conftest import Server, free_port, wait_for

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(exe, os.X_OK):
        pytest.fail("redis-server not found: install redis-server (apt-get install redis-server)",
                    pytrace=False)
    port = free_port()
    p = subprocess.Popen([exe, "--port", str(port), "--save", "", "--appendonly", "no",
                          "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL)
    import redis

    r = redis.Redis(port=port)
    wait_for(lambda: _ping(r), 10, "redis-server")
    yield f"redis://127.0.0.1:{port}/0"
    p.terminate()
    p.wait(10)


def _ping(r: Any) -> bool:
    try:
        return bool(r.ping())
    except Exception:
        return False


@pytest.fixture(scope="module")
def worker(server: Server, redis_url: str) -> Iterator[Any]:
    env = dict(os.environ, JOBWIRE_URL=server.url, JWTEST_BROKER=redis_url,
               PYTHONPATH=str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    os.environ["JOBWIRE_URL"] = server.url
    os.environ["JWTEST_BROKER"] = redis_url
    sys.path.insert(0, str(HERE))
    import celery_app

    log = open(Path(server.tmp.name) / "celery.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "-P", "prefork", "-c", "1",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "info"],
        cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: celery_app.app.control.ping(timeout=0.5), 30, "celery worker")
        yield celery_app
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def finished(c: jobwire.Client, task_id: str, timeout: float = 20) -> Dict[str, Any]:
    def done() -> Any:
        try:
            snap = c.get_job(task_id)
        except jobwire.JobNotFound:
            return None
        return snap if snap["status"] in ("completed", "failed", "cancelled") else None

    snap: Dict[str, Any] = wait_for(done, timeout, f"job {task_id} to finish")
    return snap


def test_tasks_become_jobs(worker: Any, server: Server) -> None:
    c = jobwire.Client(server.url)
    r = worker.add.delay(2, 3)
    snap = finished(c, r.id)
    assert snap["status"] == "completed" and snap["result"] == 5
    assert snap["project"] == "celery" and snap["metadata"] == {"task": "celery_app.add"}
    # `queued` comes from the publishing process and `in_progress` from the worker:
    # when the worker starts first, the late `queued` is refused by the state machine
    # (the SDK sends it as optional), so it may be missing, but never out of order.
    statuses = [(e["type"], e["status"]) for e in c.history(r.id)]
    assert statuses in (
        [("created", "pending"), ("status", "queued"), ("status", "in_progress"),
         ("completed", "completed")],
        [("created", "pending"), ("status", "in_progress"), ("completed", "completed")],
    ), statuses


def test_bound_task_reports_through_self_job(worker: Any, server: Server) -> None:
    c = jobwire.Client(server.url)
    r = worker.render.delay(500)
    snap = finished(c, r.id)
    assert snap["status"] == "completed" and snap["result"] == {"frames": 500}
    assert snap["log_count"] == 500 and snap["completed_steps"] == ["render"]
    lines = [e["line"] for e in c.history(r.id) if e["type"] == "log"]
    assert lines == [f"frame {i}" for i in range(500)]


def test_failure_and_non_json_result(worker: Any, server: Server) -> None:
    c = jobwire.Client(server.url)
    r = worker.boom.delay()
    snap = finished(c, r.id)
    assert snap["status"] == "failed" and snap["error"] == "ValueError: bad frame 7"
    assert any("Traceback" in e["line"] for e in c.history(r.id) if e["type"] == "log")
    r2 = worker.opaque.delay()
    snap2 = finished(c, r2.id)
    assert snap2["status"] == "completed" and "result" not in snap2


def test_revoked_task_is_cancelled(worker: Any, server: Server) -> None:
    c = jobwire.Client(server.url)
    busy = worker.slow.delay(2)
    wait_for(lambda: _status(c, busy.id) == "in_progress", 10, "slow task to start")
    queued = worker.add.delay(1, 1)
    worker.client.flush()
    assert c.get_job(queued.id)["status"] == "queued"
    worker.app.control.revoke(queued.id)
    snap = finished(c, queued.id)
    assert snap["status"] == "cancelled" and snap["message"] == "revoked"
    assert finished(c, busy.id)["result"] == "slept"


def test_running_task_stops_on_a_requested_cancel(worker: Any, server: Server) -> None:
    c = jobwire.Client(server.url)
    r = worker.cancellable.delay(10)
    wait_for(lambda: _status(c, r.id) == "in_progress", 10, "the task to start")
    res = c.cancel(r.id, reason="user asked")
    assert not res.ended and res.cancel_requested and res.status == "in_progress"
    snap = finished(c, r.id, timeout=5)
    assert snap["status"] == "cancelled" and snap["cancel_requested"]["reason"] == "user asked"
    evs = [e["type"] for e in c.history(r.id)]
    assert evs[-2:] == ["cancel_requested", "cancelled"] and "failed" not in evs
    # The worker process survived (no terminate): it still runs the next task.
    assert finished(c, worker.add.delay(2, 2).id)["result"] == 4


def _status(c: jobwire.Client, jid: str) -> Any:
    try:
        return c.get_job(jid)["status"]
    except jobwire.JobNotFound:
        return None
