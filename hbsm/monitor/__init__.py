"""The monitor runtime: wiring probes, the state machine, the log, repairs and notifications.

`Monitor` is imported on first use: `hbsm.monitor.command` (the `hbsm run` command line) and
the package's light modules load without the runtime, which pulls in the probes and their HTTP
client, the repairs and the state machine: only a running monitor needs them.
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
