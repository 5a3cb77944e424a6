"""What the types cannot say: ranges, URLs, names, ladders that can run, settings steps need.

Runs after decoding and after the environment overlay, so a bad value is blamed on where it
came from (the file, or the variable). The first problem found stops start-up.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec

from hbsm.config.errors import ConfigError, closest, key_part
from hbsm.config.model import Config, ServiceConfig, fields_of
from hbsm.config.problems import (
    ca_file_problem,
    http_url_problem,
    signal_number,
    tcp_target_problem,
)
from hbsm.config.secrets import apprise_url_shown
from hbsm.state import ERROR_CLASSES, RESTART_STEP, Policy
from hbsm.vocabulary import CHECK_CONFIG_STEP, REPORTED_CLASSES, SERVICE_NAME, SERVICE_NAME_MAX

__all__ = [
    "BUILTIN_STEPS",
    "REPAIR_GROUP",
    "Blame",
    "registered_steps",
    "steps_named",
    "validate",
]

BUILTIN_STEPS: frozenset[str] = frozenset(
    {"diagnose", CHECK_CONFIG_STEP, "http", "command", "signal", RESTART_STEP}
)
# Custom repair steps are Python callables registered under this entry-point group.
REPAIR_GROUP = "hbsm.repairs"

# The setting each built-in step cannot run without, under `[services.steps.<step>]`.
_STEP_NEEDS = {"http": "url", "command": "argv", "signal": "pidfile"}
_HTTP_METHOD = re.compile(r"[A-Za-z]+")
_INT64 = 2**63


def registered_steps() -> frozenset[str]:
    """Names of the steps installed packages register in `hbsm.repairs` (not imported here)."""
    # Imported here: importlib.metadata (with email, zipfile, csv) and the read of every
    # installed distribution's metadata are paid only by a config that names a custom step.
    import importlib.metadata

    return frozenset(ep.name for ep in importlib.metadata.entry_points(group=REPAIR_GROUP))


def steps_named(config: Config) -> set[str]:
    """Every step name `config` uses: in its ladders (top level and per service) and under
    `[services.steps.<name>]`. When all are built in, no entry point need be looked up."""
    names = {step for _, lad in _ladders(config.ladder, config.ladders) for step in lad}
    for service in config.services:
        names.update(service.steps)
        names.update(step for _, lad in _ladders(service.ladder, service.ladders) for step in lad)
    return names


class Blame:
    """Builds the error for a key, blaming the environment variable that set it, else the file."""

    def __init__(self, path: str | None, env: Mapping[str, tuple[str, str]]) -> None:
        self.path = path
        self.env = env

    def __call__(self, key: str, reason: str) -> ConfigError:
        applied = self.env.get(key)
        if applied is not None:
            var, value = applied
            return ConfigError.in_env(var, value, key, reason)
        return ConfigError.in_file(self.path, key, reason)


def validate(config: Config, blame: Blame, steps: frozenset[str]) -> dict[str, Policy]:
    """Check `config` (services included); returns each service's Policy by name.

    `steps`: every step name a ladder may use (built-in and registered).
    """
    for key, reason in _bad_numbers(config, None):
        raise blame(key, reason)
    _check_top(config, blame, steps)
    _check_api(config, blame)
    _check_log(config, blame)
    _check_cluster(config, blame)
    _check_notify(config, blame)
    seen: dict[str, int] = {}
    for i, service in enumerate(config.services):
        _check_name(i, service, seen, blame)
    return {s.name: _check_service(config, s, blame, steps) for s in config.services}


def _bad_numbers(value: Any, key: str | None) -> Iterator[tuple[str, str]]:
    """nan/inf (TOML has both) and integers no event log line could carry."""
    if isinstance(value, msgspec.Struct):
        for f in fields_of(type(value)):
            yield from _bad_numbers(getattr(value, f.name), _join(key, f.encode_name))
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _bad_numbers(v, _join(key, key_part(str(k))))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            label = v.name if isinstance(v, ServiceConfig) and v.name else str(i)
            yield from _bad_numbers(v, f"{key}[{label}]")
    elif isinstance(value, float) and not math.isfinite(value):
        yield key or "", "must be a finite number"
    elif isinstance(value, int) and not isinstance(value, bool) and not -_INT64 <= value < _INT64:
        yield key or "", "is out of range (a 64-bit integer)"


def _check_top(config: Config, blame: Blame, steps: frozenset[str]) -> None:
    if not config.host or any(c.isspace() or c in "/?#" for c in config.host):
        raise blame("host", f"must be a host name or address, got {config.host!r}")
    if not 1 <= config.port <= 65535:
        raise blame("port", f"must be between 1 and 65535, got {config.port}")
    if config.concurrency < 1:
        raise blame("concurrency", "must be >= 1")
    if config.login_url is not None and (why := http_url_problem(config.login_url)):
        raise blame("login_url", why)
    if config.cooldown_max < 0:
        raise blame("cooldown_max", "must be >= 0")
    _check_ladders("", config.ladder, config.ladders, blame, steps)
    try:
        # A service that sets nothing itself gets exactly the top-level thresholds.
        config.policy_for(ServiceConfig(name="-"))
    except ValueError as exc:
        key, why = _policy_problem(exc)
        raise blame(key, why) from None


def _check_api(config: Config, blame: Blame) -> None:
    api = config.api
    for i, proxy in enumerate(api.trusted_proxies):
        try:
            ipaddress.ip_network(proxy.strip(), strict=False)
        except ValueError:
            raise blame(
                f"api.trusted_proxies[{i}]",
                f"must be an IP address or network (e.g. '10.0.0.5' or '10.0.0.0/24'), got "
                f"{proxy[:100]!r}",
            ) from None
    if not 1024 <= api.max_header_bytes <= 2**20:
        raise blame("api.max_header_bytes", f"must be 1024 .. 1048576, got {api.max_header_bytes}")
    if not 1 <= api.max_headers <= 1000:
        raise blame("api.max_headers", f"must be 1 .. 1000, got {api.max_headers}")
    for key in ("header_timeout", "body_timeout"):
        if getattr(api, key) <= 0:
            raise blame(f"api.{key}", "must be > 0")
    if api.max_connections < 1:
        raise blame("api.max_connections", "must be >= 1")


def _check_log(config: Config, blame: Blame) -> None:
    log = config.log
    if not log.path.strip():
        raise blame("log.path", "must not be empty")
    if log.max_bytes < 1:
        raise blame("log.max_bytes", "must be > 0")
    if log.keep_segments < 0:
        raise blame("log.keep_segments", "must be >= 0")
    # One NATS URL, or several of one cluster comma-separated (hbsm.log.jetstream_read).
    if log.store is not None and not all(
        part.strip().startswith(("nats://", "tls://")) for part in log.store.split(",")
    ):
        raise blame(
            "log.store",
            f"must be NATS URLs (nats://host:port, comma-separated), got {log.store!r}",
        )
    if not 1 <= log.replicas <= 5:  # JetStream's own bounds
        raise blame("log.replicas", f"must be between 1 and 5, got {log.replicas}")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", log.stream):
        raise blame("log.stream", f"must be 1-64 letters, digits, _ or -, got {log.stream!r}")
    if log.file is not None and not log.file.strip():
        raise blame("log.file", "must not be empty (leave it out for stderr only)")
    levels = logging.getLevelNamesMapping()
    if log.level.upper() not in levels:
        known = "DEBUG, INFO, WARNING, ERROR, CRITICAL"
        raise blame("log.level", f"expected one of {known}, got {log.level!r}")


def _check_cluster(config: Config, blame: Blame) -> None:
    cluster = config.cluster
    if cluster.lease_ttl < 1:
        raise blame("cluster.lease_ttl", "must be >= 1 (seconds)")
    if cluster.node is None:
        return
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", cluster.node):
        raise blame("cluster.node", f"must be 1-64 letters, digits, _ or -, got {cluster.node!r}")
    if config.log.store is None:
        raise blame("cluster.node", "nodes share their log in NATS: set log.store (nats://...)")
    for service in config.services:
        # Any node may come to own any service: a restart must work from every host.
        if service.restart.kind in ("supervise", "self"):
            raise blame(
                f"services[{key_part(service.name)}].restart.kind",
                f"{service.restart.kind!r} restarts a process of this host; with several nodes "
                "(cluster.node) any of them may have to restart it: use a command",
            )


def _check_notify(config: Config, blame: Blame) -> None:
    notify = config.notify
    if notify.rate_per_hour < 0:
        raise blame("notify.rate_per_hour", "must be >= 0")
    for i, hook in enumerate(notify.webhooks):
        key = f"notify.webhooks[{i}]"
        if why := http_url_problem(hook.url):
            raise blame(f"{key}.url", why)
        if hook.timeout <= 0:
            raise blame(f"{key}.timeout", "must be > 0")
        if hook.retries < 0:
            raise blame(f"{key}.retries", "must be >= 0")
    smtp = notify.smtp
    if smtp is not None:
        if not smtp.host.strip():
            raise blame("notify.smtp.host", "must not be empty")
        if not 1 <= smtp.port <= 65535:
            raise blame("notify.smtp.port", f"must be between 1 and 65535, got {smtp.port}")
        if not smtp.to:
            raise blame("notify.smtp.to", "must name at least one recipient")
        if smtp.timeout <= 0:
            raise blame("notify.smtp.timeout", "must be > 0")
    if notify.apprise_timeout <= 0:
        raise blame("notify.apprise_timeout", "must be > 0")
    if notify.apprise:
        _check_apprise(notify.apprise, blame)


def _check_apprise(urls: list[str], blame: Blame) -> None:
    """Each URL as Apprise reads it, when Apprise is installed: a typo fails at start-up, not at
    the first incident. Shown masked: the URL is its own secret."""
    for i, url in enumerate(urls):
        if not url.strip():
            raise blame(f"notify.apprise[{i}]", "must not be empty")
    try:
        # Imported only for a config that names Apprise URLs (it loads every plugin: ~0.3 s).
        import apprise
    except ImportError:
        raise blame(
            "notify.apprise",
            "Apprise URLs need the apprise library, which is not installed: "
            "pip install 'hbsm[apprise]'",
        ) from None
    # Apprise logs each URL it reads, secrets and all (at debug): masked from here on.
    from hbsm.notify.apprise_redact import watch_apprise_logs

    watch_apprise_logs(urls)
    for i, url in enumerate(urls):
        if apprise.Apprise.instantiate(url) is None:
            raise blame(
                f"notify.apprise[{i}]",
                f"Apprise cannot use {apprise_url_shown(url)!r}: an unknown scheme, or a part "
                "it needs is missing or malformed (its wiki lists each service's URL format)",
            )


def _check_name(i: int, service: ServiceConfig, seen: dict[str, int], blame: Blame) -> None:
    name = service.name
    key = f"services[{i}].name"
    if not name:
        raise blame(key, "must not be empty")
    if not SERVICE_NAME.fullmatch(name) or set(name) == {"."}:
        # Names end up in URLs (/health/service/<name>) and file names (supervised output).
        raise blame(
            key,
            f"{name!r} is not a safe name: use letters, digits, '_', '-' and '.' "
            f"(at most {SERVICE_NAME_MAX} characters, not only dots)",
        )
    if name in seen:
        raise blame(key, f"duplicate service name {name!r} (first at services[{seen[name]}])")
    seen[name] = i


def _check_service(
    config: Config, service: ServiceConfig, blame: Blame, steps: frozenset[str]
) -> Policy:
    k = f"services[{service.name}]"
    _check_probe(k, service, blame)
    _check_restart(k, service, blame)
    _check_steps(k, service, blame, steps)
    _check_ladders(f"{k}.", service.ladder, service.ladders, blame, steps)
    try:
        policy = config.policy_for(service)
    except ValueError as exc:
        key, why = _policy_problem(exc)
        raise blame(f"{k}.{key}", why) from None
    own = {"ladder": service.ladder is not None, "ladders": service.ladders is not None}
    for key, ladder in _ladders(policy.ladder, policy.ladders):
        kind = key.partition(".")[0]
        where = "" if own[kind] else f" (from the top-level {kind})"
        if RESTART_STEP in ladder and service.restart.kind == "none":
            raise blame(
                f"{k}.{key}",
                f"step {RESTART_STEP!r}{where} but restart.kind is 'none' "
                "(set restart.kind and restart.argv, or leave 'restart' out of the ladder)",
            )
        for step in ladder:
            needed = _STEP_NEEDS.get(step)
            settings = service.steps.get(step)
            if needed and (settings is None or not getattr(settings, needed)):
                raise blame(
                    f"{k}.steps.{step}.{needed}",
                    f"is required by step {step!r} in {key}{where}",
                )
    return policy


def _check_probe(k: str, service: ServiceConfig, blame: Blame) -> None:
    probe = service.probe
    if probe.kind == "http":
        if why := http_url_problem(service.url):
            raise blame(f"{k}.url", f"an http probe needs an http:// or https:// URL: {why}")
    elif probe.kind == "tcp":
        if why := tcp_target_problem(service.url):
            raise blame(f"{k}.url", f"a tcp probe needs host:port: {why}")
    elif not probe.argv or not probe.argv[0]:
        raise blame(f"{k}.probe.argv", "a command probe needs argv (the command, then its args)")
    if probe.timeout <= 0:
        raise blame(f"{k}.probe.timeout", "must be > 0")
    if probe.slow_ms is not None and probe.slow_ms <= 0:
        raise blame(f"{k}.probe.slow_ms", "must be > 0 (leave it out for no latency limit)")
    if probe.ca_file is not None:
        if probe.kind != "http":
            raise blame(f"{k}.probe.ca_file", "is for https probes only")
        if why := ca_file_problem(probe.ca_file):
            raise blame(f"{k}.probe.ca_file", why)
    for i, status in enumerate(probe.expect_status):
        if not 100 <= status <= 599:
            raise blame(f"{k}.probe.expect_status[{i}]", f"{status} is not an HTTP status code")
    if not _HTTP_METHOD.fullmatch(probe.method):
        raise blame(f"{k}.probe.method", f"{probe.method!r} is not an HTTP method")
    if probe.json_equals is not None and probe.json_field is None:
        raise blame(f"{k}.probe.json_equals", "needs probe.json_field (the field to compare)")
    if probe.json_field is not None and not probe.json_field.strip():
        raise blame(f"{k}.probe.json_field", "must not be empty")


def _check_restart(k: str, service: ServiceConfig, blame: Blame) -> None:
    restart = service.restart
    if restart.kind in ("supervise", "command") and (not restart.argv or not restart.argv[0]):
        raise blame(f"{k}.restart.argv", f"restart.kind {restart.kind!r} needs argv")
    if restart.timeout <= 0:
        raise blame(f"{k}.restart.timeout", "must be > 0")
    if restart.grace < 0:
        raise blame(f"{k}.restart.grace", "must be >= 0")


def _check_steps(k: str, service: ServiceConfig, blame: Blame, steps: frozenset[str]) -> None:
    for name, settings in service.steps.items():
        sk = f"{k}.steps.{key_part(name)}"
        if name == RESTART_STEP:
            raise blame(sk, "restart settings go under [services.restart], not steps.restart")
        if name not in steps:
            raise blame(sk, _unknown_step(name, steps))
        if settings.timeout <= 0:
            raise blame(f"{sk}.timeout", "must be > 0")
        if settings.url is not None and (why := http_url_problem(settings.url)):
            raise blame(f"{sk}.url", why)
        if not _HTTP_METHOD.fullmatch(settings.method):
            raise blame(f"{sk}.method", f"{settings.method!r} is not an HTTP method")
        if signal_number(settings.signal) is None:
            raise blame(f"{sk}.signal", f"{settings.signal!r} is not a signal (e.g. HUP, USR1)")
        if settings.port is not None and not 1 <= settings.port <= 65535:
            raise blame(f"{sk}.port", f"must be between 1 and 65535, got {settings.port}")


def _check_ladders(
    prefix: str,
    ladder: list[str] | None,
    ladders: dict[str, list[str]] | None,
    blame: Blame,
    steps: frozenset[str],
) -> None:
    for cls in ladders or {}:
        if cls in REPORTED_CLASSES:
            where = f"{prefix}ladders.{key_part(cls)}"
            raise blame(where, f"{cls!r} is reported, never repaired: it takes no ladder")
        if cls not in ERROR_CLASSES:
            reason = "is not a failure class"
            close = closest(cls, ERROR_CLASSES)
            if close:
                reason += f" (did you mean {close!r}?)"
            where = f"{prefix}ladders.{key_part(cls)}"
            raise blame(where, f"{reason}; one of {', '.join(ERROR_CLASSES)}")
    for key, lad in _ladders(ladder, ladders):
        for step in lad:
            if step not in steps:
                raise blame(f"{prefix}{key}", _unknown_step(step, steps))


def _ladders(
    ladder: tuple[str, ...] | list[str] | None,
    ladders: Mapping[str, tuple[str, ...] | list[str]] | None,
) -> Iterator[tuple[str, tuple[str, ...] | list[str]]]:
    if ladder is not None:
        yield "ladder", ladder
    for cls, steps in (ladders or {}).items():
        yield f"ladders.{cls}", steps


def _unknown_step(step: str, steps: frozenset[str]) -> str:
    reason = f"unknown step {step!r}"
    close = closest(step, sorted(steps))
    if close:
        reason += f" (did you mean {close!r}?)"
    custom = sorted(steps - BUILTIN_STEPS)
    reason += f"; built-in steps: {', '.join(sorted(BUILTIN_STEPS))}"
    if custom:
        reason += f"; registered in {REPAIR_GROUP}: {', '.join(custom)}"
    else:
        reason += f"; none registered in the entry-point group {REPAIR_GROUP}"
    return reason


def _policy_problem(exc: ValueError) -> tuple[str, str]:
    """Policy raises ValueError("<field> <why>"): split it into key and reason."""
    key, _, why = str(exc).partition(" ")
    if why and key.partition(".")[0] in {f.name for f in msgspec.structs.fields(Policy)}:
        return key, why
    return "thresholds", str(exc)


def _join(prefix: str | None, part: str) -> str:
    return f"{prefix}.{part}" if prefix else part
