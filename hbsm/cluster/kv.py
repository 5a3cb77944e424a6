"""The KV buckets of several nodes (`hbsm-nodes`, `hbsm-leases`): each entry expires `ttl`
seconds after its last write, so what a node stops rewriting (it died, it lost NATS) is gone
within the ttl, on the server's clock."""

from __future__ import annotations

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

__all__ = ["expiring_bucket"]


async def expiring_bucket(js: JetStreamContext, bucket: str, ttl: float) -> KeyValue:
    """The bucket, made if missing (one value per key, each expiring `ttl` after its write).
    One made before keeps the ttl it was made with."""
    try:
        return await js.key_value(bucket)
    except nats.js.errors.BucketNotFoundError:
        return await js.create_key_value(bucket=bucket, history=1, ttl=ttl)
