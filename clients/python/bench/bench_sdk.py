"""Benchmarks of the Python SDK: progress() calls/s into the SDK, durable log lines/s.

Usage (from the repo root):
    python clients/python/bench/bench_sdk.py [--url URL] [--progress N] [--logs N]
Without --url it starts $JOBWIRE_BIN (default target/debug/jobwire; use a release build
for server-bound figures) on an ephemeral port with a temporary data dir.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import jobwire

REPO = Path(__file__).resolve().parents[3]


def start_server(tmp: str) -> tuple[subprocess.Popen[str], str]:
    exe = os.environ.get("JOBWIRE_BIN") or str(REPO / "target" / "debug" / "jobwire")
    if not os.access(exe, os.X_OK):
        sys.exit(f"jobwire binary not found at {exe}; set JOBWIRE_BIN")
    p = subprocess.Popen([exe, "serve", "--listen", "127.0.0.1:0", "--data-dir", tmp,
                          "--log", "warn"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True)
    assert p.stdout is not None
    m = re.search(r"listening on (http://\S+)", p.stdout.readline())
    if not m:
        sys.exit("jobwire did not start")
    return p, m.group(1)


def bench_progress(c: jobwire.Client, n: int) -> float:
    job = c.job(f"bench-p-{uuid.uuid4().hex[:8]}")
    job.start()
    t0 = time.perf_counter()
    for i in range(n):
        job.progress(i % 100)
    dt = time.perf_counter() - t0
    job.complete()
    return n / dt


def bench_progress_total(c: jobwire.Client, n: int) -> float:
    job = c.job(f"bench-t-{uuid.uuid4().hex[:8]}")
    job.start()
    t0 = time.perf_counter()
    for i in range(n):
        job.progress(current=i, total=n, stage="render")
    dt = time.perf_counter() - t0
    job.complete()
    return n / dt


def bench_async_progress(url: str, n: int) -> float:
    async def main() -> float:
        async with jobwire.AsyncClient(url) as c:
            job = c.job(f"bench-a-{uuid.uuid4().hex[:8]}")
            await job.start()
            t0 = time.perf_counter()
            for i in range(n):
                await job.progress(i % 100)
            dt = time.perf_counter() - t0
            await job.complete()
            return n / dt

    return asyncio.run(main())


def bench_logs(c: jobwire.Client, n: int) -> tuple[float, int]:
    job = c.job(f"bench-l-{uuid.uuid4().hex[:8]}")
    job.start()
    t0 = time.perf_counter()
    for i in range(n):
        job.log(f"line {i} of the benchmark, about sixty bytes long.......")
    job.flush()  # returns once the server has made every line durable
    dt = time.perf_counter() - t0
    count = c.get_job(job.id)["log_count"]
    job.complete()
    return n / dt, count


def bench_log_sdk_side(n: int) -> float:
    """Lines/s through the SDK's own work per line (queue, event_id, JSON), no network."""
    from jobwire._queue import EventQueue

    q = EventQueue(1000)
    from jobwire import _handle as h

    t0 = time.perf_counter()
    for i in range(n):
        q.push_log(h.log_event(f"line {i} of the benchmark, about sixty bytes long.......", None))
    while True:
        b = q.front()
        if b is None:
            break
        q.acked_batch(b, [])
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url")
    ap.add_argument("--progress", type=int, default=1_000_000)
    ap.add_argument("--logs", type=int, default=100_000)
    a = ap.parse_args()
    proc = None
    tmp = tempfile.TemporaryDirectory(prefix="jw-bench-")
    url = a.url
    if url is None:
        proc, url = start_server(tmp.name)
    try:
        with jobwire.Client(url, max_batch=1000) as c:
            print(f"python {sys.version.split()[0]}, server {url}")
            print(f"job.progress(pct)            {bench_progress(c, a.progress):>12,.0f} calls/s")
            print(f"job.progress(current,total)  {bench_progress_total(c, a.progress):>12,.0f}"
                  " calls/s")
            print(f"await job.progress(pct)      {bench_async_progress(url, a.progress):>12,.0f}"
                  " calls/s")
            print(f"job.log() SDK side, no network {bench_log_sdk_side(a.logs):>12,.0f} lines/s")
            rate, count = bench_logs(c, a.logs)
            assert count == a.logs, (count, a.logs)
            print(f"job.log() durable end-to-end {rate:>12,.0f} lines/s ({count:,} lines)")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()
        tmp.cleanup()


if __name__ == "__main__":
    main()
