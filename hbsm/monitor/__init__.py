"""The monitor runtime: wiring probes, the state machine, the log, repairs and notifications.

`Monitor` is imported on first use: `hbsm.monitor.command` is loaded for every `hbsm` command
line, and the runtime pulls in httpx and aiohttp (0.4 s), which only `hbsm run` needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hbsm.monitor.runtime import Monitor

__all__ = ["Monitor"]


def __getattr__(name: str) -> Any:
    if name == "Monitor":
        from hbsm.monitor.runtime import Monitor

        return Monitor
    raise AttributeError(f"module 'hbsm.monitor' has no attribute {name!r}")
