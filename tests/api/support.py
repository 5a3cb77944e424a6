"""Helpers of the API tests: a switchable HTTP target, configs, waiting with a deadline."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgspec
from monitor.support import wait_for, wait_for_sync
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


def service(name: str, url: str, **fields: Any) -> ServiceConfig:
    return msgspec.convert({"name": name, "url": url, **fields}, ServiceConfig)


def make_config(log_path: Path, services: list[ServiceConfig], **overrides: Any) -> Config:
    """Tight thresholds: probes every 0.2 s, repair after 2 failures, diagnose only (the next
    run 0.2 s after one that did not fix it)."""
    settings: dict[str, Any] = {
        "check_interval": 0.2,
        "max_retries": 2,
        "restart_cooldown": 1.0,
        "cooldown_max": 1.0,
        "start_grace": 1.0,
        "repair_backoff": 0.2,
        "repair_backoff_max": 1.0,
        "ladder": ["diagnose"],
        "log": LogConfig(path=str(log_path)),
        "notify": NotifyConfig(webhooks=[]),
        "services": services,
        **overrides,
    }
    config = Config(**settings)
    validate(config, Blame(None, {}), BUILTIN_STEPS)
    return config
