"""The monitor as the API's `Control`, from whichever thread's loop the API runs in.

`hbsm run` serves the API from a thread of its own (hbsm/api/thread.py); the monitor's state is
only ever changed from the monitor's loop. So an action asked from another loop is handed to the
monitor's loop and awaited there; asked from the monitor's own loop (the demo, the tests), the
monitor is its own control.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from hbsm.api.source import Control, NotRunning
from hbsm.events import Event

if TYPE_CHECKING:
    from hbsm.monitor.reload import ReloadResult
    from hbsm.monitor.runtime import Monitor

__all__ = ["ControlFromAnotherLoop", "control_of"]

T = TypeVar("T")


def control_of(monitor: Monitor) -> Control:
    """The monitor itself when called on its own loop (or before it has one), else a
    `ControlFromAnotherLoop` of it."""
    loop = monitor.loop
    if loop is None or _running_loop() is loop:
        return monitor
    return ControlFromAnotherLoop(monitor, loop)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class ControlFromAnotherLoop:
    """The monitor as a `Control` for code in another thread's loop (the API's own): what it
    reads is read as it is (a dict, a flag), its actions are handed to the monitor's loop and
    awaited there, since the monitor's state is only ever changed from that loop."""

    def __init__(self, monitor: Monitor, loop: asyncio.AbstractEventLoop) -> None:
        self._monitor = monitor
        self._loop = loop

    @property
    def services(self) -> Mapping[str, Any]:
        return self._monitor.services

    @property
    def heartbeat_running(self) -> bool:
        return self._monitor.heartbeat_running

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
        return await self._on_monitor_loop(
            self._monitor.admin(
                action, service, who=who, source=source, allowed=allowed, suppressed=suppressed
            )
        )

    async def reload(self, *, source: str, who: str = "") -> ReloadResult:
        return await self._on_monitor_loop(self._monitor.reload(source=source, who=who))

    async def _on_monitor_loop(self, work: Coroutine[Any, Any, T]) -> T:
        try:
            future = asyncio.run_coroutine_threadsafe(work, self._loop)
        except RuntimeError:  # its loop has closed: the monitor has stopped
            work.close()
            raise NotRunning("the monitor has stopped") from None
        # Shielded: once handed over, the action is carried out (and recorded) even if the
        # client goes away meanwhile.
        return await asyncio.shield(asyncio.wrap_future(future))
