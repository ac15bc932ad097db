"""A Celery app for the integration test; the worker process imports it by name."""

from __future__ import annotations

import os
import time

from celery import Celery

import jobwire
from jobwire.celery import JobwireTask, install

app = Celery("jwtest", broker=os.environ.get("JWTEST_BROKER", "redis://127.0.0.1:1/0"))
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
client = jobwire.Client()
install(app, client, project="celery")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(bind=True, base=JobwireTask)
def render(self: JobwireTask, frames: int) -> dict:
    self.job.step("render", "Render frames")
    for i in range(frames):
        self.job.progress(current=i + 1, total=frames, stage="render")
        self.job.log(f"frame {i}")
    return {"frames": frames}


@app.task(bind=True, base=JobwireTask)
def cancellable(self: JobwireTask, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        self.job.heartbeat()
        self.job.raise_if_cancelled()  # stops the task: its job ends cancelled
        time.sleep(0.05)
    return "not cancelled"


@app.task
def boom() -> None:
    raise ValueError("bad frame 7")


@app.task
def opaque() -> object:
    return {1, 2}  # not JSON-serialisable


@app.task
def slow(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"
