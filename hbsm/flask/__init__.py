"""hbsm's heartbeat routes in an existing Flask application (`pip install 'hbsm[flask]'`).

    from hbsm.flask import init_heartbeat, follow_log

    handle = init_heartbeat(app)                  # run the monitor in this app (a thread)
    handle = init_heartbeat(app, "hbsm.toml", log_path="events/heartbeat.jsonl")
    handle = follow_log(app, "events/heartbeat.jsonl")   # or: project another `hbsm run`'s log
    handle.stop()                                 # also done at interpreter exit

Either way the app answers every route of the standalone API of `hbsm run` (the health and
admin routes, /metrics, /events, /openapi.json) with the same bytes: the blueprint is a thin
Flask adapter over that API's request handler (hbsm.api.handler). `heartbeat_blueprint(source)`
is the bare Blueprint, for a source set up by hand (`EmbeddedSource`, `hbsm.api.LogSource`).

Threads: Flask answers on request threads; the embedded monitor runs on its own asyncio loop
in a daemon thread, and requests are answered on that loop; a followed log is folded by a
thread holding a lock that answering takes too. Bodies are cached per projection version.
"""

try:
    import flask as _flask  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("hbsm.flask needs Flask: pip install 'hbsm[flask]'") from exc

from hbsm.api.source import LogSource, NotRunning
from hbsm.flask.blueprint import heartbeat_blueprint
from hbsm.flask.handle import HeartbeatHandle, follow_log, init_heartbeat
from hbsm.flask.sources import EmbeddedSource

__all__ = [
    "EmbeddedSource",
    "HeartbeatHandle",
    "LogSource",
    "NotRunning",
    "follow_log",
    "heartbeat_blueprint",
    "init_heartbeat",
]
