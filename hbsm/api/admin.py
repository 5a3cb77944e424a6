"""Admin actions: authorized or refused, recorded, carried out, and answered in words.

An admin action, allowed or not, is recorded as an `admin` event (who: "token" / "loopback" /
"anonymous"; source: the client's host:port), on disk before it is answered. A denied one gets
401/403 after being recorded, at most 10 a minute per client host: the others are counted and
the count recorded later (hbsm.api.refusals), when the handler next runs or when the server
sweeps. A source that only reads a log has no monitor to act: 409, nothing recorded. A process
serving the log of another process of its app relays the action to that one (hbsm.api.relay).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from hbsm.api import bodies
from hbsm.api.answer import Answer, error
from hbsm.api.refusals import Attempt, RefusalLimiter
from hbsm.api.security import WWW_AUTHENTICATE, Decision, admin_body_problem, client_label
from hbsm.api.source import Control, NotRunning, Source
from hbsm.cluster import NotOwnerError
from hbsm.events import Event, Transition
from hbsm.log import LogError
from hbsm.vocabulary import RELOAD_ACTION, log_action

__all__ = ["AdminAsk", "AdminDesk", "denied", "heartbeat_result", "service_result"]

log = logging.getLogger("hbsm.api")


class AdminAsk(NamedTuple):
    """One admin request as the desk takes it."""

    body: bytes
    decision: Decision  # allowed or refused, by whom (hbsm.api.security.authorize)
    client: tuple[str, int | None] | None
    action: str  # a URL action: start, stop, pause, repair-now, ...
    service: str | None  # None: the whole monitor


class AdminDesk:
    """Carries out the admin actions of one source, and keeps its refusals within limits."""

    def __init__(self, source: Source, refusals: RefusalLimiter) -> None:
        self.source = source
        self.refusals = refusals

    def knows(self, name: str) -> bool:
        control = None if self.source.relay is not None else self.source.control
        if control is not None:
            return name in control.services
        with self.source.lock:
            return name in self.source.projection.services

    async def act(self, ask: AdminAsk) -> Answer:
        """`ask.action` (a URL action: start, stop, pause, repair-now, ...) on the whole monitor
        (`ask.service` None) or one service, for a client its decision allows or refuses."""
        relay = self.source.relay
        if relay is not None:  # the monitor is another process's: it answers
            return await relay.act(ask)
        body, decision, client, action, service = ask
        problem = admin_body_problem(body)
        if problem is not None:
            return error(400, problem)
        control = self.source.control
        if control is None:
            if not decision.allowed:
                return denied(decision)
            return error(
                409,
                f"this instance only reads the log of {self.source.log_path}: admin actions "
                "need the monitor that writes it (`hbsm run`)",
            )
        who, source = decision.who, client_label(client)
        if not decision.allowed:
            host = client[0] if client is not None and client[0] else "unknown"
            await self._refused(Attempt(host, log_action(action), service, who, source))
            return denied(decision)
        if action == RELOAD_ACTION:
            return await self._reload(control, who, source)
        what = f"{action} {service}" if service else action
        was_running = control.heartbeat_running
        try:
            events = await control.admin(
                log_action(action), service, who=who, source=source, allowed=True
            )
        except KeyError:
            return error(404, f"no service named {(service or '')[:128]!r}")
        except NotOwnerError as exc:
            return error(409, str(exc))
        except LogError as exc:
            return error(503, f"the monitor cannot record this action now: {exc}")
        log.info("admin %s by %s from %s", what, who, source)
        running = control.heartbeat_running
        if service is None:
            result = heartbeat_result(action, was_running, running)
        else:
            # The state the action left it in: its own last transition, if it made one. Read
            # from the projection instead, it may already be a later one (served from a thread
            # of its own, the API reads while the monitor's loop goes on: a repair's diagnose
            # can be over by then).
            moved = [e for e in events if isinstance(e, Transition) and e.service == service]
            if moved:
                state: str | None = moved[-1].dst
            else:
                view = self.source.projection.services.get(service)
                state = view.fsm.state if view is not None else None
            result = service_result(action, service, events, running, state)
        return Answer(200, bodies.encode(result))

    async def _reload(self, control: Control, who: str, source: str) -> Answer:
        """Read the configuration file again: 200 with what changed, 422 with the one line
        of a refused file (the running configuration stays)."""
        from hbsm.monitor.reload import ReloadUnavailableError

        try:
            result = await control.reload(source="api", who=who)
        except ReloadUnavailableError as exc:
            return error(409, str(exc))
        except LogError as exc:
            return error(503, f"the monitor cannot record a reload now: {exc}")
        if not result.ok:
            return error(422, result.message)
        log.info("config reloaded by %s from %s", who, source)
        e = result.event
        body = bodies.ConfigReload(
            ok=True, version=result.version, hash=result.hash, message=result.message,
            added=e.added if e else [], removed=e.removed if e else [],
            changed=e.changed if e else {}, deferred=e.deferred if e else [],
            needs_restart=e.needs_restart if e else [],
        )  # fmt: skip
        return Answer(200, bodies.encode(body))

    # --- refusals -------------------------------------------------------------------------

    async def record_due(self) -> None:
        """Record the refusals whose window has ended (cheap when none has)."""
        try:
            control = self.source.control
        except NotRunning:
            return  # recorded once there is a monitor to record them (or drained at its end)
        if control is not None:
            await self.record_refusals(self.refusals.due())

    async def record_refusals(self, summaries: list[tuple[Attempt, int]]) -> None:
        """Record the summaries of `RefusalLimiter.due()`/`drain()`."""
        for attempt, suppressed in summaries:
            await self._record_refused(attempt, suppressed)

    async def _refused(self, attempt: Attempt) -> None:
        """Record a refused attempt, or only count it (hbsm.api.refusals): a client hammering
        an admin route must not grow the log, nor the monitor's own diagnostics, at will."""
        suppressed = self.refusals.admit(attempt)
        if suppressed is not None:
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
            except (KeyError, NotOwnerError):
                return  # no such service (any more), or its owner is another node's log
            except LogError as exc:
                log.warning("admin %s refused, and could not be recorded: %s", what, exc)
        if not recorded:  # a full disk, say: counted again, recorded with a later one
            self.refusals.unrecorded(attempt, suppressed)


def denied(decision: Decision) -> Answer:
    """401 (with the challenge) or 403, in the decision's words."""
    extra = {"WWW-Authenticate": WWW_AUTHENTICATE} if decision.status == 401 else None
    return error(decision.status, decision.message, extra=extra)


def heartbeat_result(action: str, before: bool, after: bool) -> bodies.AdminResult:
    """The answer to `start`/`stop` of the whole monitor; idempotent, so `changed` may be false."""
    changed = before != after
    if action == "start":
        message = "heartbeat started" if changed else "heartbeat already running"
    else:
        message = "heartbeat stopped" if changed else "heartbeat already stopped"
    return bodies.AdminResult(
        action=action, ok=True, changed=changed, running=after, message=message
    )


def service_result(
    action: str, name: str, events: list[Event], running: bool, state: str | None
) -> bodies.AdminResult:
    """The answer to a per-service action, from the events it led to and the state after."""
    moved = [e for e in events if isinstance(e, Transition) and e.src != e.dst]
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
