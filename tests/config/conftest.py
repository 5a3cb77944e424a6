from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated(clean_environment: None, no_registered_steps: None) -> None:
    """No ./hbsm.toml or HEARTBEAT_* setting from wherever pytest runs, and no custom steps from
    whatever happens to be installed: every test states its own files and registered steps."""


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """write(text, name="conf.toml") -> the path of a real TOML file under tmp_path."""

    def _write(text: str, name: str = "conf.toml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return _write
