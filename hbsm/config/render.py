"""The config in force as text (`key = value  # source`) or JSON, secrets masked."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

from hbsm.config.load import LoadedConfig
from hbsm.config.secrets import MASK, mask_secrets
from hbsm.config.sources import POLICY_FIELDS, settings

__all__ = ["MASK", "redact", "to_json", "to_text"]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def redact(value: Any, key: str = "") -> Any:
    """`value` (builtins) with its secrets masked (hbsm.config.secrets decides which)."""
    return mask_secrets(value, key)


def to_text(loaded: LoadedConfig) -> str:
    """One `key = value  # source` line per setting: the top level, then each service."""
    config, sources = loaded.config, loaded.sources
    if loaded.path is not None:
        head = f"# hbsm configuration in force: {loaded.path}, then the environment"
    else:
        head = "# hbsm configuration in force: no file, built-in defaults and the environment"
    lines = [head]
    for parts, value in settings(config):
        key = ".".join(parts)
        lines.append(_line(key, value, sources.get(key, "default")))
    for service in config.services:
        policy = loaded.policies[service.name]
        lines += ["", "[[services]]"]
        for parts, value in settings(service):
            key = ".".join(parts)
            source: str = sources.get(f"services.{service.name}.{key}", "default")
            if parts[0] in POLICY_FIELDS:
                if value is None:
                    source += " (top-level)"
                value = getattr(policy, parts[0])  # the value in force
            lines.append(_line(key, value, source))
    return "\n".join(lines) + "\n"


def to_json(loaded: LoadedConfig) -> str:
    doc = {
        "path": None if loaded.path is None else str(loaded.path),
        "config": redact(msgspec.to_builtins(loaded.config)),
        "sources": loaded.sources,
        "policies": {name: msgspec.to_builtins(p) for name, p in loaded.policies.items()},
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _line(key: str, value: Any, source: str) -> str:
    shown = redact(msgspec.to_builtins(value), key.rpartition(".")[2])
    return f"{key} = {_toml(shown)}  # {source}"


def _toml(value: Any) -> str:
    """TOML-like: valid TOML except for unset values, shown as `(unset)` (TOML has no null)."""
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = ", ".join(f"{_toml_key(str(k))} = {_toml(v)}" for k, v in value.items())
        return "{ " + items + " }"
    return repr(value)


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)
