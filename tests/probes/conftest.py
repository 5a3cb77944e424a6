from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from hbsm.probes import TRANSPORTS, Prober

from .servers import GarbageTarget, HttpTarget


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
