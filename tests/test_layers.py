"""The layering rules of DESIGN §2, checked in a fresh interpreter."""

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
    loaded = _modules_after_import("hbsm", "hbsm.cli", "hbsm.log", "hbsm.projection", "hbsm.fsm")
    assert "hbsm.cli" in loaded  # the probe really imported the command line
    assert not {"textual", "tui"} & loaded


@pytest.mark.parametrize("module", ["hbsm.events", "hbsm.state", "hbsm.fsm", "hbsm.projection"])
def test_pure_layers_do_no_io(module):
    loaded = _modules_after_import(module)
    assert module in loaded
    assert not {"asyncio", "httpx", "socket", "subprocess", "textual"} & loaded
