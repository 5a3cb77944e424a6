"""Which node should own a service: rendezvous (highest random weight) hashing.

Every node computes the same answer from the same list of live nodes, with no coordination;
when a node joins or leaves, only the services it wins or held move (about 1/n of them), not a
reshuffle of all. The weight is a stable hash (blake2b), never Python's per-process `hash`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["preferred_node", "spread"]


def _weight(node: str, service: str) -> int:
    digest = hashlib.blake2b(f"{node}\0{service}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def preferred_node(service: str, nodes: Iterable[str]) -> str | None:
    """The node that should own `service` among `nodes` (None: no node)."""
    return max(nodes, key=lambda node: (_weight(node, service), node), default=None)


def spread(services: Iterable[str], nodes: Iterable[str]) -> dict[str, list[str]]:
    """Each node's services (every node listed, with [] when it wins none)."""
    live = sorted(set(nodes))
    out: dict[str, list[str]] = {node: [] for node in live}
    for service in services:
        node = preferred_node(service, live)
        if node is not None:
            out[node].append(service)
    return out
