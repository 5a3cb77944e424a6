"""The standalone HTTP API: an ASGI app over a projection of the event log.

    from hbsm.api import MonitorSource, LogSource, create_app
    app = create_app(MonitorSource(monitor))        # the live monitor (`hbsm run` does this)
    app = create_app(LogSource(path).start())       # a log another process writes (read-only)

Modules: `routes` (the route table, said once), `handler` (every route answered, framework-
neutral: a `Request` in, an `Answer` out), `admin` (admin actions and their refusals), `answer`
(`Answer`, media types, errors), `bodies` (the response Structs), `source` (where answers come
from), `views` (encoded answers cached per projection version), `security` (bearer token /
loopback), `metrics` (/metrics), `sse` (/events), `openapi` (/openapi.json, from the route
table), `app` (the ASGI adapter), `server` (uvicorn in a loop that may run other things),
`thread` (that server in a thread of its own, as `hbsm run` serves it), `listen` (the listening
socket and `ListenError`, without uvicorn). hbsm.flask's blueprint is the other adapter over the
same handler. `create_app` and `ApiServer` are imported on first use, so `hbsm.api.bodies` and
`hbsm.api.source` do not load Starlette or uvicorn, and prometheus_client is imported by the
first scrape of /metrics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hbsm.api.source import LogSource, MonitorSource, NotRunning, Source

if TYPE_CHECKING:
    from hbsm.api.app import create_app
    from hbsm.api.listen import ListenError
    from hbsm.api.server import ApiServer

__all__ = [
    "ApiServer",
    "ListenError",
    "LogSource",
    "MonitorSource",
    "NotRunning",
    "Source",
    "create_app",
]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from hbsm.api.app import create_app

        return create_app
    if name == "ApiServer":
        from hbsm.api.server import ApiServer

        return ApiServer
    if name == "ListenError":
        from hbsm.api.listen import ListenError

        return ListenError
    raise AttributeError(f"module 'hbsm.api' has no attribute {name!r}")
