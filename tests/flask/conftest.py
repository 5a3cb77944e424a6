"""Fixtures of the Flask blueprint tests. Every server, monitor thread and follower a test
starts is stopped by a finalizer (support.fixtures' `stop_later`), whatever the test's outcome;
each test runs in a clean environment (support.fixtures' `clean_environment`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from heartbeat_support import ServedApp, flask_app

from hbsm.flask import HeartbeatHandle, follow_log, init_heartbeat


@pytest.fixture(autouse=True)
def _clean(clean_environment: None) -> None:
    """Every test here: no HEARTBEAT_* setting of the machine, no ./hbsm.toml."""


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "events" / "heartbeat.jsonl"


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
