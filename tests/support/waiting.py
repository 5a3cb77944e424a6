"""Waiting for something to happen: poll a condition until it is true, or fail after a deadline.

The deadline is there to end a test that hangs, not to time anything: it is generous enough that
a loaded machine never reaches it (`just test` runs beside other work), and what a test wants
to know about speed is a benchmark's figure (`just bench`), never an assertion here.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["DEADLINE", "wait_for", "wait_for_sync"]

T = TypeVar("T")

# Seconds. Only a hang misses it.
DEADLINE = 30.0


async def wait_for(
    condition: Callable[[], Any],
    what: str,
    timeout: float = DEADLINE,
    every: float = 0.02,
    pause: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> Any:
    """Poll `condition` (a function, or one returning an awaitable) until it gives something
    truthy, and return that. `pause` waits between polls (a Textual pilot's `pause`, say, so
    the app handles its messages meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await pause(every)


def wait_for_sync(
    condition: Callable[[], T | None], what: str, timeout: float = DEADLINE, every: float = 0.02
) -> T:
    """`wait_for` for a test without an event loop: sleeps between polls."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(every)
