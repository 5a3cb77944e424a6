"""Helpers of the API tests: a switchable HTTP target, configs, waiting with a deadline."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from probes.servers import SwitchableTarget, free_port

from hbsm.config import BUILTIN_STEPS, Config, LogConfig, NotifyConfig, ServiceConfig
from hbsm.config.validate import Blame, validate

__all__ = [
    "PY",
    "SwitchableTarget",
    "free_port",
    "make_config",
    "service",
    "wait_for",
    "wait_for_sync",
]

PY = sys.executable
T = TypeVar("T")
DEADLINE = 30.0


def service(name: str, url: str, **fields: Any) -> ServiceConfig:
    return msgspec.convert({"name": name, "url": url, **fields}, ServiceConfig)


def make_config(log_path: Path, services: list[ServiceConfig], **overrides: Any) -> Config:
    """Tight thresholds: probes every 0.2 s, repair after 2 failures, diagnose only."""
    settings: dict[str, Any] = {
        "check_interval": 0.2,
        "max_retries": 2,
        "restart_cooldown": 1.0,
        "cooldown_max": 1.0,
        "ladder": ["diagnose"],
        "log": LogConfig(path=str(log_path)),
        "notify": NotifyConfig(webhooks=[]),
        "services": services,
        **overrides,
    }
    config = Config(**settings)
    validate(config, Blame(None, {}), BUILTIN_STEPS)
    return config


async def wait_for(
    condition: Callable[[], Any], what: str, timeout: float = DEADLINE, every: float = 0.02
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(every)


def wait_for_sync(
    condition: Callable[[], T], what: str, timeout: float = DEADLINE, every: float = 0.05
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(every)
