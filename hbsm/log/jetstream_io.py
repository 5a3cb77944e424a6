"""The asyncio plumbing under the JetStream log (hbsm.log.jetstream): a loop on a thread of its
own for callers that are plain threads, and pipelined publishes whose every answer is kept."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from nats.aio.client import Client
from nats.aio.msg import Msg

from hbsm.log.errors import LogError

__all__ = ["Acks", "LoopThread"]

T = TypeVar("T")


class LoopThread:
    """An asyncio loop on a daemon thread, for a client whose callers are plain threads."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, work: Coroutine[Any, Any, T], timeout: float | None, what: str) -> T:
        """`work` on the loop, waited for here; at most `timeout` s (None: its own waits bound
        it, each step of a long read, say)."""
        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(work, timeout), self.loop)
        try:
            return future.result()
        except TimeoutError:
            within = f"within {timeout:g} s" if timeout is not None else "in time"
            raise LogError(f"{what}: no answer {within}") from None

    def submit(self, work: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """`work` on the loop, not waited for: a caller on another loop awaits
        `asyncio.wrap_future` of it, and goes on meanwhile."""
        return asyncio.run_coroutine_threadsafe(work, self.loop)

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        # What nats-py leaves running ends here, not as "Task was destroyed but it is pending"
        # at exit (an ordered consumer's heartbeat check outlives an unsubscribe that failed
        # on a closed connection).
        ended = asyncio.run_coroutine_threadsafe(_cancel_the_rest(), self.loop)
        with contextlib.suppress(Exception):
            ended.result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


async def _cancel_the_rest() -> None:
    tasks = asyncio.all_tasks() - {asyncio.current_task()}
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class Acks:
    """Pipelined publishes to the stream, each answered on an inbox of ours, at most `window`
    unanswered at a time. nats-py's own `publish_async` loses the answer of a refused message
    (its reply handler raises instead of failing the future, so the future never ends): this
    keeps every answer, refusals included, as the server's JSON."""

    def __init__(self, nc: Client, window: int) -> None:
        self._nc = nc
        self._room = asyncio.Semaphore(window)
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._inbox = nc.new_inbox()
        self._next = 0

    async def start(self) -> None:
        await self._nc.subscribe(f"{self._inbox}.*", cb=self._answered)

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str]
    ) -> asyncio.Future[dict[str, Any]]:
        await self._room.acquire()
        self._next += 1
        token = str(self._next)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[token] = future
        future.add_done_callback(lambda _: self._done(token))
        await self._nc.publish(subject, payload, reply=f"{self._inbox}.{token}", headers=headers)
        return future

    def abandon(self, why: str) -> None:
        """Answer every publish still unanswered with the error `why`: the connection they went
        out on is gone, and their answers with it (a retried flush sends them again)."""
        for future in list(self._waiting.values()):
            if not future.done():
                future.set_result({"error": {"description": why}})

    def _done(self, token: str) -> None:
        if self._waiting.pop(token, None) is not None:
            self._room.release()

    async def _answered(self, msg: Msg) -> None:
        future = self._waiting.get(msg.subject.rsplit(".", 1)[-1])
        if future is None or future.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":
            # No responders: no stream takes the subject, or the stream's servers are electing
            # its leader (its leader died): the same answer to the client, worth a retry.
            future.set_result(
                {"error": {"description": "no stream answers (none takes this subject, "
                           "or its leader is being elected)"}}
            )  # fmt: skip
            return
        try:
            future.set_result(json.loads(msg.data))
        except ValueError:
            future.set_result({"error": {"description": f"unreadable answer {msg.data[:80]!r}"}})
