"""The layering rules of docs/architecture.md, checked in a fresh interpreter."""

import subprocess
import sys

import pytest


def _modules_after_import(*modules: str) -> set[str]:
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + "print(*sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return set(out.split())


def test_hbsm_never_imports_the_dashboard():
    loaded = _modules_after_import(
        "hbsm", "hbsm.cli", "hbsm.log", "hbsm.projection", "hbsm.fsm", "hbsm.monitor",
        "hbsm.api", "hbsm.demo.command", "hbsm.replay.command",
    )  # fmt: skip
    assert "hbsm.cli" in loaded  # the probe really imported the command line
    assert "textual" not in loaded


def test_only_the_command_line_names_the_dashboard():
    # hbsm.cli may reach everything (it lists `hbsm dashboard`); no other module
    # of the core imports the dashboard, not even lazily.
    import re
    from pathlib import Path

    core = Path(__file__).resolve().parents[1] / "hbsm"
    pattern = re.compile(r"^\s*(from|import)\s+(textual|tui)\b", re.MULTILINE)
    offenders = [
        str(path.relative_to(core.parent))
        for path in core.rglob("*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


@pytest.mark.parametrize(
    "module",
    [
        "hbsm.vocabulary",
        "hbsm.events",
        "hbsm.state",
        "hbsm.fsm",
        "hbsm.projection",
        "hbsm.describe",
    ],
)
def test_pure_layers_do_no_io(module):
    loaded = _modules_after_import(module)
    assert module in loaded
    assert not {"asyncio", "httpx", "socket", "subprocess", "textual"} & loaded


def test_the_http_core_needs_no_flask_nor_the_monitor():
    # The handler and its ASGI adapter are the API of `hbsm run` and of the Flask blueprint
    # alike: Flask is the blueprint's own dependency (an extra), and the handler reaches the
    # monitor only through the Control protocol.
    loaded = _modules_after_import("hbsm.api.handler", "hbsm.api.app")
    assert "hbsm.api.handler" in loaded
    assert not {"flask", "werkzeug", "hbsm.flask", "hbsm.monitor.runtime"} & loaded
