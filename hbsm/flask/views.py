"""The bodies of every route, encoded, from a source's projection, cached per version.

What a body needs from the projection is built once per projection version, under the source's
guard (`source.read`), with the bodies builders of `hbsm.api.bodies`; a request whose version
has not changed is served without touching the projection at all. Only the fields that depend
on the instant of the request (`timestamp`, `uptime_s`) are filled in per request, so a body is
byte for byte what `hbsm.api.bodies` builds for that projection and that `now`. (The other
fields that depend on `now` — a service's `restarts_in_window` — are as of the version's first
request: a probe changes the version every check interval anyway.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from hbsm import __version__
from hbsm.api import bodies
from hbsm.api.bodies import DetailedHealth, HealthJson, HeartbeatStatus, ServiceHealth
from hbsm.events import MonitorView
from hbsm.flask.sources import HeartbeatSource
from hbsm.projection import Projection

if TYPE_CHECKING:
    from hbsm.outage import Outage

__all__ = ["Views"]

T = TypeVar("T")
Answer = tuple[int, bytes]

# DetailedHealth ends with its `services`: the encoded services are spliced into the rest.
_EMPTY_TAIL = b'"services":{}}'


class _Frame:
    """The parts built from one version of the projection, and encodings derived from them."""

    __slots__ = ("parts", "version")

    def __init__(self, version: Hashable) -> None:
        self.version = version
        self.parts: dict[Hashable, Any] = {}


class Views:
    """`(status, body)` of each route for one source; thread-safe."""

    def __init__(self, source: HeartbeatSource) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._frame = _Frame(None)

    # --- routes -------------------------------------------------------------------------

    def health(self) -> Answer:
        now = self.source.clock()
        outage = self.source.outage()
        body, code = self._part("health", lambda p: bodies.health(p, now=now, outage=outage))
        return code, bodies.encode(msgspec.structs.replace(body, timestamp=bodies.iso(now)))

    def detailed(self, *, show_targets: bool) -> Answer:
        now = self.source.clock()
        outage = self.source.outage()
        version, part = self._versioned("detailed", lambda p: _detailed(p, now, outage))
        body = part.body
        services = self._derived(version, ("detailed", show_targets),
                                 lambda: _encode_services(body, show_targets))  # fmt: skip
        uptime = _uptime(body.monitoring.running, part.started_at, now)
        outer = msgspec.structs.replace(
            body,
            timestamp=bodies.iso(now),
            monitoring=msgspec.structs.replace(body.monitoring, uptime_s=uptime),
            services={},
        )
        encoded = bodies.encode(outer)
        if not encoded.endswith(_EMPTY_TAIL):  # a field was added after `services`
            shown = {n: _shown(s, show_targets) for n, s in body.services.items()}
            return part.code, bodies.encode(msgspec.structs.replace(outer, services=shown))
        return part.code, encoded[: -len(b"{}}")] + services + b"}"

    def service(self, name: str, *, show_target: bool) -> Answer | None:
        """None: no such service."""
        now = self.source.clock()
        outage = self.source.outage()
        version, part = self._versioned("detailed", lambda p: _detailed(p, now, outage))
        one = part.body.services.get(name)
        if one is None:
            return None
        return 200, self._derived(version, ("service", name, show_target),
                                  lambda: bodies.encode(_shown(one, show_target)))  # fmt: skip

    def health_json(self, name: str | None = None, *, show: bool = False) -> Answer | None:
        """`application/health+json` of every service, or of one (None: no such service).
        `show`: an admin-authorized client, who sees the checks' `output`."""
        now = self.source.clock()
        outage = self.source.outage()
        version, (body, code) = self._versioned(
            "health+json", lambda p: _health_json(p, now, outage)
        )
        if name is None:
            return code, self._derived(
                version, ("health+json", None, show), lambda: bodies.encode(_shown(body, show))
            )
        key = f"{name}:responseTime"
        checks = body.checks.get(key)
        if checks is None:
            return None
        # One service's status, not the whole monitor's (as the standalone app answers).
        status = checks[0].status
        one = msgspec.structs.replace(body, status=status, checks={key: checks})
        return 503 if status == "fail" else 200, self._derived(
            version, ("health+json", name, show), lambda: bodies.encode(_shown(one, show))
        )

    def status(self) -> Answer:
        now = self.source.clock()
        body = self._part("status", lambda p: _status(self.source, p, now))
        uptime = _uptime(body.body.running, body.started_at, now)
        return 200, bodies.encode(msgspec.structs.replace(body.body, uptime_s=uptime))

    # --- the cache ----------------------------------------------------------------------

    def _part(self, key: Hashable, build: Callable[[Projection], T]) -> T:
        return self._versioned(key, build)[1]

    def _versioned(self, key: Hashable, build: Callable[[Projection], T]) -> tuple[Hashable, T]:
        """(version, part): from the cache when the projection has not changed since."""
        version = self.source.version()
        with self._lock:
            frame = self._frame
            if frame.version == version and key in frame.parts:
                return version, frame.parts[key]

        def versioned(projection: Projection) -> tuple[Hashable, T]:
            # The version under the guard: the part is exactly that version's.
            return self.source.version(), build(projection)

        built_version, part = self.source.read(versioned)
        with self._lock:
            if self._frame.version != built_version:
                self._frame = _Frame(built_version)
            self._frame.parts.setdefault(key, part)
        return built_version, part

    def _derived(self, version: Hashable, key: Hashable, make: Callable[[], bytes]) -> bytes:
        """An encoding derived from a part of `version` (cached while that version is current)."""
        with self._lock:
            frame = self._frame
            cached = frame.parts.get(key) if frame.version == version else None
        if cached is not None:
            return cached
        value = make()
        with self._lock:
            if self._frame.version == version:
                self._frame.parts.setdefault(key, value)
        return value


class _Detailed(msgspec.Struct):
    body: DetailedHealth  # with every target; hidden per request as the client's rights say
    code: int
    started_at: float | None  # the body has it as text: uptime is computed from this


class _Status(msgspec.Struct):
    body: HeartbeatStatus
    started_at: float | None


def _detailed(projection: Projection, now: float, outage: Outage | None) -> _Detailed:
    body, code = bodies.detailed_health(projection, now=now, show_targets=True, outage=outage)
    return _Detailed(body=body, code=code, started_at=projection.monitor.started_at)


def _health_json(
    projection: Projection, now: float, outage: Outage | None
) -> tuple[HealthJson, int]:
    return bodies.health_json(
        projection, now=now, version=release_id(projection.monitor), outage=outage
    )


def _status(source: HeartbeatSource, projection: Projection, now: float) -> _Status:
    m = projection.monitor
    config = source.config_view(projection)
    body = bodies.heartbeat_status(
        projection, now=now, log_path=source.log_path, config=config, outage=source.outage()
    )
    running = source.scheduler_running()
    if running is not None:
        # The scheduler itself, not what the log last said about it.
        body = msgspec.structs.replace(body, running=running)
    return _Status(body=body, started_at=m.started_at)


def release_id(monitor: MonitorView) -> str:
    """The `releaseId` of health+json: the version of the hbsm that writes the log."""
    return monitor.version or __version__


B = TypeVar("B", ServiceHealth, HealthJson)


def _shown(body: B, show_target: bool) -> B:
    # The builders' own rule (hbsm.api.redaction): internals only for admin-authorized clients.
    return body if show_target else bodies.hide_internals(body)


def _encode_services(body: DetailedHealth, show_targets: bool) -> bytes:
    services = {name: _shown(s, show_targets) for name, s in body.services.items()}
    return bodies.encode(services)  # type: ignore[arg-type]  # the same encoder, on a dict


def _uptime(running: bool, started_at: float | None, now: float) -> float | None:
    # As hbsm.api.bodies computes it.
    return now - started_at if running and started_at is not None else None
