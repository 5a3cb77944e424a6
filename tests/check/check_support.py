"""Helpers of the `hbsm check` tests: the command run as an operator runs it. (They also use
the Flask tests' helpers, `heartbeat_support`, on the path by tests/conftest.py.)"""

from __future__ import annotations

import subprocess
import sys

PY = sys.executable


def hbsm_check(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`hbsm check ARGS...` in a fresh interpreter, as an operator runs it."""
    return subprocess.run(
        [PY, "-m", "hbsm", "check", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
