"""Epochs against the real binary: a watcher that saw an event a SIGKILL took back before
its flush is told `rewound` and gets the event written under that seq after the restart;
a restart that lost nothing resumes without a rewind.

`JOBWIRE_TEST_FLUSH_DELAY_MS` makes the embedded writer pause between pushing a group to
watchers and flushing it: the crash window. The watch generators are lazy, so a test
restarts the server and publishes before the watcher reconnects (deterministic order).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import uuid
from typing import Any, AsyncIterator, Dict, Iterator, List, Tuple

import httpx
import pytest

import jobwire
from conftest import Server

DELAY = {"JOBWIRE_TEST_FLUSH_DELAY_MS": "3000"}
Frame = Dict[str, Any]


def uid(prefix: str = "ep") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def slow_flush() -> Iterator[Server]:
    s = Server(["--heartbeat-interval", "1s"], env=DELAY).start()
    yield s
    s.close()


def nxt(gen: Iterator[Frame], timeout: float = 15.0) -> Frame:
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        return ex.submit(next, gen).result(timeout)


def rest(gen: Iterator[Frame], timeout: float = 30.0) -> List[Frame]:
    out: List[Frame] = []
    t = threading.Thread(target=lambda: out.extend(gen), daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"the watch did not end: {out}"
    return out


def publish_unacked(s: Server, jid: str, line: str) -> Tuple[threading.Thread, List[Any]]:
    """POST one event without retries (an SDK retry would store it again after the restart)."""
    result: List[Any] = []

    def post() -> None:
        try:
            result.append(httpx.post(f"{s.url}/v1/jobs/{jid}/events",
                                     json={"type": "log", "line": line}, timeout=30))
        except httpx.HTTPError as exc:
            result.append(exc)

    t = threading.Thread(target=post, daemon=True)
    t.start()
    return t, result


def crash_while_held(s: Server, jid: str, t: threading.Thread, result: List[Any]) -> None:
    assert t.is_alive(), "the watcher got the event before its publish was acknowledged"
    s.kill9()
    t.join(10)
    assert not (isinstance(result[0], httpx.Response) and result[0].is_success), \
        "the lost publish was never acknowledged"
    s.env = None
    s.start()


def start(c: jobwire.Client, jid: str) -> None:
    c.create_job(jid)
    assert c.publish(jid, {"type": "status", "status": "in_progress"}) == [2]


def fold(frames: List[Frame]) -> List[Frame]:
    """What a consumer following the contract keeps: drop seq >= from at each rewind."""
    held: List[Frame] = []
    for f in frames:
        if f["type"] == "rewound":
            held = [e for e in held if e["seq"] < f["from"]]
        elif "seq" in f and f["type"] != "snapshot":
            held.append(f)
    return held


def test_a_watcher_of_an_event_lost_in_a_crash_yields_rewound_then_the_new_event(
    slow_flush: Server,
) -> None:
    s = slow_flush
    jid = uid()
    with jobwire.Client(s.url) as c:
        start(c, jid)
        gen = c.watch(jid, reconnect_for=30)
        snap = nxt(gen)
        assert snap["type"] == "snapshot" and snap["seq"] == 2
        epoch = snap["epoch"]
        assert isinstance(epoch, int)
        t, result = publish_unacked(s, jid, "lost in the crash")
        lost = nxt(gen)
        assert (lost["seq"], lost["line"]) == (3, "lost in the crash")
        crash_while_held(s, jid, t, result)
        with jobwire.Client(s.url) as c2:
            assert c2.publish(jid, {"type": "log", "line": "written after the restart"}) == [3]
            assert c2.publish(jid, {"type": "completed"}) == [4]
        after = rest(gen)
    notice = after[0]
    assert {k: notice[k] for k in ("type", "job_id", "since", "from")} == \
        {"type": "rewound", "job_id": jid, "since": 3, "from": 3}
    assert notice["epoch"] > epoch
    assert notice["snapshot"]["type"] == "snapshot"
    assert notice["snapshot"]["epoch"] == notice["epoch"]
    assert notice["snapshot"]["job"]["status"] == "completed"
    assert [(f["seq"], f["type"], f.get("line")) for f in after[1:]] == \
        [(3, "log", "written after the restart"), (4, "completed", None)]
    held = fold([snap, lost, *after])
    assert [(f["seq"], f.get("line")) for f in held] == \
        [(3, "written after the restart"), (4, None)]
    assert all(f.get("line") != "lost in the crash" for f in held)


def test_a_terminal_event_under_the_lost_seq_still_comes_after_the_rewind(
    slow_flush: Server,
) -> None:
    # The restarted server's snapshot is terminal at the seq the watcher holds: without
    # the epoch check the watch would end there, keeping the lost event as the last one.
    s = slow_flush
    jid = uid()
    with jobwire.Client(s.url) as c:
        start(c, jid)
        gen = c.watch(jid, reconnect_for=30)
        assert nxt(gen)["type"] == "snapshot"
        t, result = publish_unacked(s, jid, "lost in the crash")
        assert nxt(gen)["line"] == "lost in the crash"
        crash_while_held(s, jid, t, result)
        with jobwire.Client(s.url) as c2:
            assert c2.publish(jid, {"type": "failed", "error": "boom"}) == [3]
        after = rest(gen)
    assert [(f["type"], f.get("from"), f.get("seq")) for f in after] == \
        [("rewound", 3, None), ("failed", None, 3)]
    assert after[0]["snapshot"]["job"]["status"] == "failed"


def test_async_watch_yields_rewound_after_a_crash(slow_flush: Server) -> None:
    s = slow_flush
    jid = uid()

    async def main() -> List[Frame]:
        async with jobwire.AsyncClient(s.url) as c:
            await c.create_job(jid)
            assert await c.publish(jid, {"type": "status", "status": "in_progress"}) == [2]
            gen: AsyncIterator[Frame] = c.watch(jid, reconnect_for=30)
            assert (await asyncio.wait_for(gen.__anext__(), 15))["type"] == "snapshot"
            t, result = publish_unacked(s, jid, "lost in the crash")
            assert (await asyncio.wait_for(gen.__anext__(), 15))["seq"] == 3
            crash_while_held(s, jid, t, result)
            with jobwire.Client(s.url) as c2:
                c2.publish(jid, [{"type": "log", "line": "new"}, {"type": "completed"}])
            out: List[Frame] = []

            async def drain() -> None:
                async for f in gen:
                    out.append(f)

            await asyncio.wait_for(drain(), 30)
            return out

    after = asyncio.run(main())
    assert [(f["type"], f.get("from"), f.get("seq")) for f in after] == \
        [("rewound", 3, None), ("log", None, 3), ("completed", None, 4)]
    assert after[1]["line"] == "new"


def test_a_restart_that_lost_nothing_resumes_without_a_rewind(fresh_server: Server) -> None:
    s = fresh_server
    jid = uid()
    with jobwire.Client(s.url) as c:
        start(c, jid)
        gen = c.watch(jid, reconnect_for=30)
        snap = nxt(gen)
        assert c.publish(jid, {"type": "log", "line": "kept"}) == [3]  # acknowledged: durable
        assert nxt(gen)["line"] == "kept"
        s.kill9()
        s.start()
        # The watcher resumes with since=3 and the old epoch; the new epoch wrote nothing
        # below 4, so nothing is taken back.
        assert c.publish(jid, [{"type": "log", "line": "next"}, {"type": "completed"}]) == [4, 5]
        after = rest(gen)
        assert [(f["type"], f["seq"]) for f in after] == [("log", 4), ("completed", 5)]
        # A new watch of the finished job gets the restarted server's epoch.
        assert next(c.watch(jid))["epoch"] > snap["epoch"]
