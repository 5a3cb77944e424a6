"""What a monitor does when it starts, before it probes: resume every service's state from the
log (`resume`), take over the processes it supervises, and take up the work a previous monitor
left unfinished (`StartUp`).

For each supervised service, by what the log says and what runs now:

* the recorded process still runs (or an orphan the last monitor started but never recorded):
  adopted;
* the log never named a process (or hbsm stopped it on purpose at its last shutdown): a first
  start, with its start grace;
* the recorded process is gone: a `process.lost` fact. The state machine decides a restart
  under the cooldown and the restart budget, since a start after a crash is a restart; a
  service `failed` or `paused` is left as the operator left it.

A restart the log shows decided but never finished is finished now, not decided again (its
cooldown runs from its decision): for a supervised service, if the recorded process still runs
the restart never happened and is carried out; if a new process runs, it had happened and is
adopted; if nothing runs, the process is started. Whether a restart *command* ran cannot be
known, so it is counted as done rather than risk a second restart within the cooldown. A repair
step in flight is recorded as interrupted and its verification probe runs.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from hbsm.events import (
    Notification,
    ProcessLost,
    ProcessStarted,
    RepairFinished,
    RestartFinished,
    RestartStarted,
    Snapshot,
    Transition,
)
from hbsm.monitor.orphans import Orphans
from hbsm.notify.notice import iso_utc
from hbsm.repair import SupervisorError

if TYPE_CHECKING:
    from hbsm.monitor.runtime import Monitor

__all__ = ["Resumed", "StartUp", "resume", "take_up"]

log = logging.getLogger("hbsm.monitor")

# The events of the history the notifier learns from on start (see Notifier.remember).
_REMEMBERED = (Transition, Notification, RestartStarted, RepairFinished, Snapshot)

# /proc/stat's btime is in whole seconds: how much later than recorded a process may seem to
# have started and still be the one recorded.
_START_SLACK = 1.0


class Resumed(NamedTuple):
    """What the log said when the monitor started, before it decided anything itself."""

    in_flight: dict[str, str]  # service -> "repair:<step>" or "restart"
    pids: dict[str, int]  # service -> the supervised process the log last named
    pid_since: dict[str, float]  # service -> when the log named that pid
    previous_start: float | None  # when the previous monitor started


def resume(m: Monitor) -> Resumed:
    """Fold the monitor's log into its projection and rebuild every configured service's
    state, before it records its own start."""
    remember = m.notifier.remember
    # When the log last named each supervised service's pid: a process that started later
    # is not that one.
    pid_since: dict[str, float] = {}
    batch: list[Any] = []
    for event in m.store.read():
        batch.append(event)
        # So a restarted monitor does not notify twice. Fix (tests/monitor): the planner
        # dedupes on restart.started and repair.finished too, and learns incidents begun in
        # a pruned segment from a snapshot; fed only transitions and notifications, it sent
        # "repair_failed" again for an incident it had already reported.
        if isinstance(event, _REMEMBERED):
            remember(event)
        if isinstance(event, ProcessStarted | RestartFinished) and event.pid is not None:
            pid_since[event.service] = event.ts
        elif isinstance(event, Snapshot):
            for snapped in event.services:
                if snapped.pid is not None:
                    pid_since[snapped.name] = event.ts
        if len(batch) >= 4096:
            m.projection.apply_all(batch)
            batch.clear()
    m.projection.apply_all(batch)
    for name in m.services:
        m.states[name] = m.projection.state_of(name)
    resumed = sum(1 for s in m.states.values() if s.state != "unknown")
    log.info(
        "resumed %d of %d services from %d events",
        resumed,
        len(m.states),
        m.projection.monitor.events_total,
    )
    views = m.projection.services
    return Resumed(
        in_flight={n: s.in_flight for n, s in m.states.items() if s.in_flight is not None},
        pids={n: v.pid for n, v in views.items() if n in m.services and v.pid is not None},
        pid_since=pid_since,
        # When the previous monitor started: a child it started is no older (see Orphans).
        previous_start=m.projection.monitor.started_at,
    )


class StartUp:
    def __init__(self, monitor: Monitor, resumed: Resumed) -> None:
        self.monitor = monitor
        self.resumed = resumed

    async def start_supervised(self) -> None:
        """Adopt, start or (as the state machine decides) restart every supervised process."""
        m, resumed = self.monitor, self.resumed
        orphans = Orphans(since=resumed.previous_start) if resumed.previous_start else None
        for name, svc in m.services.items():
            if svc.restart.kind != "supervise":
                continue
            recorded = resumed.pids.get(name)
            known = recorded
            if known is not None and not _same_process(known, resumed.pid_since.get(name)):
                # Fix (tests/monitor): after a reboot or a long downtime the recorded pid may
                # belong to another process; adopted, it was SIGTERMed by the next restart.
                log.warning("%s: pid %d is not the process the log recorded", name, known)
                known = None
            adopted = known is not None and await m.supervisor.adopt(name, known)
            if not adopted and orphans is not None:
                # Fix (tests/reliability): killed between starting a child (in a restart, or
                # here) and recording its pid, the last monitor left it running unrecorded;
                # started again, the service found its port taken and died, the orphan served
                # on unsupervised and every later restart failed the same way (then `failed`).
                for orphan in orphans.of(svc.restart.argv):
                    if await m.supervisor.adopt(name, orphan, svc.restart):
                        log.warning("%s: adopting pid %d, started but never recorded", name, orphan)
                        known, adopted = orphan, True
                        break
            if adopted:
                assert known is not None
                m.record(
                    ProcessStarted(
                        ts=m.clock(), service=name, pid=known, argv=list(svc.restart.argv),
                        adopted=True,
                    )
                )  # fmt: skip
            elif resumed.in_flight.get(name) == "restart":
                continue  # the restart the log decided is finished by take_up_interrupted
            elif recorded is not None:
                self._lost(name, recorded)
            else:
                await self._first_start(name)

    async def _first_start(self, name: str) -> None:
        m = self.monitor
        svc = m.services[name]
        try:
            pid = await m.supervisor.start(name, svc.restart)
        except SupervisorError as exc:
            # Fix (tests/monitor): one service that will not start (bad argv, port taken)
            # crashed `hbsm run` for all of them. Its probes now fail and its ladder retries
            # the start as a restart, under the cooldown and the restart budget.
            log.error("%s", exc)
            return
        m.record(ProcessStarted(ts=m.clock(), service=name, pid=pid, argv=list(svc.restart.argv)))

    def _lost(self, name: str, pid: int) -> None:
        """The recorded process is gone: the state machine decides whether, and when, to
        restart it. The restart itself starts once its decision is on disk (Monitor.record)."""
        m = self.monitor
        state = m.states[name].state
        decisions = m.record(
            ProcessLost(ts=m.clock(), service=name, pid=pid, detail="not running when hbsm started")
        )
        if any(isinstance(d, RestartStarted) for d in decisions):
            log.warning("%s: pid %d is gone; restarting it", name, pid)
            return
        moved = next((d for d in decisions if isinstance(d, Transition)), None)
        if moved is not None and moved.dst == "cooldown" and moved.until is not None:
            why = f"restarting it when its cooldown ends, at {iso_utc(moved.until)}"
        elif moved is not None and moved.dst == "failed":
            why = "not started: its restart budget is spent (it is failed; reset it to go on)"
        else:
            why = f"not started: it is {state} (an operator's reset or resume starts it again)"
        log.warning("%s: pid %d is gone; %s", name, pid, why)

    def take_up_interrupted(self) -> None:
        """Finish or close what the log shows requested and not finished: the last monitor
        stopped meanwhile. Only what the log said at start-up: decisions taken since are
        running their course already."""
        m = self.monitor
        for name, in_flight in self.resumed.in_flight.items():
            state = m.states.get(name)
            if state is None or state.in_flight != in_flight:
                continue
            take_up(m, name, self.resumed.pids.get(name))
        for name, state in m.states.items():
            unverified = state.state == "repairing" and state.step_done
            if unverified and name not in self.resumed.in_flight:
                m.spawn_probe(name)  # a finished step whose verification probe never ran


def take_up(m: Monitor, name: str, recorded_pid: int | None = None) -> None:
    """Finish or close the work on `name` that its state shows started and not finished (a
    monitor stopped meanwhile: this one, or another node that owned it); run a verification
    probe that never ran. `recorded_pid`: the supervised process the log last named."""
    state = m.states[name]
    in_flight = state.in_flight
    if in_flight is None:
        if state.state == "repairing" and state.step_done:
            m.spawn_probe(name)  # a finished step whose verification probe never ran
        return
    if in_flight.startswith("repair:"):
        m.record(
            RepairFinished(
                ts=m.clock(),
                service=name,
                run=state.run,
                step=state.ladder[state.step_index],
                index=state.step_index,
                ok=False,
                interrupted=True,
                output="interrupted: hbsm stopped during this step",
            )
        )
        m.spawn_probe(name)
    else:
        _finish_restart(m, name, recorded_pid)


def _finish_restart(m: Monitor, name: str, before: int | None) -> None:
    svc = m.services[name]
    state = m.states[name]
    if svc.restart.kind == "self":
        # This process is the restarted one: the restart took.
        m.record(
            RestartFinished(
                ts=m.clock(),
                service=name,
                ok=True,
                pid=os.getpid(),
                output=f"the process was started again (pid {os.getpid()}): restarted",
            )
        )
        return
    if svc.restart.kind != "supervise":
        m.record(
            RestartFinished(
                ts=m.clock(),
                service=name,
                ok=True,
                interrupted=True,
                output=(
                    "interrupted: hbsm stopped during the restart command; whether it ran "
                    "is unknown, and running it again could restart the service twice "
                    "within its cooldown: counted as done"
                ),
            )
        )
        return
    now_pid = m.supervisor.pid(name) if m.supervisor.running(name) else None
    if now_pid is not None and now_pid != before:
        m.record(
            RestartFinished(
                ts=m.clock(), service=name, ok=True, interrupted=True, pid=now_pid,
                output=(
                    f"hbsm stopped during the restart, after it had started pid {now_pid}: "
                    "adopted"
                ),
            )
        )  # fmt: skip
        return
    # The old process still runs (the restart never happened) or nothing runs (it stopped
    # the old one and died before starting the new): carry the recorded decision out.
    decided = RestartStarted(
        ts=state.last_restart or m.clock(),
        service=name,
        attempt=len(state.restarts),
        backoff=state.backoff,
        cooldown_s=state.cooldown_s,
        recent=list(state.restarts),
    )
    m.spawn_restart(decided, note="taken up after hbsm restarted (it stopped during this restart)")


def _same_process(pid: int, recorded_at: float | None) -> bool:
    """Whether live process `pid` can be the one the log named at `recorded_at`: it is not
    hbsm itself, and it had started by then. Without /proc (or a time), trust the pid."""
    if pid == os.getpid():
        return False
    if recorded_at is None:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/stat").read_text()
        btime = next(int(line.split()[1]) for line in boot.splitlines() if line.startswith("btime"))
        # Fields after "(comm)" begin at field 3; starttime is field 22, in clock ticks.
        ticks = int(stat[stat.rfind(")") + 2 :].split()[19])
    except (OSError, StopIteration, ValueError, IndexError):
        return True
    started = btime + ticks / os.sysconf("SC_CLK_TCK")
    return started <= recorded_at + _START_SLACK
