"""Serving the app with uvicorn inside an asyncio loop that may run other things (the monitor's,
in the demo and tests; `hbsm run` gives it a thread and a loop of its own: hbsm/api/thread.py).

The listening socket is bound before uvicorn starts (`bind`, hbsm.api.listen, re-exported
here), so that "address in use" is a `ListenError`, not uvicorn's sys.exit inside the loop.
uvicorn's own signal handling is switched off: the caller owns SIGTERM/SIGINT.

While serving, once a second, the refused admin attempts that were only counted (see
hbsm.api.refusals) are recorded once their window has ended; on stop, all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

from hbsm.api.guard import (
    ACCEPT_BATCH,
    Limits,
    connection_cap,
    out_of_descriptors,
    protocol_class,
)
from hbsm.api.listen import ListenError, bind

__all__ = ["ApiServer", "ListenError", "bind"]

log = logging.getLogger("hbsm.api")

# How often ended windows of counted refusals are looked for (hbsm.api.refusals).
_SWEEP_EVERY = 1.0


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The monitor's own handlers stop everything in order; uvicorn's would replace them.
        yield


class ApiServer:
    """`await server.start()` serves `app` on `sock` in the running loop; `await stop()`."""

    def __init__(
        self,
        app: Any,
        sock: socket.socket,
        *,
        log_level: str = "warning",
        grace: float = 5.0,
        limits: Limits | None = None,
        trusted_proxies: list[str] | tuple[str, ...] = (),
        probes_in_flight: int = 200,
    ) -> None:
        self.app = app
        self.sock = sock
        limits = limits if limits is not None else Limits()
        cap, self.cap_note = connection_cap(limits.max_connections, probes_in_flight)
        self.limits = dataclasses.replace(limits, max_connections=cap)
        config = uvicorn.Config(
            app,
            http=protocol_class(self.limits),  # hbsm.api.guard: bounded heads, deadlines, a cap
            ws="none",  # no WebSocket route: nor an import of a WebSocket library
            backlog=ACCEPT_BATCH,
            # uvicorn believes X-Forwarded-For from 127.0.0.1 by default: any local process
            # could then pass for another address (past the per-address limit on recorded
            # refusals, and into the `source` of admin events). Only the proxies named.
            proxy_headers=bool(trusted_proxies),
            forwarded_allow_ips=[p.strip() for p in trusted_proxies],
            log_level=log_level,
            log_config=None,  # the caller's logging setup stays as it is
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=max(1, round(grace)),
        )
        self.server = _Server(config)
        self._task: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        # The loop's exception handler before start() set ours (out_of_descriptors).
        self._restore: tuple[asyncio.AbstractEventLoop, Any] | None = None

    @property
    def host(self) -> str:
        return str(self.sock.getsockname()[0])

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def url(self) -> str:
        host = self.host
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        previous = loop.get_exception_handler()
        self._restore = (loop, previous)
        loop.set_exception_handler(functools.partial(out_of_descriptors, previous=previous))
        self._task = asyncio.create_task(self.server.serve(sockets=[self.sock]), name="hbsm-api")
        while not self.server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise ListenError("the API server stopped while starting")
            await asyncio.sleep(0.01)
        if self._state() is not None:
            self._sweeper = asyncio.create_task(self._sweep(), name="hbsm-api-refusals")

    def _state(self) -> Any:
        return getattr(getattr(self.app, "state", None), "hbsm", None)

    async def _sweep(self) -> None:
        state = self._state()
        while True:
            await asyncio.sleep(_SWEEP_EVERY)
            try:
                await state.desk.record_refusals(state.refusals.due())
            except Exception:  # never the end of the sweeping, nor of the server
                log.exception("recording refused admin attempts")

    async def stop(self) -> None:
        state = self._state()
        if state is not None:
            state.closing.set()  # open event streams end at their next poll
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        self.server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(OSError):
            self.sock.close()
        if self._restore is not None:
            loop, previous = self._restore
            loop.set_exception_handler(previous)
            self._restore = None
        if state is not None:
            # No request can come any more: what was only counted is recorded now, while the
            # monitor (stopped after the API) still writes the log.
            try:
                await state.desk.record_refusals(state.refusals.drain())
            except Exception:
                log.exception("recording refused admin attempts")
