from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import hbsm.config.load


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No ./hbsm.toml from wherever pytest runs, and no custom steps from whatever happens to be
    # installed: every test states its own files and registered steps.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(hbsm.config.load, "registered_steps", frozenset)


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """write(text, name="conf.toml") -> the path of a real TOML file under tmp_path."""

    def _write(text: str, name: str = "conf.toml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return _write
