"""Projections: fold events into the views the API and the dashboard show.

A plain fold over recorded events: the FSM state of each service comes from `hbsm.evolve`
(the same code the live state machine applies its decisions with), never from firing
`transitions` per event, so a replay runs at millions of events per second. The fold does no
I/O; callers feed it events from a log reader, a follower or an API stream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

import msgspec

from hbsm.events import (
    LATENCY_HISTORY,
    TYPE_NAMES,
    Admin,
    CertExpiring,
    CertSeen,
    ConfigReloaded,
    Event,
    MonitorCaughtUp,
    MonitorOverloaded,
    MonitorStarted,
    MonitorStopped,
    MonitorView,
    OpaqueEvent,
    Probe,
    ProbeSeen,
    ProcessLost,
    ProcessStarted,
    ProcessStopped,
    RepairFinished,
    RepairStarted,
    RestartFinished,
    RestartStarted,
    ServiceOwned,
    ServiceRegistered,
    ServiceRemoved,
    ServiceView,
    Snapshot,
    Transition,
)
from hbsm.evolve import evolve, evolve_probe
from hbsm.state import ServiceState

__all__ = ["Projection", "cert_days_left", "next_action", "vantage_points"]

_DAY: Final = 86400.0


def cert_days_left(cert: CertSeen, now: float) -> float:
    """Days from `now` to the certificate's end (negative once it has ended)."""
    return (cert.not_after - now) / _DAY


def next_action(view: ServiceView) -> tuple[str, float | None]:
    """What hbsm will do next for a service, and when (None: when something else finishes)."""
    s = view.fsm
    state = s.state
    if state == "paused":
        return "paused", None
    if state == "failed":
        return "awaiting reset", None
    if state == "restarting":
        return "restart in progress", None
    if state == "repairing":
        if s.in_flight:
            return f"repair step {s.in_flight.partition(':')[2]}", None
        return "verify repair", None
    if state == "cooldown" and (s.cooldown_holds or s.restart_pending):
        # Waiting for the deadline: to restart (a restart step came too soon), or, under the
        # first rules, to count probes again.
        return ("restart if still failing" if s.restart_pending else "cooldown ends"), (
            s.cooldown_until
        )
    last = view.last_probe
    if state == "degraded" and s.failed_runs and (last is None or last.ts < s.repair_after):
        return "next repair run", s.repair_after  # backing off after runs that did not fix it
    return "probe", (last.ts + view.policy.check_interval) if last is not None else None


def vantage_points(view: ServiceView) -> dict[str, ProbeSeen]:
    """What each node last saw of a service, by node: the other vantage points' facts, and the
    owner's own last probe as the owner saw it (its `ok` may be a quorum's verdict; its own
    vote is what it saw). Empty for a single monitor's service."""
    points = dict(view.seen)
    last = view.last_probe
    if last is not None and last.node:
        own = next((v for v in last.votes if v.node == last.node), None)
        points[last.node] = ProbeSeen(
            ts=last.ts, service=last.service, node=last.node,
            ok=own.ok if own is not None else last.ok, latency_ms=last.latency_ms,
            status=last.status, error=last.error, detail=last.detail,
        )  # fmt: skip
    return dict(sorted(points.items()))


class Projection:
    """Every service's view and the monitor's, as of the last event applied."""

    def __init__(self, history: int = LATENCY_HISTORY) -> None:
        self.monitor = MonitorView()
        self.services: dict[str, ServiceView] = {}
        # Bumps on every applied event: the API caches encoded bodies per version.
        self.version = 0
        self._history = history
        # Trim in bulk when a quarter more has piled up: amortised O(1) per probe.
        self._trim_at = history + max(1, history // 4)
        self._counts: dict[str, int] = {}
        # What a probe touches of its service, one lookup away: the view, its state and its
        # latency list (built from `services` on a service's first probe, dropped when a
        # snapshot replaces the views; the fold never replaces a view's state or lists).
        self._hot: dict[str, _Hot] = {}
        self._handlers: Final[dict[type, Callable[[Any], None]]] = {
            Transition: self._on_transition,
            RepairStarted: self._on_repair_started,
            RepairFinished: self._on_service_event,
            RestartStarted: self._on_restart_started,
            RestartFinished: self._on_restart_finished,
            ProcessStarted: self._on_process_started,
            ProcessLost: self._on_process_gone,
            ProcessStopped: self._on_process_gone,
            ServiceRegistered: self._on_registered,
            ServiceRemoved: self._on_removed,
            ConfigReloaded: self._on_reloaded,
            ServiceOwned: self._on_owned,
            ProbeSeen: self._on_seen,
            CertSeen: self._on_cert_seen,
            CertExpiring: self._on_cert_expiring,
            MonitorStarted: self._on_monitor_started,
            MonitorStopped: self._on_monitor_stopped,
            MonitorOverloaded: self._on_overloaded,
            MonitorCaughtUp: self._on_caught_up,
            Admin: self._on_admin,
            Snapshot: self._on_snapshot,
        }

    # --- folding --------------------------------------------------------------------------

    def apply(self, event: Event | OpaqueEvent) -> None:
        self.apply_all((event,))

    def apply_all(self, events: Iterable[Event | OpaqueEvent]) -> int:
        """Fold events in order; returns how many were applied."""
        handlers = self._handlers
        hot = self._hot
        trim_at = self._trim_at
        keep = self._history
        probe = Probe
        by_class: dict[type, int] = {}
        probes = 0
        n = 0
        event: Event | OpaqueEvent | None = None
        for event in events:
            if type(event) is probe:
                # The hot path (most of any log), inlined: a call costs as much as the work.
                e: Probe = event
                try:
                    view, fsm, latencies = hot[e.service]
                except KeyError:
                    view, fsm, latencies = self._hot_entry(e.service)
                if e.ok:
                    if fsm.state != "healthy" or fsm.grace_until:
                        evolve_probe(fsm, e)  # else it would change nothing
                else:
                    evolve_probe(fsm, e)
                    view.last_failure = e
                    view.probes_failed += 1
                view.last_probe = e
                latencies.append(e.latency_ms)
                if len(latencies) >= trim_at:
                    del latencies[:-keep]
                probes += 1
                continue
            cls = type(event)
            handler = handlers.get(cls)
            if handler is not None:
                handler(event)
                if cls is Snapshot:
                    # Fix (tests/reliability): a snapshot in the middle of a batch starts the
                    # fold over. Its counts already include every event before it, this batch's
                    # too: they were counted twice at the end. And it replaces the services
                    # dict: the probes after it went to the views it had replaced. Either way
                    # the result depended on where a reader's batches happened to begin.
                    by_class.clear()
                    probes = n = 0
            elif cls is OpaqueEvent:
                kind = event.type  # type: ignore[union-attr]
                self._counts[kind] = self._counts.get(kind, 0) + 1
            by_class[cls] = by_class.get(cls, 0) + 1
            n += 1
        n += probes
        if n:
            by_class[Probe] = by_class.get(Probe, 0) + probes
            counts = self._counts
            for cls, k in by_class.items():
                kind = TYPE_NAMES.get(cls)
                if kind is not None and k:
                    counts[kind] = counts.get(kind, 0) + k
            m = self.monitor
            m.events_total += n
            m.last_seq = event.seq  # type: ignore[union-attr]
            m.last_ts = event.ts  # type: ignore[union-attr]
            m.counts = counts
            self.version += n
        return n

    def _hot_entry(self, name: str) -> _Hot:
        entry = self._hot[name] = _hot(self._view(name))
        return entry

    def _view(self, name: str) -> ServiceView:
        view = self.services.get(name)
        if view is None:
            # An event for a service never registered (a log cut before its registration):
            # show it with default thresholds rather than drop it.
            view = self.services[name] = ServiceView(name=name, fsm=ServiceState(name=name))
        return view

    def _on_transition(self, e: Transition) -> None:
        view = self._view(e.service)
        evolve(view.fsm, e, view.policy)
        view.last_reason = e.reason

    def _on_repair_started(self, e: RepairStarted) -> None:
        view = self._view(e.service)
        evolve(view.fsm, e, view.policy)
        if e.index == 0:
            view.repairs_total += 1

    def _on_restart_started(self, e: RestartStarted) -> None:
        view = self._view(e.service)
        evolve(view.fsm, e, view.policy)
        view.restarts_total += 1

    def _on_service_event(self, e: RepairFinished | RestartFinished) -> None:
        view = self._view(e.service)
        evolve(view.fsm, e, view.policy)
        if not e.ok:
            what = e.step if isinstance(e, RepairFinished) else "restart"
            view.last_problem = f"{what} failed: {e.output[-200:]}"
            view.last_problem_ts = e.ts

    def _on_restart_finished(self, e: RestartFinished) -> None:
        self._on_service_event(e)
        if e.pid is not None:
            self.services[e.service].pid = e.pid

    def _on_process_started(self, e: ProcessStarted) -> None:
        view = self._view(e.service)
        evolve(view.fsm, e, view.policy)
        view.pid = e.pid

    def _on_process_gone(self, e: ProcessLost | ProcessStopped) -> None:
        self._view(e.service).pid = None

    def _on_registered(self, e: ServiceRegistered) -> None:
        view = self._view(e.service)
        view.policy = e.policy
        view.target = e.target
        view.description = e.description
        view.critical = e.critical
        view.probe_kind = e.probe_kind
        view.registered_at = e.ts

    def _on_removed(self, e: ServiceRemoved) -> None:
        # No longer monitored: out of the views (its history stays in the log).
        self.services.pop(e.service, None)
        self._hot.pop(e.service, None)

    def _on_reloaded(self, e: ConfigReloaded) -> None:
        if not e.error:  # a refused file changed nothing
            self.monitor.config_version = e.version
            self.monitor.config_hash = e.hash

    def _on_owned(self, e: ServiceOwned) -> None:
        self._view(e.service).owner = e.node

    def _on_seen(self, e: ProbeSeen) -> None:
        view = self._view(e.service)
        if view.seen:
            view.seen[e.node] = e
        else:
            view.seen = {e.node: e}  # never the shared default

    def _on_cert_seen(self, e: CertSeen) -> None:
        view = self._view(e.service)
        evolve(view.fsm, e, view.policy)
        if view.cert is None or view.cert.fingerprint != e.fingerprint:
            view.cert_expiring = None  # a renewed certificate: the report was about the old one
        view.cert = e

    def _on_cert_expiring(self, e: CertExpiring) -> None:
        view = self._view(e.service)
        evolve(view.fsm, e, view.policy)
        view.cert_expiring = e

    def _on_monitor_started(self, e: MonitorStarted) -> None:
        m = self.monitor
        if e.node and e.node not in m.nodes:
            m.nodes = sorted([*m.nodes, e.node])
        m.running = True
        m.pid = e.pid
        m.version = e.version
        m.started_at = e.ts
        m.stopped_at = None
        m.config = e.config
        m.rules = e.rules
        m.config_version, m.config_hash = 1, e.config_hash
        m.overloaded_since, m.stretch = None, 1.0  # a new start paces afresh

    def _on_monitor_stopped(self, e: MonitorStopped) -> None:
        m = self.monitor
        if e.node:
            # One node of several stopped: monitoring goes on while another runs.
            m.nodes = [n for n in m.nodes if n != e.node]
            m.running = bool(m.nodes)
            if m.running:
                return
        m.running = False
        m.stopped_at = e.ts
        m.overloaded_since, m.stretch = None, 1.0

    def _on_overloaded(self, e: MonitorOverloaded) -> None:
        m = self.monitor
        m.overloaded_since, m.stretch = e.ts, e.stretch

    def _on_caught_up(self, e: MonitorCaughtUp) -> None:
        m = self.monitor
        m.overloaded_since, m.stretch = None, 1.0

    def _on_admin(self, e: Admin) -> None:
        if not e.allowed:
            return
        if e.service is None and e.action in ("start", "stop"):
            m = self.monitor
            if e.node:  # one node of several: monitoring goes on while another runs
                others = [n for n in m.nodes if n != e.node]
                m.nodes = sorted([*others, e.node]) if e.action == "start" else others
                m.running = bool(m.nodes)
            else:
                m.running = e.action == "start"
        elif e.service is not None:
            self._view(e.service)

    def _on_snapshot(self, e: Snapshot) -> None:
        # A snapshot is the whole state as of its place in the log: start over from it. Views
        # are copied so the decoded event stays as it was recorded.
        self.services = {v.name: _copy_view(v) for v in e.services}
        self._hot.clear()  # the views it held are gone
        counts = dict(e.monitor.counts)
        self.monitor = msgspec.structs.replace(e.monitor, counts=counts, segment=e.segment)
        self._counts = counts

    # --- persisting -----------------------------------------------------------------------

    def snapshot(self, segment: int, ts: float) -> Snapshot:
        """A snapshot event of the current views (opens a new log segment)."""
        return Snapshot(
            ts=ts,
            segment=segment,
            monitor=msgspec.structs.replace(self.monitor, counts=dict(self._counts)),
            services=[_copy_view(v) for v in self.services.values()],
        )

    def state_of(self, name: str) -> ServiceState:
        """`name`'s state as folded so far, a copy for a monitor to decide on (a fresh one for
        a service the log has not named): what a monitor resumes, or a node takes over."""
        view = self.services.get(name)
        return view.fsm.copy() if view is not None else ServiceState(name=name)

    def states(self) -> list[ServiceState]:
        """The FSM state of every service: what a monitor resumes from."""
        return [v.fsm for v in self.services.values()]

    def by_state(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for v in list(self.services.values()):  # the API may ask from its own thread
            out[v.fsm.state] = out.get(v.fsm.state, 0) + 1
        return out


_Hot = tuple[ServiceView, ServiceState, list[float | None]]


def _hot(view: ServiceView) -> _Hot:
    return view, view.fsm, view.latency_ms


def _copy_view(view: ServiceView) -> ServiceView:
    fsm = view.fsm.copy()
    return msgspec.structs.replace(
        view, fsm=fsm, latency_ms=list(view.latency_ms),
        seen=dict(view.seen),
    )  # fmt: skip
