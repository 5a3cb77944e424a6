"""Fixtures of the Flask blueprint tests. Every target, server, monitor thread and follower a
test starts is stopped by a finalizer here, whatever the test's outcome."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from heartbeat_support import ServedApp, flask_app
from probes.servers import SwitchableTarget

from hbsm.flask import HeartbeatHandle, follow_log, init_heartbeat


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No HEARTBEAT_* setting of the machine leaks in, and no ./hbsm.toml is found."""
    for name in list(os.environ):
        if name.startswith("HEARTBEAT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "events" / "heartbeat.jsonl"


@pytest.fixture
def stop_later() -> Iterator[Callable[[Any], Any]]:
    """`stop_later(thing)` -> thing; `thing.stop()` at the end of the test (last first)."""
    things: list[Any] = []

    def register(thing: Any) -> Any:
        things.append(thing)
        return thing

    yield register
    errors = []
    for thing in reversed(things):
        try:
            thing.stop()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
    leftover = [t.name for t in threading.enumerate() if t.name.startswith("hbsm-")]
    assert not leftover, f"threads still running: {leftover}"
    assert not errors, errors


@pytest.fixture
def target(stop_later: Callable[[Any], Any]) -> SwitchableTarget:
    return stop_later(SwitchableTarget().start())


@pytest.fixture
def embedded(
    stop_later: Callable[[Any], Any],
) -> Callable[..., tuple[Flask, HeartbeatHandle]]:
    """`embedded(config, **kwargs)`: a host app with `init_heartbeat(app, config, ...)`."""

    def make(config: Any = None, app: Flask | None = None, **kwargs: Any) -> tuple[Flask, Any]:
        app = app if app is not None else flask_app()
        handle = init_heartbeat(app, config, **kwargs)
        stop_later(handle)
        return app, handle

    return make


@pytest.fixture
def following(
    stop_later: Callable[[Any], Any],
) -> Callable[..., tuple[Flask, HeartbeatHandle]]:
    """`following(path, **kwargs)`: a host app with `follow_log(app, path, ...)`."""

    def make(path: Path, app: Flask | None = None, **kwargs: Any) -> tuple[Flask, Any]:
        app = app if app is not None else flask_app("follower")
        handle = follow_log(app, path, **kwargs)
        stop_later(handle)
        return app, handle

    return make


@pytest.fixture
def served(stop_later: Callable[[Any], Any]) -> Callable[[Flask], ServedApp]:
    """`served(app)`: the app on a real port (bound now; call `.serve()` to start answering)."""

    def make(app: Flask) -> ServedApp:
        return stop_later(ServedApp(app))

    return make
