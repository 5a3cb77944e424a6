"""Which steps exist: the built-ins, and custom steps from the entry-point group `hbsm.repairs`.

An entry point's object is the step itself: an async callable taking a StepContext and
returning a StepOutcome. It is loaded by name; one that fails to load is logged and skipped, so
a broken plugin never keeps the monitor from starting.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Final

from hbsm.repair import steps
from hbsm.repair._base import RepairStep
from hbsm.state import RESTART_STEP

__all__ = ["BUILTIN_STEPS", "ENTRY_POINT_GROUP", "load_steps"]

log = logging.getLogger("hbsm.repair")

ENTRY_POINT_GROUP: Final = "hbsm.repairs"

BUILTIN_STEPS: Final[dict[str, RepairStep]] = {
    "diagnose": steps.diagnose,
    "check_config": steps.check_config,
    "http": steps.http,
    "command": steps.command,
    "signal": steps.signal,
}


def load_steps(needed: Collection[str] | None = None) -> dict[str, RepairStep]:
    """The built-in steps plus every loadable entry point of the group `hbsm.repairs`.

    A built-in's name (and `restart`) cannot be taken by a custom step: `diagnose` always means
    what the docs say. Of two custom steps with one name, the first found is kept.

    `needed`: the step names the config uses (hbsm.config.validate.steps_named). When all of
    them are built in, the entry points are not looked up: that imports importlib.metadata and
    reads every installed distribution's metadata, for steps nothing would call.
    """
    found: dict[str, RepairStep] = dict(BUILTIN_STEPS)
    if needed is not None and all(n in BUILTIN_STEPS or n == RESTART_STEP for n in needed):
        return found
    from importlib.metadata import entry_points

    origin: dict[str, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        where = f"{ep.value} ({_dist_name(ep)})"
        if ep.name in BUILTIN_STEPS or ep.name == RESTART_STEP:
            log.warning("repair step %r from %s ignored: the name is built in", ep.name, where)
            continue
        if ep.name in found:
            log.warning(
                "repair step %r from %s ignored: already provided by %s",
                ep.name, where, origin[ep.name],
            )  # fmt: skip
            continue
        try:
            obj = ep.load()
        except Exception as exc:
            log.warning(
                "repair step %r from %s failed to load: %s: %s",
                ep.name, where, type(exc).__name__, exc,
            )  # fmt: skip
            continue
        if not callable(obj):
            log.warning(
                "repair step %r from %s is a %s, not a callable", ep.name, where, type(obj).__name__
            )
            continue
        found[ep.name] = obj
        origin[ep.name] = where
    return found


def _dist_name(ep: object) -> str:
    dist = getattr(ep, "dist", None)
    name = getattr(dist, "name", None) if dist is not None else None
    return f"distribution {name}" if name else "unknown distribution"
