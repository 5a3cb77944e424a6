"""Helpers of the `hbsm check` tests: the command run as an operator runs it, and the Flask
tests' helpers (tests/flask/heartbeat_support.py, loaded by path: tests/flask cannot be a
package, it would shadow Flask)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

PY = sys.executable


def _support() -> ModuleType:
    name = "heartbeat_support"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parents[1] / "flask" / "heartbeat_support.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


support = _support()


def hbsm_check(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`hbsm check ARGS...` in a fresh interpreter, as an operator runs it."""
    return subprocess.run(
        [PY, "-m", "hbsm", "check", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
