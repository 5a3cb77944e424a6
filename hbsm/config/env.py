"""The original feature's `HEARTBEAT_*` environment variables, laid over the file's settings.

The environment wins over the file, as it did in the seed: an operator can change one setting
of a deployed monitor without editing its file. Thresholds set here are the top-level ones, so a
service that sets its own in the file keeps it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import msgspec

from hbsm.config.errors import ConfigError
from hbsm.config.model import Config

__all__ = ["CONFIG_VAR", "ENV_VARS", "EnvVar", "apply_env", "parse_bool"]

# The path of the TOML file (see `hbsm.config.load.resolve_path`); not a setting itself.
CONFIG_VAR = "HEARTBEAT_CONFIG"

_INT = re.compile(r"[+-]?\d+")
# No nan/inf and no `1_000`: a duration is a plain decimal number of seconds.
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError("expected a boolean: true/false, 1/0, yes/no or on/off")


def _parse_int(text: str) -> int:
    if not _INT.fullmatch(text.strip()):
        raise ValueError("expected an integer")
    return int(text)


def _parse_seconds(text: str) -> float:
    if not _NUMBER.fullmatch(text.strip()):
        raise ValueError("expected a number of seconds")
    return float(text)


def _parse_str(text: str) -> str:
    return text.strip()


class EnvVar(NamedTuple):
    name: str
    key: str  # the dotted config key it sets
    parse: Callable[[str], Any]
    help: str


ENV_VARS: tuple[EnvVar, ...] = (
    EnvVar("HEARTBEAT_ENABLED", "enabled", parse_bool, "monitor at all (default true)"),
    EnvVar("HEARTBEAT_CHECK_INTERVAL", "check_interval", _parse_seconds, "seconds between probes"),
    EnvVar("HEARTBEAT_MAX_RETRIES", "max_retries", _parse_int, "failed probes before repairing"),
    EnvVar(
        "HEARTBEAT_RESTART_COOLDOWN", "restart_cooldown", _parse_seconds, "seconds after a restart"
    ),
    EnvVar("HEARTBEAT_AUTO_START", "auto_start", parse_bool, "start monitoring on start-up"),
    EnvVar("HEARTBEAT_EVENT_LOG", "log.path", _parse_str, "the JSONL event log"),
    EnvVar("HEARTBEAT_EVENT_STORE", "log.store", _parse_str, "the log on NATS (nats://host:port)"),
    EnvVar("HEARTBEAT_NODE", "cluster.node", _parse_str, "this node's name among several"),
    EnvVar("HEARTBEAT_HOST", "host", _parse_str, "API address (default 127.0.0.1)"),
    EnvVar("HEARTBEAT_PORT", "port", _parse_int, "API port (default 5000)"),
    EnvVar("HEARTBEAT_ADMIN_TOKEN", "admin_token", _parse_str, "bearer token for admin routes"),
    EnvVar("HEARTBEAT_LOGIN_URL", "login_url", _parse_str, "URL of the default login_page"),
)


def apply_env(config: Config, env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Set `config`'s settings from `env` in place; returns {config key: (variable, raw value)}.

    An empty variable counts as unset (`HEARTBEAT_ADMIN_TOKEN=` in a compose file means "no
    token", never "the empty token").
    """
    applied: dict[str, tuple[str, str]] = {}
    for var in ENV_VARS:
        text = env.get(var.name)
        if text is None or not text.strip():
            continue
        try:
            value = var.parse(text)
        except ValueError as exc:
            raise ConfigError.in_env(var.name, text, var.key, str(exc)) from None
        section, _, field = var.key.rpartition(".")
        if section:
            # Nested settings are frozen Structs: replace the section (`log`, `cluster`).
            parent = getattr(config, section)
            setattr(config, section, msgspec.structs.replace(parent, **{field: value}))
        else:
            setattr(config, field, value)
        applied[var.key] = (var.name, text)
    return applied
