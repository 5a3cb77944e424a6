"""The Blueprint: the heartbeat routes, answering the bodies of `hbsm.api.bodies`.

Routes (relative to an optional url_prefix):

    GET  /health                  Health (200; 503 when a critical service is not healthy)
    GET  /health/detailed         DetailedHealth (200/503); targets only for admin clients
    GET  /health/service/<name>   ServiceHealth; 404 ErrorBody for an unknown name
    GET  /admin/heartbeat/status  HeartbeatStatus                         (admin)
    POST /admin/heartbeat/start   AdminResult, idempotent                 (admin)
    POST /admin/heartbeat/stop    AdminResult, idempotent                 (admin)

With `Accept: application/health+json` the health routes answer HealthJson. Every error is an
ErrorBody: 400 (an admin request whose body is not JSON), 401/403 (admin), 404 (unknown route
or service under these paths), 405 (wrong method), 409 (admin action on a read-only source),
413 (an admin request body over 64 KiB, refused unread), 503 (no monitor to answer).

Refused admin attempts are recorded as the standalone app records them, rate-limited per client
host the same way (hbsm.api.refusals); the summaries of ended windows are recorded at the next
request to any of these routes (the embedded monitor probes this app's /health by default).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, request
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import MethodNotAllowed, NotFound

from hbsm.api.bodies import ErrorBody, encode
from hbsm.api.refusals import Attempt, RefusalLimiter
from hbsm.api.security import (
    PROXY_HEADERS,
    WWW_AUTHENTICATE,
    Decision,
    admin_body_problem,
    authorize,
    client_label,
)
from hbsm.api.views import wants_health_json
from hbsm.flask.sources import READ_ONLY_MESSAGE as _READ_ONLY
from hbsm.flask.sources import HeartbeatSource, NotRunning, ReadOnly
from hbsm.flask.views import Answer, Views
from hbsm.log import LogError

__all__ = ["ADMIN_ROUTES", "HEALTH_ROUTES", "heartbeat_blueprint"]

log = logging.getLogger("hbsm.flask")

HEALTH_ROUTES = ("/health", "/health/detailed", "/health/service/<name>")
ADMIN_ROUTES = ("/admin/heartbeat/status", "/admin/heartbeat/start", "/admin/heartbeat/stop")

JSON = "application/json"
HEALTH_JSON = "application/health+json"
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
# The order Allow lists methods in (Starlette's: the route's own, then HEAD).
_METHOD_ORDER = ("GET", "POST", "HEAD")
# As the standalone app (hbsm.api.app.MAX_BODY): no route needs more.
MAX_BODY = 64 * 2**10


def heartbeat_blueprint(
    source: HeartbeatSource,
    *,
    url_prefix: str | None = None,
    name: str = "hbsm_heartbeat",
    refusals: RefusalLimiter | None = None,
) -> Blueprint:
    """A Blueprint serving `source` at the heartbeat routes (under `url_prefix`, if given).

    Registering it also makes routing errors under its paths (`/health…`, `/admin/heartbeat…`,
    or anything under a url_prefix) JSON, without touching the host app's other error pages.
    `refusals`: how refused admin attempts are rate-limited (default: 10 recorded a minute per
    client host).
    """
    views = Views(source)
    limiter = refusals if refusals is not None else RefusalLimiter()
    bp = Blueprint(name, __name__, url_prefix=url_prefix)
    prefixes: list[str] = []

    def remember_prefix(state: BlueprintSetupState) -> None:
        prefixes.append((state.url_prefix or "").rstrip("/"))

    bp.record(remember_prefix)

    def health() -> Response:
        if _wants_health_json():
            return _respond(_found(views.health_json(show=_authorized(source))), HEALTH_JSON)
        return _respond(views.health())

    def detailed() -> Response:
        if _wants_health_json():
            return _respond(_found(views.health_json(show=_authorized(source))), HEALTH_JSON)
        return _respond(views.detailed(show_targets=_authorized(source)))

    def service(name: str) -> Response:
        if _wants_health_json():
            answer = views.health_json(name, show=_authorized(source))
            return _unknown_service(name) if answer is None else _respond(answer, HEALTH_JSON)
        answer = views.service(name, show_target=_authorized(source))
        return _unknown_service(name) if answer is None else _respond(answer)

    def status() -> Response:
        decision = _decide(source)
        if not decision.allowed:
            return _denial(decision)
        return _respond(views.status())

    def record_refused(attempt: Attempt, suppressed: int) -> None:
        what = attempt.action
        more = f" (and {suppressed} more refused, not recorded one by one)" if suppressed else ""
        log.warning("admin %s refused: %s from %s%s", what, attempt.who, attempt.source, more)
        try:
            source.admin(attempt.action, who=attempt.who, source=attempt.source, allowed=False,
                         suppressed=suppressed)  # fmt: skip
        except (NotRunning, ReadOnly, LogError):
            # Not recorded now (no monitor, a full disk): counted again, recorded with a later
            # one; the refused client gets its denial all the same.
            limiter.unrecorded(attempt, suppressed)

    @bp.before_request
    def record_due_refusals() -> None:
        if not source.read_only:
            for attempt, suppressed in limiter.due():
                record_refused(attempt, suppressed)

    def admin(action: str) -> Callable[[], Response]:
        def act() -> Response:
            problem = _body_problem()
            if problem is not None:
                return _error(*problem)
            decision = _decide(source)
            if source.read_only:
                # Nothing is recorded: only the writer of the log can record.
                return _error(409, _READ_ONLY) if decision.allowed else _denial(decision)
            client = _client()
            try:
                if not decision.allowed:
                    # Recorded too (who tried, from where), within the rate limit of
                    # hbsm.api.refusals; the answer is the denial whatever.
                    host = request.remote_addr or "unknown"
                    attempt = Attempt(host, action, None, decision.who, client)
                    suppressed = limiter.admit(attempt)
                    if suppressed is not None:
                        record_refused(attempt, suppressed)
                    return _denial(decision)
                result = source.admin(action, who=decision.who, source=client, allowed=True)
            except ReadOnly as exc:
                return _error(409, str(exc))
            return _respond((200, encode(result)))

        act.__name__ = action
        return act

    rules: list[tuple[str, str, Callable[..., Response], str]] = [
        ("/health", "health", health, "GET"),
        ("/health/detailed", "detailed", detailed, "GET"),
        ("/health/service/<name>", "service", service, "GET"),
        ("/admin/heartbeat/status", "status", status, "GET"),
        ("/admin/heartbeat/start", "start", admin("start"), "POST"),
        ("/admin/heartbeat/stop", "stop", admin("stop"), "POST"),
    ]
    for rule, endpoint, view, method in rules:
        # No automatic OPTIONS: any method but the route's own is a 405 JSON error, as in the
        # standalone app.
        bp.add_url_rule(rule, endpoint, _guarded(view), methods=[method],
                        provide_automatic_options=False)  # fmt: skip

    @bp.before_app_request
    def json_routing_errors() -> Response | None:
        # Routing errors happen before any blueprint is chosen: answered here (before the
        # app's error handlers) for our paths only.
        exc = request.routing_exception
        if not isinstance(exc, NotFound | MethodNotAllowed) or not _ours(request.path, prefixes):
            return None
        path = request.path[:200]
        if isinstance(exc, MethodNotAllowed):
            # The standalone app's words, so a client sees the same error from either.
            allowed = ", ".join(m for m in _METHOD_ORDER if m in (exc.valid_methods or ()))
            message = f"{request.method[:20]} is not allowed on {path!r}; allowed: {allowed}"
            response = _error(405, message)
            response.headers["Allow"] = allowed
            return response
        return _error(404, f"no route {path!r}")

    return bp


# --- answers --------------------------------------------------------------------------------


def _respond(answer: Answer, mimetype: str = JSON) -> Response:
    code, body = answer
    response = Response(body, status=code, mimetype=mimetype)
    response.headers.update(_HEADERS)
    return response


def _found(answer: Answer | None) -> Answer:
    assert answer is not None  # only a named service can be missing
    return answer


def _error(status: int, message: str, detail: dict[str, Any] | None = None) -> Response:
    return _respond((status, encode(ErrorBody(error=message, status=status, detail=detail))))


def _body_problem() -> tuple[int, str] | None:
    """(status, why) for an admin request body the routes refuse, as the standalone app does:
    over MAX_BODY (413, refused unread) or not JSON (400). None: no body, or any JSON."""
    length = request.content_length
    if length is not None and length > MAX_BODY:
        return 413, f"request body larger than {MAX_BODY} bytes"
    body = request.stream.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:  # sent without a length (chunked)
        return 413, f"request body larger than {MAX_BODY} bytes"
    problem = admin_body_problem(body)
    return (400, problem) if problem is not None else None


def _unknown_service(name: str) -> Response:
    return _error(404, f"no service named {name[:128]!r}")


def _guarded(view: Callable[..., Response]) -> Callable[..., Response]:
    """A source that cannot answer (no monitor yet, shut down, busy) is a 503 ErrorBody."""

    def guarded(**kwargs: Any) -> Response:
        try:
            return view(**kwargs)
        except NotRunning as exc:
            return _error(503, str(exc))
        except LogError as exc:
            # The event log cannot be written (a full disk): the action was not carried out.
            return _error(503, f"the monitor cannot record this action now: {exc}")
        except Exception:
            # JSON like every other answer of these routes; the traceback goes to the log.
            log.exception("%s %s failed", request.method, request.path)
            return _error(500, "internal error; the app's log has the details")

    guarded.__name__ = view.__name__
    guarded.__doc__ = view.__doc__
    return guarded


def _wants_health_json() -> bool:
    # The standalone app's reading of Accept, so both pick the same media type.
    return wants_health_json(request.headers.get("Accept"))


def _ours(path: str, prefixes: list[str]) -> bool:
    for prefix in prefixes or [""]:
        if prefix and (path == prefix or path.startswith(prefix + "/")):
            return True
        for root in ("/health", "/admin/heartbeat"):
            full = prefix + root
            if path == full or path.startswith(full + "/"):
                return True
    return False


# --- admin authorization (the rule of hbsm.api.security, shared with the standalone app) ------


def _client() -> str:
    """The client as an `admin` event records it (host:port)."""
    host = request.remote_addr
    port = str(request.environ.get("REMOTE_PORT", ""))
    if not host:
        return "unknown"
    return client_label((host, int(port))) if port.isdigit() else host


def _decide(source: HeartbeatSource) -> Decision:
    # The same browser checks as the standalone app: without them any web page could drive a
    # loopback-only instance (a no-cors POST needs no preflight; DNS rebinding can read). The
    # WSGI server has joined repeated Host headers with commas already.
    return authorize(
        source.admin_token,
        request.headers.get("Authorization"),
        request.remote_addr,
        host=request.headers.get("Host"),
        origin=request.headers.get("Origin"),
        fetch_site=request.headers.get("Sec-Fetch-Site"),
        forwarded=any(h in request.headers for h in PROXY_HEADERS),
    )


def _authorized(source: HeartbeatSource) -> bool:
    return _decide(source).allowed


def _denial(decision: Decision) -> Response:
    response = _error(decision.status, decision.message)
    if decision.status == 401:
        response.headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    return response
