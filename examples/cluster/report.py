"""What the demo did and what came of it, told from the stream (exported) and restarts.log.

The stream says who owned each service and when it was healthy again; restarts.log, written
by the restart commands themselves, says how many restarts were carried out and by which
node: what hbsm says it did is checked against what happened.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from hbsm.events import Event, OpaqueEvent, RestartStarted, ServiceOwned, Transition

__all__ = ["Fault", "Kill", "Ran", "Report"]


@dataclass
class Fault:
    service: str
    owner: str  # when it broke
    broke_at: float  # time.time()
    owner_killed: bool = False


@dataclass
class Kill:
    node: str
    at: float  # the SIGKILL
    restart_at: float  # the restart it was carrying out started
    services: list[str]  # what it owned when killed
    # Its restart command had finished already: the demo saw the restart start too late.
    too_late: bool = False
    rejoined_at: float | None = None  # started again
    share: list[str] = field(default_factory=list)  # what it should own back


@dataclass
class Ran:
    """What an hbsm command said, and its exit code."""

    code: int
    output: str

    @property
    def ok(self) -> bool:
        return self.code == 0


@dataclass
class Report:
    started: float
    faults: list[Fault]
    kill: Kill | None
    events: list[Event | OpaqueEvent]
    restarts: list[tuple[str, str]]  # (service, node), one per restart carried out
    stopped: dict[str, int]  # node -> its exit code on SIGTERM
    verify: Ran | None
    problems: list[str] = field(default_factory=list)  # found on the way

    def lines(self) -> list[str]:
        lines = ["", "cluster demo: report", ""]
        lines += self._fault_lines()
        if self.kill is not None:
            lines += ["", *self._kill_lines(self.kill)]
        codes = ", ".join(f"{node} {code}" for node, code in sorted(self.stopped.items()))
        lines += ["", f"  nodes stopped (SIGTERM), exit codes: {codes or '-'}"]
        verify = self.verify
        said = verify.output.strip().splitlines()[-1:] if verify else []
        lines.append(f"  hbsm replay --verify: {said[0] if said else 'not run'}")
        problems = self.all_problems()
        lines.append("")
        if problems:
            lines += [f"  FAILED: {problem}" for problem in problems]
        else:
            lines.append("  result: every fault repaired by exactly one restart; "
                         "the take-over seen; the stream verified")  # fmt: skip
        return lines

    # --- the faults ---------------------------------------------------------------------------

    def _fault_lines(self) -> list[str]:
        lines = ["  faults (times from the start; restarts: those carried out, as the restart",
                 "  command counts them in restarts.log; owner: when it broke)", "",
                 f"  {'service':<10} {'owner':<6} {'broke':>7} {'healthy':>8}  "
                 f"{'restarted by':<13} restarts"]  # fmt: skip
        for fault in self.faults:
            healthy = self.healthy_at(fault)
            by = ", ".join(self.restarted_by(fault.service)) or "-"
            note = self._killed_note(fault) if fault.owner_killed else ""
            lines.append(
                f"  {fault.service:<10} {fault.owner:<6} {self._t(fault.broke_at):>7} "
                f"{self._t(healthy):>8}  {by:<13} {len(self.restarted_by(fault.service))}{note}"
            )
        return lines

    def _killed_note(self, fault: Fault) -> str:
        started = [e for e in self.events if isinstance(e, RestartStarted)
                   and e.service == fault.service and e.ts >= fault.broke_at]  # fmt: skip
        return f"  ({len(started)} started: the owner was killed in the first)"

    def healthy_at(self, fault: Fault) -> float | None:
        """When its owner saw it healthy again, after it broke."""
        for event in self.events:
            if (isinstance(event, Transition) and event.service == fault.service
                    and event.dst == "healthy" and event.ts > fault.broke_at):  # fmt: skip
                return event.ts
        return None

    def restarted_by(self, service: str) -> list[str]:
        return [node for name, node in self.restarts if name == service]

    # --- the killed node ----------------------------------------------------------------------

    def _kill_lines(self, kill: Kill) -> list[str]:
        when = ("after its restart had finished (seen late)" if kill.too_late
                else f"{kill.at - kill.restart_at:.1f}s into a restart")  # fmt: skip
        lines = [f"  {kill.node} killed (SIGKILL) at {self._t(kill.at)}, {when}; "
                 f"its {len(kill.services)} services:"]  # fmt: skip
        taken = self.taken_over(kill)
        for name in kill.services:
            owned = taken.get(name)
            how = f"taken over by {owned.node} {owned.ts - kill.at:.1f}s after the kill" if owned \
                else "NOT taken over"  # fmt: skip
            lines.append(f"    {name:<10} {how}")
        if kill.rejoined_at is not None:
            back = self.given_back(kill)
            last = max((o.ts for o in back.values()), default=None)
            within = f", the last {last - kill.rejoined_at:.1f}s after it started" if last else ""
            lines.append(f"  {kill.node} started again at {self._t(kill.rejoined_at)}: took back "
                         f"{len(back)} of its {len(kill.share)} services{within}")  # fmt: skip
        return lines

    def taken_over(self, kill: Kill) -> dict[str, ServiceOwned]:
        """The first take-over of each of the killed node's services after the kill."""
        return _first_owned(e for e in self._owned() if e.ts >= kill.at and e.previous == kill.node)

    def given_back(self, kill: Kill) -> dict[str, ServiceOwned]:
        """The killed node's share that it took back once started again."""
        if kill.rejoined_at is None:
            return {}
        back = [e for e in self._owned() if e.ts >= kill.rejoined_at and e.node == kill.node]
        return {n: e for n, e in _first_owned(back).items() if n in kill.share}

    def _owned(self) -> list[ServiceOwned]:
        return [e for e in self.events if isinstance(e, ServiceOwned)]

    # --- the verdict --------------------------------------------------------------------------

    def all_problems(self) -> list[str]:
        problems = list(self.problems)
        for fault in self.faults:
            count = len(self.restarted_by(fault.service))
            if count != 1:
                problems.append(f"{fault.service}: {count} restarts carried out, not exactly 1")
            if self.healthy_at(fault) is None:
                problems.append(f"{fault.service}: never healthy again")
        if self.kill is not None:
            missing = set(self.kill.services) - set(self.taken_over(self.kill))
            if missing:
                problems.append(f"not taken over from {self.kill.node}: {sorted(missing)}")
        for node, code in sorted(self.stopped.items()):
            if code != 0:
                problems.append(f"{node} exited {code} on SIGTERM")
        if self.verify is not None and not self.verify.ok:
            problems.append(f"hbsm replay --verify exited {self.verify.code}")
        return problems

    @property
    def ok(self) -> bool:
        return not self.all_problems()

    def _t(self, ts: float | None) -> str:
        return "-" if ts is None else f"{ts - self.started:.1f}s"


def _first_owned(owned: Iterable[ServiceOwned]) -> dict[str, ServiceOwned]:
    first: dict[str, ServiceOwned] = {}
    for event in owned:
        first.setdefault(event.service, event)
    return first
