"""The monitor's write path: facts in, decisions out, and the log before any side effect.

`Recorder.record` asks the state machine what a fact decides, appends the fact and its
decisions together, folds them into the projection and plans their notifications; a repair or
restart it decided waits in `Recorder` until a flush has put its record on disk, and only then is
handed to the monitor's `Effects`. Writes are otherwise batched: flushed every `FLUSH_EVERY`
seconds by the monitor's flusher task, and a last time when it stops. A flush that fails (a full
disk) begins an outage (hbsm/monitor/outage.py), which ends at the first flush that works.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING

from hbsm.events import Event, RepairStarted, RestartStarted
from hbsm.fsm import decided
from hbsm.log import LogError, LogUnavailableError
from hbsm.monitor.outage import Outage, OutageWatch

if TYPE_CHECKING:
    from hbsm.monitor.runtime import Monitor

__all__ = ["FLUSH_EVERY", "Recorder"]

# How often buffered events are written when nothing forces a flush sooner (a side effect
# always flushes first, whatever this says).
FLUSH_EVERY = 0.2


class Recorder:
    def __init__(self, monitor: Monitor) -> None:
        self.m = monitor
        # Repair and restart decisions appended but not yet on disk: started by flush.
        self._pending: list[RepairStarted | RestartStarted] = []
        self._dirty = False
        # While the log refuses writes nothing is probed, decided or started until it takes
        # them again (no record, no side effect).
        self.outages = OutageWatch(
            path=monitor.store.where,
            clock=monitor.clock,
            notify=lambda notice: monitor.effects.notify(notice),
            notify_on=monitor.config.notify.on,
            retry_every=FLUSH_EVERY,
        )

    @property
    def outage(self) -> Outage | None:
        return self.outages.current

    def record(self, fact: Event) -> list[Event]:
        """Decide on a fact, append it with its decisions, then start what they ask for."""
        m = self.m
        name: str = fact.service  # type: ignore[attr-defined]
        after, decisions = decided(m.states[name], fact, m.policies[name], m.machine)
        events = self.append([fact, *decisions])
        # Kept only once recorded: a log that refuses the events (a full disk) leaves the state
        # what the log says.
        m.states[name] = after
        if m.reloader.pending:
            m.reloader.run_ended(name)  # a change that waited for a repair run to end
        effects = [e for e in events if isinstance(e, RepairStarted | RestartStarted)]
        if effects:
            self._pending.extend(effects)
            self.flush()  # no record, no side effect: they start once it is on disk
        return events

    def append(self, events: Iterable[Event]) -> list[Event]:
        m = self.m
        stamped = m.store.append(list(events))
        if not m.store.shared:
            # A shared log is folded as the stream orders it, every node's events together
            # (hbsm/monitor/cluster.py follows it).
            m.projection.apply_all(stamped)
        self._dirty = True
        for notice in m.notifier.plan(stamped):
            m.effects.notify(notice)
        return stamped

    def flush(self) -> bool:
        """Write what is buffered; then start the effects whose decisions are now on disk.

        A failed write (a full disk, a log server that does not answer) begins an outage:
        effects stay pending and probing stops until the periodic flusher finds the log writable
        again; they start once their record is durable, never before.
        """
        try:
            self.m.store.flush()
        except (OSError, LogUnavailableError) as exc:
            self._dirty = True
            self.outages.failed(exc)
            return False
        self._dirty = False
        if self.outage is not None:
            self._log_writable_again()
        refused = self.m.store.take_refused()
        if refused and self.m.cluster is not None:
            self.m.cluster.refused(refused)  # their decisions are void: nothing of theirs runs
        pending, self._pending = self._pending, []
        for effect in pending:
            if effect.service not in refused:
                self.m.effects.start(effect)
        return True

    def _log_writable_again(self) -> None:
        """Record the outage that just ended, and take up what it left waiting."""
        self.append([self.outages.ended()])
        # A verification probe that fell in the outage was not run: the scheduler leaves
        # repairing services to their own probe, so run it now or the service stays stuck.
        for name, state in self.m.states.items():
            if state.state == "repairing" and state.step_done and self.m.decides(name):
                self.m.effects.probe(name)

    async def flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            if self._dirty or self._pending:
                self.flush()

    async def last_flush(self, deadline: float) -> None:
        """Write what is buffered before stopping; through an outage, keep trying until
        `deadline` (the loop's time), then say how much could not be written."""
        store = self.m.store
        loop = asyncio.get_running_loop()
        while True:
            try:
                store.flush()
                if self.outage is None:
                    return
                # Written too; not notified: the notifier is closing (the stderr says it).
                self.append([self.outages.ended()])
                continue
            except (OSError, LogUnavailableError) as exc:
                if loop.time() >= deadline:
                    unwritten = store.unwritten_bytes
                    raise LogError(
                        f"{store.where}: stopping with "
                        f"{unwritten if unwritten is not None else 'some'} bytes of events "
                        f"not written ({exc})"
                    ) from exc
                self.outages.failed(exc)
                await asyncio.sleep(FLUSH_EVERY)
