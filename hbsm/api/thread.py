"""Serving the API from a thread of its own, with an event loop of its own.

Why: `hbsm run` used to serve the API in the monitor's loop. When the probes ask for more than
that loop can do (thousands of services every second), every callback waits its turn behind
thousands of probe callbacks: asyncio has no priorities, so a `GET /health` waited as long as
the probes did (seconds). In a thread of its own the API waits for the interpreter instead,
which the monitor's thread hands over every 5 ms (sys.getswitchinterval) however busy it is.

What crosses between the two threads, and how:
* reads of the projection: the API builds its bodies from the projection as it is, without a
  lock: the monitor's loop must never wait for a reader (hbsm.api.source.MonitorSource.lock
  says why); the cached bodies are immutable bytes;
* admin actions: handed to the monitor's loop with `run_coroutine_threadsafe` and awaited
  (hbsm.api.control.ControlFromAnotherLoop): the monitor's state only ever changes in its loop;
* /events and /metrics read the log through followers of their own, as they did (in worker
  threads already); everything else the handlers read is a flag or an immutable value.

The other option, giving the API's work priority inside the one loop, would need a loop with
priorities, or a scheduler that holds back its own probes whenever a request might come: more
code, and a request would still wait behind whatever probe callbacks were already queued.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading

from hbsm.api.server import ApiServer

__all__ = ["ApiThread"]

log = logging.getLogger("hbsm.api")


class ApiThread:
    """`await start()` serves `server` (an ApiServer not started) from a thread named
    "hbsm-api" with a loop of its own; `await stop()` stops it and joins the thread."""

    def __init__(self, server: ApiServer) -> None:
        self.server = server
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def cap_note(self) -> str:
        return self.server.cap_note

    async def start(self) -> None:
        """Returns once the server listens; raises what kept it from starting."""
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(started,), name="hbsm-api", daemon=True
        )
        self._thread.start()
        try:
            await asyncio.wrap_future(started)
        except BaseException:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
            raise

    def _run(self, started: concurrent.futures.Future[None]) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(started))
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _serve(self, started: concurrent.futures.Future[None]) -> None:
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:
            started.set_exception(exc)
            return
        started.set_result(None)
        await self._stop.wait()
        try:
            await self.server.stop()
        except Exception:
            log.exception("stopping the API server")

    async def stop(self) -> None:
        """Stop serving (open event streams end, counted refusals are recorded), then join."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        self._thread = None
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # its loop already ended
                loop.call_soon_threadsafe(stop.set)
        # Joined off the monitor's loop: the server's stop may hand it work (the refusals it
        # records) and waits for it.
        await asyncio.to_thread(thread.join)
