"""Fixtures of the API tests: a real Monitor (file log, real probes of a local target) with the
app served by real uvicorn on 127.0.0.1:<ephemeral>, from a thread of its own as `hbsm run`
serves it (hbsm.api.thread), or in the test's own loop (`threaded=False`). Everything started
here is stopped by a finalizer, whatever the test's outcome."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from probes.servers import SwitchableTarget
from starlette.applications import Starlette
from support.configs import make_config, service
from support.waiting import wait_for

from hbsm.api import ApiServer, MonitorSource, create_app
from hbsm.api.server import bind
from hbsm.api.thread import ApiThread
from hbsm.config import Config, ServiceConfig
from hbsm.events import Admin, Event, OpaqueEvent
from hbsm.log import FileEventLog, read_history
from hbsm.monitor import Monitor
from hbsm.notify import Notifier
from hbsm.probes import Prober
from hbsm.repair import RepairRunner, Supervisor

NON_LOOPBACK = ("10.1.2.3", 1234)
# Repairs stop at diagnose (nothing here to restart); a 1 s cooldown for the tests that give a
# service a restart of its own.
API_SETTINGS: dict[str, Any] = {
    "ladder": ["diagnose"],
    "restart_cooldown": 1.0,
    "cooldown_max": 1.0,
}


class Live:
    """One monitor with its API on real uvicorn; `client` talks to it over TCP (loopback)."""

    def __init__(
        self, monitor: Monitor, store: FileEventLog, app: Starlette, server: ApiServer | ApiThread
    ) -> None:
        self.monitor = monitor
        self.store = store
        self.app = app
        self.server = server
        # The uvicorn server itself, wherever it runs.
        self.api = server.server if isinstance(server, ApiThread) else server
        self.base = server.url
        self.client = httpx.AsyncClient(base_url=self.base, timeout=10.0)
        self._clients: list[httpx.AsyncClient] = [self.client]

    def asgi(self, client: tuple[str, int] = NON_LOOPBACK, **kwargs: Any) -> httpx.AsyncClient:
        """A client calling the app in-process with a chosen client address in the scope."""
        transport = httpx.ASGITransport(app=self.app, client=client)
        made = httpx.AsyncClient(transport=transport, base_url="http://localhost", **kwargs)
        self._clients.append(made)
        return made

    def state(self, name: str) -> str:
        return self.monitor.projection.services[name].fsm.state

    async def wait_state(self, name: str, state: str, timeout: float = 20.0) -> None:
        await wait_for(
            lambda: self.state(name) == state, f"{name} {state} (is {self.state(name)})", timeout
        )

    def history(self) -> list[Event | OpaqueEvent]:
        self.store.flush()  # same thread as the monitor: safe
        return list(read_history(self.store.path))

    def admin_events(self) -> list[Admin]:
        return [e for e in self.history() if isinstance(e, Admin)]

    async def close(self) -> None:
        for client in self._clients:
            await client.aclose()


StartApi = Callable[..., Awaitable[Live]]


@pytest.fixture
async def start_api(tmp_path: Path, target: SwitchableTarget) -> AsyncIterator[StartApi]:
    """`await start_api(token=None, services=None, threaded=True, **create_app_options)`: a
    Live instance. Default services: `web` (critical) and `aux`, both probing the target."""
    lives: list[tuple[Live, Supervisor]] = []

    async def start(
        *,
        token: str | None = None,
        services: list[ServiceConfig] | None = None,
        config: dict[str, Any] | None = None,
        threaded: bool = True,
        **app_options: Any,
    ) -> Live:
        number = len(lives)
        path = tmp_path / f"events-{number}" / "heartbeat.jsonl"
        if services is None:
            services = [
                service("web", target.svc_url("web"), critical=True, description="the site"),
                service("aux", target.svc_url("aux")),
            ]
        settings = {**API_SETTINGS, "admin_token": token, **(config or {})}
        cfg: Config = make_config(path, services, **settings)
        store = FileEventLog.open(path)
        out = tmp_path / f"out-{number}"
        supervisor = Supervisor(output_dir=out)
        monitor = Monitor(
            cfg,
            store=store,
            prober=Prober(concurrency=cfg.concurrency),
            repairs=RepairRunner(supervisor=supervisor, log_dir=out),
            supervisor=supervisor,
            notifier=Notifier(cfg.notify),
        )
        await monitor.start()
        app = create_app(MonitorSource(monitor, str(path)), **app_options)
        api = ApiServer(app, bind("127.0.0.1", 0))
        server = ApiThread(api) if threaded else api
        await server.start()
        live = Live(monitor, store, app, server)
        lives.append((live, supervisor))
        return live

    yield start
    for live, supervisor in lives:
        with contextlib.suppress(Exception):
            await live.close()
        with contextlib.suppress(Exception):
            await live.server.stop()
        with contextlib.suppress(Exception):
            await live.monitor.stop("test over", grace=2.0)
        with contextlib.suppress(Exception):
            live.store.close()
        with contextlib.suppress(Exception):
            await supervisor.stop_all(grace=0.5)


@pytest.fixture
async def live(start_api: StartApi) -> Live:
    """The default instance (no admin token), with both services healthy."""
    instance = await start_api()
    await instance.wait_state("web", "healthy")
    await instance.wait_state("aux", "healthy")
    return instance
