"""The Blueprint: Flask adapting hbsm.api.handler, the request handler of `hbsm run`'s API.

Every route of hbsm.api.routes is registered (under an optional url_prefix), and every request
to one is turned into a `hbsm.api.handler.Request`, answered by the handler on the loop a
`Dispatcher` picks (hbsm.flask.sources), and written back as it is: the blueprint answers every
route with the standalone app's bytes, `/events` streamed by a generator. Routing errors under
the blueprint's paths (an unknown path, a wrong method) are answered by the handler too, so
they are the standalone app's JSON; the host app's other error pages are left alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from flask import Blueprint, Flask, Response, request
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import MethodNotAllowed, NotFound

from hbsm.api.answer import MAX_BODY, Answer, error
from hbsm.api.handler import Handler, Request
from hbsm.api.refusals import RefusalLimiter
from hbsm.api.routes import ROUTES, Route
from hbsm.api.source import NotRunning, Source
from hbsm.flask.sources import ADMIN_TIMEOUT, READ_TIMEOUT, Dispatcher, EmbeddedSource

__all__ = ["HeartbeatRoutes", "heartbeat_blueprint", "page_taken", "routes_taken"]

# The paths the blueprint answers routing errors under (without a url_prefix): each route's
# path up to its parameters, at most two segments deep. The status page's "/" is no root: with
# no url_prefix, every path of the host app would be under it.
ROOTS = tuple(
    sorted(
        {"/".join(r.path.split("{")[0].rstrip("/").split("/")[:3]) for r in ROUTES if r.path != "/"}
    )
)


class HeartbeatRoutes:
    """The blueprint, the handler behind it and the dispatcher that runs it."""

    def __init__(
        self,
        source: Source,
        *,
        name: str = "hbsm_heartbeat",
        refusals: RefusalLimiter | None = None,
    ) -> None:
        self.handler = Handler(source, refusals=refusals)
        self._catch_up: Callable[[], None] | None = None
        if isinstance(source, EmbeddedSource):
            self.dispatcher = Dispatcher(source.runner, source.standing_by)
            self._catch_up = source.catch_up
        else:
            self.dispatcher = Dispatcher()
        self.blueprint = Blueprint(name, __name__)
        self._prefixes: list[str] = []
        self.blueprint.record(self._remember_prefix)
        for route in ROUTES:
            # No automatic OPTIONS: any method but the route's own is a 405, as standalone.
            self.blueprint.add_url_rule(
                route.flask_rule,
                route.name,
                self._view(route),
                methods=[route.method],
                provide_automatic_options=False,
            )
        self.blueprint.before_app_request(self._routing_error)

    def _remember_prefix(self, state: BlueprintSetupState) -> None:
        self._prefixes.append((state.url_prefix or "").rstrip("/"))

    def _view(self, route: Route) -> Callable[..., Response]:
        timeout = ADMIN_TIMEOUT if route.method == "POST" else READ_TIMEOUT

        def view(**params: str) -> Response:
            asked = _request(self._ours(request.path) or request.path)
            if self._catch_up is not None:
                self._catch_up()
            if self.dispatcher.reads_here():  # no hand-over to a loop thread
                now = self.handler.answer_now(route, params, asked)
                if now is not None:  # a read: no hand-over to the loop thread
                    return _response(now)
            return self._respond(lambda: self.handler.answer(route, params, asked), timeout)

        view.__name__ = route.name
        return view

    def _routing_error(self) -> Response | None:
        # Routing errors happen before any blueprint is chosen: answered here (before the
        # app's error handlers) for our paths only.
        exc = request.routing_exception
        if not isinstance(exc, NotFound | MethodNotAllowed):
            return None
        path = self._ours(request.path)
        if path is None:
            return None
        asked = _request(path)
        return self._respond(lambda: self.handler.handle(asked), READ_TIMEOUT)

    def _ours(self, path: str) -> str | None:
        """`path` as the route table knows it (without the url_prefix), or None when it is
        the host app's."""
        for prefix in self._prefixes or [""]:
            if prefix and (path == prefix or path.startswith(prefix + "/")):
                return path[len(prefix) :] or "/"
            inner = path[len(prefix) :] if prefix else path
            if inner == "/":  # the status page's own path (a wrong method there)
                return inner
            for root in ROOTS:
                if inner == root or inner.startswith(root + "/"):
                    return inner
        return None

    def _respond(self, work: Callable[[], Coroutine[Any, Any, Answer]], timeout: float) -> Response:
        try:
            got = self.dispatcher.run(work, timeout)
        except NotRunning as exc:
            got = error(503, str(exc))
        if got.stream is not None:
            return _response(got, self.dispatcher.stream(got.stream))
        return _response(got)

    def close(self) -> None:
        """End the open event streams, record the refusals only counted so far (while the
        monitor still writes), and stop the dispatcher's own loop."""
        self.handler.closing.set()
        desk = self.handler.desk
        if desk.refusals.pending:
            with contextlib.suppress(Exception):  # the monitor gone already: nothing to do
                self.dispatcher.run(lambda: desk.record_refusals(desk.refusals.drain()), 5.0)
        self.dispatcher.close()


def routes_taken(app: Flask, url_prefix: str | None = None) -> list[str]:
    """The routes of the table the app already serves itself, under `url_prefix`, each as
    "GET /health (the app's endpoint 'health')": Flask keeps the first rule for a path, so
    hbsm's would be hidden there. The status page is left out: most apps have a `/` of their
    own (see `page_taken`)."""
    prefix = (url_prefix or "").rstrip("/")
    taken = []
    for route in ROUTES:
        if route.path == "/":
            continue
        path = prefix + route.flask_rule
        for rule in app.url_map.iter_rules():
            if rule.rule == path and route.method in (rule.methods or ()):
                taken.append(f"{route.method} {path} (the app's endpoint {rule.endpoint!r})")
                break
    return taken


def page_taken(app: Flask, url_prefix: str | None = None) -> bool:
    """Whether the app serves the status page's path itself (then the app's page is shown)."""
    path = (url_prefix or "").rstrip("/") + "/"
    return any(
        rule.rule == path and "GET" in (rule.methods or ()) for rule in app.url_map.iter_rules()
    )


def heartbeat_blueprint(
    source: Source,
    *,
    url_prefix: str | None = None,
    name: str = "hbsm_heartbeat",
    refusals: RefusalLimiter | None = None,
) -> Blueprint:
    """A Blueprint serving `source` (an `EmbeddedSource`, a started `hbsm.api.LogSource`) at every
    route of the API (under `url_prefix`, if given). `refusals`: how refused admin attempts are
    rate-limited (default: 10 recorded a minute per client host)."""
    blueprint = HeartbeatRoutes(source, name=name, refusals=refusals).blueprint
    blueprint.url_prefix = url_prefix
    return blueprint


def _response(answer: Answer, stream: Iterator[bytes] | None = None) -> Response:
    body = answer.body if stream is None else stream
    return Response(body, status=answer.status, headers=answer.headers())


def _request(path: str) -> Request:
    """Flask's request as the handler takes it, read from the WSGI environ. The body is read
    (when the head announces one) up to one byte past the limit: the handler refuses a larger
    one, unread beyond that."""
    environ = request.environ
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = value
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    announced = "content-length" in headers or "transfer-encoding" in headers
    port = str(environ.get("REMOTE_PORT", ""))
    host = request.remote_addr
    return Request(
        method=request.method,
        path=path,
        headers=headers,
        query=environ.get("QUERY_STRING", ""),
        body=request.stream.read(MAX_BODY + 1) if announced else b"",
        client=(host, int(port) if port.isdigit() else None) if host else None,
    )
