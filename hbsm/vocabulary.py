"""hbsm's words, each said once: the states a service can be in, the failure classes a probe
reports, the admin actions an operator can take, and what a service's name may be.

The state machine, the config's checks, the HTTP API and its OpenAPI document, the event log
and the dashboard take these from here, so a word added here is known everywhere at once (the
thresholds a policy has are the fields of `hbsm.state.Policy`).
"""

from __future__ import annotations

import re
from typing import Final, Literal

__all__ = [
    "ADMIN_ACTIONS",
    "CHECK_CONFIG_STEP",
    "ERROR_CLASSES",
    "FAILURE_CLASSES",
    "HEARTBEAT_ACTIONS",
    "NOTICE_KINDS",
    "RELOAD_ACTION",
    "REPORTED_CLASSES",
    "RESTART_STEP",
    "SERVICE_ACTIONS",
    "SERVICE_NAME",
    "SERVICE_NAME_MAX",
    "STATES",
    "STATE_ACTIONS",
    "URL_SERVICE_ACTIONS",
    "NoticeKindOn",
    "StateName",
    "log_action",
    "url_action",
]

# What a notification can be about, all of which `notify.on` may name (every one by default):
# a service's restart, its giving up, its recovery, a repair run that failed, a TLS certificate
# near its end, and the monitor's own event log becoming unwritable or writable again.
NoticeKindOn = Literal[
    "restart",
    "failed",
    "recovered",
    "repair_failed",
    "cert_expiring",
    "log_unwritable",
    "log_writable",
]
NOTICE_KINDS: Final[tuple[NoticeKindOn, ...]] = (
    "restart",
    "failed",
    "recovered",
    "repair_failed",
    "cert_expiring",
    "log_unwritable",
    "log_writable",
)

StateName = Literal[
    "unknown", "healthy", "degraded", "repairing", "restarting", "cooldown", "failed", "paused"
]
STATES: Final[tuple[str, ...]] = (
    "unknown",
    "healthy",
    "degraded",
    "repairing",
    "restarting",
    "cooldown",
    "failed",
    "paused",
)

# The failure classes a probe or the `diagnose` step can report.
ERROR_CLASSES: Final[tuple[str, ...]] = (
    "refused",
    "timeout",
    "dns",
    "tls",
    "protocol",
    "http_5xx",
    "http_4xx",
    "body_mismatch",
    "slow",
    "command",
    "other",
)
# Failure classes that are reported and never repaired: nothing a repair step or a restart
# does would change them (a certificate close to its end is renewed by whoever issues it).
# `cert`: the service's TLS certificate expires within `cert_warn_days` (`cert.expiring`).
REPORTED_CLASSES: Final[tuple[str, ...]] = ("cert",)
# Every failure class hbsm reports; a ladder can be set per class of ERROR_CLASSES only.
FAILURE_CLASSES: Final[tuple[str, ...]] = ERROR_CLASSES + REPORTED_CLASSES

# The ladder step that restarts the service: reaching it is a restart decision, guarded by the
# cooldown and the restart budget, not a plain repair step.
RESTART_STEP: Final = "restart"
# The ladder step that checks the service's configuration: while the last one of a repair run
# found it broken, the run does not restart (a restart into a configuration that does not load
# takes down what still answers).
CHECK_CONFIG_STEP: Final = "check_config"

# Admin actions as the event log records them (`admin.action`). An operator takes one on a
# service, or starts and stops the heartbeat (all probing) as a whole.
SERVICE_ACTIONS: Final[tuple[str, ...]] = ("pause", "resume", "reset", "probe_now", "repair_now")
HEARTBEAT_ACTIONS: Final[tuple[str, ...]] = ("start", "stop")
ADMIN_ACTIONS: Final[tuple[str, ...]] = SERVICE_ACTIONS + HEARTBEAT_ACTIONS
# Reading the configuration again (`POST /admin/config/reload`): what a refused attempt is
# recorded as (`admin.action`); one that is allowed is recorded as a `config.reloaded` event.
RELOAD_ACTION: Final = "reload"
# The service actions the state machine decides on (a probe_now only asks for a probe).
STATE_ACTIONS: Final[tuple[str, ...]] = ("pause", "resume", "reset", "repair_now")


def url_action(action: str) -> str:
    """An action as URLs spell it: `repair_now` is `/admin/service/<name>/repair-now`."""
    return action.replace("_", "-")


def log_action(action: str) -> str:
    """An action as the log records it, from its URL spelling."""
    return action.replace("-", "_")


URL_SERVICE_ACTIONS: Final[tuple[str, ...]] = tuple(url_action(a) for a in SERVICE_ACTIONS)

# A service's name: it is part of URLs, file names and metric labels. Names made only of dots
# are refused by the config's checks too (they are path components).
SERVICE_NAME_MAX: Final = 128
SERVICE_NAME: Final = re.compile(rf"[A-Za-z0-9_.-]{{1,{SERVICE_NAME_MAX}}}")
