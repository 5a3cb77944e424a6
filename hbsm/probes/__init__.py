"""Probes: observe services and report what was found as `Probe` facts. Nothing here decides.

* `Prober` runs one probe (HTTP: a plain GET or HEAD on the lean path, one write and one C parse
  over kept-alive connections, anything else through one shared httpx client; TCP connect; or
  a command) under a semaphore bounding the probes in flight; the latency it records starts
  after the semaphore, so our own queueing is not counted as the target's slowness.
* `Scheduler` says when: each service on a fixed grid of its interval (no drift), spread over
  the interval by a hash of its name, never two probes of one service at once, probe-now on
  ask; when the probes ask for more than the loop can do, every interval stretched by the same
  factor (`Pace`), none starved.

Failure classes (`Probe.error`, see hbsm.state.ERROR_CLASSES): refused, dns, tls, timeout,
protocol (not valid HTTP, connection closed before or during the answer), http_5xx, http_4xx,
body_mismatch, slow (a success slower than `slow_ms`), command (non-zero exit), other (an
unexpected status, an encoding hbsm cannot decode, ...).
"""

from ._body import BODY_LIMIT
from ._classify import classify
from ._pace import Pace, PaceChange
from ._prober import TRANSPORTS, Prober, Transport
from ._scheduler import Scheduler, SchedulerStats, first_offset
from ._tcp import parse_target

__all__ = [
    "BODY_LIMIT",
    "TRANSPORTS",
    "Pace",
    "PaceChange",
    "Prober",
    "Scheduler",
    "SchedulerStats",
    "Transport",
    "classify",
    "first_offset",
    "parse_target",
]
