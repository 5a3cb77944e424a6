"""The kinds of event: frozen msgspec Structs in one tagged union (tag field `type`), the views a
snapshot carries, and the names of the kinds. The public face is `hbsm.events`."""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec

from hbsm.state import Policy, ServiceState

__all__ = [
    "EVENT_TYPES",
    "LATENCY_HISTORY",
    "TS_END",
    "TYPE_NAMES",
    "Admin",
    "AnyEvent",
    "CertExpiring",
    "CertSeen",
    "ConfigReloaded",
    "Event",
    "LogOutage",
    "LogRecovered",
    "MonitorCaughtUp",
    "MonitorOverloaded",
    "MonitorStarted",
    "MonitorStopped",
    "MonitorView",
    "Notification",
    "OpaqueEvent",
    "Probe",
    "ProbeSeen",
    "ProcessLost",
    "ProcessStarted",
    "ProcessStopped",
    "RepairFinished",
    "RepairStarted",
    "RestartFinished",
    "RestartStarted",
    "ServiceOwned",
    "ServiceRegistered",
    "ServiceRemoved",
    "ServiceView",
    "Snapshot",
    "Transition",
    "Vote",
    "type_name",
]


# The times an event may carry: from the epoch to the end of year 9999 (what a datetime can
# show). Checked by the decoder itself, so the fast path pays nothing for it.
TS_END: Final = 253402300800.0  # 10000-01-01T00:00:00Z, excluded


# gc=False: an event is frozen and holds only decoded values, so it can be in no reference
# cycle; untracked, millions of them cost the collector nothing and decode a tenth faster.
class Event(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="type", gc=False
):
    seq: int = 0
    ts: Annotated[float, msgspec.Meta(ge=0.0, lt=TS_END)] = 0.0


class MonitorStarted(Event, tag="monitor.started", frozen=True, kw_only=True):
    pid: int = 0
    version: str = ""
    host: str = ""
    config: dict[str, Any] = {}
    # The version of the decision rules in force from here on (hbsm.state.RULES); absent in
    # logs written under the first rules, hence the default.
    rules: int = 1
    # With several nodes sharing the log: which one started ("" for a single monitor).
    node: str = ""
    # The configuration in force: a digest of it (see `config.reloaded`); its version is 1.
    config_hash: str = ""


class MonitorStopped(Event, tag="monitor.stopped", frozen=True, kw_only=True):
    pid: int = 0
    reason: str = ""
    node: str = ""


class MonitorOverloaded(Event, tag="monitor.overloaded", frozen=True, kw_only=True):
    """The probes ask for more than the monitor can do: from here on every service's interval
    is stretched by `stretch` alike (adjusted as the load moves, without further events), until
    `monitor.caught_up`. `asked`: probes/s the intervals ask for; `done`: probes/s it finished
    when it found out; `late`: how late probes then started, at least (p90, a fraction of the
    interval)."""

    stretch: float = 1.0
    asked: float = 0.0
    done: float = 0.0
    late: float = 0.0
    node: str = ""


class MonitorCaughtUp(Event, tag="monitor.caught_up", frozen=True, kw_only=True):
    """The overload that began at `since` is over: intervals are as configured again.
    `stretch_max`: the largest factor applied meanwhile."""

    since: float = 0.0
    stretch_max: float = 1.0
    node: str = ""


class ServiceRegistered(Event, tag="service.registered", frozen=True, kw_only=True):
    service: str
    policy: Policy = Policy()
    target: str = ""
    description: str = ""
    critical: bool = False
    probe_kind: str = "http"


class ServiceRemoved(Event, tag="service.removed", frozen=True, kw_only=True):
    """The service is no longer monitored (a reload took it out of the configuration): no
    probe, decision or repair of it follows. Its history stays in the log."""

    service: str
    reason: str = ""


class ConfigReloaded(Event, tag="config.reloaded", frozen=True, kw_only=True):
    """The configuration file was read again while the monitor ran (SIGHUP, the API, `hbsm
    reload`). `version` counts the configurations in force since the monitor started (1 at
    start), `hash` digests the one now in force. `added`, `removed`: services; `changed`: the
    keys that changed, by service. Their `service.registered` / `service.removed` follow,
    except for the `deferred` ones: a repair run in flight finishes under the configuration it
    started with, and their new one is registered when it ends. `needs_restart`: settings that
    changed in the file but take effect only when the monitor restarts. `error` set: the file
    was refused (the message `hbsm config --check` gives), nothing changed, `version` and
    `hash` are still the running configuration's."""

    version: int = 0
    hash: str = ""
    path: str = ""
    added: list[str] = []
    removed: list[str] = []
    changed: dict[str, list[str]] = {}
    deferred: list[str] = []
    needs_restart: list[str] = []
    # What asked for it ("signal", "api") and who (as in `admin` events).
    source: str = ""
    who: str = ""
    error: str = ""
    node: str = ""


class Vote(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What another vantage point last saw of a service, as counted in a decision: its
    `probe.seen` fact (at `seq`), whether it passed, and its failure class."""

    node: str
    ok: bool
    seq: int
    error: str | None = None


class Probe(Event, tag="probe", frozen=True, kw_only=True):
    """A probe's result: a fact. With several nodes, the owner's probe: `ok` is then the
    verdict of the quorum (this node's own result and `votes`, the other vantage points'
    latest facts), and `error`/`detail` say what this node itself saw."""

    service: str
    ok: bool
    latency_ms: float | None = None
    status: int | None = None
    # One of hbsm.state.ERROR_CLASSES when ok is false (or "slow" on a slow success).
    error: str | None = None
    detail: str = ""
    # The node that probed ("" for a single monitor), the vantage points counted (its own
    # first), and the quorum applied: the policy's, or the number of live nodes if fewer.
    node: str = ""
    votes: tuple[Vote, ...] = ()
    quorum: int = 0


class ProbeSeen(Event, tag="probe.seen", frozen=True, kw_only=True):
    """A probe's result seen by a node that does not own the service: a vantage point's fact,
    counted by the owner towards its quorum. Not decided on by itself."""

    service: str
    node: str
    ok: bool
    latency_ms: float | None = None
    status: int | None = None
    error: str | None = None
    detail: str = ""


class CertSeen(Event, tag="cert.seen", frozen=True, kw_only=True):
    """A fact: the TLS certificate a service presented to an HTTPS probe, recorded when it is
    first seen or has changed (a renewal), not on every probe. `not_after`/`not_before`: its
    validity (seconds since the epoch, UTC); `fingerprint`: SHA-256 of its DER bytes, hex."""

    service: str
    not_after: float
    fingerprint: str
    not_before: float | None = None
    serial: str = ""
    subject: str = ""
    issuer: str = ""


class CertExpiring(Event, tag="cert.expiring", frozen=True, kw_only=True):
    """A decision: the certificate `fingerprint` expires within the policy's `cert_warn_days`
    (`days_left` of them at `ts`). Reported once per certificate; failure class `error`
    ("cert"), which nothing repairs or restarts. A renewed certificate (`cert.seen` with
    another fingerprint) clears it."""

    service: str
    fingerprint: str
    not_after: float
    days_left: float
    warn_days: float
    error: str = "cert"


class ServiceOwned(Event, tag="service.owned", frozen=True, kw_only=True):
    """A node took a service's lease: from here on it alone decides and repairs it, resuming
    from the state the log holds (`previous`: the node that owned it before, if known)."""

    service: str
    node: str
    previous: str | None = None
    reason: str = ""


class Transition(Event, tag="transition", frozen=True, kw_only=True):
    """A change of state, decided by the FSM."""

    service: str
    src: str
    dst: str
    trigger: str
    reason: str = ""
    failures: int = 0
    # When dst is cooldown: when it ends, i.e. the earliest next restart. When dst is degraded
    # after a repair run that did not fix it: the earliest next run (its backoff).
    until: float | None = None
    # When dst is cooldown: whether probes before `until` are held, uncounted. The first rules
    # held them (their logs lack this field, hence the default); hbsm now writes false.
    hold: bool = True


class RepairStarted(Event, tag="repair.started", frozen=True, kw_only=True):
    """A decision: run step `index` of `ladder` (run number `run`) for the service."""

    service: str
    run: int
    step: str
    index: int
    ladder: tuple[str, ...] = ()


class RepairFinished(Event, tag="repair.finished", frozen=True, kw_only=True):
    """A fact: how a repair step ended. `error_class` is what `diagnose` found, if it ran.
    `verify` false: the step changed nothing and saw the failure still there (`diagnose`,
    `check_config`), so the run goes on without a verification probe (rules 4 and later)."""

    service: str
    run: int
    step: str
    index: int
    ok: bool
    output: str = ""
    duration_ms: float = 0.0
    error_class: str | None = None
    interrupted: bool = False
    verify: bool = True


class RestartStarted(Event, tag="restart.started", frozen=True, kw_only=True):
    """A decision: restart the service. `recent` holds the restart times inside the window,
    this one included; `cooldown_s` is the cooldown that follows it (after backoff)."""

    service: str
    attempt: int
    backoff: int = 0
    cooldown_s: float = 0.0
    recent: list[float] = []


class RestartFinished(Event, tag="restart.finished", frozen=True, kw_only=True):
    service: str
    ok: bool
    output: str = ""
    duration_ms: float = 0.0
    exit_code: int | None = None
    # The new process, when hbsm supervises it.
    pid: int | None = None
    interrupted: bool = False


class ProcessStarted(Event, tag="process.started", frozen=True, kw_only=True):
    """hbsm started (or, after its own restart, adopted) a process it supervises."""

    service: str
    pid: int
    argv: list[str] = []
    adopted: bool = False


class ProcessLost(Event, tag="process.lost", frozen=True, kw_only=True):
    """A fact: the process hbsm supervised for this service (`pid`, as recorded) is not running
    (found so when hbsm starts). The state machine restarts it, under the cooldown and the
    restart budget: a start after a crash is a restart."""

    service: str
    pid: int | None = None
    detail: str = ""


class ProcessStopped(Event, tag="process.stopped", frozen=True, kw_only=True):
    """hbsm stopped a process it supervises on purpose (its own shutdown, with
    `restart.stop_on_exit`): the next start is a first start, not a restart after a crash."""

    service: str
    pid: int | None = None
    reason: str = ""


class Notification(Event, tag="notification", frozen=True, kw_only=True):
    service: str | None = None
    channel: str = ""
    level: str = "info"
    message: str = ""
    delivered: bool = True
    error: str = ""


class Admin(Event, tag="admin", frozen=True, kw_only=True):
    """An operator's action (pause, resume, reset, probe_now, repair_now, start, stop)."""

    action: str
    service: str | None = None
    who: str = ""
    source: str = ""
    allowed: bool = True
    detail: str = ""
    # Refused attempts from the same client host before this one that were only counted, not
    # recorded one by one (a rate limit, see hbsm.api.refusals): this event stands for
    # 1 + suppressed refused attempts.
    suppressed: int = 0
    # With several nodes: the node that took the action (start and stop are that node's).
    node: str = ""


# --- what a snapshot carries: the views of hbsm.projection ---------------------------------

# Probes kept per service for sparklines and charts: memory stays bounded however long the log
# (one float a probe: about 2 KB a service at most, within the 10 KB a service the monitor may
# spend: docs/performance.md).
LATENCY_HISTORY = 60


class ServiceView(msgspec.Struct, kw_only=True):
    name: str
    fsm: ServiceState
    policy: Policy = Policy()
    target: str = ""
    description: str = ""
    critical: bool = False
    probe_kind: str = "http"
    registered_at: float = 0.0
    # The last probe, and the last failed one (the recorded events themselves: immutable).
    last_probe: Probe | None = None
    last_failure: Probe | None = None
    # The last repair step or restart that failed, e.g. "restart failed: exit 1".
    last_problem: str = ""
    last_problem_ts: float | None = None
    # Bounded latency history in milliseconds, oldest first (None = no answer). Their times were
    # kept too once; nothing read them, and the fold spent a tenth of its time on them. A
    # snapshot of an older log still carries `latency_ts`: ignored when read.
    latency_ms: list[float | None] = []
    probes_failed: int = 0
    # The supervised process, when hbsm supervises this service.
    pid: int | None = None
    repairs_total: int = 0
    restarts_total: int = 0
    last_reason: str = ""
    # With several nodes: the node holding the service's lease (its decider), and each other
    # vantage point's latest fact about it.
    owner: str | None = None
    seen: dict[str, ProbeSeen] = {}
    # The TLS certificate the service last presented (https), and the report that it expires
    # soon (None once a renewed one is seen). Days left are counted from now by readers.
    cert: CertSeen | None = None
    cert_expiring: CertExpiring | None = None


class MonitorView(msgspec.Struct, kw_only=True):
    # With several nodes: whether any runs (each node's own start and stop in `nodes`).
    running: bool = False
    pid: int | None = None
    version: str = ""
    started_at: float | None = None
    stopped_at: float | None = None
    config: dict[str, Any] = {}
    events_total: int = 0
    counts: dict[str, int] = {}
    last_seq: int = 0
    last_ts: float | None = None
    segment: int = 0
    # The decision rules of the monitor that wrote the log (see MonitorStarted.rules).
    rules: int = 1
    # With several nodes: the nodes started and not stopped since (a node killed outright
    # stays here until it starts again; its leases say it is gone).
    nodes: list[str] = []
    # While the probes ask for more than the monitor can do (monitor.overloaded, until
    # monitor.caught_up): since when, and the factor every interval was stretched by then.
    overloaded_since: float | None = None
    stretch: float = 1.0
    # The configuration in force: 1 at start, one more at each reload (config.reloaded), and
    # a digest of it.
    config_version: int = 0
    config_hash: str = ""


class Snapshot(Event, tag="snapshot", frozen=True, kw_only=True):
    """Opens a log segment: every view as of this point, so readers need not go further back."""

    segment: int = 0
    monitor: MonitorView = msgspec.field(default_factory=MonitorView)
    services: list[ServiceView] = []


class LogRecovered(Event, tag="log.recovered", frozen=True, kw_only=True):
    """The log was repaired on open: a torn last line of `cut_bytes` was cut at `offset`."""

    path: str = ""
    offset: int = 0
    cut_bytes: int = 0
    detail: str = ""


class LogOutage(Event, tag="log.outage", frozen=True, kw_only=True):
    """The log could not be written from `since` until this event's `ts` (a full disk, say).

    Recorded once writing works again. Meanwhile the monitor probed nothing and started no
    repair or restart (no record, no side effect); `skipped` counts the probes it did not run.
    """

    since: float = 0.0
    error: str = ""
    skipped: int = 0


AnyEvent = (
    MonitorStarted
    | MonitorStopped
    | MonitorOverloaded
    | MonitorCaughtUp
    | ServiceRegistered
    | ServiceRemoved
    | ConfigReloaded
    | Probe
    | ProbeSeen
    | ServiceOwned
    | CertSeen
    | CertExpiring
    | Transition
    | RepairStarted
    | RepairFinished
    | RestartStarted
    | RestartFinished
    | ProcessStarted
    | ProcessLost
    | ProcessStopped
    | Notification
    | Admin
    | Snapshot
    | LogRecovered
    | LogOutage
)

EVENT_TYPES: Final[dict[str, type[Event]]] = {
    str(cls.__struct_config__.tag): cls for cls in AnyEvent.__args__
}
# The `type` of each event class, for counting without touching the instance.
TYPE_NAMES: Final[dict[type, str]] = {cls: name for name, cls in EVENT_TYPES.items()}


class OpaqueEvent(msgspec.Struct, frozen=True):
    """An event of a `type` this version does not know: kept whole, never a crash."""

    type: str
    seq: int
    ts: float
    body: dict[str, Any]

    @property
    def service(self) -> str | None:
        value = self.body.get("service")
        return value if isinstance(value, str) else None


def type_name(event: Event | OpaqueEvent) -> str:
    if isinstance(event, OpaqueEvent):
        return event.type
    return TYPE_NAMES[type(event)]
