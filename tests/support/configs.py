"""Configs for tests: services, and a whole config with tight thresholds, validated as
`load_config` validates what it reads (a test never drives a config hbsm would refuse)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from hbsm.config import BUILTIN_STEPS, Config, LogConfig, NotifyConfig, ServiceConfig
from hbsm.config.model import ProbeConfig
from hbsm.config.validate import Blame, validate

__all__ = ["TIGHT", "make_config", "probed", "service", "supervised"]

# The thresholds of the tests' configs, so a test sees in seconds what hbsm sees in minutes:
# probes every 0.2 s, repair after 2 failures, a 2 s cooldown, 1 s start grace, the next repair
# run 0.2 s after one that did not fix it. (Top-level settings: as in an hbsm.toml too.)
TIGHT: dict[str, Any] = {
    "check_interval": 0.2,
    "max_retries": 2,
    "restart_cooldown": 2.0,
    "cooldown_max": 2.0,
    "start_grace": 1.0,
    "repair_backoff": 0.2,
    "repair_backoff_max": 1.0,
}


def service(name: str, url: str, **fields: Any) -> ServiceConfig:
    """A service probed at `url`; `fields` as in an hbsm.toml's [[services]] table."""
    return msgspec.convert({"name": name, "url": url, **fields}, ServiceConfig)


def probed(url: str, name: str = "svc", **probe: Any) -> ServiceConfig:
    """A service for the prober alone: `probe` is its [services.probe] table."""
    return ServiceConfig(name=name, url=url, probe=ProbeConfig(**probe))


def supervised(child: Any, *, stop_on_exit: bool = False, **fields: Any) -> dict[str, Any]:
    """The [[services]] table of a service hbsm runs itself: `child` (a script with `name`,
    `url` and `argv`, e.g. monitor.support.ChildService) probed over HTTP, restarted by the
    supervisor. A dict, for an hbsm.toml as for `make_config`."""
    return {
        "name": child.name,
        "url": child.url,
        "probe": {"timeout": 1.0},
        "restart": {
            "kind": "supervise", "argv": child.argv, "grace": 1.0, "stop_on_exit": stop_on_exit,
        },
        **fields,
    }  # fmt: skip


def make_config(
    log_path: Path, services: list[ServiceConfig | dict[str, Any]], **overrides: Any
) -> Config:
    """A config with the TIGHT thresholds and the default ladder (up to a restart), no
    webhooks, the log at `log_path`. `overrides`: any top-level setting."""
    settings: dict[str, Any] = {
        **TIGHT,
        "log": LogConfig(path=str(log_path)),
        "notify": NotifyConfig(webhooks=[]),
        **overrides,
        "services": [
            s if isinstance(s, ServiceConfig) else msgspec.convert(s, ServiceConfig)
            for s in services
        ],
    }
    config = Config(**settings)
    validate(config, Blame(None, {}), BUILTIN_STEPS)
    return config
