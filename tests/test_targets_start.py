"""`just bench`, `just soak` and `just bench-table` are not in CI, so nothing else would notice
when a change breaks their imports (a helper moved, renamed): each must at least start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "module",
    ["tests.bench.run", "tests.soak.run", "tests.bench.summary", "tests.bench.bench_monitor"],
)
def test_the_module_imports_and_answers_help(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout.lower() or "bench" in done.stdout.lower(), done.stdout
