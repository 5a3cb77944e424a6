"""What the tests of several nodes share: a nats-server of their own (a test's nodes write one
stream; a fresh server keeps their buckets and streams apart) and the services they watch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.nats_server import NatsServer

from .support import Services


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    services = Services(tmp_path / "services")
    yield services
    services.close()
