"""Where each setting in force came from: `default`, `file` or `env`.

Keys are dotted: `check_interval`, `log.path`, `services.api.max_retries`,
`services.api.steps.http.url`. A service threshold the service does not set itself is the
top-level one, so it carries the top-level key's source.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

import msgspec

from hbsm.config.model import Config, ServiceConfig, fields_of
from hbsm.state import Policy

__all__ = ["POLICY_FIELDS", "Source", "collect_sources", "settings"]

Source = Literal["default", "file", "env"]

# The thresholds a service may set itself (ServiceConfig field None: the top-level value).
POLICY_FIELDS: frozenset[str] = frozenset(f.name for f in msgspec.structs.fields(Policy))


def settings(
    struct: msgspec.Struct, parts: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every leaf setting of `struct` as (key parts, value), in declaration order.

    Sections (`log`, `probe`, a step's settings) are walked into; `services` is left to the
    caller, which names each service.
    """
    for f in fields_of(type(struct)):
        name = f.encode_name
        value = getattr(struct, f.name)
        if name == "services" and isinstance(struct, Config):
            continue
        if isinstance(value, msgspec.Struct):
            yield from settings(value, (*parts, name))
        elif name == "steps" and isinstance(struct, ServiceConfig) and value:
            for step, step_settings in value.items():
                yield from settings(step_settings, (*parts, name, step))
        else:
            yield (*parts, name), value


def collect_sources(
    config: Config,
    raw: Mapping[str, Any],
    env_keys: Iterable[str],
    *,
    default_services: Mapping[str, Mapping[str, Source]] | None = None,
) -> dict[str, Source]:
    """The source of every setting of `config`.

    `raw`: the parsed file ({} without one); `env_keys`: keys set by the environment;
    `default_services`: for built-in services, {name: {key: source}} of keys not "default".
    """
    out: dict[str, Source] = {}
    for parts, _ in settings(config):
        out[".".join(parts)] = "file" if _present(raw, parts) else "default"
    for key in env_keys:
        out[key] = "env"
    raw_services = raw.get("services")
    for i, service in enumerate(config.services):
        if default_services is not None:
            raw_service: Any = {}
            special = default_services.get(service.name, {})
        else:
            raw_service = raw_services[i] if isinstance(raw_services, list) else {}
            special = {}
        for parts, value in settings(service):
            key = ".".join(parts)
            if key in special:
                source = special[key]
            elif _present(raw_service, parts):
                source = "file"
            elif parts[0] in POLICY_FIELDS and value is None:
                source = out[parts[0]]
            else:
                source = "default"
            out[f"services.{service.name}.{key}"] = source
    return out


def _present(raw: Any, parts: tuple[str, ...]) -> bool:
    for part in parts:
        if not isinstance(raw, Mapping) or part not in raw:
            return False
        raw = raw[part]
    return True
