"""A small Flask application that watches itself and heals itself, with hbsm embedded.

    python app/main.py                    # from examples/flask_app/; serves on port 5000

The shape of the original feature: the app's pages (`/`, `/health`, `/login`), its own config
file (app/config.json, read again on every request, so a change needs no restart), and the
heartbeat embedded with `init_heartbeat`: with no services named in hbsm.toml it watches this
app's `/health` and `/login`, and repairs in grades (diagnose, check the configuration, restart
the app, the restart waiting out its cooldown; no restart while app/config.json is broken, as
the app would not start again). Two demo routes break the app on purpose, until it restarts:
`POST /demo/break/login` (the login page answers 500) and `POST /demo/break/hang` (`/login`
stops answering). The break is a file beside the event log, so that every worker of a gunicorn
sees it, and it holds for the processes that began loading the app before it was made: a
restarted app (re-executed, or gunicorn's fresh workers) began after it.
"""

from __future__ import annotations

import time

# When this process began loading the app, before the slow imports: a gunicorn worker that
# boots late must not take a break its siblings marked while it was loading for an old one.
STARTED = time.time()

import json  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from flask import Flask, abort  # noqa: E402
from markupsafe import escape  # noqa: E402

from hbsm.config import ConfigError  # noqa: E402
from hbsm.flask import init_heartbeat  # noqa: E402

HERE = Path(__file__).resolve().parent
SETTINGS = HERE / "config.json"


def settings() -> dict[str, Any]:
    """app/config.json as it is now (it is small: read on every request). A file that does not
    parse fails the pages that need it until it is mended."""
    loaded: dict[str, Any] = json.loads(SETTINGS.read_text(encoding="utf-8"))
    return loaded


try:
    settings()  # an app does not start on a broken configuration
except (OSError, ValueError) as exc:
    sys.exit(f"app: {SETTINGS}: {exc}")

app = Flask(__name__)
FAULTS = ("login", "hang")
_never = threading.Event()


def marker(what: str) -> Path:
    """The file that says `what` is broken (beside the event log)."""
    assert heartbeat.config is not None
    return Path(heartbeat.config.log.path).parent / f"broken-{what}"


def broken(what: str) -> bool:
    """Whether `what` was broken since this process began: a restart mends it."""
    try:
        return marker(what).stat().st_mtime >= STARTED
    except FileNotFoundError:
        return False


@app.get("/")
def index() -> dict[str, object]:
    return {"app": settings()["name"], "pages": ["/login", "/health", "/health/detailed"]}


@app.get("/login")
def login() -> str:
    if broken("hang"):
        _never.wait()  # a request that never ends: the heartbeat's probe times out
    if broken("login"):
        abort(500)
    greeting = settings()["greeting"]  # a broken config.json: 500
    form = "<form method=post><input name=user><input name=password type=password></form>"
    return f"<p>{escape(greeting)}</p>{form}"


@app.post("/demo/break/<what>")
def demo_break(what: str) -> dict[str, object]:
    if what not in FAULTS:
        abort(404)
    marker(what).parent.mkdir(parents=True, exist_ok=True)
    marker(what).touch()
    return {"broken": what, "mended by": "a restart of the app"}


try:
    # hbsm.toml beside app/: thresholds and the log; no services, so the app's own pages, and
    # this app's config file checked before restarting it.
    heartbeat = init_heartbeat(app, HERE.parent / "hbsm.toml", config_files=[SETTINGS])
except ConfigError as exc:
    sys.exit(f"hbsm: {exc}")

if __name__ == "__main__":
    config = heartbeat.config
    assert config is not None
    # The heartbeat probes this app at its port: the one it serves on.
    app.run(host=config.host, port=config.port, threaded=True)
