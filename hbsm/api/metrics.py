"""`GET /metrics`: the projection in the Prometheus text format, read at scrape time.

A custom collector on a registry of its own (never the process-global one, so two apps in one
process do not collide). Families:

    hbsm_monitor_running                    gauge    1 while the probe scheduler runs
    hbsm_overloaded                         gauge    1 while the probes ask for more than it can do
    hbsm_schedule_stretch                   gauge    the factor every interval is stretched by
    hbsm_log_last_seq                       gauge    seq of the last event folded
    hbsm_events_total{type}                 counter  events in the log, by type
    hbsm_services                           gauge    services known
    hbsm_service_state{service,state}       gauge    1 for the state a service is in, else 0
    hbsm_service_failures{service}          gauge    consecutive failed probes
    hbsm_service_restarts_total{service}    counter  restarts (over the log's whole history)
    hbsm_service_repairs_total{service}     counter  repair runs started
    hbsm_service_probes_failed_total{service} counter
    hbsm_probe_latency_seconds{service}     histogram of probe latencies
    hbsm_cert_expiry_days{service}          gauge    days until the TLS certificate an https
                                                     service presents ends (negative: ended)
    hbsm_cert_expiring{service}             gauge    1 while that certificate is reported as
                                                     expiring within cert_warn_days, else 0

The latency histogram is maintained incrementally, not rebuilt from each service's bounded
latency history: a Prometheus histogram's buckets are counters, and a window of the last 60
probes would go down as well as up (rate() and histogram_quantile() would lie). It is seeded at
the first scrape with the history the projection holds, then fed every later probe by a log
follower polled at each scrape (so nothing is missed between scrapes however fast the probes).
Probes that got no answer (latency unknown) are not observed; they count in probes_failed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from hbsm.api.source import Source
from hbsm.events import Event, OpaqueEvent, Probe
from hbsm.log import CorruptLineError, Follower, LogError
from hbsm.projection import cert_days_left
from hbsm.state import STATES

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "LatencyHistogram", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# Seconds: from a local health check (a few ms) to a probe at its timeout.
LATENCY_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

log = logging.getLogger("hbsm.api")


class _Series:
    __slots__ = ("counts", "total")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * (buckets + 1)  # per bucket, not cumulative; the last is +Inf
        self.total = 0.0


class LatencyHistogram:
    """Per-service probe latency histograms, fed from the log (see the module's docstring)."""

    def __init__(self, source: Source, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.source = source
        self.buckets = tuple(buckets)
        self.series: dict[str, _Series] = {}
        self._follower: Follower | None = None
        self._after: int | None = None  # where following starts, set by prime()
        self._lock = threading.RLock()

    def observe(self, service: str, seconds: float) -> None:
        series = self.series.get(service)
        if series is None:
            series = self.series[service] = _Series(len(self.buckets))
        index = len(self.buckets)
        for i, bound in enumerate(self.buckets):
            if seconds <= bound:
                index = i
                break
        series.counts[index] += 1
        series.total += seconds

    def prime(self) -> None:
        """At the first call: seed the histograms with the latency history the projection
        holds, and note where following the log starts. Reads the projection: call it where
        the projection may be read (the monitor's loop; any thread for a LogSource)."""
        source = self.source
        with self._lock:
            if self._after is not None:
                return
            with source.lock:
                for name, view in list(source.projection.services.items()):
                    for ms in view.latency_ms:
                        if ms is not None:
                            self.observe(name, ms / 1000)
                self._after = source.projection.monitor.last_seq

    def update(self) -> int:
        """Fold the probes logged since the last call (after `prime`). Does file I/O: keep it
        off the event loop."""
        self.prime()
        with self._lock:
            if self._follower is None:
                assert self._after is not None
                self._follower = self.source.follow(self._after)
            observed = 0
            while True:
                try:
                    batch = self._follower.poll()
                except CorruptLineError:
                    continue  # raised once, then passed over; LogSource reports it
                except LogError as exc:
                    # Fell behind a pruned segment (no scrape for a long time): go on from now.
                    log.warning("metrics: %s; latency histogram continues from now", exc)
                    self._follower.close()
                    self._follower = self.source.follow(self.source.projection.monitor.last_seq)
                    continue
                if not batch:
                    return observed
                observed += self._fold(batch)

    def _fold(self, events: Iterable[Event | OpaqueEvent]) -> int:
        n = 0
        for event in events:
            if type(event) is Probe and event.latency_ms is not None:
                self.observe(event.service, event.latency_ms / 1000)
                n += 1
        return n

    def family(self, services: Iterable[str]) -> HistogramMetricFamily:
        family = HistogramMetricFamily(
            "hbsm_probe_latency_seconds", "Probe latency of each service", labels=["service"]
        )
        bounds = [*(_fmt(b) for b in self.buckets), "+Inf"]
        with self._lock:
            for name in services:
                series = self.series.get(name)
                counts = series.counts if series is not None else [0] * len(bounds)
                cumulative: list[tuple[str, float]] = []
                running = 0
                for bound, count in zip(bounds, counts, strict=True):
                    running += count
                    cumulative.append((bound, running))
                family.add_metric([name], cumulative, series.total if series is not None else 0)
        return family

    def close(self) -> None:
        with self._lock:
            if self._follower is not None:
                self._follower.close()
                self._follower = None


def _fmt(bound: float) -> str:
    return repr(float(bound))


class _Collector:
    def __init__(self, source: Source, latency: LatencyHistogram) -> None:
        self.source = source
        self.latency = latency

    def collect(self) -> Iterator[Metric]:
        source = self.source
        running = GaugeMetricFamily("hbsm_monitor_running", "1 while the probe scheduler runs")
        overloaded = GaugeMetricFamily(
            "hbsm_overloaded", "1 while the probes ask for more than the monitor can do"
        )
        stretch = GaugeMetricFamily(
            "hbsm_schedule_stretch",
            "The factor every interval is stretched by (1: as configured), as recorded",
        )
        last_seq = GaugeMetricFamily("hbsm_log_last_seq", "seq of the last event folded")
        events = CounterMetricFamily("hbsm_events", "Events in the log, by type", labels=["type"])
        count = GaugeMetricFamily("hbsm_services", "Services known")
        state = GaugeMetricFamily(
            "hbsm_service_state",
            "1 for the state the service is in, else 0",
            labels=["service", "state"],
        )
        failures = GaugeMetricFamily(
            "hbsm_service_failures", "Consecutive failed probes", labels=["service"]
        )
        restarts = CounterMetricFamily(
            "hbsm_service_restarts", "Restarts of the service", labels=["service"]
        )
        repairs = CounterMetricFamily(
            "hbsm_service_repairs", "Repair runs started for the service", labels=["service"]
        )
        failed = CounterMetricFamily(
            "hbsm_service_probes_failed", "Failed probes of the service", labels=["service"]
        )
        cert_days = GaugeMetricFamily(
            "hbsm_cert_expiry_days",
            "Days until the TLS certificate the service presents ends (negative: it has)",
            labels=["service"],
        )
        cert_expiring = GaugeMetricFamily(
            "hbsm_cert_expiring",
            "1 while the service's certificate is reported as expiring within cert_warn_days",
            labels=["service"],
        )
        now = source.now()
        with source.lock:
            projection = source.projection
            running.add_metric([], 1.0 if source.running() else 0.0)
            overloaded.add_metric([], 0.0 if projection.monitor.overloaded_since is None else 1.0)
            stretch.add_metric([], projection.monitor.stretch)
            last_seq.add_metric([], projection.monitor.last_seq)
            for kind, n in sorted(projection.monitor.counts.items()):
                events.add_metric([kind], n)
            count.add_metric([], len(projection.services))
            names = list(projection.services)
            for name, view in list(projection.services.items()):
                current = view.fsm.state
                for s in STATES:
                    state.add_metric([name, s], 1.0 if s == current else 0.0)
                failures.add_metric([name], view.fsm.failures)
                restarts.add_metric([name], view.restarts_total)
                repairs.add_metric([name], view.repairs_total)
                failed.add_metric([name], view.probes_failed)
                if view.cert is not None:
                    cert_days.add_metric([name], round(cert_days_left(view.cert, now), 3))
                    cert_expiring.add_metric([name], 0.0 if view.cert_expiring is None else 1.0)
        yield from (
            running,
            overloaded,
            stretch,
            last_seq,
            events,
            count,
            state,
            failures,
            restarts,
            repairs,
            failed,
            cert_days,
            cert_expiring,
        )
        yield self.latency.family(names)


class Metrics:
    """The registry of one app. From the monitor's loop: `prime()`, then
    `await asyncio.to_thread(metrics.update)` (reads the log), then `render()` (reads the
    projection). From a thread with a LogSource: `scrape()` does all three."""

    def __init__(self, source: Source) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.latency = LatencyHistogram(source)
        self.registry.register(_Collector(source, self.latency))

    def prime(self) -> None:
        self.latency.prime()

    def update(self) -> None:
        self.latency.update()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def scrape(self) -> bytes:
        self.update()
        return self.render()

    def close(self) -> None:
        self.latency.close()
