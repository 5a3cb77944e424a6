"""Leases (hbsm.cluster.leases) on a real nats-server: one holder at a time, renewal, expiry
when the holder goes silent, handover; and placement (hbsm.cluster.placement)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import nats
import pytest
from support.nats_server import NatsServer

from hbsm.cluster.leases import Leases
from hbsm.cluster.placement import preferred_node, spread

TTL = 1.0
_buckets = (f"leases-{n}" for n in itertools.count())


@pytest.fixture
def server(module_nats_server: NatsServer) -> NatsServer:
    return module_nats_server


@pytest.fixture
async def nodes(server: NatsServer) -> AsyncIterator[tuple[Leases, Leases]]:
    """Two nodes, a and b, each on a connection of its own, sharing a fresh bucket."""
    bucket = next(_buckets)
    a_nc, b_nc = await nats.connect(server.url), await nats.connect(server.url)
    a = await Leases.open(a_nc.jetstream(), "a", ttl=TTL, bucket=bucket)
    b = await Leases.open(b_nc.jetstream(), "b", ttl=TTL, bucket=bucket)
    yield a, b
    await a_nc.close()
    await b_nc.close()


async def test_one_holder_at_a_time(nodes):
    a, b = nodes
    assert await a.take("web") is not None
    assert await b.take("web") is None
    assert await a.owner("web") == await b.owner("web") == "a"
    assert await b.renew("web") is None  # b never held it


async def test_a_renewed_lease_outlives_its_ttl_and_a_silent_one_expires(nodes):
    a, b = nodes
    await a.take("web")
    for _ in range(4):  # 2 x the ttl, renewed every half ttl
        await asyncio.sleep(TTL / 2)
        assert await a.renew("web") is not None
    assert await b.take("web") is None
    # a goes silent (a dead node): within the ttl (and the server's expiry sweep), b takes it.
    for _ in range(40):
        await asyncio.sleep(TTL / 4)
        if await b.take("web") is not None:
            break
    assert await b.owner("web") == "b"
    assert await a.renew("web") is None  # a learns that it lost it, and stops deciding
    assert "web" not in a.held


async def test_a_release_hands_over_at_once(nodes):
    a, b = nodes
    await a.take("web")
    await a.release("web")
    assert await a.owner("web") is None
    assert await b.take("web") is not None


def test_placement_is_stable_and_moves_little_when_a_node_joins():
    services = [f"svc-{i}" for i in range(300)]
    two = spread(services, ["a", "b"])
    three = spread(services, ["a", "b", "c"])
    assert sorted(two["a"] + two["b"]) == sorted(services)
    assert all(25 <= len(owned) <= 175 for owned in three.values())  # roughly even
    moved = [s for s in services if preferred_node(s, ["a", "b"]) != preferred_node(s, "abc")]
    # Only what the new node wins moves (about a third), all of it to the new node.
    assert all(preferred_node(s, "abc") == "c" for s in moved)
    assert 50 <= len(moved) <= 150
    assert preferred_node("web", []) is None


async def test_a_node_started_again_within_the_ttl_keeps_its_own_leases(nodes, server):
    a, b = nodes
    await a.take("web")
    # a is killed and started again at once: a new process, the same node name, no memory of
    # the lease. It is a's to keep (node names are unique), not to wait out; b's it is not.
    a_nc = await nats.connect(server.url)
    again = await Leases.open(a_nc.jetstream(), "a", ttl=TTL, bucket=a.bucket)
    try:
        assert await b.take("web") is None
        assert await again.take("web") is not None
        assert await again.renew("web") is not None
        assert await a.renew("web") is None  # the old run's revision is stale
    finally:
        await a_nc.close()
