"""The request handler: one (method, path, headers, body, client) in, one `Answer` out.

Every route of hbsm.api.routes is answered here, whatever framework serves it: the Starlette
app of `hbsm run` (hbsm.api.app) and the Flask blueprint (hbsm.flask.blueprint) only turn their
framework's request into a `Request` and write the `Answer` back, so both answer every route
with the same bytes. Routing errors are answered here too (404 for an unknown path, 405 with
Allow for a wrong method), from the same table.

Every answer is JSON but the status page (/), /metrics, /events and HEAD; errors are
`bodies.ErrorBody`, never a traceback. The health routes answer `application/health+json` when
the Accept header asks for it. Admin routes: see hbsm.api.security and hbsm.api.admin. Read
routes with more to show to admin-authorized clients (status, detailed targets, /events) are
authorized the same way but not recorded. A source that cannot answer now
(hbsm.api.source.NotRunning) is a 503.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

import msgspec

from hbsm import __version__
from hbsm.api.admin import AdminAsk, AdminDesk, denied
from hbsm.api.answer import EVENT_STREAM, MAX_BODY, Answer, error, wants_health_json
from hbsm.api.openapi import document
from hbsm.api.refusals import RefusalLimiter
from hbsm.api.routes import Route, allowed_methods, match
from hbsm.api.security import PROXY_HEADERS, Decision, authorize
from hbsm.api.source import NotRunning, Source
from hbsm.api.sse import event_stream, parse_seq
from hbsm.api.views import Views
from hbsm.vocabulary import RELOAD_ACTION, SERVICE_NAME, URL_SERVICE_ACTIONS

if TYPE_CHECKING:
    from hbsm.api.metrics import Metrics

__all__ = ["Handler", "Request"]

log = logging.getLogger("hbsm.api")

Read = Callable[["Request", Mapping[str, str]], Answer]
Action = Callable[["Request", Mapping[str, str]], Awaitable[Answer]]


@dataclass(frozen=True, slots=True)
class Request:
    """A request as a framework adapter hands it over. `headers`: names in lower case, the
    values of a repeated header joined by commas (as a WSGI server joins them); `query`: the
    raw query string; `client`: (host, port), the port None when the server does not say it."""

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    query: str = ""
    body: bytes = b""
    client: tuple[str, int | None] | None = None

    def param(self, name: str) -> str | None:
        """A query parameter's first value."""
        for key, value in parse_qsl(self.query, keep_blank_values=True):
            if key == name:
                return value
        return None


class Handler:
    """Answers every route for one source. `closing` is set by the server on shutdown, so that
    open event streams end."""

    def __init__(
        self,
        source: Source,
        *,
        sse_heartbeat: float = 15.0,
        sse_poll: float = 0.2,
        cache_max_age: float = 1.0,
        refusals: RefusalLimiter | None = None,
    ) -> None:
        self.source = source
        self.views = Views(source, max_age=cache_max_age)
        self.metrics: Metrics | None = None  # made by the first scrape (see scrape)
        self.desk = AdminDesk(source, refusals if refusals is not None else RefusalLimiter())
        self.closing = threading.Event()
        self.sse_heartbeat = sse_heartbeat
        self.sse_poll = sse_poll
        self._scrape_lock = asyncio.Lock()
        self._openapi = msgspec.json.encode(document(__version__))
        # Reads are plain functions of the projection; actions (and what reads the log) await.
        self._reads: dict[str, Read] = {
            "health": self.health,
            "healthDetailed": self.detailed,
            "healthService": self.service,
            "heartbeatStatus": self.status,
            "openapi": self.openapi,
            "statusPage": self.status_page,
        }
        self._actions: dict[str, Action] = {
            "heartbeatStart": self.start,
            "heartbeatStop": self.stop,
            "serviceAction": self.service_action,
            "configReload": self.config_reload,
            "metrics": self.scrape,
            "events": self.events,
        }

    @property
    def refusals(self) -> RefusalLimiter:
        return self.desk.refusals

    async def handle(self, request: Request) -> Answer:
        """Route `request` by the table of hbsm.api.routes and answer it."""
        found = match(request.method, request.path)
        if found is None:
            return self.no_route(request)
        route, params = found
        return await self.answer(route, params, request)

    async def answer(self, route: Route, params: Mapping[str, str], request: Request) -> Answer:
        """Answer `request`, already routed to `route` (a framework that routes itself)."""
        try:
            await self.desk.record_due()
            read = self._reads.get(route.name)
            if read is not None:
                return read(request, params)
            return await self._actions[route.name](request, params)
        except Exception as exc:
            return _failed(request, exc)

    def answer_now(
        self, route: Route, params: Mapping[str, str], request: Request
    ) -> Answer | None:
        """The answer of a read route, on the caller's thread, for a source whose `lock` guards
        its projection (a followed log); None for a route that needs the event loop (an
        action, /metrics, /events). Refused admin attempts are not recorded here: a source
        read under its lock has no monitor to record them."""
        read = self._reads.get(route.name)
        if read is None:
            return None
        try:
            return read(request, params)
        except Exception as exc:
            return _failed(request, exc)

    def no_route(self, request: Request) -> Answer:
        path = request.path[:200]
        allowed = allowed_methods(request.path)
        if not allowed:
            return error(404, f"no route {path!r}; see /openapi.json")
        methods = ", ".join(allowed)
        message = f"{request.method[:20]} is not allowed on {path!r}; allowed: {methods}"
        return error(405, message, extra={"Allow": methods})

    def authorize(self, request: Request) -> Decision:
        headers = request.headers
        return authorize(
            self.source.admin_token,
            headers.get("authorization"),
            request.client[0] if request.client is not None else None,
            host=headers.get("host"),
            origin=headers.get("origin"),
            fetch_site=headers.get("sec-fetch-site"),
            forwarded=any(h in headers for h in PROXY_HEADERS),
        )

    # --- health -------------------------------------------------------------------------------

    def health(self, request: Request, params: Mapping[str, str]) -> Answer:
        health_json = wants_health_json(request.headers.get("accept"))
        show = health_json and self.authorize(request).allowed  # only health+json has internals
        return self.views.health(health_json=health_json, show_internals=show)

    def detailed(self, request: Request, params: Mapping[str, str]) -> Answer:
        health_json = wants_health_json(request.headers.get("accept"))
        show = self.authorize(request).allowed
        return self.views.detailed(show_targets=show, health_json=health_json)

    def service(self, request: Request, params: Mapping[str, str]) -> Answer:
        name = params["name"]
        if not SERVICE_NAME.fullmatch(name):
            return no_service(name)
        answer = self.views.service(
            name,
            show_target=self.authorize(request).allowed,
            health_json=wants_health_json(request.headers.get("accept")),
        )
        return no_service(name) if answer is None else answer

    # --- admin --------------------------------------------------------------------------------

    def status(self, request: Request, params: Mapping[str, str]) -> Answer:
        decision = self.authorize(request)
        if not decision.allowed:
            return denied(decision)
        return self.views.status()

    async def start(self, request: Request, params: Mapping[str, str]) -> Answer:
        return await self._admin(request, "start", None)

    async def stop(self, request: Request, params: Mapping[str, str]) -> Answer:
        return await self._admin(request, "stop", None)

    async def service_action(self, request: Request, params: Mapping[str, str]) -> Answer:
        name, action = params["name"], params["action"]
        if action not in URL_SERVICE_ACTIONS:
            choices = ", ".join(URL_SERVICE_ACTIONS)
            return error(404, f"no admin action {action[:40]!r}; one of: {choices}")
        if not SERVICE_NAME.fullmatch(name) or not self.desk.knows(name):
            return no_service(name)
        return await self._admin(request, action, name)

    async def config_reload(self, request: Request, params: Mapping[str, str]) -> Answer:
        return await self._admin(request, RELOAD_ACTION, None)

    async def _admin(self, request: Request, action: str, service: str | None) -> Answer:
        if len(request.body) > MAX_BODY:  # a framework that did not bound it before
            return error(413, f"request body larger than {MAX_BODY} bytes")
        decision = self.authorize(request)
        return await self.desk.act(
            AdminAsk(request.body, decision, request.client, action, service)
        )

    # --- beyond the health routes ---------------------------------------------------------------

    async def scrape(self, request: Request, params: Mapping[str, str]) -> Answer:
        # One scrape at a time: a second one's prime() would otherwise wait on the histogram's
        # lock, held by the first one's log reading in a thread, and block the whole loop.
        async with self._scrape_lock:
            # Imported here, not at start-up: prometheus_client (a few MB resident) is loaded
            # by the first scrape, and a monitor nobody scrapes never holds it.
            from hbsm.api.metrics import CONTENT_TYPE, Metrics

            if self.metrics is None:
                self.metrics = Metrics(self.source)
            metrics = self.metrics
            metrics.prime()  # reads the projection: on this thread
            await asyncio.to_thread(metrics.update)  # reads the log
            # Rendered aside too: 1,000 services' families take ~0.2 s of Python here, and on
            # the API's loop every other request waited behind it (the soak's p99 of every
            # route was /metrics' render). The projection is read without a lock anyway.
            body = await asyncio.to_thread(metrics.render)
        return Answer(200, body, CONTENT_TYPE)

    async def events(self, request: Request, params: Mapping[str, str]) -> Answer:
        decision = self.authorize(request)
        if not decision.allowed:
            return denied(decision)
        try:
            since = parse_seq(request.param("since"))
            resume = parse_seq(request.headers.get("last-event-id"))
        except ValueError as exc:
            return error(400, str(exc))
        if resume is not None:
            since = resume
        if request.method == "HEAD":  # the headers only: no stream to run for nobody
            return Answer(200, b"", EVENT_STREAM)
        if since is None:
            with self.source.lock:
                since = self.source.projection.monitor.last_seq
        stream = event_stream(
            self.source,
            since,
            closing=self.closing,
            heartbeat=self.sse_heartbeat,
            poll=self.sse_poll,
        )
        return Answer(200, b"", EVENT_STREAM, {"X-Accel-Buffering": "no"}, stream)

    def openapi(self, request: Request, params: Mapping[str, str]) -> Answer:
        return Answer(200, self._openapi)

    def status_page(self, request: Request, params: Mapping[str, str]) -> Answer:
        # The same bytes for everyone: what the page shows, it reads with the client's rights.
        from hbsm.api.page import page

        return page()


def _failed(request: Request, exc: Exception) -> Answer:
    """A source that cannot answer now is a 503; anything else is a bug of ours: a 500 with no
    traceback in the answer (the log has it)."""
    if isinstance(exc, NotRunning):
        return error(503, str(exc))
    log.error("%s %s failed", request.method, request.path, exc_info=exc)
    return error(500, "internal error; the server's log has the details")


def no_service(name: str) -> Answer:
    return error(404, f"no service named {name[:128]!r}")
