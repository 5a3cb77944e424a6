"""`load_config`: the file, then the environment, then the checks; the config in force.

Order of precedence, lowest first: built-in defaults, `hbsm.toml`, `HEARTBEAT_*` variables.
"""

from __future__ import annotations

import functools
import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import msgspec

from hbsm.config.decode import decode_config, read_toml
from hbsm.config.env import CONFIG_VAR, apply_env
from hbsm.config.errors import ConfigError
from hbsm.config.model import Config, ProbeConfig, RestartConfig, ServiceConfig, StepConfig
from hbsm.config.sources import Source, collect_sources
from hbsm.config.validate import BUILTIN_STEPS, Blame, registered_steps, steps_named, validate
from hbsm.state import RESTART_STEP, Policy
from hbsm.vocabulary import CHECK_CONFIG_STEP

__all__ = ["DEFAULT_FILE", "LoadedConfig", "load_config", "resolve_path"]

DEFAULT_FILE = "hbsm.toml"


@dataclass(frozen=True, eq=False)
class LoadedConfig:
    """The configuration in force and where each of its settings came from."""

    config: Config
    # Dotted key ("port", "log.path", "services.api.max_retries") → "default" | "file" | "env".
    sources: dict[str, Source]
    # The TOML file read, or None (defaults and environment only).
    path: Path | None

    @functools.cached_property
    def policies(self) -> dict[str, Policy]:
        """Each service's thresholds (`config.policy_for(service)`), by service name."""
        return {s.name: self.config.policy_for(s) for s in self.config.services}

    def policy(self, service: str) -> Policy:
        return self.policies[service]


def resolve_path(
    path: str | os.PathLike[str] | None, env: Mapping[str, str], *, discover: bool = True
) -> Path | None:
    """The TOML file to read: `path`, else $HEARTBEAT_CONFIG, else (`discover`) ./hbsm.toml if
    it exists."""
    if path is not None:
        return Path(path)  # read_toml reports a missing file, naming it
    named = env.get(CONFIG_VAR, "").strip()
    if named:
        candidate = Path(named)
        if candidate.is_dir():
            raise ConfigError.in_env(CONFIG_VAR, named, None, "is a directory, not a TOML file")
        if not candidate.exists():
            raise ConfigError.in_env(CONFIG_VAR, named, None, "no such file")
        return candidate  # read_toml reports a file it cannot use (a device, say), naming it
    if not discover:
        return None
    local = Path(DEFAULT_FILE)
    return local if local.is_file() else None


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    embedded_login_url: str | None = None,
    embedded_health_url: str | None = None,
    embedded_config_files: Sequence[str] = (),
    embedded: bool = False,
    discover: bool = True,
) -> LoadedConfig:
    """Read, overlay and check the configuration; raises ConfigError (one line) if it is bad.

    `env`: the environment to apply (default `os.environ`). `embedded_login_url`: the host
    Flask app's login page, when hbsm runs embedded in it (used only without services), and
    `embedded_health_url` that app's own `/health`, when it has one, and
    `embedded_config_files` its own configuration files (what the `check_config` step of those
    services checks); `embedded`: hbsm runs inside the app it watches (which it may then
    restart). `discover`: without
    `path` nor $HEARTBEAT_CONFIG, read ./hbsm.toml if there is one (as `hbsm run` does); an
    embedded monitor reads only what it is told to.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    file = resolve_path(path, environ, discover=discover)
    where = str(file) if file is not None else None
    raw: dict[str, Any] = read_toml(file) if file is not None else {}
    config = decode_config(raw, where)
    applied = apply_env(config, environ)

    special: dict[str, dict[str, Source]] | None = None
    if config.services:
        if "ladder" not in raw:
            config.services = [_restartless(config, s) for s in config.services]
    else:
        config.services, special = _original_services(
            config,
            embedded,
            EmbeddedApp(embedded_login_url, embedded_health_url, tuple(embedded_config_files)),
            raw,
            applied,
        )

    sources = collect_sources(config, raw, applied, default_services=special)
    steps = BUILTIN_STEPS
    if not steps_named(config) <= BUILTIN_STEPS:  # only then are installed packages asked
        steps |= registered_steps()
    validate(config, Blame(where, applied), steps)
    return LoadedConfig(config=config, sources=sources, path=file)


def _restartless(config: Config, service: ServiceConfig) -> ServiceConfig:
    """The default ladder ends with `restart`; a service with no way to restart skips it.

    Only when the operator has not written a top-level ladder: a ladder they wrote that names
    `restart` for a service that cannot restart is an error (see `validate`).
    """
    if service.restart.kind != "none" or service.ladder is not None:
        return service
    ladder = [step for step in config.ladder if step != RESTART_STEP]
    return msgspec.structs.replace(service, ladder=ladder)


class EmbeddedApp(NamedTuple):
    """What the host Flask app of an embedded monitor tells of itself (all optional)."""

    login_url: str | None
    health_url: str | None
    config_files: tuple[str, ...]


def _original_services(
    config: Config,
    embedded: bool,
    host: EmbeddedApp,
    raw: Mapping[str, Any],
    applied: Mapping[str, tuple[str, str]],
) -> tuple[list[ServiceConfig], dict[str, dict[str, Source]]]:
    """What the original feature monitored: its own `/health` and the admin login page.

    The login page is the host Flask app's `/login` when embedded, or `login_url`
    (HEARTBEAT_LOGIN_URL) when set; a standalone `hbsm run` has no login page of its own, so
    without either there is none to watch.
    """
    base = own_base_url(config.host, config.port)
    login_source: Source = "default"
    login_url: str | None = None
    if host.login_url:
        login_url = host.login_url
    elif config.login_url:
        login_url = config.login_url
        login_source = (
            "env" if "login_url" in applied else "file" if "login_url" in raw else "default"
        )
    # Embedded, the app is this process: restarting it is restarting this process, after
    # diagnosing and checking the configuration, as the original feature did. Standalone,
    # `hbsm run` cannot restart itself (its own API is main_service): it only diagnoses.
    own = RestartConfig(kind="self") if embedded else RestartConfig()
    ladder = ["diagnose", CHECK_CONFIG_STEP, RESTART_STEP] if embedded else ["diagnose"]
    # The app's configuration files, checked before restarting it (and no restart while one
    # is broken: the app would not start again).
    files = list(host.config_files)
    steps = {CHECK_CONFIG_STEP: StepConfig(files=files)} if files and embedded else {}
    if host.health_url:
        # The host app's own /health, probed as a load balancer would: a 503 is a failure.
        main = ServiceConfig(
            name="main_service",
            url=host.health_url,
            description="the app's own /health",
            critical=True,
            restart=own,
            steps=steps,
            ladder=ladder,
        )
    else:
        main = ServiceConfig(
            name="main_service",
            url=f"{base}/health",
            description="the monitor's own API",
            critical=True,
            # Its own /health answers 503 while a critical service is down: the API is up all
            # the same, and counting that as a failure would keep it down for good.
            probe=ProbeConfig(expect_status=[200, 503]),
            restart=own,
            steps=steps,
            ladder=ladder,
        )
    services = [main]
    if login_url is None:
        return services, {}
    # The app's own login page is restarted with the app; one elsewhere (an SSO) is only
    # diagnosed: restarting this process would not mend it.
    ours = bool(host.login_url)
    services.append(
        ServiceConfig(
            name="login_page",
            url=login_url,
            description="admin login page",
            critical=False,
            restart=own if ours else RestartConfig(),
            steps=steps if ours else {},
            ladder=ladder if ours else ["diagnose"],
        )
    )
    return services, {"login_page": {"url": login_source}}


def own_base_url(host: str, port: int) -> str:
    """The URL at which this process's own API answers, for probing it from here."""
    # Bound to every address: probe it over loopback.
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass  # a host name
    return f"http://{host}:{port}"
