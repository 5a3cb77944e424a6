"""What the monitor does once a decision is on disk: probes, repair steps, restarts and
notifications, each in an asyncio task of its own so that no service waits on another.

`Effects` owns those tasks: it starts them (`spawn` and the named helpers), logs one that fails,
and at shutdown waits for them, then cancels what is left (`settle`). Each outcome (a probe, a
repair step's or a restart's result, the notifications sent) goes back through the monitor's
`record` (or is appended), so it is a fact in the log like any other.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import msgspec

from hbsm.events import CertSeen, MonitorStopped, RepairStarted, RestartStarted
from hbsm.repair import self_restart

if TYPE_CHECKING:
    from hbsm.monitor.runtime import Monitor

__all__ = ["Effects"]

log = logging.getLogger("hbsm.monitor")


class Effects:
    def __init__(self, monitor: Monitor) -> None:
        self.m = monitor
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- starting them ------------------------------------------------------------------------

    def start(self, decision: RepairStarted | RestartStarted) -> None:
        """Carry out a repair step or a restart whose decision is on disk."""
        if isinstance(decision, RepairStarted):
            self.spawn(self._repair(decision))
        else:
            self.spawn(self._restart(decision))

    def probe(self, name: str) -> None:
        """Probe a service now, in a task of its own."""
        self.spawn(self.probe_once(name))

    def restart(self, started: RestartStarted, *, note: str) -> None:
        """Carry out a restart taken up after a crash; `note` heads its output."""
        self.spawn(self._restart(started, note=note))

    def notify(self, notice: Any) -> None:
        self.spawn(self._notify(notice))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        # Kept until done: asyncio holds only a weak reference to a task, and stop waits for it.
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("effect failed", exc_info=task.exception())

    async def settle(self, grace: float) -> None:
        """Let the effects finish within `grace` seconds, then cancel the rest."""
        # Fix (tests/monitor): an effect can start others while we wait (a repair step's failed
        # verification decides a restart; any decision may notify). Waiting only for the tasks
        # there at the start let those run on after monitor.stopped and the log's close: a
        # restart.started never finished, and a process started that the log never learnt of.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self._tasks and (remaining := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._tasks), timeout=remaining)
        pending = set(self._tasks)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # --- the effects --------------------------------------------------------------------------

    async def probe_once(self, name: str) -> None:
        m = self.m
        if m.outage is not None:
            # Its result could not be recorded, so nothing could be decided or done on it.
            m.outage.skipped += 1
            return
        svc = m.services.get(name)
        if svc is None:
            return  # removed by a reload since it was due
        fact, cert = await m.prober.probe_with_cert(svc)
        if name not in m.services:
            return  # removed by a reload while it was probed: nothing more is decided of it
        if m.outage is not None:
            m.outage.skipped += 1  # the log failed while this probe was in flight
            return
        state = m.states.get(name)
        if (
            cert is not None
            and state is not None
            and cert.fingerprint != state.cert_fingerprint
            and m.decides(name)
        ):
            # A certificate first seen, or renewed: a fact of its own, recorded once per
            # certificate rather than with every probe; it comes before the probe that saw it.
            m.record(CertSeen(ts=fact.ts, service=name, **cert._asdict()))
        m.observe(fact)

    async def _repair(self, started: RepairStarted) -> None:
        m = self.m
        svc = m.services[started.service]
        view = m.projection.services.get(started.service)
        failure = view.last_failure if view is not None else None
        # The service's state now, if a probe has just told it (the failure that decided the
        # run, or the verification that failed after the step before): a step may take it
        # rather than probe again (`diagnose`, on a hung service: another timeout's wait).
        last = view.last_probe if view is not None else None
        recent = m.clock() - m.policies[started.service].check_interval
        seen = last if last is not None and not last.ok and last.ts >= recent else None
        finished = await m.repairs.run_step(
            svc, started, failure=failure, probe=lambda: m.prober.probe(svc), seen=seen
        )
        m.record(finished)
        state = m.states[started.service]
        if state.state == "repairing" and state.step_done and state.run == started.run:
            await self.probe_once(started.service)

    async def _restart(self, started: RestartStarted, *, note: str | None = None) -> None:
        m = self.m
        svc = m.services[started.service]
        if svc.restart.kind == "self":
            await self._restart_self(started)
            return
        finished = await m.repairs.restart(svc, started)
        if note is not None:
            finished = msgspec.structs.replace(
                finished, interrupted=True, output=f"{note}; {finished.output}"
            )
        m.record(finished)
        # The new pid must be on disk at once: lost to a crash, the next start would not know
        # the child it must adopt, and would start a second one.
        m.recorder.flush()

    async def _restart_self(self, started: RestartStarted) -> None:
        """Restart the process this monitor runs in (hbsm.repair.self_restart). The decision
        is on disk; the stop and why go with it, then the log is closed (its lock released)
        and the process re-executed: the new one resumes from the log and finishes the
        restart. Never returns when it restarts."""
        m = self.m
        loop = asyncio.get_running_loop()
        if self_restart.how() == "gunicorn":
            # The master reloads every worker gracefully, this one included (its SIGTERM is
            # recorded as it stops); the worker that takes the log next finishes the restart.
            await m.recorder.last_flush(loop.time() + 10.0)
            master = self_restart.reload_gunicorn()
            log.warning("hbsm: restarting the app for %s: SIGHUP to the gunicorn master "
                        "(pid %d)", started.service, master)  # fmt: skip
            return
        why = f"restarting the process for {started.service} (re-executing it)"
        log.warning("hbsm: %s: %s", why, " ".join(self_restart.command_line()))
        m.recorder.append([MonitorStopped(ts=m.clock(), pid=os.getpid(), reason=why)])
        await m.recorder.last_flush(loop.time() + 10.0)
        m.store.close()
        self_restart.reexec()

    async def _notify(self, notice: Any) -> None:
        notifications = await self.m.notifier.send(notice)
        if notifications:
            self.m.recorder.append(notifications)
