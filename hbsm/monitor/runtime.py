"""The monitor: probes feed facts to the state machine; decisions go to the log, then run.

One asyncio loop. Every fact (probe result, repair or restart outcome, admin action) goes through
`Monitor.record`: the state machine decides, the fact and its decisions are appended to the log
together, the projection folds them, and only then — after a flush when a decision starts a side
effect — do repair steps and restarts run, each in its own task so no service waits on another.

`Monitor` is what its callers hold (`hbsm run`, the API, the Flask embedding, the tests): its
life cycle (`start`, `stop`), the scheduler, operators' actions (`admin`), and the state the
other parts share. The work is done by its collaborators, one module each:

* hbsm/monitor/recording.py (`Recorder`): the write path, from a fact to the log, with flushing
  and the log's outages;
* hbsm/monitor/effects.py (`Effects`): the probes, repair steps, restarts and notifications
  that run once their decision is on disk;
* hbsm/monitor/startup.py: resuming from the log and taking up unfinished work at `start`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from hbsm import __version__
from hbsm.cluster import NotOwnerError
from hbsm.config import Config, ServiceConfig
from hbsm.config.secrets import recorded_config
from hbsm.events import (
    Admin,
    Event,
    MonitorStarted,
    MonitorStopped,
    Probe,
    ProcessLost,
    ProcessStopped,
    RestartStarted,
    ServiceRegistered,
    type_name,
)
from hbsm.fsm import ServiceMachine
from hbsm.log import EventStore
from hbsm.monitor.effects import Effects
from hbsm.monitor.outage import LogUnwritableError, Outage
from hbsm.monitor.overload import OverloadReport
from hbsm.monitor.recording import Recorder
from hbsm.monitor.reload import Reloader, ReloadResult
from hbsm.monitor.startup import StartUp, resume
from hbsm.notify import Notifier
from hbsm.probes import Prober, Scheduler
from hbsm.projection import Projection
from hbsm.repair import RepairRunner, Supervisor
from hbsm.state import RULES, Policy, ServiceState

if TYPE_CHECKING:
    from hbsm.monitor.cluster import ClusterRole

__all__ = ["Monitor"]

log = logging.getLogger("hbsm.monitor")

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
        # A supervised process that ends unbidden is a fact at once, not after failed probes.
        supervisor.on_exit = self._supervised_exit
        self.notifier = notifier
        self.clock = clock
        # What the monitor has recorded, folded: its API's views (given by whoever also needs
        # it before the monitor exists: the file log's snapshot of each new segment).
        self.projection = projection if projection is not None else Projection()
        # The loop the monitor runs in (set by `start`): where other threads hand it work.
        self.loop: asyncio.AbstractEventLoop | None = None
        self.machine = ServiceMachine()
        self.services: dict[str, ServiceConfig] = {s.name: s for s in config.services}
        self.policies: dict[str, Policy] = {s.name: config.policy_for(s) for s in config.services}
        # The writer's own FSM states; the projection keeps its own copies for readers.
        self.states: dict[str, ServiceState] = {}
        # Overloaded, the scheduler stretches every interval alike; this says so, once.
        self.overload = OverloadReport(self)
        self.scheduler = Scheduler(
            self._scheduled_probe,
            on_pace=self.overload.on_pace,
            max_in_flight=config.concurrency,
        )
        self._scheduler_task: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        # The write path and the side effects, each a module of its own; both read the state
        # above through this monitor, so there is one copy of it.
        self.effects = Effects(self)
        self.recorder = Recorder(self)
        self.started_at: float | None = None
        # One node of several sharing the log (hbsm/monitor/cluster.py), set by open_monitor;
        # None: this monitor decides every service.
        self.cluster: ClusterRole | None = None
        # Reading the configuration again (hbsm/monitor/reload.py); `hbsm run` gives it the
        # way to read its file again.
        self.reloader = Reloader(self, None)

    # --- life cycle ---------------------------------------------------------------------------

    @property
    def heartbeat_running(self) -> bool:
        return self._scheduler_task is not None and not self._scheduler_task.done()

    async def start(self) -> None:
        """Resume from the log, record the start, take up interrupted work, start probing."""
        self.loop = asyncio.get_running_loop()
        resumed = resume(self)
        now = self.clock()
        self.started_at = now
        self.recorder.append(
            [
                MonitorStarted(
                    ts=now,
                    pid=os.getpid(),
                    version=__version__,
                    host=socket.gethostname(),
                    config=recorded_config(self.config),
                    rules=RULES,
                    node=self.node,
                    config_hash=self.reloader.hash,
                ),
                # With several nodes, each service's owner registers it as it takes it over.
                *(self.registration(name, now) for name in self.services if self.cluster is None),
            ]
        )
        if self.cluster is not None:
            self.store.flush()
            await self.cluster.start()
            self._start_flusher_and_scheduler()
            return
        startup = StartUp(self, resumed)
        await startup.start_supervised()
        # The pids must be on disk before anything else can go wrong: unknown to the next
        # start, a child would be started a second time.
        self.store.flush()
        startup.take_up_interrupted()
        self.store.flush()
        self._start_flusher_and_scheduler()

    def _start_flusher_and_scheduler(self) -> None:
        self._flusher = asyncio.create_task(self.recorder.flush_periodically(), name="hbsm-flusher")
        if self.config.enabled and self.config.auto_start:
            self._start_scheduler()

    def registration(self, name: str, ts: float = 0.0) -> ServiceRegistered:
        """The event that records `name`'s thresholds and target as in force from here on."""
        s = self.services[name]
        return ServiceRegistered(
            ts=ts,
            service=name,
            policy=self.policies[name],
            target=s.url or " ".join(s.probe.argv),
            description=s.description,
            critical=s.critical,
            probe_kind=s.probe.kind,
        )

    async def stop(self, reason: str = "stopped", *, grace: float = 10.0) -> None:
        """Stop probing, let effects finish (or record them interrupted), flush, close."""
        await self._stop_scheduler()
        await self.effects.settle(grace)
        if self.cluster is not None:
            await self.cluster.stop()
        for name, svc in self.services.items():
            if svc.restart.kind == "supervise" and svc.restart.stop_on_exit:
                pid = self.supervisor.pid(name)
                await self.supervisor.stop(name, grace=svc.restart.grace)
                if pid is not None:
                    # Stopped on purpose: the next start is a first start, not a crash's restart.
                    why = "hbsm stopped (restart.stop_on_exit)"
                    self.recorder.append([ProcessStopped(ts=self.clock(), service=name, pid=pid,
                                                         reason=why)])  # fmt: skip
        await self.supervisor.close()
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        # Through an outage: what is buffered (and the outage itself) first, then the stop.
        self.recorder.outages.quiet = True
        loop = asyncio.get_running_loop()
        await self.recorder.last_flush(loop.time() + grace)
        self.recorder.append(
            [MonitorStopped(ts=self.clock(), pid=os.getpid(), reason=reason, node=self.node)]
        )
        await self.recorder.last_flush(loop.time() + grace)
        await self.notifier.aclose()
        await self.prober.aclose()

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
        self.overload.stopped()

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
        if service is not None and self.cluster is not None and not self.decides(service):
            view = self.projection.services.get(service)
            raise NotOwnerError(service, view.owner if view is not None else None)
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
            node=self.node,
        )
        # Recorded before it acts: an action the log cannot take is not carried out.
        events = self.recorder.append([fact]) if service is None else self.record(fact)
        # On disk before it is answered: an operator told "stopped" finds it in the log, and so
        # does every process reading it (the other workers of an app, `hbsm replay`).
        self.recorder.flush()
        if starting and not self.heartbeat_running:
            self._start_scheduler()
        elif stopping:
            await self._stop_scheduler()
        if allowed and service is not None and action == "probe_now":
            if self.heartbeat_running:
                self.scheduler.probe_now(service)
            else:
                self.effects.probe(service)
        return events

    async def reload(self, *, source: str, who: str = "") -> ReloadResult:
        """Read the configuration file again and apply what changed (hbsm/monitor/reload.py).
        Raises ReloadUnavailableError, or LogUnwritableError while the log takes no writes."""
        if self.outage is not None:
            raise LogUnwritableError(
                f"the event log cannot be written ({self.outage.error}): the configuration "
                "was not reloaded, since the reload could not be recorded"
            )
        return await self.reloader.reload(source=source, who=who)

    # --- facts in, decisions out, effects after (hbsm/monitor/recording.py, effects.py) ------

    def record(self, fact: Event) -> list[Event]:
        """Decide on a fact, append it with its decisions, then start what they ask for."""
        name: str = fact.service  # type: ignore[attr-defined]
        if not self.decides(name):
            # Another node took the service over while this one was at work on it (a repair
            # step that was running, say): the new owner takes that up from the log.
            log.warning("%s: %s not recorded: another node owns it now", name, type_name(fact))
            return []
        return self.recorder.record(fact)

    def observe(self, probe: Probe) -> list[Event]:
        """Record what a probe found: decided on here, or (another node owns the service) a
        vantage point's fact for its owner."""
        if self.cluster is not None:
            return self.cluster.observe(probe)
        return self.recorder.record(probe)

    @property
    def node(self) -> str:
        """This node's name among several ("" for a single monitor)."""
        return self.cluster.node if self.cluster is not None else ""

    def decides(self, service: str) -> bool:
        """Whether this monitor decides about `service` (with several nodes: owns it)."""
        return self.cluster is None or self.cluster.decides(service)

    @property
    def outage(self) -> Outage | None:
        """The event log's outage now (None: it takes writes). Read by the API's /health."""
        return self.recorder.outage

    def spawn_probe(self, name: str) -> None:
        """Probe a service now, in a task of its own (a verification, say)."""
        self.effects.probe(name)

    def spawn_restart(self, started: RestartStarted, *, note: str) -> None:
        """Carry out a restart the log already holds the decision of (taken up after a crash);
        `note` heads its output."""
        self.effects.restart(started, note=note)

    def _supervised_exit(self, name: str, pid: int, how: str) -> None:
        """A supervised process ended without hbsm asking: the state machine decides what to
        do about it now (a restart, under the cooldown and the budget) rather than after
        `max_retries` failed probes. Not while the log cannot record it (the probes will tell
        once it can), nor when the process is not the one this monitor started or adopted."""
        if name not in self.services or self.outage is not None or not self.decides(name):
            return
        self.record(ProcessLost(ts=self.clock(), service=name, pid=pid, detail=f"it ended ({how})"))

    async def _scheduled_probe(self, name: str) -> None:
        # A service another node owns is probed whatever it is doing: this node is one of its
        # vantage points.
        state = self.states[name].state
        if (state in _EFFECT_STATES or state == "paused") and self.decides(name):
            return
        await self.effects.probe_once(name)
