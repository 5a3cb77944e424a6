"""Fixtures of the `hbsm check` tests: real instances to check (a Flask app with the embedded
monitor on a real port, `hbsm run`), every one stopped at the end whatever the outcome."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from probes.servers import SwitchableTarget


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("HEARTBEAT_") or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def stop_later() -> Iterator[Callable[[Any], Any]]:
    things: list[Any] = []

    def register(thing: Any) -> Any:
        things.append(thing)
        return thing

    yield register
    for thing in reversed(things):
        thing.stop()
    leftover = [t.name for t in threading.enumerate() if t.name.startswith("hbsm-")]
    assert not leftover, f"threads still running: {leftover}"


@pytest.fixture
def target(stop_later: Callable[[Any], Any]) -> Any:
    return stop_later(SwitchableTarget().start())
