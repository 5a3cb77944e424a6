"""The shape of `hbsm.toml`: msgspec Structs, decoded (types, unknown keys) in one pass.

Every field has the default an operator would expect; `hbsm.config.load_config` lays the
environment variables of the original feature (`HEARTBEAT_*`) over the file and checks what
types cannot (ranges, URLs, ladders; see `hbsm.config.validate`). Durations are seconds.
Thresholds set at the top level (and by the environment) apply to every service unless the
service sets its own. `example.toml` beside this module shows every key.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import msgspec

from hbsm.state import Policy
from hbsm.vocabulary import NOTICE_KINDS, NoticeKindOn

__all__ = [
    "ApiConfig",
    "ClusterConfig",
    "Config",
    "LogConfig",
    "NotifyConfig",
    "ProbeConfig",
    "RestartConfig",
    "ServiceConfig",
    "SmtpConfig",
    "StepConfig",
    "WebhookConfig",
    "fields_of",
]

ProbeKind = Literal["http", "tcp", "command"]
RestartKind = Literal["supervise", "command", "self", "none"]


class _Strict(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A misspelt key is an error naming it, not a silently ignored setting."""


class _Frozen(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`_Strict`, and immutable (a frozen Struct cannot derive from a mutable one)."""


class ProbeConfig(_Frozen, frozen=True):
    kind: ProbeKind = "http"
    timeout: float = 5.0
    # http: request and what counts as up.
    method: str = "GET"
    headers: dict[str, str] = {}
    expect_status: list[int] = []  # empty: any 2xx or 3xx
    body_contains: str | None = None
    # A JSON field (dotted path, e.g. "status" or "checks.db") that must equal json_equals.
    json_field: str | None = None
    json_equals: Any = None
    # A success slower than this (milliseconds) counts as a failure of class "slow".
    slow_ms: float | None = None
    # https: a PEM file of CAs to trust besides the public ones (the system's store, which
    # honours SSL_CERT_FILE, and certifi's): a private CA that signs internal services.
    ca_file: str | None = None
    # command: argv run without a shell; exit status 0 is up.
    argv: list[str] = []


class StepConfig(_Frozen, frozen=True):
    """Settings of one repair step, under `[services.steps.<name>]`."""

    timeout: float = 30.0
    # http: POST a reload/repair hook.
    url: str | None = None
    method: str = "POST"
    body: Any = None
    # command: argv (no shell unless `shell = true`, then argv[0] is the script).
    argv: list[str] = []
    shell: bool = False
    cwd: str | None = None
    # signal: send `signal` to the pid in `pidfile`.
    pidfile: str | None = None
    signal: str = "HUP"
    # check_config: files that must exist (and parse, by extension: .toml/.json), the port that
    # must be free (service down) or bound (service up).
    files: list[str] = []
    port: int | None = None
    # Custom steps (entry point group `hbsm.repairs`) get these as they are.
    options: dict[str, Any] = {}


class RestartConfig(_Frozen, frozen=True):
    # supervise: hbsm starts argv itself, keeps its pid, restarts it. command: run argv (e.g.
    # ["systemctl", "restart", "x"]). self: restart the process hbsm runs in (an app that
    # embeds its monitor: hbsm.repair.self_restart). none: the restart step cannot run (fails).
    kind: RestartKind = "none"
    argv: list[str] = []
    cwd: str | None = None
    env: dict[str, str] = {}
    timeout: float = 60.0
    # supervise: SIGTERM, then SIGKILL after this grace period.
    grace: float = 10.0
    # supervise: where the child's stdout/stderr go (default: beside the event log).
    output: str | None = None
    # supervise: on `hbsm run` shutdown, stop supervised children (true) or leave them running.
    stop_on_exit: bool = False


class ServiceConfig(_Frozen, frozen=True):
    name: str
    # What to probe: a URL (http), host:port (tcp); command probes use probe.argv.
    url: str = ""
    description: str = ""
    critical: bool = False
    probe: ProbeConfig = ProbeConfig()
    restart: RestartConfig = RestartConfig()
    steps: dict[str, StepConfig] = {}
    # Thresholds: unset means the top-level value (itself from the file, env or default).
    check_interval: float | None = None
    max_retries: int | None = None
    success_threshold: int | None = None
    restart_cooldown: float | None = None
    cooldown_max: float | None = None
    stable_period: float | None = None
    restart_budget: int | None = None
    restart_window: float | None = None
    ladder: list[str] | None = None
    ladders: dict[str, list[str]] | None = None
    on_restart_failure: Literal["failed", "degraded"] | None = None
    start_grace: float | None = None
    repair_backoff: float | None = None
    repair_backoff_max: float | None = None
    repair_budget: int | None = None
    quorum: int | None = None
    cert_warn_days: float | None = None


class WebhookConfig(_Frozen, frozen=True):
    url: str
    headers: dict[str, str] = {}
    timeout: float = 5.0
    retries: int = 3


class SmtpConfig(_Frozen, frozen=True):
    host: str
    port: int = 25
    sender: str = "hbsm@localhost"
    to: list[str] = []
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout: float = 10.0


class NotifyConfig(_Frozen, frozen=True):
    # Which happenings notify: restart, failed, recovered, repair_failed, cert_expiring (a TLS
    # certificate within cert_warn_days of its end, once per certificate), and the monitor's
    # own log_unwritable / log_writable (its event log cannot be written, e.g. a full disk).
    on: list[NoticeKindOn] = msgspec.field(default_factory=lambda: list(NOTICE_KINDS))
    webhooks: list[WebhookConfig] = []
    smtp: SmtpConfig | None = None
    # Apprise URLs (the `apprise` extra: pip install 'hbsm[apprise]'), one channel each:
    # "tgram://BOT_TOKEN/CHAT_ID", "slack://...", "json://host:port/path", ... Everything past
    # the scheme is masked wherever the config is shown (the origin of json/form/xml URLs stays).
    apprise: list[str] = []
    # An Apprise delivery still going after this many seconds is given up: a failed notification.
    apprise_timeout: float = 30.0
    # At most this many notifications per service per hour.
    rate_per_hour: int = 20


class LogConfig(_Frozen, frozen=True):
    path: str = "events/heartbeat.jsonl"
    # The log in a NATS JetStream stream instead of the file at `path` ("nats://host:4222"; the
    # `nats` extra): it outlives this host's disk, and `hbsm export` writes it out as JSONL.
    # `path`'s folder still holds the supervised processes' output.
    store: str | None = None
    stream: str = "HBSM"  # the JetStream stream that holds it
    # Copies of the stream, on as many servers of a NATS cluster (1-5; 3 outlives one server's
    # death). Given when hbsm makes the stream; a stream that exists keeps its own.
    replicas: int = 1
    fsync: Literal["batch", "always", "interval", "never"] = "batch"
    max_bytes: int = 64 * 2**20
    keep_segments: int = 10
    # The monitor's own diagnostics (stdlib logging); None: stderr only.
    file: str | None = None
    level: str = "INFO"
    # The event log and its segments are created 0600 (owner only): they name internal hosts
    # and commands and carry the output of repairs. True: 0640, for readers (the dashboard, a
    # Flask app following the log) that run as another user of the file's group.
    group_read: bool = False


class ApiConfig(_Frozen, frozen=True):
    """What the HTTP API of `hbsm run` believes and bounds (hbsm/api/guard.py): every limit
    holds before any route, token check or body is looked at."""

    # Reverse proxies (addresses or networks, e.g. "10.0.0.5", "10.0.0.0/24") whose
    # X-Forwarded-For names the client. Empty: none; the client is the address it connects
    # from, so a local process cannot pass for another address with a header.
    trusted_proxies: list[str] = []
    # The request line and headers together; past this, 431 and the connection closed.
    max_header_bytes: int = 32 * 2**10
    max_headers: int = 100
    # The request line and headers must arrive within this (from the connection, or the end
    # of the previous answer); a request's body within body_timeout of its headers.
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    # Connections open at once (held below the descriptor limit, leaving room for probes,
    # repairs and the log); past it a new connection is answered 503 and closed.
    max_connections: int = 256


class ClusterConfig(_Frozen, frozen=True):
    """Several `hbsm run` nodes sharing one log in NATS JetStream (`log.store`)."""

    # This node's name, unique in the cluster (`hbsm run --node`). None: a single monitor,
    # which writes the stream alone.
    node: str | None = None
    # A node that stops renewing its leases (it died, or lost NATS) loses them this much later;
    # they are renewed every third of it.
    lease_ttl: float = 6.0


class Config(_Strict):
    enabled: bool = True
    auto_start: bool = True
    host: str = "127.0.0.1"
    port: int = 5000
    admin_token: str | None = None
    # The page the built-in `login_page` service probes when no services are configured.
    login_url: str | None = None
    # How many probes may be in flight at once, over all services.
    concurrency: int = 200
    api: ApiConfig = ApiConfig()
    log: LogConfig = LogConfig()
    notify: NotifyConfig = NotifyConfig()
    # Thresholds for every service (each may override them).
    check_interval: float = 30.0
    max_retries: int = 3
    success_threshold: int = 1
    restart_cooldown: float = 300.0
    cooldown_max: float = 3600.0
    stable_period: float = 600.0
    restart_budget: int = 3
    restart_window: float = 3600.0
    ladder: list[str] = msgspec.field(
        default_factory=lambda: ["diagnose", "check_config", "restart"]
    )
    ladders: dict[str, list[str]] = {}
    on_restart_failure: Literal["failed", "degraded"] = "failed"
    # Failed probes this long after hbsm (re)started a service do not count (a passing probe
    # ends it sooner). Not Policy's default (none), which is what older recorded policies meant.
    start_grace: float = 10.0
    repair_backoff: float = 60.0
    repair_backoff_max: float = 3600.0
    repair_budget: int = 5
    # Vantage points that must agree a service fails, with several nodes ([cluster]).
    quorum: int = 1
    # An HTTPS service whose certificate expires within this many days is reported once per
    # certificate (`cert.expiring`, failure class "cert"; nothing restarted). 0: never.
    cert_warn_days: float = 14.0
    cluster: ClusterConfig = ClusterConfig()
    services: list[ServiceConfig] = []

    def policy_for(self, service: ServiceConfig) -> Policy:
        """The thresholds in force for one service: its own, else the top-level ones."""

        def pick(name: str) -> Any:
            own = getattr(service, name)
            return own if own is not None else getattr(self, name)

        # Every Policy field is a threshold of the same name here and in ServiceConfig
        # (tests/config checks the three agree); only the shapes differ.
        picked = {name: pick(name) for name in Policy.__struct_fields__}
        picked["cooldown_max"] = max(picked["cooldown_max"], picked["restart_cooldown"])
        picked["ladder"] = tuple(picked["ladder"])
        picked["ladders"] = {cls: tuple(steps) for cls, steps in picked["ladders"].items()}
        return Policy(**picked)


@functools.cache
def fields_of(cls: type[msgspec.Struct]) -> tuple[msgspec.structs.FieldInfo, ...]:
    """msgspec.structs.fields, once per class: it resolves the annotations on every call, which
    made loading a config of 10,000 services take seconds."""
    return msgspec.structs.fields(cls)
