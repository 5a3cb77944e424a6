"""The bodies of the HTTP API: msgspec Structs built from a Projection. Pure: no I/O.

Both servers — the standalone ASGI app (`hbsm.api`) and the Flask Blueprint (`hbsm.flask`) —
answer with exactly these bodies, encoded by the same encoder, and the OpenAPI document's schemas
come from these same Structs. Times are ISO-8601 UTC strings; durations are seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from hbsm.api.redaction import AdminOnly, hide_internals
from hbsm.events import MonitorView, Probe, ServiceView
from hbsm.projection import Projection, cert_days_left, next_action, vantage_points

if TYPE_CHECKING:
    from hbsm.outage import Outage

__all__ = [
    "AdminResult",
    "CertHealth",
    "ConfigReload",
    "DetailedHealth",
    "ErrorBody",
    "EventLogHealth",
    "Health",
    "HealthCheck",
    "HealthJson",
    "HeartbeatStatus",
    "LastProbe",
    "LogPosition",
    "ServiceHealth",
    "detailed_health",
    "encode",
    "health",
    "health_json",
    "heartbeat_status",
    "hide_internals",
    "iso",
    "overall_status",
    "service_health",
]

Overall = Literal["healthy", "degraded", "unhealthy"]


def iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO-8601 UTC with milliseconds, e.g. 2026-11-01T03:00:00.000Z."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Body(msgspec.Struct, kw_only=True):
    pass


class ErrorBody(_Body, kw_only=True):
    """Every error answer: a message a person can act on."""

    error: str
    status: int
    detail: dict[str, Any] | None = None


class LastProbe(_Body, kw_only=True):
    at: str | None
    ok: bool
    latency_ms: float | None = None
    status: int | None = None
    error: str | None = None  # a failure class (hbsm.state.ERROR_CLASSES)
    detail: AdminOnly = ""  # what failed, in the probe's words: URLs, hosts, output


class CertHealth(_Body, kw_only=True):
    """The TLS certificate an https service last presented."""

    not_after: str | None
    # Days from now to its end (negative once it has ended).
    days_left: float
    # Reported as expiring within `warn_days` (`cert.expiring`, failure class "cert"); hbsm
    # restarts nothing for it.
    expiring: bool
    warn_days: float
    fingerprint: str  # SHA-256 of the certificate, hex
    serial: str = ""
    # Names inside the certificate: internal host names.
    subject: AdminOnly = ""
    issuer: AdminOnly = ""
    seen_at: str | None = None


class ServiceHealth(_Body, kw_only=True):
    name: str
    state: str
    since: str | None
    # False while the heartbeat is stopped: `state` is then as last seen, `age_s` ago.
    monitoring: bool = True
    # Seconds since the service was last probed (None: never).
    age_s: float | None = None
    critical: bool
    description: str
    # The probed URL, host:port or command line.
    target: AdminOnly | None = None
    failures: int
    threshold: int
    last_probe: LastProbe | None = None
    last_failure: LastProbe | None = None
    latency_ms: float | None = None
    restarts: int
    restarts_in_window: int
    repairs: int
    next_action: str
    next_action_at: str | None = None
    # The last transition's reason and the last failed step's output: both can quote output
    # (`restart failed: <its output>`).
    last_reason: AdminOnly = ""
    last_problem: AdminOnly = ""
    # With several nodes (left out otherwise): the node that decides about the service, and
    # what each vantage point last saw of it (the owner's own last probe among them).
    owner: str | msgspec.UnsetType | None = msgspec.UNSET
    vantage_points: dict[str, LastProbe] | msgspec.UnsetType = msgspec.UNSET
    # An https service (left out otherwise): the certificate it presents.
    cert: CertHealth | msgspec.UnsetType = msgspec.UNSET


class EventLogHealth(_Body, kw_only=True):
    """Whether the monitor can write its event log. While it cannot (a full disk), it probes
    nothing and starts no repair or restart: hbsm is unhealthy until the log takes writes."""

    writable: bool = True
    error: str = ""
    since: str | None = None
    probes_not_run: int = 0


class Health(_Body, kw_only=True):
    """`GET /health`: 200 unless a critical service is not healthy or the event log cannot be
    written (then 503)."""

    status: Overall
    timestamp: str | None
    monitoring: bool
    services: dict[str, str]
    event_log: EventLogHealth = msgspec.field(default_factory=EventLogHealth)


class MonitoringInfo(_Body, kw_only=True):
    running: bool
    started_at: str | None
    uptime_s: float | None
    pid: int | None
    version: str
    # Since when the probes ask for more than the monitor can do (null: they do not), and the
    # factor every service's interval was then stretched by alike (1: as configured).
    overloaded_since: str | None = None
    stretch: float = 1.0


class DetailedHealth(_Body, kw_only=True):
    status: Overall
    timestamp: str | None
    monitoring: MonitoringInfo
    services: dict[str, ServiceHealth]
    event_log: EventLogHealth = msgspec.field(default_factory=EventLogHealth)


class LogPosition(_Body, kw_only=True):
    path: str
    last_seq: int
    segment: int
    events: int
    writable: bool = True
    error: str = ""


class HeartbeatStatus(_Body, kw_only=True):
    """`GET /admin/heartbeat/status`."""

    running: bool
    started_at: str | None
    uptime_s: float | None
    pid: int | None
    version: str
    config: dict[str, Any]
    services: int
    by_state: dict[str, int]
    events_by_type: dict[str, int]
    log: LogPosition
    # As in /health/detailed's `monitoring`.
    overloaded_since: str | None = None
    stretch: float = 1.0
    # The configuration in force: 1 at start, one more at each reload that changed it; and a
    # digest of it (the `hash` of `config.reloaded`).
    config_version: int = 0
    config_hash: str = ""


class ConfigReload(_Body, kw_only=True):
    """`POST /admin/config/reload`: what the reload applied. `changed`: the keys that changed,
    by service; `deferred`: services in a repair run, changed when it ends; `needs_restart`:
    settings that changed in the file but apply only when the monitor restarts."""

    ok: bool
    version: int
    hash: str
    added: list[str] = []
    removed: list[str] = []
    changed: dict[str, list[str]] = {}
    deferred: list[str] = []
    needs_restart: list[str] = []
    message: str


class AdminResult(_Body, kw_only=True):
    """The answer to an admin action (start, stop, pause, resume, reset, probe-now, repair-now)."""

    action: str
    service: str | None = None
    ok: bool
    changed: bool
    running: bool
    state: str | None = None
    message: str


class HealthCheck(_Body, kw_only=True):
    """One entry of the IETF health-check format's `checks` (draft-inadarei-api-health-check)."""

    # The draft's own field names.
    componentId: str
    componentType: str
    observedValue: float | None = None
    observedUnit: str = "ms"
    status: Literal["pass", "warn", "fail"]
    time: str | None = None
    output: AdminOnly = ""  # the service's last_reason


class HealthJson(_Body, kw_only=True):
    """`application/health+json` answers of the health routes."""

    status: Literal["pass", "warn", "fail"]
    version: str = "1"
    releaseId: str = ""
    description: str = "hbsm service health"
    checks: dict[str, list[HealthCheck]] = {}


_encoder = msgspec.json.Encoder()


def encode(body: msgspec.Struct) -> bytes:
    return _encoder.encode(body)


def _probe(p: Probe | None) -> LastProbe | None:
    if p is None:
        return None
    return LastProbe(
        at=iso(p.ts), ok=p.ok, latency_ms=p.latency_ms, status=p.status, error=p.error,
        detail=p.detail,
    )  # fmt: skip


def service_health(
    view: ServiceView, *, now: float, show_target: bool, monitoring: bool = True
) -> ServiceHealth:
    """One service's body. `monitoring`: whether the heartbeat runs (else the state is stale)."""
    full = _service_health(view, now=now, monitoring=monitoring)
    return full if show_target else hide_internals(full)


def _vantage_points(view: ServiceView) -> dict[str, LastProbe]:
    return {
        node: LastProbe(at=iso(f.ts), ok=f.ok, latency_ms=f.latency_ms, status=f.status,
                        error=f.error, detail=f.detail)
        for node, f in vantage_points(view).items()
    }  # fmt: skip


def _cert(view: ServiceView, now: float) -> CertHealth | msgspec.UnsetType:
    c = view.cert
    if c is None:
        return msgspec.UNSET
    return CertHealth(
        not_after=iso(c.not_after), days_left=round(cert_days_left(c, now), 2),
        expiring=view.cert_expiring is not None, warn_days=view.policy.cert_warn_days,
        fingerprint=c.fingerprint, serial=c.serial, subject=c.subject, issuer=c.issuer,
        seen_at=iso(c.ts),
    )  # fmt: skip


def _service_health(view: ServiceView, *, now: float, monitoring: bool) -> ServiceHealth:
    s = view.fsm
    action, when = next_action(view) if monitoring else ("none: monitoring stopped", None)
    horizon = now - view.policy.restart_window
    last = view.last_probe
    clustered = view.owner is not None or bool(view.seen)
    return ServiceHealth(
        name=view.name,
        state=s.state,
        since=iso(s.since) if s.since else None,
        monitoring=monitoring,
        age_s=max(0.0, now - last.ts) if last is not None else None,
        critical=view.critical,
        description=view.description,
        target=view.target,
        failures=s.failures,
        threshold=view.policy.max_retries,
        last_probe=_probe(last),
        last_failure=_probe(view.last_failure),
        latency_ms=last.latency_ms if last is not None else None,
        restarts=view.restarts_total,
        restarts_in_window=sum(1 for t in s.restarts if t > horizon),
        repairs=view.repairs_total,
        next_action=action,
        next_action_at=iso(when),
        last_reason=view.last_reason,
        last_problem=view.last_problem,
        owner=view.owner if clustered else msgspec.UNSET,
        vantage_points=_vantage_points(view) if clustered else msgspec.UNSET,
        cert=_cert(view, now),
    )


def event_log_health(outage: Outage | None) -> EventLogHealth:
    if outage is None:
        return EventLogHealth()
    return EventLogHealth(
        writable=False, error=outage.error, since=iso(outage.since), probes_not_run=outage.skipped
    )


def overall_status(projection: Projection, outage: Outage | None = None) -> Overall:
    """unhealthy: a critical service is not healthy, or the event log cannot be written (the
    monitor can then do nothing); degraded: another service is not healthy; else healthy.

    A service not probed yet (`unknown`) does not make hbsm unhealthy: it has no verdict yet.
    """
    if outage is not None:
        return "unhealthy"
    worst: Overall = "healthy"
    for view in list(projection.services.values()):
        state = view.fsm.state
        if state in ("healthy", "unknown", "paused"):
            continue
        if view.critical:
            return "unhealthy"
        worst = "degraded"
    return worst


def health(
    projection: Projection, *, now: float, outage: Outage | None = None
) -> tuple[Health, int]:
    status = overall_status(projection, outage)
    body = Health(
        status=status,
        timestamp=iso(now),
        monitoring=projection.monitor.running,
        services={name: v.fsm.state for name, v in list(projection.services.items())},
        event_log=event_log_health(outage),
    )
    return body, 503 if status == "unhealthy" else 200


def _monitoring(m: MonitorView, now: float) -> MonitoringInfo:
    up = now - m.started_at if m.running and m.started_at is not None else None
    return MonitoringInfo(
        running=m.running, started_at=iso(m.started_at), uptime_s=up, pid=m.pid, version=m.version,
        overloaded_since=iso(m.overloaded_since), stretch=m.stretch,
    )  # fmt: skip


def detailed_health(
    projection: Projection, *, now: float, show_targets: bool, outage: Outage | None = None
) -> tuple[DetailedHealth, int]:
    status = overall_status(projection, outage)
    body = DetailedHealth(
        status=status,
        timestamp=iso(now),
        monitoring=_monitoring(projection.monitor, now),
        services={
            name: service_health(
                v, now=now, show_target=show_targets, monitoring=projection.monitor.running
            )
            for name, v in list(projection.services.items())
        },
        event_log=event_log_health(outage),
    )
    return body, 503 if status == "unhealthy" else 200


def heartbeat_status(
    projection: Projection,
    *,
    now: float,
    log_path: str,
    config: dict[str, Any],
    outage: Outage | None = None,
) -> HeartbeatStatus:
    m = projection.monitor
    info = _monitoring(m, now)
    return HeartbeatStatus(
        running=m.running,
        started_at=info.started_at,
        uptime_s=info.uptime_s,
        pid=m.pid,
        version=m.version,
        config=config,
        services=len(projection.services),
        by_state=projection.by_state(),
        events_by_type=dict(m.counts),
        log=LogPosition(
            path=log_path,
            last_seq=m.last_seq,
            segment=m.segment,
            events=m.events_total,
            writable=outage is None,
            error=outage.error if outage is not None else "",
        ),
        overloaded_since=info.overloaded_since,
        stretch=info.stretch,
        config_version=m.config_version,
        config_hash=m.config_hash,
    )


_CHECK_STATUS = {"healthy": "pass", "unknown": "warn", "paused": "warn", "cooldown": "warn"}


def health_json(
    projection: Projection,
    *,
    now: float,
    version: str,
    names: list[str] | None = None,
    outage: Outage | None = None,
) -> tuple[HealthJson, int]:
    """The IETF health-check format: `checks` keyed "<service>:responseTime", and
    "event-log:writable" while the log cannot be written."""
    overall = overall_status(projection, outage)
    checks: dict[str, list[HealthCheck]] = {}
    if outage is not None and names is None:
        checks["event-log:writable"] = [
            HealthCheck(
                componentId="event-log",
                componentType="datastore",
                status="fail",
                time=iso(outage.since),
                observedUnit="",
                output=f"cannot write the event log: {outage.error}",
            )
        ]
    for name, view in list(projection.services.items()):
        if names is not None and name not in names:
            continue
        last = view.last_probe
        checks[f"{name}:responseTime"] = [
            HealthCheck(
                componentId=name,
                componentType="component",
                observedValue=last.latency_ms if last is not None else None,
                status=_CHECK_STATUS.get(view.fsm.state, "fail"),  # type: ignore[arg-type]
                time=iso(last.ts) if last is not None else None,
                output=view.last_reason if view.fsm.state != "healthy" else "",
            )
        ]
    status = {"healthy": "pass", "degraded": "warn", "unhealthy": "fail"}[overall]
    body = HealthJson(status=status, releaseId=version, checks=checks)  # type: ignore[arg-type]
    return body, 503 if overall == "unhealthy" else 200
