"""A server for bench_api, in a process of its own: prints its port, serves until stdin closes.

    python -m tests.bench.api_server MODE LOG

MODE is one of:
  uvicorn       hbsm's app (create_app over a LogSource of LOG) on uvicorn with its pure-Python
                parts (h11, asyncio): what `hbsm run` gets when httptools is not installed
  uvicorn-httptools  the same app, uvicorn --http httptools on asyncio's loop: what `hbsm run`
                gets when httptools is installed (uvicorn's "auto"; the monitor owns the loop)
  uvicorn-fast  the same app, uvicorn with --http httptools --loop uvloop
  flask         a plain Flask app on werkzeug's development server (threaded), serving the same
                /health and /health/detailed bytes, encoded once at start-up (access log off):
                the floor for any Flask app
  blueprint     hbsm's Flask blueprint (heartbeat_blueprint over the LogSource) in a Flask app
                on the same server: what `follow_log` serves
  follow        hbsm's app on uvicorn (as `uvicorn`) over a LogSource that follows LOG as it
                grows (bench_page): its answers as fresh as the log
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from hbsm.api import LogSource


def _exit_when_stdin_closes() -> None:
    def watch() -> None:
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


OPTIONS = {
    "uvicorn": {"http": "h11", "loop": "asyncio"},
    "uvicorn-httptools": {"http": "httptools", "loop": "asyncio"},
    "uvicorn-fast": {"http": "httptools", "loop": "uvloop"},
}


def _uvicorn(source: LogSource, mode: str) -> None:
    import uvicorn

    from hbsm.api import create_app
    from hbsm.api.server import bind

    sock = bind("127.0.0.1", 0)
    options = OPTIONS[mode]
    config = uvicorn.Config(
        create_app(source),
        log_level="warning",
        log_config=None,
        access_log=False,
        lifespan="off",
        server_header=False,
        **options,  # type: ignore[arg-type]
    )
    print(sock.getsockname()[1], flush=True)
    uvicorn.Server(config).run(sockets=[sock])


def _flask(source: LogSource) -> None:
    from flask import Flask, Response

    from hbsm.api.views import Views

    views = Views(source, max_age=float("inf"))
    health, detailed = views.health(), views.detailed(show_targets=False)
    app = Flask("bench")

    @app.get("/health")
    def get_health() -> Response:
        return Response(health.body, status=health.status, mimetype="application/json")

    @app.get("/health/detailed")
    def get_detailed() -> Response:
        return Response(detailed.body, status=detailed.status, mimetype="application/json")

    _serve_flask(app)


def _serve_flask(app: Any) -> None:
    import logging

    from werkzeug.serving import make_server

    # No access log: a line per request on stderr would flood the bench's output (and cost the
    # baseline CPU that is not serving).
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    print(server.port, flush=True)
    server.serve_forever()


def _blueprint(source: LogSource) -> None:
    from flask import Flask

    from hbsm.flask import heartbeat_blueprint

    app = Flask("bench")
    app.register_blueprint(heartbeat_blueprint(source))
    _serve_flask(app)


def main() -> int:
    mode, log = sys.argv[1], sys.argv[2]
    _exit_when_stdin_closes()
    source = LogSource(log)
    if mode == "follow":
        source.start()  # folded as it grows, by the source's polling thread
        _uvicorn(source, "uvicorn")
        return 0
    source.refresh()  # the log is complete: no polling thread needed
    if mode == "flask":
        _flask(source)
    elif mode == "blueprint":
        _blueprint(source)
    else:
        _uvicorn(source, mode)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
