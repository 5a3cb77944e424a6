"""The API served from a thread of its own (as `hbsm run` serves it): it answers while the
monitor's loop is busy, and its admin actions are carried out in the monitor's loop."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx

from hbsm.events import Admin

from .conftest import Live, StartApi


async def test_the_api_answers_while_the_monitors_loop_is_busy(live: Live) -> None:
    released = threading.Event()
    answers: list[tuple[int, bool]] = []

    def ask() -> None:  # a client of its own: the test's loop is about to be held
        for path in ("/health", "/health/detailed", "/admin/heartbeat/status"):
            r = httpx.get(live.base + path, timeout=30)
            answers.append((r.status_code, released.is_set()))

    client = threading.Thread(target=ask)
    client.start()
    # The monitor's loop (this test's) busy until every answer has come: held, not awaiting.
    deadline = time.monotonic() + 30
    while len(answers) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    released.set()
    await asyncio.to_thread(client.join)
    assert answers == [(200, False)] * 3  # each answered while the loop was still held


async def test_admin_actions_are_carried_out_in_the_monitors_loop(live: Live) -> None:
    loops: list[asyncio.AbstractEventLoop] = []
    admin = live.monitor.admin

    async def watched(*args: object, **kwargs: object) -> list[object]:
        loops.append(asyncio.get_running_loop())
        return await admin(*args, **kwargs)  # type: ignore[arg-type]

    live.monitor.admin = watched  # type: ignore[method-assign]
    r = await live.client.post("/admin/service/aux/pause")
    assert r.status_code == 200 and r.json()["state"] == "paused"
    assert loops == [asyncio.get_running_loop()]
    assert [(e.action, e.service) for e in live.admin_events()] == [("pause", "aux")]


async def test_served_in_the_monitors_own_loop_it_works_the_same(start_api: StartApi) -> None:
    live = await start_api(threaded=False)
    await live.wait_state("aux", "healthy")
    assert (await live.client.get("/health")).status_code == 200
    r = await live.client.post("/admin/service/aux/pause")
    assert r.status_code == 200 and r.json()["state"] == "paused"
    assert [e.action for e in live.admin_events() if isinstance(e, Admin)] == ["pause"]
