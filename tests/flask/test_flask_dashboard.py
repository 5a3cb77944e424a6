"""The dashboard (`hbsm dashboard --api URL`) following a Flask app's embedded monitor through
the blueprint, on a real port: its event stream and its admin actions are the standalone API's,
so the dashboard needs nothing of its own for Flask."""

from __future__ import annotations

from heartbeat_support import events, flask_app, flask_config
from support.configs import service
from support.dashboard import ask, row_state, select_row
from support.waiting import wait_for

from hbsm.events import Admin
from tui.app import DashboardApp
from tui.sources import ApiStream


async def test_the_dashboard_follows_and_drives_a_flask_apps_monitor(
    embedded, target, log_path, served
):
    app = flask_app()
    side = served(app)
    config = flask_config(log_path, [service("api", target.svc_url("a"))], admin_token="tok")
    embedded(config, app=app)
    side.serve()

    dashboard = DashboardApp(source=ApiStream(side.base, "tok"))
    async with dashboard.run_test(size=(140, 40)) as pilot:
        await wait_for(
            lambda: row_state(dashboard, "api") == "healthy", "api healthy", pause=pilot.pause
        )
        select_row(dashboard, "api")
        await ask(pilot, dashboard, "p")
        await pilot.press("y")
        await wait_for(
            lambda: row_state(dashboard, "api") == "paused", "api paused", pause=pilot.pause
        )
    paused = [e for e in events(log_path) if isinstance(e, Admin) and e.action == "pause"]
    assert [(e.service, e.allowed, e.who) for e in paused] == [("api", True, "token")]
