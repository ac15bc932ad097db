"""Soak test (not in CI): `make soak` runs it for 10 minutes against the release binary.

Idle watchers, jobs publishing at 2-4 Hz, verifying watchers that are all dropped and
reconnected with `since` every minute (a reconnect storm), and the server's RSS,
connection count and replay-tail bytes sampled every 5 s. At the end every job
completes and every verifying watcher must hold each seq 1..last exactly once.
Writes soak.csv, soak.png and soak.json into --out, and prints the summary.
Loopback only; counts and duration are bounded by the flags.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


class Verifier:
    """A watcher of one job that checks every seq arrives exactly once, across drops."""

    def __init__(self, url: str, job: str) -> None:
        self.url, self.job = url, job
        self.seen: list[int] = []
        self.since = 0
        self.done = asyncio.Event()
        self.ws: websockets.ClientConnection | None = None
        self.dropping = False

    async def run(self) -> None:
        while not self.done.is_set():
            try:
                async with websockets.connect(f"{self.url}/v1/jobs/{self.job}/ws?since={self.since}",
                                              max_size=None) as ws:
                    self.ws = ws
                    async for raw in ws:
                        f = json.loads(raw)
                        if f.get("type") == "snapshot" or "seq" not in f:
                            continue
                        self.seen.append(f["seq"])
                        self.since = f["seq"]
                    # 1000 from the server: the job ended. (Our own drop closes with
                    # 1000 too; then reconnect.)
                    if ws.close_code == 1000 and not self.dropping:
                        self.done.set()
                    self.dropping = False
            except (OSError, websockets.ConnectionClosed):
                await asyncio.sleep(0.1)

    async def drop(self) -> None:
        if self.ws is not None:
            self.dropping = True
            await self.ws.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--jobs", type=int, default=40)
    ap.add_argument("--verifiers-per-job", type=int, default=5)
    ap.add_argument("--idle", type=int, default=1500)
    ap.add_argument("--storm-every", type=float, default=60.0)
    ap.add_argument("--out", default="soak-output")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    binary = os.environ.get("JOBWIRE_BIN", "target/release/jobwire")
    data = tempfile.mkdtemp(prefix="jobwire-soak-")
    proc = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data,
                             "--heartbeat-interval", "10s", "--log", "warn"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    base = proc.stdout.readline().strip().removeprefix("jobwire listening on ")
    ws_base = base.replace("http://", "ws://")
    http = httpx.AsyncClient(base_url=base, timeout=30)
    rows: list[tuple[float, int, float, float]] = []
    t0 = time.monotonic()

    async def sample() -> None:
        m = (await http.get("/metrics")).text
        rows.append((time.monotonic() - t0, rss_kib(proc.pid),
                     metric(m, "jobwire_connections"), metric(m, "jobwire_replay_cache_bytes")))

    await sample()
    baseline = rows[-1][1]
    jobs = [f"soak-{i}" for i in range(a.jobs)]
    for j in jobs + ["soak-idle"]:
        (await http.post("/v1/jobs", json={"id": j})).raise_for_status()
    idle = []
    for _ in range(a.idle):
        ws = await websockets.connect(f"{ws_base}/v1/jobs/soak-idle/ws")
        idle.append(ws)
    verifiers = [Verifier(ws_base, j) for j in jobs for _ in range(a.verifiers_per_job)]
    vtasks = [asyncio.create_task(v.run()) for v in verifiers]
    await asyncio.sleep(2)
    await sample()
    stop = time.monotonic() + a.duration
    published = {j: 1 for j in jobs}

    async def publisher(job: str) -> None:
        n = 0
        while time.monotonic() < stop:
            n += 1
            ev = ({"type": "progress", "progress": n % 100} if n % 3 else
                  {"type": "log", "line": f"line {n} " + "x" * random.randint(10, 200)})
            ev["event_id"] = f"{job}-{n}"
            r = await http.post(f"/v1/jobs/{job}/events", json=ev)
            r.raise_for_status()
            published[job] = r.json()["seqs"][-1]
            await asyncio.sleep(random.uniform(0.25, 0.5))

    async def storms() -> int:
        count = 0
        while time.monotonic() + a.storm_every < stop:
            await asyncio.sleep(a.storm_every)
            await asyncio.gather(*(v.drop() for v in verifiers))
            count += 1
        return count

    async def sampler() -> None:
        while time.monotonic() < stop:
            await asyncio.sleep(5)
            await sample()

    storm_task = asyncio.create_task(storms())
    await asyncio.gather(*(publisher(j) for j in jobs), sampler())
    storm_count = await storm_task
    for j in jobs:
        r = await http.post(f"/v1/jobs/{j}/events", json={"type": "completed", "event_id": f"{j}-end"})
        published[j] = r.json()["seqs"][-1]
    await asyncio.wait_for(asyncio.gather(*vtasks), timeout=60)
    await sample()
    bad = 0
    for v in verifiers:
        # The watcher started at since=0: it must hold 2..last (seq 1 is `created`, also sent).
        want = list(range(1, published[v.job] + 1))
        if v.seen != want:
            bad += 1
            if bad == 1:
                missing = sorted(set(want) - set(v.seen))[:10]
                extra = len(v.seen) - len(set(v.seen))
                print(f"{v.job}: {len(v.seen)} seqs, want {len(want)}; missing {missing}, "
                      f"doubled {extra}", file=sys.stderr)
    for ws in idle:
        await ws.close()
    await http.aclose()
    proc.terminate()
    proc.wait(timeout=30)

    conns = max(r[2] for r in rows) or 1
    peak = max(r[1] for r in rows)
    summary = {
        "duration_s": a.duration, "jobs": a.jobs, "verifiers": len(verifiers), "idle": a.idle,
        "storms": storm_count, "events": sum(published.values()),
        "watchers_with_missing_or_doubled_seqs": bad,
        "rss_baseline_kib": baseline, "rss_peak_kib": peak,
        "rss_per_connection_kib": round((peak - baseline) / conns, 2),
        "replay_cache_peak_bytes": max(r[3] for r in rows),
        "binary": binary,
    }
    with open(out / "soak.csv", "w") as f:
        f.write("seconds,rss_kib,connections,replay_cache_bytes\n")
        for r in rows:
            f.write(",".join(str(x) for x in r) + "\n")
    (out / "soak.json").write_text(json.dumps(summary, indent=2) + "\n")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
        xs = [r[0] for r in rows]
        ax[0].plot(xs, [r[1] / 1024 for r in rows]); ax[0].set_ylabel("RSS MiB")
        ax[1].plot(xs, [r[2] for r in rows]); ax[1].set_ylabel("connections")
        ax[2].plot(xs, [r[3] / 1024 for r in rows]); ax[2].set_ylabel("replay tail KiB")
        ax[2].set_xlabel("seconds")
        fig.suptitle(f"jobwire soak: {len(verifiers)} verifying + {a.idle} idle watchers, "
                     f"{a.jobs} jobs at 2-4 Hz, storms every {a.storm_every:.0f} s")
        fig.tight_layout()
        fig.savefig(out / "soak.png", dpi=100)
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)", file=sys.stderr)
    print(json.dumps(summary, indent=2))
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
