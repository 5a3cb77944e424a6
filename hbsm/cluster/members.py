"""Which nodes are alive: each keeps a key of its own in a KV bucket whose entries expire `ttl`
seconds after their last write, and writes it more often than that. A node that dies, or loses
NATS, drops out of `live()` within the ttl; the services it should own then hash elsewhere
(hbsm.cluster.placement)."""

from __future__ import annotations

import contextlib

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from hbsm.cluster.kv import expiring_bucket

__all__ = ["Members"]

DEFAULT_BUCKET = "hbsm-nodes"


class Members:
    """`await Members.open(js, "a", ttl=6)`: node `a`'s view of the bucket."""

    def __init__(self, kv: KeyValue, node: str) -> None:
        self.kv = kv
        self.node = node

    @classmethod
    async def open(
        cls, js: JetStreamContext, node: str, *, ttl: float, bucket: str = DEFAULT_BUCKET
    ) -> Members:
        return cls(await expiring_bucket(js, bucket, ttl), node)

    async def beat(self, about: bytes = b"") -> None:
        """This node is alive for another ttl."""
        await self.kv.put(self.node, about)

    async def live(self) -> list[str]:
        """The nodes alive now, this one included once it has beaten. Sorted."""
        try:
            keys = await self.kv.keys()
        except nats.js.errors.NoKeysError:
            return []
        return sorted(keys)

    async def leave(self) -> None:
        """Gone at once rather than at the ttl: a clean stop hands its services over now."""
        with contextlib.suppress(nats.js.errors.Error):
            await self.kv.delete(self.node)
