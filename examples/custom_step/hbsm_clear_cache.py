"""An example custom repair step: empty a service's cache directory.

Configured per service in hbsm.toml:

    [services.steps.clear_cache]
    timeout = 10
    options = { path = "/var/cache/api", keep = [".gitkeep"] }
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from hbsm.repair import StepContext, StepOutcome


async def clear_cache(ctx: StepContext) -> StepOutcome:
    path = ctx.settings.options.get("path")
    if not isinstance(path, str) or not path:
        return StepOutcome(ok=False, output="clear_cache: set options.path (the cache directory)")
    keep = set(ctx.settings.options.get("keep", []))
    root = Path(path)
    if not root.is_dir():
        return StepOutcome(ok=False, output=f"clear_cache: {root} is not a directory")
    # File system work off the event loop: the monitor keeps probing other services meanwhile.
    removed = await asyncio.to_thread(_empty, root, keep)
    return StepOutcome(ok=True, output=f"clear_cache: removed {removed} entries from {root}")


def _empty(root: Path, keep: set[str]) -> int:
    removed = 0
    for entry in root.iterdir():
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        removed += 1
    return removed
