"""The standalone ASGI application (Starlette): the routes of docs/architecture.md and more.

    GET  /health                          200, or 503 when a critical service is not healthy
    GET  /health/detailed                 every service; targets for admin-authorized clients
    GET  /health/service/{name}           one service; 404 for an unknown name
    GET  /admin/heartbeat/status          running, config in force (redacted), counts, log
    POST /admin/heartbeat/start|stop      idempotent
    POST /admin/service/{name}/{action}   pause, resume, reset, probe-now, repair-now
    GET  /metrics                         Prometheus text format
    GET  /events?since=SEQ                server-sent events (admin-authorized: events carry
                                          targets and the config)
    GET  /openapi.json                    OpenAPI 3.1, schemas from the body Structs

Every answer but /metrics, /events and HEAD is JSON; errors are `bodies.ErrorBody`, never a
traceback. The health routes answer `application/health+json` when the Accept header asks for
it. Admin routes: see hbsm.api.security. An admin action, allowed or not, is recorded as an
`admin` event (who: "token" / "loopback" / "anonymous"; source: the client's host:port) before
it is answered; a denied one gets 401/403 after being recorded, at most 10 a minute per client
host (the others are counted and the count recorded later: hbsm.api.refusals). An unknown
service is a 404 before any of that (service names are public: /health lists them), and so is a
body that is not JSON a 400 (admin routes take none, or a JSON one they ignore). Read routes
(status, detailed targets, /events) are authorized the same way but not recorded.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from hbsm import __version__
from hbsm.api import bodies
from hbsm.api.body_limit import BodyLimit
from hbsm.api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from hbsm.api.metrics import Metrics
from hbsm.api.openapi import document
from hbsm.api.refusals import Attempt, RefusalLimiter
from hbsm.api.security import (
    PROXY_HEADERS,
    WWW_AUTHENTICATE,
    Decision,
    admin_body_problem,
    authorize,
    client_label,
)
from hbsm.api.source import ApiSource
from hbsm.api.sse import event_stream, parse_seq
from hbsm.api.views import Answer, Views, error, wants_health_json
from hbsm.events import Event, Transition
from hbsm.log import LogError
from hbsm.vocabulary import SERVICE_NAME, URL_SERVICE_ACTIONS, log_action

__all__ = ["MAX_BODY", "ApiState", "create_app"]

log = logging.getLogger("hbsm.api")

MAX_BODY = 64 * 2**10
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def respond(answer: Answer, headers: dict[str, str] | None = None) -> Response:
    return Response(
        answer.body,
        status_code=answer.status,
        media_type=answer.media_type,
        headers={**_HEADERS, **(headers or {})},
    )


def _denied(decision: Decision) -> Response:
    headers = {"WWW-Authenticate": WWW_AUTHENTICATE} if decision.status == 401 else None
    return respond(error(decision.status, decision.message), headers)


def _no_service(name: str) -> Response:
    return respond(error(404, f"no service named {name[:128]!r}"))


class ApiState:
    """What the routes share: the source, the body cache, the metrics, and `closing` (set by
    the server on shutdown so that open event streams end)."""

    def __init__(
        self,
        source: ApiSource,
        *,
        sse_heartbeat: float,
        sse_poll: float,
        cache_max_age: float,
        refusals: RefusalLimiter | None = None,
    ) -> None:
        self.source = source
        self.refusals = refusals if refusals is not None else RefusalLimiter()
        self.views = Views(source, max_age=cache_max_age)
        self.metrics = Metrics(source)
        self._scrape_lock = asyncio.Lock()
        self.closing = threading.Event()
        self.sse_heartbeat = sse_heartbeat
        self.sse_poll = sse_poll
        self.openapi = msgspec.json.encode(document(__version__))

    def authorize(self, request: Request) -> Decision:
        client = request.client
        headers = request.headers
        return authorize(
            self.source.admin_token,
            headers.get("authorization"),
            client.host if client is not None else None,
            host=",".join(headers.getlist("host")) or None,  # as a WSGI server joins them
            origin=headers.get("origin"),
            fetch_site=headers.get("sec-fetch-site"),
            forwarded=any(h in headers for h in PROXY_HEADERS),
        )

    # --- health -------------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        health_json = wants_health_json(request.headers.get("accept"))
        show = health_json and self.authorize(request).allowed  # only health+json has internals
        return respond(self.views.health(health_json=health_json, show_internals=show))

    async def detailed(self, request: Request) -> Response:
        health_json = wants_health_json(request.headers.get("accept"))
        show = self.authorize(request).allowed
        return respond(self.views.detailed(show_targets=show, health_json=health_json))

    async def service(self, request: Request) -> Response:
        name = request.path_params["name"]
        if not SERVICE_NAME.fullmatch(name):
            return _no_service(name)
        answer = self.views.service(
            name,
            show_target=self.authorize(request).allowed,
            health_json=wants_health_json(request.headers.get("accept")),
        )
        return _no_service(name) if answer is None else respond(answer)

    # --- admin --------------------------------------------------------------------------------

    async def status(self, request: Request) -> Response:
        decision = self.authorize(request)
        if not decision.allowed:
            return _denied(decision)
        return respond(self.views.status())

    async def start(self, request: Request) -> Response:
        return await self._admin(request, "start", None)

    async def stop(self, request: Request) -> Response:
        return await self._admin(request, "stop", None)

    async def service_action(self, request: Request) -> Response:
        name, action = request.path_params["name"], request.path_params["action"]
        if action not in URL_SERVICE_ACTIONS:
            choices = ", ".join(URL_SERVICE_ACTIONS)
            return respond(error(404, f"no admin action {action[:40]!r}; one of: {choices}"))
        if not SERVICE_NAME.fullmatch(name) or not self._known(name):
            return _no_service(name)
        return await self._admin(request, action, name)

    def _known(self, name: str) -> bool:
        control = self.source.control
        if control is not None:
            return name in control.services
        with self.source.lock:
            return name in self.source.projection.services

    async def _admin(self, request: Request, action: str, service: str | None) -> Response:
        problem = await body_problem(request)
        if problem is not None:
            return respond(error(400, problem))
        decision = self.authorize(request)
        control = self.source.control
        if control is None:
            if not decision.allowed:
                return _denied(decision)
            return respond(
                error(
                    409,
                    f"this instance only reads the log of {self.source.log_path}: admin "
                    "actions need the monitor that writes it (`hbsm run`)",
                )
            )
        who, source = decision.who, client_label(request.client)
        await self.record_refusals(self.refusals.due())
        if not decision.allowed:
            host = request.client.host if request.client is not None else "unknown"
            attempt = Attempt(host, log_action(action), service, who, source)
            await self._refused(attempt)
            return _denied(decision)
        what = f"{action} {service}" if service else action
        was_running = control.heartbeat_running
        try:
            events = await control.admin(
                log_action(action), service, who=who, source=source, allowed=True
            )
        except KeyError:
            return _no_service(service or "")
        except LogError as exc:
            return respond(error(503, f"the monitor cannot record this action now: {exc}"))
        log.info("admin %s by %s from %s", what, who, source)
        if service is None:
            result = self._heartbeat_result(action, was_running, control.heartbeat_running)
        else:
            result = self._service_result(action, service, events, control.heartbeat_running)
        return respond(Answer(200, bodies.encode(result)))

    async def _refused(self, attempt: Attempt) -> None:
        """Record a refused attempt, or only count it (hbsm.api.refusals): a client hammering
        an admin route must not grow the log, nor the monitor's own diagnostics, at will."""
        suppressed = self.refusals.admit(attempt)
        if suppressed is None:
            return
        await self._record_refused(attempt, suppressed)

    async def record_refusals(self, summaries: list[tuple[Attempt, int]]) -> None:
        """Record the summaries of `RefusalLimiter.due()`/`drain()`."""
        for attempt, suppressed in summaries:
            await self._record_refused(attempt, suppressed)

    async def _record_refused(self, attempt: Attempt, suppressed: int) -> None:
        what = f"{attempt.action} {attempt.service}" if attempt.service else attempt.action
        more = f" (and {suppressed} more refused, not recorded one by one)" if suppressed else ""
        log.warning("admin %s refused: %s from %s%s", what, attempt.who, attempt.source, more)
        control = self.source.control
        recorded: list[Event] = []
        if control is not None:
            try:
                recorded = await control.admin(
                    attempt.action,
                    attempt.service,
                    who=attempt.who,
                    source=attempt.source,
                    allowed=False,
                    suppressed=suppressed,
                )
            except KeyError:
                return  # no such service (any more): nothing to record it against
            except LogError as exc:
                log.warning("admin %s refused, and could not be recorded: %s", what, exc)
        if not recorded:  # a full disk, say: counted again, recorded with a later one
            self.refusals.unrecorded(attempt, suppressed)

    @staticmethod
    def _heartbeat_result(action: str, before: bool, after: bool) -> bodies.AdminResult:
        changed = before != after
        if action == "start":
            message = "heartbeat started" if changed else "heartbeat already running"
        else:
            message = "heartbeat stopped" if changed else "heartbeat already stopped"
        return bodies.AdminResult(
            action=action, ok=True, changed=changed, running=after, message=message
        )

    def _service_result(
        self, action: str, name: str, events: list[Event], running: bool
    ) -> bodies.AdminResult:
        moved = [e for e in events if isinstance(e, Transition) and e.src != e.dst]
        view = self.source.projection.services.get(name)
        state = view.fsm.state if view is not None else None
        changed, ok = bool(moved), True
        if action == "pause":
            message = f"{name} paused" if changed else f"{name} is already paused"
        elif action == "resume":
            message = f"{name} resumed: {state}" if changed else f"{name} is not paused"
        elif action == "reset":
            message = f"{name} reset: probing afresh" if changed else f"{name} is already {state}"
        elif action == "repair-now":
            ok = changed
            if changed:
                message = f"{name}: repair started"
            elif state == "failed":
                message = f"cannot repair {name} now: it is failed; reset it first"
            else:
                message = f"cannot repair {name} now: it is {state}"
        else:
            message = f"{name}: probe requested"
        return bodies.AdminResult(
            action=action,
            service=name,
            ok=ok,
            changed=changed,
            running=running,
            state=state,
            message=message,
        )

    # --- beyond the seed ------------------------------------------------------------------------

    async def scrape(self, request: Request) -> Response:
        metrics = self.metrics
        # One scrape at a time: a second one's prime() would otherwise wait on the histogram's
        # lock, held by the first one's log reading in a thread, and block the whole loop.
        async with self._scrape_lock:
            metrics.prime()  # reads the projection: on this thread
            await asyncio.to_thread(metrics.update)  # reads the log
            body = metrics.render()
        return Response(body, media_type=METRICS_CONTENT_TYPE, headers=_HEADERS)

    async def events(self, request: Request) -> Response:
        decision = self.authorize(request)
        if not decision.allowed:
            return _denied(decision)
        try:
            since = parse_seq(request.query_params.get("since"))
            resume = parse_seq(request.headers.get("last-event-id"))
        except ValueError as exc:
            return respond(error(400, str(exc)))
        if resume is not None:
            since = resume
        if request.method == "HEAD":  # the headers only: no stream to run for nobody
            return Response(b"", media_type="text/event-stream", headers=_HEADERS)
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
        return StreamingResponse(
            stream,
            media_type="text/event-stream",
            headers={**_HEADERS, "X-Accel-Buffering": "no"},
        )

    async def openapi_json(self, request: Request) -> Response:
        return Response(self.openapi, media_type="application/json", headers=_HEADERS)

    # --- errors -------------------------------------------------------------------------------

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        status = exc.status_code
        path = request.url.path[:200]
        headers = dict(exc.headers or {})
        if status == 404:
            message = f"no route {path!r}; see /openapi.json"
        elif status == 405:
            # Starlette builds Allow from a set: sort it so answers do not vary between runs.
            allowed = ", ".join(sorted(m.strip() for m in headers.get("Allow", "").split(",")))
            headers["Allow"] = allowed
            message = f"{request.method[:20]} is not allowed on {path!r}; allowed: {allowed}"
        else:
            message = str(exc.detail)
        return respond(error(status, message), headers)

    async def server_error(self, request: Request, exc: Exception) -> Response:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return respond(error(500, "internal error; the monitor's log has the details"))


async def body_problem(request: Request) -> str | None:
    """Why the body of an admin request is refused (see admin_body_problem), or None."""
    return admin_body_problem(await request.body())  # bounded by BodyLimit


def create_app(
    source: ApiSource,
    *,
    sse_heartbeat: float = 15.0,
    sse_poll: float = 0.2,
    max_body: int = MAX_BODY,
    cache_max_age: float = 1.0,
    refusals: RefusalLimiter | None = None,
) -> Starlette:
    """The app for one source. `app.state.hbsm` is its ApiState (set `.closing` to end the
    open event streams; hbsm.api.server does it on shutdown, and records the refused admin
    attempts only counted so far). `refusals`: how refused admin attempts are rate-limited
    (default: 10 recorded a minute per client host)."""
    api = ApiState(
        source,
        sse_heartbeat=sse_heartbeat,
        sse_poll=sse_poll,
        cache_max_age=cache_max_age,
        refusals=refusals,
    )
    routes = [
        Route("/health", api.health, methods=["GET"]),
        Route("/health/detailed", api.detailed, methods=["GET"]),
        Route("/health/service/{name}", api.service, methods=["GET"]),
        Route("/admin/heartbeat/status", api.status, methods=["GET"]),
        Route("/admin/heartbeat/start", api.start, methods=["POST"]),
        Route("/admin/heartbeat/stop", api.stop, methods=["POST"]),
        Route("/admin/service/{name}/{action}", api.service_action, methods=["POST"]),
        Route("/metrics", api.scrape, methods=["GET"]),
        Route("/events", api.events, methods=["GET"]),
        Route("/openapi.json", api.openapi_json, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: api.http_error, Exception: api.server_error},
    )
    app.add_middleware(BodyLimit, max_bytes=max_body)
    # "/health/" is a 404 (JSON), not a redirect without a body.
    app.router.redirect_slashes = False
    app.state.hbsm = api
    return app
