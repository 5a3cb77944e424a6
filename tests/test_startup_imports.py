"""Start-up imports only the hot path (docs/architecture.md): checked in fresh interpreters.

An idle `hbsm run` holds the monitor, the event log and uvicorn serving its API, and nothing a
request, a repair or a notification might need some day: Starlette (the first event stream
loads it), prometheus_client (the first /metrics scrape), httpx (the first http repair step or
webhook), the other subcommands' command lines, the dashboard, and no HTTP client library at all
while every probe is a plain GET (the lean path, hbsm.probes._lean).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.net import free_port

from hbsm.events import Probe
from hbsm.log.reader import read_history

# Loaded by something an idle monitor does not do.
DEFERRED = {"starlette", "prometheus_client", "textual", "tui"}
HTTP_CLIENTS = {"httpx", "httpcore", "aiohttp", "httpx_aiohttp"}
OTHER_COMMANDS = {
    "hbsm.demo.command",
    "hbsm.check.command",
    "hbsm.config.command",
    "hbsm.replay.command",
    "hbsm.export.command",
    "hbsm.monitor.reload_command",
}

# Runs `hbsm run` (the real command line, in this fresh interpreter) and prints, as JSON, the
# modules it ended with and which module first imported each watched package. With "scrape",
# a thread asks GET /metrics once the API answers, noting whether prometheus_client was loaded
# just before.
_RUN = r"""
import builtins, json, sys, threading, time, urllib.request

WATCHED = set(sys.argv[4].split(","))
first = {}
real_import = builtins.__import__

def spy(name, globals=None, locals=None, fromlist=(), level=0):
    top = name.partition(".")[0]
    if level == 0 and top in WATCHED and top not in sys.modules:
        first.setdefault(top, (globals or {}).get("__name__", "?"))
    return real_import(name, globals, locals, fromlist, level)

builtins.__import__ = spy
config, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
seen = {}

def scrape():
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        seen["loaded_before"] = "prometheus_client" in sys.modules
        try:
            with opener.open(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                seen["status"], seen["body"] = answer.status, answer.read().decode()
            return
        except OSError:
            time.sleep(0.05)

if mode == "scrape":
    threading.Thread(target=scrape, daemon=True).start()
from hbsm.cli import main

code = main(["run", "--config", config, "--duration", "3" if mode == "scrape" else "1.5"])
print(json.dumps({"code": code, "first": first, "modules": sorted(sys.modules), **seen}))
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HEARTBEAT_")}


def _run(tmp_path: Path, mode: str, kind: str = "tcp") -> dict[str, Any]:
    """`hbsm run` with its API on a free port and one service probing that API (`kind` tcp: its
    port; http: GET /health), for a moment."""
    port = free_port()
    config = tmp_path / "hbsm.toml"
    url = f"http://127.0.0.1:{port}/health" if kind == "http" else f"127.0.0.1:{port}"
    config.write_text(
        f'host = "127.0.0.1"\nport = {port}\ncheck_interval = 0.5\n\n'
        f'[log]\npath = "{tmp_path / "heartbeat.jsonl"}"\n\n'
        f'[[services]]\nname = "api-port"\nurl = "{url}"\nprobe = {{ kind = "{kind}" }}\n'
    )
    watched = ",".join(sorted(DEFERRED | HTTP_CLIENTS | {"uvicorn"}))
    done = subprocess.run(
        [sys.executable, "-c", _RUN, str(config), str(port), mode, watched],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    assert result["code"] == 0, done.stderr
    return result


def _tops(modules: list[str]) -> set[str]:
    return {m.partition(".")[0] for m in modules}


@pytest.mark.parametrize("kind", ["tcp", "http"])
def test_an_idle_hbsm_run_holds_only_the_hot_path(tmp_path, kind):
    got = _run(tmp_path, "idle", kind)
    modules = set(got["modules"])
    assert "uvicorn" in modules  # the API did serve: this was the real thing
    assert "hbsm.monitor.runtime" in modules
    assert DEFERRED & _tops(got["modules"]) == set()
    assert OTHER_COMMANDS & modules == set()
    assert HTTP_CLIENTS & _tops(got["modules"]) == set(), got["first"]
    # ... and the service was probed, and answered (the last probe may meet the API closing).
    probes = [e for e in read_history(tmp_path / "heartbeat.jsonl") if isinstance(e, Probe)]
    assert any(p.ok for p in probes), probes


def test_metrics_loads_prometheus_client_at_the_first_scrape_and_answers(tmp_path):
    got = _run(tmp_path, "scrape")
    assert got["loaded_before"] is False
    assert got["status"] == 200
    assert "hbsm_services 1.0" in got["body"]
    assert 'hbsm_service_state{service="api-port"' in got["body"]
    assert "prometheus_client" in got["modules"]


@pytest.mark.parametrize(
    "module",
    [
        "hbsm.monitor.command",  # what `hbsm run` imports before it starts anything
        "hbsm.api.listen",
        "hbsm.config",
        "hbsm.log",
        "hbsm.notify",
        "hbsm.repair",
    ],
)
def test_the_run_path_modules_import_no_heavy_stack(module):
    code = f"import sys, {module}; print(*sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=_env()
    )
    loaded = set(done.stdout.split())
    assert module in loaded
    assert (DEFERRED | HTTP_CLIENTS | {"uvicorn"}) & _tops(sorted(loaded)) == set()


def test_the_command_line_imports_only_the_command_asked_for():
    code = (
        "import sys\nfrom hbsm.cli import build_parser\n"
        "build_parser('run').parse_args(['run'])\nprint(*sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=_env()
    )
    loaded = set(done.stdout.split())
    assert "hbsm.monitor.command" in loaded
    assert OTHER_COMMANDS & loaded == set()
    assert {"tui", "textual"} & _tops(sorted(loaded)) == set()
