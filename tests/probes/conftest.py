from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from hbsm.config.model import ProbeConfig, ServiceConfig
from hbsm.probes import Prober

from .servers import GarbageTarget, HttpTarget

TRANSPORTS = ["aiohttp", "httpx"]


def service(url: str, name: str = "svc", **probe: object) -> ServiceConfig:
    return ServiceConfig(name=name, url=url, probe=ProbeConfig(**probe))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def target() -> Iterator[HttpTarget]:
    server = HttpTarget().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def garbage() -> Iterator[GarbageTarget]:
    server = GarbageTarget().start()
    yield server
    server.stop()


@pytest.fixture(params=TRANSPORTS)
async def prober(request: pytest.FixtureRequest) -> AsyncIterator[Prober]:
    async with Prober(transport=request.param, clock=lambda: 1_700_000_000.0) as p:
        yield p
