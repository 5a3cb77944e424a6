"""A lease per service, so that one node at a time decides and repairs it.

The leases live in a JetStream KV bucket whose entries expire `ttl` seconds after their last
write (the bucket's max age): a node takes a free lease with `create` (it fails if the key
holds a value), keeps it with `update(last=revision)` at least every `ttl` (it fails if anyone
wrote the key since: the lease moved), and gives it up with `delete(last=revision)`. A node
that dies, or loses NATS, stops renewing: its leases expire and another node takes them
within `ttl` plus its own renewal interval. The value is the owner's node name.

Every call is one request to the server; nothing here keeps time but the server.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from hbsm.cluster.kv import expiring_bucket

__all__ = ["Lease", "Leases"]

DEFAULT_BUCKET = "hbsm-leases"


@dataclass(frozen=True, slots=True)
class Lease:
    service: str
    node: str
    revision: int  # the KV revision of the write that holds it; renewing needs it


class Leases:
    """The leases of one node, `node`, in the bucket `bucket`. `await Leases.open(js, ...)`."""

    def __init__(self, kv: KeyValue, node: str, ttl: float, bucket: str = DEFAULT_BUCKET) -> None:
        self.kv = kv
        self.bucket = bucket
        self.node = node
        self.ttl = ttl
        self.held: dict[str, Lease] = {}

    @classmethod
    async def open(
        cls, js: JetStreamContext, node: str, *, ttl: float, bucket: str = DEFAULT_BUCKET
    ) -> Leases:
        """The bucket, made if missing (its entries expire `ttl` s after their last write)."""
        return cls(await expiring_bucket(js, bucket, ttl), node, ttl, bucket)

    async def take(self, service: str) -> Lease | None:
        """The lease of `service` if it was free (None: another node holds it)."""
        key, me = _key(service), self.node.encode()
        try:
            revision = await self.kv.create(key, me)
        except nats.js.errors.KeyWrongLastSequenceError:
            # Held. By this node's last run, killed and started again within the ttl? Node
            # names are unique in a cluster: then it is ours to keep, not to wait out.
            try:
                entry = await self.kv.get(key)
                if entry.value != me or entry.revision is None:
                    return None
                revision = await self.kv.update(key, me, last=entry.revision)
            except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyWrongLastSequenceError):
                return None  # expired or moved meanwhile: the next round tries again
        lease = self.held[service] = Lease(service, self.node, revision)
        return lease

    async def renew(self, service: str) -> Lease | None:
        """Keep a lease this node holds for another `ttl` (None: it was lost meanwhile, expired
        and taken, say; this node must stop deciding for the service)."""
        held = self.held.get(service)
        if held is None:
            return None
        try:
            revision = await self.kv.update(_key(service), self.node.encode(), last=held.revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            del self.held[service]
            return None
        lease = self.held[service] = Lease(service, self.node, revision)
        return lease

    async def release(self, service: str) -> None:
        """Give a held lease up at once (a handover to the node that should own it)."""
        held = self.held.pop(service, None)
        if held is None:
            return
        # Already lost (written by another since): nothing of ours to give up.
        with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):
            await self.kv.delete(_key(service), last=held.revision)

    async def owner(self, service: str) -> str | None:
        """The node holding `service`'s lease now (None: nobody)."""
        try:
            entry = await self.kv.get(_key(service))
        except nats.js.errors.KeyNotFoundError:
            return None
        return entry.value.decode() if entry.value else None


def _key(service: str) -> str:
    # KV keys allow letters, digits, "-", "_", "=", "/" and "." (a token separator; fine).
    return service
