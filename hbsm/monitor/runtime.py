"""The monitor: probes feed facts to the state machine; decisions go to the log, then run.

One asyncio loop. Every fact (probe result, repair or restart outcome, admin action) goes through
`Monitor.record`: the state machine decides, the fact and its decisions are appended to the log
together, the projection folds them, and only then — after a flush when a decision starts a side
effect — do repair steps and restarts run, each in its own task so no service waits on another.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from hbsm import __version__
from hbsm.config import Config, ServiceConfig
from hbsm.config.secrets import mask_secrets
from hbsm.events import (
    Admin,
    Event,
    MonitorStarted,
    MonitorStopped,
    ProcessStopped,
    RepairStarted,
    RestartStarted,
    ServiceRegistered,
)
from hbsm.fsm import ServiceMachine, decided
from hbsm.log import EventStore, LogError
from hbsm.monitor.outage import LogUnwritableError, Outage, OutageWatch
from hbsm.monitor.startup import StartUp, resume
from hbsm.notify import Notifier
from hbsm.probes import Prober, Scheduler
from hbsm.projection import Projection
from hbsm.repair import RepairRunner, Supervisor
from hbsm.state import RULES, Policy, ServiceState

__all__ = ["Monitor"]

log = logging.getLogger("hbsm.monitor")

# How often buffered events are written when nothing forces a flush sooner (a side effect
# always flushes first, whatever this says).
FLUSH_EVERY = 0.2
# Probes are not scheduled while an effect owns the service: its own verification probe decides.
_EFFECT_STATES = frozenset({"repairing", "restarting"})


class Monitor:
    def __init__(
        self,
        config: Config,
        *,
        store: EventStore,
        prober: Prober,
        repairs: RepairRunner,
        supervisor: Supervisor,
        notifier: Notifier,
        clock: Callable[[], float] = time.time,
        projection: Projection | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.prober = prober
        self.repairs = repairs
        self.supervisor = supervisor
        self.notifier = notifier
        self.clock = clock
        # What the monitor has recorded, folded: its API's views (given by whoever also needs
        # it before the monitor exists: the file log's snapshot of each new segment).
        self.projection = projection if projection is not None else Projection()
        self.machine = ServiceMachine()
        self.services: dict[str, ServiceConfig] = {s.name: s for s in config.services}
        self.policies: dict[str, Policy] = {s.name: config.policy_for(s) for s in config.services}
        # The writer's own FSM states; the projection keeps its own copies for readers.
        self.states: dict[str, ServiceState] = {}
        self.scheduler = Scheduler(self._scheduled_probe)
        self._scheduler_task: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._effects: set[asyncio.Task[Any]] = set()
        # Repair and restart decisions appended but not yet on disk: started by _flush.
        self._pending: list[RepairStarted | RestartStarted] = []
        self._dirty = False
        # While the log refuses writes nothing is probed, decided or started until it takes
        # them again (no record, no side effect).
        self.outages = OutageWatch(
            path=store.where,
            clock=clock,
            notify=lambda notice: self._spawn(self._notify(notice)),
            notify_on=config.notify.on,
            retry_every=FLUSH_EVERY,
        )
        self.started_at: float | None = None

    # --- life cycle ---------------------------------------------------------------------------

    @property
    def heartbeat_running(self) -> bool:
        return self._scheduler_task is not None and not self._scheduler_task.done()

    async def start(self) -> None:
        """Resume from the log, record the start, take up interrupted work, start probing."""
        resumed = resume(self)
        now = self.clock()
        self.started_at = now
        self._append(
            [
                MonitorStarted(
                    ts=now,
                    pid=os.getpid(),
                    version=__version__,
                    host=socket.gethostname(),
                    config=mask_secrets(msgspec.to_builtins(self.config)),
                    rules=RULES,
                ),
                *(
                    ServiceRegistered(
                        ts=now,
                        service=s.name,
                        policy=self.policies[s.name],
                        target=s.url or " ".join(s.probe.argv),
                        description=s.description,
                        critical=s.critical,
                        probe_kind=s.probe.kind,
                    )
                    for s in self.services.values()
                ),
            ]
        )
        startup = StartUp(self, resumed)
        await startup.start_supervised()
        # The pids must be on disk before anything else can go wrong: unknown to the next
        # start, a child would be started a second time.
        self.store.flush()
        startup.take_up_interrupted()
        self.store.flush()
        self._flusher = asyncio.create_task(self._flush_periodically(), name="hbsm-flusher")
        if self.config.enabled and self.config.auto_start:
            self._start_scheduler()

    async def stop(self, reason: str = "stopped", *, grace: float = 10.0) -> None:
        """Stop probing, let effects finish (or record them interrupted), flush, close."""
        await self._stop_scheduler()
        # Fix (tests/monitor): an effect can start others while we wait (a repair step's failed
        # verification decides a restart; any decision may notify). Waiting only for the tasks
        # there at the start let those run on after monitor.stopped and the log's close: a
        # restart.started never finished, and a process started that the log never learnt of.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self._effects and (remaining := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._effects), timeout=remaining)
        pending = set(self._effects)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for name, svc in self.services.items():
            if svc.restart.kind == "supervise" and svc.restart.stop_on_exit:
                pid = self.supervisor.pid(name)
                await self.supervisor.stop(name, grace=svc.restart.grace)
                if pid is not None:
                    # Stopped on purpose: the next start is a first start, not a crash's restart.
                    reason = "hbsm stopped (restart.stop_on_exit)"
                    self._append([ProcessStopped(ts=self.clock(), service=name, pid=pid,
                                                 reason=reason)])  # fmt: skip
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        # Through an outage: what is buffered (and the outage itself) first, then the stop.
        self.outages.quiet = True
        await self._last_flush(loop.time() + grace)
        self._append([MonitorStopped(ts=self.clock(), pid=os.getpid(), reason=reason)])
        await self._last_flush(loop.time() + grace)
        await self.notifier.aclose()
        await self.prober.aclose()

    async def _last_flush(self, deadline: float) -> None:
        """Write what is buffered before stopping; through an outage, keep trying until the
        grace period ends, then say how much could not be written."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                self.store.flush()
                if self.outage is None:
                    return
                # Written too; not notified: the notifier is closing (the stderr says it).
                self._append([self.outages.ended()])
                continue
            except OSError as exc:
                if loop.time() >= deadline:
                    unwritten = self.store.unwritten_bytes
                    raise LogError(
                        f"{self.store.where}: stopping with "
                        f"{unwritten if unwritten is not None else 'some'} bytes of events "
                        f"not written ({exc})"
                    ) from exc
                self.outages.failed(exc)
                await asyncio.sleep(FLUSH_EVERY)

    def _start_scheduler(self) -> None:
        for name, policy in self.policies.items():
            self.scheduler.add(name, policy.check_interval)
        self._scheduler_task = asyncio.create_task(self.scheduler.run(), name="hbsm-scheduler")

    async def _stop_scheduler(self) -> None:
        task = self._scheduler_task
        if task is None:
            return
        self.scheduler.stop()
        for name in self.policies:
            self.scheduler.remove(name)
        await asyncio.gather(task, return_exceptions=True)
        self._scheduler_task = None

    # --- admin ----------------------------------------------------------------------------------

    async def admin(
        self,
        action: str,
        service: str | None = None,
        *,
        who: str = "",
        source: str = "",
        allowed: bool = True,
        suppressed: int = 0,
    ) -> list[Event]:
        """An operator's action, recorded whether allowed or not; idempotent where it can be.

        `suppressed`: refused attempts this one's record stands for besides itself (the API
        rate-limits the recording of refusals: hbsm.api.refusals)."""
        if service is not None and service not in self.services:
            raise KeyError(service)
        if self.outage is not None:
            if not allowed:
                return []  # refused anyway; there is nowhere to record it
            raise LogUnwritableError(
                f"the event log cannot be written ({self.outage.error}): "
                f"{action} was not carried out, since it could not be recorded"
            )
        detail = ""
        starting = allowed and service is None and action == "start"
        stopping = allowed and service is None and action == "stop"
        if starting and self.heartbeat_running:
            detail = "already running"
        elif stopping and not self.heartbeat_running:
            detail = "already stopped"
        fact = Admin(
            ts=self.clock(),
            action=action,
            service=service,
            who=who,
            source=source,
            allowed=allowed,
            detail=detail,
            suppressed=suppressed,
        )
        # Recorded before it acts: an action the log cannot take is not carried out.
        events = self._append([fact]) if service is None else self.record(fact)
        if starting and not self.heartbeat_running:
            self._start_scheduler()
        elif stopping:
            await self._stop_scheduler()
        if allowed and service is not None and action == "probe_now":
            if self.heartbeat_running:
                self.scheduler.probe_now(service)
            else:
                self._spawn(self._probe_once(service))
        return events

    # --- the loop: facts in, decisions out, effects after -----------------------------------

    def record(self, fact: Event) -> list[Event]:
        """Decide on a fact, append it with its decisions, then start what they ask for."""
        name: str = fact.service  # type: ignore[attr-defined]
        after, decisions = decided(self.states[name], fact, self.policies[name], self.machine)
        events = self._append([fact, *decisions])
        # Kept only once recorded: a log that refuses the events (a full disk) leaves the state
        # what the log says.
        self.states[name] = after
        effects = [e for e in events if isinstance(e, RepairStarted | RestartStarted)]
        if effects:
            self._pending.extend(effects)
            self._flush()  # no record, no side effect: they start once it is on disk
        return events

    def _flush(self) -> bool:
        """Write what is buffered; then start the effects whose decisions are now on disk.

        A failed write (a full disk) begins an outage: effects stay pending and probing stops
        until the periodic flusher finds the log writable again; they start once their record
        is durable, never before.
        """
        try:
            self.store.flush()
        except OSError as exc:
            self._dirty = True
            self.outages.failed(exc)
            return False
        self._dirty = False
        if self.outage is not None:
            self._log_writable_again()
        pending, self._pending = self._pending, []
        for effect in pending:
            if isinstance(effect, RepairStarted):
                self._spawn(self._repair(effect))
            else:
                self._spawn(self._restart(effect))
        return True

    def _log_writable_again(self) -> None:
        """Record the outage that just ended, and take up what it left waiting."""
        self._append([self.outages.ended()])
        # A verification probe that fell in the outage was not run: the scheduler leaves
        # repairing services to their own probe, so run it now or the service stays stuck.
        for name, state in self.states.items():
            if state.state == "repairing" and state.step_done:
                self._spawn(self._probe_once(name))

    def _append(self, events: Iterable[Event]) -> list[Event]:
        stamped = self.store.append(list(events))
        self.projection.apply_all(stamped)
        self._dirty = True
        for notice in self.notifier.plan(stamped):
            self._spawn(self._notify(notice))
        return stamped

    @property
    def outage(self) -> Outage | None:
        """The event log's outage now (None: it takes writes). Read by the API's /health."""
        return self.outages.current

    async def _scheduled_probe(self, name: str) -> None:
        if self.states[name].state in _EFFECT_STATES or self.states[name].state == "paused":
            return
        await self._probe_once(name)

    async def _probe_once(self, name: str) -> None:
        if self.outage is not None:
            # Its result could not be recorded, so nothing could be decided or done on it.
            self.outage.skipped += 1
            return
        fact = await self.prober.probe(self.services[name])
        if self.outage is not None:
            self.outage.skipped += 1  # the log failed while this probe was in flight
            return
        self.record(fact)

    async def _repair(self, started: RepairStarted) -> None:
        svc = self.services[started.service]
        view = self.projection.services.get(started.service)
        failure = view.last_failure if view is not None else None
        finished = await self.repairs.run_step(
            svc, started, failure=failure, probe=lambda: self.prober.probe(svc)
        )
        self.record(finished)
        state = self.states[started.service]
        if state.state == "repairing" and state.step_done and state.run == started.run:
            await self._probe_once(started.service)

    def spawn_probe(self, name: str) -> None:
        """Probe a service now, in a task of its own (a verification, say)."""
        self._spawn(self._probe_once(name))

    def spawn_restart(self, started: RestartStarted, *, note: str) -> None:
        """Carry out a restart the log already holds the decision of (taken up after a crash);
        `note` heads its output."""
        self._spawn(self._restart(started, note=note))

    async def _restart(self, started: RestartStarted, *, note: str | None = None) -> None:
        svc = self.services[started.service]
        finished = await self.repairs.restart(svc, started)
        if note is not None:
            finished = msgspec.structs.replace(
                finished, interrupted=True, output=f"{note}; {finished.output}"
            )
        self.record(finished)
        # The new pid must be on disk at once: lost to a crash, the next start would not know
        # the child it must adopt, and would start a second one.
        self._flush()

    async def _notify(self, notice: Any) -> None:
        notifications = await self.notifier.send(notice)
        if notifications:
            self._append(notifications)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._effects.add(task)
        task.add_done_callback(self._effect_done)

    def _effect_done(self, task: asyncio.Task[Any]) -> None:
        self._effects.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("effect failed", exc_info=task.exception())

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            if self._dirty or self._pending:
                self._flush()
