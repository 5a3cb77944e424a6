"""Several hbsm nodes sharing one log on NATS JetStream (docs/cluster.md): who is alive
(`members`), who owns which service (`leases`: a lease per service in a KV bucket, expiring
unless renewed), who should (`placement`: rendezvous hashing over the live nodes), and when a
failure counts (`quorum`, pure). The monitor's side of it is hbsm/monitor/cluster.py."""

from __future__ import annotations

from hbsm.errors import HbsmError

__all__ = ["NotOwnerError"]


class NotOwnerError(HbsmError):
    """An action on a service another node owns: only its owner records and carries it out."""

    def __init__(self, service: str, owner: str | None) -> None:
        self.service = service
        self.owner = owner
        where = f"node {owner}" if owner else "another node (none holds its lease right now)"
        super().__init__(f"{service} is decided by {where}: send the action to its API")
