"""The encoded answers of the read routes, framework-neutral, cached per projection version.

`/health` and `/health/detailed` come from the in-memory projection, never from the log
(docs/performance.md), and are encoded once per projection version rather than once per request. A
cached body is also dropped after `max_age` seconds (1 s by default) even if no event arrived:
its `timestamp`, uptime and "restarts in window" are functions of the clock, and a quiet monitor
(long check intervals) would otherwise serve them stale. So a body is built at most once per
version and per second, whatever the request rate.

While the monitor is overloaded (its probes ask for more than it can do) a new version comes
every few hundred microseconds, and a `/health/detailed` of 10,000 services takes ~100 ms to
build: rebuilt per version, the bodies alone would take the core the probes need. So then a
body is rebuilt once per `max_age` at most, whatever the events, and aside, in a thread of its
own, while the requests go on getting the one there is: no request waits for a build. An answer
may then be a second or so behind the log, as every service's probes are behind their intervals.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import msgspec

from hbsm.api import bodies
from hbsm.api.answer import HEALTH_JSON, Answer
from hbsm.api.source import Source

__all__ = ["Views"]


def _version() -> str:
    from hbsm import __version__

    return __version__


class Views:
    """The read routes' answers for one source."""

    def __init__(self, source: Source, *, max_age: float = 1.0) -> None:
        self.source = source
        self.max_age = max_age
        # key -> (projection identity, version, built at, answer)
        self._cache: dict[tuple[Any, ...], tuple[int, int, float, Answer]] = {}
        self.builds = 0  # how many bodies were encoded (for tests and the benchmark)
        self._aside: set[tuple[Any, ...]] = set()  # the bodies being rebuilt aside
        self._aside_lock = threading.Lock()

    def _cached(self, key: tuple[Any, ...], build: Callable[[float], Answer]) -> Answer:
        source = self.source
        now = source.now()
        projection = source.projection
        hit = self._cache.get(key)
        if hit is not None and source.outage is None and hit[0] == id(projection):
            fresh = 0 <= now - hit[2] < self.max_age
            if hit[1] == projection.version and fresh:
                return hit[3]
            if projection.monitor.overloaded_since is not None:
                if not fresh:
                    self._build_aside(key, build)
                return hit[3]
        return self._build(key, build, now)

    def _build_aside(self, key: tuple[Any, ...], build: Callable[[float], Answer]) -> None:
        with self._aside_lock:
            if key in self._aside:
                return
            self._aside.add(key)

        def work() -> None:
            try:
                self._build(key, build, self.source.now())
            finally:
                with self._aside_lock:
                    self._aside.discard(key)

        threading.Thread(target=work, name="hbsm-api-body", daemon=True).start()

    def _build(self, key: tuple[Any, ...], build: Callable[[float], Answer], now: float) -> Answer:
        source = self.source
        with source.lock:
            projection = source.projection
            version = projection.version
            answer = build(now)
        self.builds += 1
        self._cache[key] = (id(projection), version, now, answer)
        return answer

    def health(self, *, health_json: bool = False, show_internals: bool = False) -> Answer:
        """`show_internals` (admin-authorized clients): what only they see (hbsm.api.redaction);
        only health+json has any here."""
        if health_json:
            return self._health_json_cached(show_internals)

        def build(now: float) -> Answer:
            body, status = bodies.health(self.source.projection, now=now, outage=self.source.outage)
            return Answer(status, bodies.encode(body))

        return self._cached(("health",), build)

    def detailed(self, *, show_targets: bool, health_json: bool = False) -> Answer:
        if health_json:
            return self._health_json_cached(show_targets)

        def build(now: float) -> Answer:
            body, status = bodies.detailed_health(
                self.source.projection,
                now=now,
                show_targets=show_targets,
                outage=self.source.outage,
            )
            return Answer(status, bodies.encode(body))

        return self._cached(("detailed", show_targets), build)

    def _health_json_cached(self, show: bool) -> Answer:
        def build(now: float) -> Answer:
            projection = self.source.projection
            body, status = bodies.health_json(
                projection, now=now, version=self._release(projection), outage=self.source.outage
            )
            body = body if show else bodies.hide_internals(body)
            return Answer(status, bodies.encode(body), HEALTH_JSON)

        return self._cached(("health+json", show), build)

    def service(self, name: str, *, show_target: bool, health_json: bool = False) -> Answer | None:
        """One service's answer; None if there is no such service. Not cached: it is small."""
        source = self.source
        now = source.now()
        with source.lock:
            projection = source.projection
            view = projection.services.get(name)
            if view is None:
                return None
            if health_json:
                body, _ = bodies.health_json(
                    projection, now=now, version=self._release(projection), names=[name]
                )
                # The status of this one service, not of the whole monitor.
                (check,) = body.checks[f"{name}:responseTime"]
                body = msgspec.structs.replace(body, status=check.status)
                body = body if show_target else bodies.hide_internals(body)
                return Answer(
                    503 if check.status == "fail" else 200, bodies.encode(body), HEALTH_JSON
                )
            one = bodies.service_health(
                view, now=now, show_target=show_target, monitoring=projection.monitor.running
            )
        return Answer(200, bodies.encode(one))

    def status(self) -> Answer:
        source = self.source
        now = source.now()
        config = source.config_view()
        with source.lock:
            body = bodies.heartbeat_status(
                source.projection,
                now=now,
                log_path=source.log_path,
                config=config,
                outage=source.outage,
            )
            # A live monitor's scheduler itself, not what the log last said about it.
            body = msgspec.structs.replace(body, running=source.running())
        return Answer(200, bodies.encode(body))

    @staticmethod
    def _release(projection: Any) -> str:
        return str(projection.monitor.version or _version())
