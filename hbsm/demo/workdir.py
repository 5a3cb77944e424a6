"""The demo's working directory and its hbsm config: three demo services on free loopback
ports, supervised by hbsm, with thresholds small enough that things happen within seconds.

    WORK/hbsm-demo.toml             the config hbsm runs with (recorded in the log)
    WORK/services/NAME.toml         each service's own config file (+ NAME.toml.good)
    WORK/control/NAME.mode          each service's control file (its misbehaviour)
    WORK/events/demo.jsonl          the event log
    WORK/events/demo-faults.jsonl   the faults chaos injected
    WORK/events/NAME.out            each service's output; hbsm.log: the monitor's own log
"""

from __future__ import annotations

import json
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from hbsm.demo.service import RESET_ROUTE, ROUTES, write_config

__all__ = [
    "DEMO_SERVICES",
    "THRESHOLDS",
    "DemoService",
    "DemoSetup",
    "bind_api",
    "detection_bound",
    "free_port",
    "prepare",
]

DEMO_SERVICES = ("main_service", "login_page", "worker")
# Small thresholds, so a fault is detected, repaired and cooled down within seconds.
THRESHOLDS: dict[str, float | int] = {
    "check_interval": 1.0,
    "max_retries": 2,
    "success_threshold": 1,
    "restart_cooldown": 3.0,
    "cooldown_max": 12.0,
    "stable_period": 10.0,
    # Generous: chaos every few seconds restarts each service a few times a minute, and a
    # demo left running must not end with its services `failed`.
    "restart_budget": 20,
    "restart_window": 120.0,
    # The demo services bind at once; a second is their start grace. A repair run that did
    # not fix it waits seconds, not minutes, and never gives the service up.
    "start_grace": 1.0,
    "repair_backoff": 2.0,
    "repair_backoff_max": 8.0,
    "repair_budget": 0,
}
PROBE_TIMEOUT = 0.8  # a hang is a timeout after this long (below check_interval: see below)
SLOW_MS = 300.0  # a slow fault answers after SLOW_SECONDS: above this, within the timeout
SLOW_SECONDS = 0.6


def detection_bound(
    check_interval: float = float(THRESHOLDS["check_interval"]),
    max_retries: int = int(THRESHOLDS["max_retries"]),
    probe_timeout: float = PROBE_TIMEOUT,
) -> float:
    """How soon after a fault the monitor must have decided to repair (`repairing`):
    check_interval x max_retries + check_interval, plus an allowance of one probe timeout per
    failed probe — probes of one service do not overlap, so each probe of a hung service
    holds the next one back by up to the timeout."""
    return check_interval * max_retries + check_interval + max_retries * probe_timeout


# The ladder per failure class. Each fault kind ends repaired:
#   crash (refused), hang (timeout) -> restart;
#   slow -> the http step (POST /_reset);
#   error (http_5xx) -> check_config passes, fixconfig changes nothing, the http reset fixes it;
#   badconfig (http_5xx) -> check_config finds the broken file, the command step (fixconfig)
#   restores it: repaired without a restart.
LADDER = ["diagnose", "check_config", "command", "http", "restart"]
LADDERS = {
    "refused": ["diagnose", "restart"],
    "timeout": ["diagnose", "restart"],
    "slow": ["diagnose", "http", "restart"],
    "http_5xx": ["diagnose", "check_config", "command", "http", "restart"],
}


@dataclass(frozen=True)
class DemoService:
    name: str
    port: int
    config: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{ROUTES[self.name]}"

    @property
    def reset_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{RESET_ROUTE}"


@dataclass(frozen=True)
class DemoSetup:
    workdir: Path
    config_path: Path
    log_path: Path
    faults_path: Path
    control_dir: Path
    services: dict[str, DemoService]
    api_port: int


def free_port() -> int:
    """A loopback port free right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bind_api(port: int, *, tries: int = 100) -> socket.socket:
    """A listening socket on 127.0.0.1:`port`, or the next free port after it."""
    from hbsm.api.server import ListenError, bind

    last: ListenError | None = None
    for candidate in range(port, min(port + tries, 65536)):
        try:
            return bind("127.0.0.1", candidate)
        except ListenError as exc:
            last = exc
    raise ListenError(f"no free port in {port}..{port + tries - 1}: {last}")


def _toml(value: object) -> str:
    """A TOML value: strings, numbers, bools, lists and inline tables (JSON's string escapes
    are valid TOML basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def render_config(
    *,
    api_port: int,
    log_path: Path,
    control_dir: Path,
    services: dict[str, DemoService],
    python: str = sys.executable,
) -> str:
    out = [
        "# hbsm demo config, written by `hbsm demo`",
        'host = "127.0.0.1"',
        f"port = {api_port}",
        *(f"{k} = {_toml(v)}" for k, v in THRESHOLDS.items()),
        f"ladder = {_toml(LADDER)}",
        f"ladders = {_toml(LADDERS)}",
        "",
        "[log]",
        f"path = {_toml(str(log_path))}",
        'fsync = "batch"',
        f"file = {_toml(str(log_path.parent / 'hbsm.log'))}",
    ]
    for svc in services.values():
        argv = [
            python, "-m", "hbsm.demo.service", "--name", svc.name, "--port", str(svc.port),
            "--config", str(svc.config), "--control", str(control_dir),
        ]  # fmt: skip
        out += [
            "",
            "[[services]]",
            f"name = {_toml(svc.name)}",
            f"url = {_toml(svc.url)}",
            f"description = {_toml(f'demo service {svc.name}')}",
            f"critical = {_toml(svc.name == 'main_service')}",
            "probe = "
            + _toml({"timeout": PROBE_TIMEOUT, "expect_status": [200], "slow_ms": SLOW_MS}),
            "",
            "[services.steps.check_config]",
            f"files = {_toml([str(svc.config)])}",
            "timeout = 5.0",
            "",
            "[services.steps.command]",
            f"argv = {_toml([python, '-m', 'hbsm.demo.fixconfig', str(svc.config)])}",
            "timeout = 10.0",
            "",
            "[services.steps.http]",
            f"url = {_toml(svc.reset_url)}",
            "timeout = 1.0",
            "",
            "[services.restart]",
            'kind = "supervise"',
            f"argv = {_toml(argv)}",
            "timeout = 10.0",
            "grace = 2.0",
            f"output = {_toml(str(log_path.parent / f'{svc.name}.out'))}",
            "stop_on_exit = true",
        ]
    return "\n".join(out) + "\n"


def prepare(workdir: Path, *, api_port: int, python: str = sys.executable) -> DemoSetup:
    """Create the working directory, the services' config files and the demo config."""
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    events = workdir / "events"
    events.mkdir(exist_ok=True)
    control = workdir / "control"
    control.mkdir(exist_ok=True)
    services: dict[str, DemoService] = {}
    taken: set[int] = {api_port}
    for name in DEMO_SERVICES:
        port = free_port()
        while port in taken:
            port = free_port()
        taken.add(port)
        file = workdir / "services" / f"{name}.toml"
        config = write_config(file, name, slow_seconds=SLOW_SECONDS)
        services[name] = DemoService(name=name, port=port, config=config)
    log_path = events / "demo.jsonl"
    config_path = workdir / "hbsm-demo.toml"
    config_path.write_text(
        render_config(
            api_port=api_port,
            log_path=log_path,
            control_dir=control,
            services=services,
            python=python,
        )
    )
    return DemoSetup(
        workdir=workdir,
        config_path=config_path,
        log_path=log_path,
        faults_path=events / "demo-faults.jsonl",
        control_dir=control,
        services=services,
        api_port=api_port,
    )
