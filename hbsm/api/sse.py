"""`GET /events`: the log as server-sent events, so a remote dashboard can follow it.

    GET /events?since=SEQ        every event with seq > SEQ, then new ones as they are logged
    GET /events                  new events only (from the last one folded when it connects)
    Last-Event-ID: SEQ           (a reconnecting EventSource) wins over ?since

Each event is one SSE message: `id: <seq>`, `event: <type>`, `data: <the log line>`. A comment
line goes out every `heartbeat` seconds of silence, so proxies keep the connection and a client
notices a dead server. The stream ends when the client goes away (Starlette cancels it on the
ASGI disconnect message) or when the server shuts down (`closing` is set).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator

from hbsm.api.source import Source
from hbsm.events import Event, OpaqueEvent, encode, type_name
from hbsm.log import CorruptLineError, Follower, LogError

__all__ = ["MAX_SEQ", "event_stream", "format_event", "parse_seq"]

MAX_SEQ = 2**63 - 1
# Events per chunk written to the client: bounds the bytes built at once on a long catch-up.
_CHUNK = 512


def parse_seq(text: str | None) -> int | None:
    """A seq from a query parameter or header: a decimal integer 0 <= seq < 2**63. Raises
    ValueError for anything else (None stays None)."""
    if text is None:
        return None
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) > MAX_SEQ:
        raise ValueError(f"not a sequence number (a decimal integer >= 0): {text[:40]!r}")
    return int(text)


def format_event(event: Event | OpaqueEvent) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (
        event.seq,
        type_name(event).encode(),
        encode(event),
    )


async def event_stream(
    source: Source,
    after_seq: int,
    *,
    closing: threading.Event,
    heartbeat: float = 15.0,
    poll: float = 0.2,
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    follower: Follower = await asyncio.to_thread(source.follow, after_seq)
    pending: asyncio.Future[list[Event | OpaqueEvent]] | None = None
    try:
        yield b"retry: 2000\n: hbsm events after seq %d\n\n" % after_seq
        quiet_since = time.monotonic()
        while not closing.is_set():
            pending = loop.run_in_executor(None, follower.poll)
            try:
                # Shielded: a cancelled stream must not close the follower under a running poll.
                batch = await asyncio.shield(pending)
            except CorruptLineError:
                batch = []  # raised once, then passed over
            except LogError as exc:
                yield b"event: error\ndata: %s\n\n" % str(exc).replace("\n", " ").encode()
                return
            finally:
                if pending.done():
                    pending = None
            if batch:
                for i in range(0, len(batch), _CHUNK):
                    yield b"".join(format_event(e) for e in batch[i : i + _CHUNK])
                quiet_since = time.monotonic()
                continue
            if time.monotonic() - quiet_since >= heartbeat:
                yield b": keep-alive\n\n"
                quiet_since = time.monotonic()
            await asyncio.sleep(poll)
    finally:
        if pending is not None and not pending.done():
            pending.add_done_callback(lambda done: _close_after(done, follower))
        else:
            follower.close()


def _close_after(done: asyncio.Future[list[Event | OpaqueEvent]], follower: Follower) -> None:
    if not done.cancelled():
        done.exception()  # retrieved: nobody waits for this poll any more
    follower.close()
