"""What became of each injected fault, read from the event log: when the monitor noticed
(first failed probe, or a supervised process's end) and detected it (decided to repair:
`repairing`; or, a process that ended, to restart it), whether and how it was
repaired (the step whose verification probe passed, or a restart), the restarts it took, and
the time to recover. Also: whether any two restarts of one service were closer than the
restart cooldown.
"""

from __future__ import annotations

import itertools
import os
import shlex
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hbsm.demo.chaos import Fault
from hbsm.events import RepairStarted, RestartStarted, Transition

__all__ = [
    "DemoReport",
    "FaultOutcome",
    "analyze",
    "analyze_log",
    "format_summary",
    "hbsm_command",
]


@dataclass
class FaultOutcome:
    fault: Fault
    noticed_at: float | None = None  # the first failed probe's transition (out of healthy)
    detected_at: float | None = None  # the transition to `repairing`, or on a process's end
    repaired_at: float | None = None  # back to `healthy`
    repaired_by: str | None = None  # a ladder step's name, "restart", or "itself"
    restarts: int = 0
    steps: list[str] = field(default_factory=list)

    @property
    def detect_s(self) -> float | None:
        return None if self.detected_at is None else self.detected_at - self.fault.ts

    @property
    def recover_s(self) -> float | None:
        return None if self.repaired_at is None else self.repaired_at - self.fault.ts

    @property
    def repaired(self) -> bool:
        return self.repaired_at is not None


@dataclass
class DemoReport:
    outcomes: list[FaultOutcome]
    restarts: dict[str, list[float]]  # service -> restart.started times
    restart_cooldown: float
    cooldown_violations: list[tuple[str, float, float]]  # service, earlier, later
    detection_bound: float | None = None  # seconds; None: not checked
    # Faults still being repaired when the user stopped the demo (numbers): not held against it.
    in_progress: set[int] = field(default_factory=set)

    @property
    def judged(self) -> list[FaultOutcome]:
        return [o for o in self.outcomes if o.fault.n not in self.in_progress]

    @property
    def all_repaired(self) -> bool:
        return all(o.repaired for o in self.judged)

    @property
    def late(self) -> list[FaultOutcome]:
        """Faults detected later than the bound (or never)."""
        bound = self.detection_bound
        if bound is None:
            return []
        return [o for o in self.judged if o.detect_s is None or o.detect_s > bound]

    @property
    def ok(self) -> bool:
        """Every fault repaired, detected in time, and no restart broke the cooldown."""
        return self.all_repaired and not self.late and not self.cooldown_violations


def analyze(
    events: Iterable[Any],
    faults: list[Fault],
    *,
    restart_cooldown: float,
    detection_bound: float | None = None,
) -> DemoReport:
    """Match each fault to the events of its service that follow it."""
    by_service: dict[str, list[Any]] = {}
    restarts: dict[str, list[float]] = {}
    for e in events:
        if isinstance(e, Transition | RepairStarted | RestartStarted):
            by_service.setdefault(e.service, []).append(e)
        if isinstance(e, RestartStarted):
            restarts.setdefault(e.service, []).append(e.ts)
    outcomes = []
    for fault in faults:
        out = FaultOutcome(fault=fault)
        last_step: str | None = None
        for e in by_service.get(fault.service, []):
            if e.ts < fault.ts:
                continue
            if isinstance(e, RepairStarted):
                last_step = e.step
                out.steps.append(e.step)
            elif isinstance(e, RestartStarted):
                out.restarts += 1
            elif isinstance(e, Transition):
                if e.dst != "healthy":
                    out.noticed_at = out.noticed_at if out.noticed_at is not None else e.ts
                    decided = e.dst == "repairing" or e.trigger == "process_lost"
                    if decided and out.detected_at is None:
                        out.detected_at = e.ts
                elif out.noticed_at is not None:
                    out.repaired_at = e.ts
                    if e.trigger == "verified" and last_step is not None:
                        out.repaired_by = last_step
                    elif e.src == "cooldown":
                        out.repaired_by = "restart"
                    else:
                        out.repaired_by = "itself"
                    break
        outcomes.append(out)
    violations = []
    for service, times in restarts.items():
        for earlier, later in itertools.pairwise(times):
            if later - earlier < restart_cooldown:
                violations.append((service, earlier, later))
    return DemoReport(
        outcomes=outcomes,
        restarts=restarts,
        restart_cooldown=restart_cooldown,
        cooldown_violations=violations,
        detection_bound=detection_bound,
    )


def analyze_log(
    log_path: str | os.PathLike[str],
    faults: list[Fault],
    *,
    restart_cooldown: float,
    detection_bound: float | None = None,
) -> DemoReport:
    from hbsm.log import read_history

    return analyze(
        read_history(log_path),
        faults,
        restart_cooldown=restart_cooldown,
        detection_bound=detection_bound,
    )


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def hbsm_command(search_path: str | None = None) -> str:
    """How a shell reaches this hbsm: `hbsm` when that is the one on PATH (`search_path`, by
    default $PATH), else the `hbsm` script beside this Python (a venv's bin/, which a new shell
    does not have on PATH; relative when it is below the working directory), else
    `PYTHON -m hbsm`."""
    python = Path(sys.executable)
    script = python.parent / "hbsm"
    if not script.is_file():
        return f"{_shell_path(python)} -m hbsm"
    found = shutil.which("hbsm", path=search_path)
    if found is not None and os.path.samefile(found, script):
        return "hbsm"
    return _shell_path(script)


def _shell_path(path: Path) -> str:
    absolute = path.absolute()
    try:
        shown = str(absolute.relative_to(Path.cwd()))
    except ValueError:
        shown = str(absolute)
    return shlex.quote(shown if "/" in shown else f"./{shown}")


def format_summary(
    report: DemoReport, *, log_path: str, faults_path: str, hbsm: str = "hbsm"
) -> str:
    """The demo's summary; `hbsm` is how its lines run hbsm (see hbsm_command)."""
    outcomes = report.outcomes
    lines = ["", "hbsm demo: summary"]
    kinds: dict[str, list[FaultOutcome]] = {}
    for o in outcomes:
        kinds.setdefault(o.fault.kind, []).append(o)
    detected = sum(1 for o in outcomes if o.detected_at is not None)
    repaired = sum(1 for o in outcomes if o.repaired)
    lines.append(
        f"  faults injected: {len(outcomes)}"
        + (f" ({', '.join(f'{k} {len(v)}' for k, v in sorted(kinds.items()))})" if kinds else "")
        + f"; detected: {detected}; repaired: {repaired}"
    )
    total_restarts = sum(len(v) for v in report.restarts.values())
    per = ", ".join(f"{k} {len(v)}" for k, v in sorted(report.restarts.items()))
    lines.append(f"  restarts: {total_restarts}" + (f" ({per})" if per else ""))
    if outcomes:
        lines.append("")
        lines.append(
            f"  {'#':>3}  {'fault':<10} {'service':<13} {'detected':>9} {'recovered':>10} "
            f"{'restarts':>8}  repaired by"
        )
        for o in outcomes:
            by = o.repaired_by or (
                "in progress when stopped" if o.fault.n in report.in_progress else "NOT REPAIRED"
            )
            lines.append(
                f"  {o.fault.n:>3}  {o.fault.kind:<10} {o.fault.service:<13} "
                f"{_s(o.detect_s):>9} {_s(o.recover_s):>10} {o.restarts:>8}  {by}"
            )
        lines.append("")
        lines.append("  by kind:")
        for kind, group in sorted(kinds.items()):
            by_step: dict[str, int] = {}
            for o in group:
                key = o.repaired_by or (
                    "in progress" if o.fault.n in report.in_progress else "NOT REPAIRED"
                )
                by_step[key] = by_step.get(key, 0) + 1
            times = [o.recover_s for o in group if o.recover_s is not None]
            mean = f"; mean time to recover {sum(times) / len(times):.1f}s" if times else ""
            how = ", ".join(f"{n}x {step}" for step, n in sorted(by_step.items()))
            lines.append(f"    {kind:<10} {len(group)} injected, repaired by: {how}{mean}")
    if report.detection_bound is not None:
        late = report.late
        if late:
            for o in late:
                lines.append(
                    f"  LATE: fault #{o.fault.n} ({o.fault.kind} on {o.fault.service}) detected "
                    f"after {_s(o.detect_s)}, bound {report.detection_bound:.1f}s"
                )
        else:
            lines.append(
                f"  every fault detected within {report.detection_bound:.1f}s "
                "(check_interval x max_retries + check_interval + probe timeouts)"
            )
    if report.cooldown_violations:
        for service, a, b in report.cooldown_violations:
            lines.append(
                f"  COOLDOWN BROKEN: {service} restarted {b - a:.1f}s after the previous restart "
                f"(cooldown {report.restart_cooldown:g}s)"
            )
    else:
        lines.append(f"  no restart broke the {report.restart_cooldown:g}s cooldown")
    lines.append("")
    lines.append(f"  event log:   {log_path}")
    lines.append(f"  fault log:   {faults_path}")
    log = shlex.quote(log_path)
    lines.append(f"  replay it:   {hbsm} replay {log}")
    lines.append(f"               {hbsm} replay --verify {log}")
    lines.append(f"               {hbsm} dashboard --replay {log}")
    judged = report.judged
    unrepaired = sum(1 for o in judged if not o.repaired)
    if report.in_progress:
        lines.append(
            f"  stopped by the user with {len(report.in_progress)} fault(s) still being repaired "
            "(not counted)"
        )
    if not report.all_repaired:
        verdict = f"{unrepaired} of {len(judged)} faults NOT repaired"
    elif not report.ok:
        verdict = "every injected fault was repaired, but see above"
    elif report.in_progress:
        verdict = "every other injected fault was repaired"
    elif outcomes:
        verdict = "every injected fault was repaired"
    else:
        verdict = "no fault injected (add --chaos)"
    lines.append(f"  result:      {verdict}")
    return "\n".join(lines)
