"""API mode against a real monitor with its API on uvicorn (the fixtures of tests/api)."""

from __future__ import annotations

from typing import Any

from support.dashboard import ask, row_state, select_row
from support.waiting import wait_for

from hbsm.events import Admin
from tui.app import DashboardApp
from tui.sources import ApiStream

SIZE = (140, 40)


def _notes(app: DashboardApp) -> list[tuple[str, str]]:
    return [(n.severity, n.message) for n in app._notifications]


async def test_admin_action_with_confirmation_reaches_the_monitor(start_api: Any) -> None:
    live = await start_api(token="s3cret")
    await live.wait_state("web", "healthy")
    app = DashboardApp(source=ApiStream(live.base, "s3cret"))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for(
            lambda: row_state(app, "web") == "healthy", "web row healthy", pause=pilot.pause
        )
        select_row(app, "web")
        await ask(pilot, app, "p")
        await pilot.press("n")  # cancelled: nothing sent
        await pilot.pause()
        assert not [e for e in live.admin_events() if e.action == "pause"]
        await pilot.press("p")
        await pilot.pause()
        await pilot.press("y")
        await wait_for(
            lambda: any(isinstance(e, Admin) and e.action == "pause" for e in live.admin_events()),
            "an admin pause event in the monitor's log",
            pause=pilot.pause,
        )
        await wait_for(
            lambda: row_state(app, "web") == "paused", "web paused in the table", pause=pilot.pause
        )
        await wait_for(
            lambda: any("web paused" in m for s, m in _notes(app)),
            "the API's answer shown",
            pause=pilot.pause,
        )
        # p again resumes (the table knows it is paused).
        await pilot.press("p")
        await pilot.pause()
        await pilot.press("y")
        await wait_for(lambda: row_state(app, "web") != "paused", "web resumed", pause=pilot.pause)


async def test_api_errors_are_notifications_not_crashes(start_api: Any) -> None:
    live = await start_api(token="s3cret")
    app = DashboardApp(source=ApiStream(live.base, "wrong"))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for(
            lambda: any(s == "error" and "403" in m for s, m in _notes(app)),
            "the refused stream reported",
            pause=pilot.pause,
        )
        await ask(pilot, app, "t")  # start/stop the heartbeat, refused too
        await pilot.press("y")
        await wait_for(
            lambda: sum(1 for s, m in _notes(app) if s == "error" and "403" in m) >= 2,
            "the refused admin action reported",
            pause=pilot.pause,
        )
        assert app.is_running
    assert any(not e.allowed for e in live.admin_events())
