"""Fixtures every test folder may use (registered by tests/conftest.py). A folder's conftest
may define one of the same name for its own needs (tests/probes' `target` is another server)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from probes.servers import SwitchableTarget

import hbsm.config.load
from support.nats_server import NatsCluster, NatsServer

__all__ = [
    "clean_environment",
    "module_nats_server",
    "nats_cluster",
    "no_registered_steps",
    "stop_later",
    "target",
]


@pytest.fixture
def target() -> Iterator[SwitchableTarget]:
    """A local HTTP target whose answer per service the test switches (probes.servers)."""
    server = SwitchableTarget().start()
    yield server
    server.stop()


@pytest.fixture
def stop_later() -> Iterator[Callable[[Any], Any]]:
    """`stop_later(thing)` -> thing; `thing.stop()` at the end of the test (last first), then no
    thread of hbsm's ("hbsm-...") may be left running."""
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
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No HEARTBEAT_* setting or proxy of the machine leaks in, and no ./hbsm.toml is found (the
    test runs in its own empty directory)."""
    for name in list(os.environ):
        if name.startswith("HEARTBEAT_") or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def no_registered_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """No custom repair steps from whatever happens to be installed: each test registers its own."""
    monkeypatch.setattr(hbsm.config.load, "registered_steps", frozenset)


@pytest.fixture(scope="module")
def module_nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A real nats-server with JetStream, shared by one test module's tests: each test uses a
    stream or a bucket of its own on it."""
    running = NatsServer(tmp_path_factory.mktemp("nats")).start()
    yield running
    running.stop()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three nats-servers in one JetStream cluster, ready for an R3 stream. One per test: a test
    kills and restarts its servers, and the next one starts from three healthy ones."""
    cluster = NatsCluster(tmp_path / "nats-cluster").start()
    yield cluster
    cluster.stop()
