"""Helpers of the Flask blueprint and `hbsm check` tests: a Flask app on a real port, an ASGI
app on real uvicorn, the Flask tests' config. Loaded by path from tests/check too.

tests/flask is deliberately not a package: as one, pytest would import it as `flask` and shadow
the real Flask.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Flask
from support.configs import make_config
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from hbsm.config import Config, ServiceConfig
from hbsm.events import Event, OpaqueEvent
from hbsm.log import read_history


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class ServedApp:
    """A WSGI app on a real port of 127.0.0.1 (werkzeug's threaded server, in a thread).

    The socket is bound at construction, so the port is known before the app's routes and
    config are complete; `serve()` starts answering."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.server: BaseWSGIServer = make_server(
            "127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler
        )
        self.port = self.server.server_port
        self._thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve(self) -> ServedApp:
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(5)
            self._thread = None
        self.server.server_close()


def flask_app(name: str = "host", *, index: bool = True) -> Flask:
    """A host application with routes of its own, as a real one has (`index`: its own `/`,
    where hbsm's status page is then not served)."""
    app = Flask(name)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    if index:

        @app.get("/")
        def index_page() -> str:
            return "the host app"

    @app.get("/login")
    def login() -> str:
        return "<form>login</form>"

    return app


def flask_config(log_path: Path, services: list[ServiceConfig], **overrides: Any) -> Config:
    """support.configs.make_config as the Flask tests want it: probes every 0.1 s, repairs
    only diagnose (nothing to restart)."""
    return make_config(
        log_path, services, **{"check_interval": 0.1, "ladder": ["diagnose"], **overrides}
    )


def events(path: Path) -> list[Event | OpaqueEvent]:
    return list(read_history(path))


def without(doc: Any, *keys: str) -> Any:
    """A decoded JSON document with the given keys removed at every depth."""
    if isinstance(doc, dict):
        return {k: without(v, *keys) for k, v in doc.items() if k not in keys}
    if isinstance(doc, list):
        return [without(v, *keys) for v in doc]
    return doc


@contextlib.contextmanager
def heartbeat_served(config: Config) -> Iterator[int]:
    """A Flask app with the monitor embedded (`init_heartbeat`) on a real port of 127.0.0.1:
    yields the port; stops the server and the monitor on the way out."""
    from hbsm.flask import init_heartbeat

    app = flask_app()
    handle = init_heartbeat(app, config)
    served = ServedApp(app).serve()
    try:
        yield served.port
    finally:
        served.stop()
        handle.stop()


@contextlib.contextmanager
def stopping(*things: Any) -> Iterator[None]:
    """Stop each thing (last first) on the way out, whatever happens."""
    try:
        yield
    finally:
        for thing in reversed(things):
            with contextlib.suppress(Exception):
                thing.stop()


class AsgiServed:
    """An ASGI app on real uvicorn (hbsm.api.server) on a port of 127.0.0.1, in `loop` (a
    running loop of another thread: the monitor's own, say) or in a thread of its own."""

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop | None = None) -> None:
        from hbsm.api.server import ApiServer, bind

        self._own = loop is None
        self._thread: threading.Thread | None = None
        if loop is None:
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=loop.run_forever, name="asgi", daemon=True)
            self._thread.start()
        self.loop = loop
        self.server = ApiServer(app, bind("127.0.0.1", 0))
        self.base = self.server.url
        asyncio.run_coroutine_threadsafe(self.server.start(), loop).result(10)

    def stop(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        finally:
            if self._own and self._thread is not None:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join(5)
                self.loop.close()
