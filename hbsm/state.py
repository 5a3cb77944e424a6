"""The data a monitored service's state is made of: its policy and its FSM state.

Pure data, shared by the state machine (`hbsm.fsm`), the projections (`hbsm.projection`) and the
snapshot event that opens every log segment. No behaviour lives here.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

__all__ = [
    "ERROR_CLASSES",
    "RESTART_STEP",
    "STATES",
    "Policy",
    "ServiceState",
    "StateName",
]

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

# The ladder step that restarts the service: reaching it is a restart decision, guarded by the
# cooldown and the restart budget, not a plain repair step.
RESTART_STEP: Final = "restart"


class Policy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every threshold the state machine applies to one service (DESIGN §3, §5).

    Durations are seconds. The defaults are the original feature's.
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
    # The longest healthy stretch since the last restart: long enough resets the backoff.
    stable_span: float = 0.0
    paused_from: str | None = None
