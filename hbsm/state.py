"""The data a monitored service's state is made of: its policy and its FSM state.

Pure data, shared by the state machine (`hbsm.fsm`), the projections (`hbsm.projection`) and the
snapshot event that opens every log segment. No behaviour lives here.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

# The vocabulary, re-exported: hbsm.state is where the pure core's data has always been found.
from hbsm.vocabulary import ERROR_CLASSES, RESTART_STEP, STATES, StateName

__all__ = [
    "ERROR_CLASSES",
    "RESTART_STEP",
    "RULES",
    "STATES",
    "Policy",
    "ServiceState",
    "StateName",
]

# The version of the decision rules `hbsm.fsm.decide` applies, recorded in every
# `monitor.started` so a log is always re-decided by the rules it was written under:
#   1  a restart's cooldown held the service in `cooldown` until its deadline whatever its
#      probes said (a critical service that came back at once kept /health at 503 for the whole
#      cooldown, and failures during it went uncounted); repair runs that could not restart
#      were retried without end. Logs without `rules` in `monitor.started` were written so.
#   2  the cooldown gates the next restart only: probes count from the first one after a
#      restart, `success_threshold` good ones make the service healthy, and a restart step
#      reached before the deadline waits in `cooldown` for it; failed repair runs back off and
#      count against `repair_budget`; failures inside `start_grace` after hbsm (re)started a
#      process do not count; a supervised process found gone at start-up is restarted under
#      the cooldown and the budget (`process.lost`).
#   3  a repair run does not restart while its last `check_config` found the configuration
#      broken: the run ends there as a ladder without a restart does (degraded, backing off,
#      counted against `repair_budget`), saying which file is broken. A restart into a
#      configuration that does not load takes down what still answers (a gunicorn master whose
#      workers cannot boot exits); the next run, once the file is mended, restarts.
#   4  a repair step's outcome that says it changed nothing and the failure stands
#      (`repair.finished` with `verify` false: `diagnose` that found a failure, `check_config`)
#      is its own verification: the run goes on at once, where it waited for a probe (on a
#      hung service, one more probe timeout per such step before the restart).
#   5  a service's TLS certificate (`cert.seen`) that expires within `cert_warn_days` is
#      reported once (`cert.expiring`, failure class `cert`), on the fact that shows it: the
#      certificate's own `cert.seen`, or the first probe inside the window. Nothing is repaired
#      or restarted for it. Logs of the earlier rules hold no `cert.seen`, so nothing changes
#      for them but the version.
RULES: Final = 5


class Policy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every threshold the state machine applies to one service.

    Durations are seconds. The defaults are the original feature's; a field added later
    defaults to what a policy recorded before it meant (`start_grace`: none), since recorded
    policies are decoded with these defaults (the config's own defaults may differ).
    """

    check_interval: float = 30.0
    max_retries: int = 3
    success_threshold: int = 1
    restart_cooldown: float = 300.0
    # Consecutive restarts without a stable period double the cooldown, up to this cap.
    cooldown_max: float = 3600.0
    # Healthy for this long since the last restart resets the backoff.
    stable_period: float = 600.0
    restart_budget: int = 3
    restart_window: float = 3600.0
    ladder: tuple[str, ...] = ("diagnose", "check_config", "restart")
    # A ladder per failure class (see ERROR_CLASSES), chosen by the last probe's error class or
    # by what `diagnose` finds; `ladder` is the fallback.
    ladders: dict[str, tuple[str, ...]] = {}
    on_restart_failure: Literal["failed", "degraded"] = "failed"
    # After hbsm (re)started the process: failed probes until this many seconds later are
    # recorded but do not count (the service is still binding its port); a passing probe ends
    # the grace early.
    start_grace: float = 0.0
    # A repair run that ends without fixing the service and without reaching a restart: the next
    # run waits repair_backoff, doubling with each such run in a row, up to repair_backoff_max.
    repair_backoff: float = 60.0
    repair_backoff_max: float = 3600.0
    # That many such runs in a row and the service is `failed` (0: never give up).
    repair_budget: int = 5
    # With several nodes: how many vantage points must see the service failing (within two
    # check intervals) before a failed probe counts. 1: one node's word, as a single monitor.
    quorum: int = 1
    # A TLS certificate that expires within this many days is reported (`cert.expiring`);
    # 0: never. Policies recorded before it decode with 14 too: their logs hold no certificate.
    cert_warn_days: float = 14.0

    def __post_init__(self) -> None:
        problems = []
        if self.check_interval <= 0:
            problems.append(("check_interval", "must be > 0"))
        if self.max_retries < 1:
            problems.append(("max_retries", "must be >= 1"))
        if self.success_threshold < 1:
            problems.append(("success_threshold", "must be >= 1"))
        if self.restart_cooldown < 0:
            problems.append(("restart_cooldown", "must be >= 0"))
        if self.cooldown_max < self.restart_cooldown:
            problems.append(("cooldown_max", "must be >= restart_cooldown"))
        if self.stable_period < 0:
            problems.append(("stable_period", "must be >= 0"))
        if self.restart_budget < 0:
            problems.append(("restart_budget", "must be >= 0"))
        if self.restart_window <= 0:
            problems.append(("restart_window", "must be > 0"))
        if self.start_grace < 0:
            problems.append(("start_grace", "must be >= 0"))
        if self.repair_backoff < 0:
            problems.append(("repair_backoff", "must be >= 0"))
        if self.repair_backoff_max < self.repair_backoff:
            problems.append(("repair_backoff_max", "must be >= repair_backoff"))
        if self.repair_budget < 0:
            problems.append(("repair_budget", "must be >= 0 (0: no limit)"))
        if self.quorum < 1:
            problems.append(("quorum", "must be >= 1"))
        if self.cert_warn_days < 0:
            problems.append(("cert_warn_days", "must be >= 0 (0: no warning)"))
        for cls in self.ladders:
            if cls not in ERROR_CLASSES:
                known = ", ".join(ERROR_CLASSES)
                problems.append((f"ladders.{cls}", f"is not a failure class (one of {known})"))
        for key, ladder in [("ladder", self.ladder)] + [
            (f"ladders.{cls}", lad) for cls, lad in self.ladders.items()
        ]:
            why = _ladder_problem(ladder)
            if why:
                problems.append((key, why))
        if problems:
            key, why = problems[0]
            # msgspec turns a ValueError raised here into a ValidationError naming the path.
            raise ValueError(f"{key} {why}")

    def ladder_for(self, error_class: str | None) -> tuple[str, ...]:
        if error_class is not None:
            ladder = self.ladders.get(error_class)
            if ladder is not None:
                return ladder
        return self.ladder

    def cooldown_for(self, backoff: int) -> float:
        """The cooldown after a restart taken at backoff level `backoff` (0 = first)."""
        return min(self.restart_cooldown * (2 ** min(backoff, 32)), self.cooldown_max)

    def repair_delay(self, failed_runs: int) -> float:
        """How long the next repair run waits after `failed_runs` (>= 1) runs in a row failed."""
        return min(self.repair_backoff * (2 ** min(failed_runs - 1, 32)), self.repair_backoff_max)


def _ladder_problem(ladder: tuple[str, ...]) -> str | None:
    if not ladder:
        return "must name at least one step"
    if ladder[0] == RESTART_STEP:
        return f"must not begin with {RESTART_STEP!r}: start with diagnose (it is cheap)"
    if RESTART_STEP in ladder[:-1]:
        return f"{RESTART_STEP!r} can only be the last step"
    return None


class ServiceState(msgspec.Struct, kw_only=True, eq=False):
    """The state of one service as the state machine sees it; the `transitions` model.

    Every field is derived from events by `hbsm.fsm.evolve`, so replaying a log rebuilds it
    exactly. `eq=False`: transitions keeps models in a list and compares them by identity.
    """

    name: str
    state: str = "unknown"
    since: float = 0.0
    # Consecutive failed / successful probes while they count (not during a repair run).
    failures: int = 0
    successes: int = 0
    last_error: str | None = None
    # Failed probes before this time do not count: the start grace after hbsm (re)started the
    # process (0: none). A passing probe ends it.
    grace_until: float = 0.0
    # The repair run in progress: its number, its ladder, the step reached and whether that
    # step has finished (a probe then verifies it).
    run: int = 0
    ladder: tuple[str, ...] = ()
    step_index: int = -1
    step_done: bool = False
    # A side effect requested and not yet finished: "repair:<step>" or "restart".
    in_flight: str | None = None
    # Restarts within the restart window, oldest first (bounded by the budget).
    restarts: list[float] = []
    last_restart: float | None = None
    backoff: int = 0
    cooldown_s: float = 0.0
    cooldown_until: float = 0.0
    # In `cooldown`: whether probes before cooldown_until are held (not counted), as under the
    # first rules; a cooldown decided now gates restarts only. Set on entering cooldown.
    cooldown_holds: bool = True
    # In `cooldown`: a repair run reached its restart step before the deadline (or the
    # supervised process was found gone); the first failed probe from the deadline on restarts.
    restart_pending: bool = False
    # Repair runs in a row that ended without fixing the service (and without a restart), and
    # the time before which no new run starts (their backoff). Reset when it is healthy again.
    failed_runs: int = 0
    repair_after: float = 0.0
    # What the repair run's last `check_config` found broken (the first line of its output);
    # "" when it passed, or has not run in this run.
    config_broken: str = ""
    # The TLS certificate the service last presented (its last `cert.seen`): when it ends and
    # its SHA-256 fingerprint; whether `cert.expiring` has reported this one (once each).
    cert_not_after: float | None = None
    cert_fingerprint: str = ""
    cert_warned: bool = False

    def copy(self) -> ServiceState:
        """A copy to decide on apart from this one (its one list is its own)."""
        return msgspec.structs.replace(self, restarts=list(self.restarts))

    # The longest healthy stretch since the last restart: long enough resets the backoff.
    stable_span: float = 0.0
    paused_from: str | None = None
