"""The log several nodes write: `SharedStreamLog`, one JetStream stream for a cluster.

A single `hbsm run` numbers its own events (hbsm.log.jetstream). Several nodes cannot: each
publishes its events without a seq and the stream numbers them as it takes them (readers get
the stream's sequence as `seq`: hbsm.log.jetstream_read.event_of). What keeps two nodes from
deciding about one service is the fence on its subject:

* a service's decisions and facts (`hbsm.<stream>.svc.<service>`) are written by the node that
  holds its lease only, each message with `Nats-Expected-Last-Subject-Sequence`: the subject's
  last sequence as this node knows it. A node that lost the lease (it was partitioned, the lease
  expired, another node wrote since) is refused at its first write, and learns it: the service
  is then in `take_refused()`, and its decisions in that flush are void;
* what any node saw of a service it does not own (`probe.seen`) goes to
  `hbsm.<stream>.seen.<service>`, and a node's own events (started, stopped, outages) to
  `hbsm.<stream>.node.<node>`: unfenced, any node may write them.

Messages of one fenced subject are published one after the other (each needs the sequence the
last one got); different subjects go in parallel. Every message carries a `Nats-Msg-Id` of this
writer's (node, run, count), so a flush retried after a timeout is not written twice.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from typing import Any

import msgspec
import nats.errors

from hbsm._event_codec import encode
from hbsm.events import Event, ProbeSeen
from hbsm.log.errors import LogError, LogUnavailableError
from hbsm.log.jetstream import JetStreamLog, subject_of

__all__ = ["SharedStreamLog"]

# The server's answer to a message whose expected last (subject) sequence is not the last.
_WRONG_LAST_SEQUENCE = 10071


class SharedStreamLog(JetStreamLog):
    """`SharedStreamLog.open(url, node="a")`: node `a`'s writer of the cluster's stream."""

    shared = True

    def __init__(self, url: str, *, node: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.node = node
        self._run = secrets.token_hex(4)  # Msg-Ids of a new run never collide with the last's
        self._count = 0
        # service -> the last sequence of its subject this node knows: owned services only.
        self._fences: dict[str, int] = {}
        self._refused: dict[str, str] = {}
        self._queued: list[tuple[str, Event]] = []  # (Msg-Id, event) not yet taken

    # --- ownership ----------------------------------------------------------------------------

    def own(self, service: str, last_subject_seq: int) -> None:
        """Write `service`'s subject from here on, expecting it to be at `last_subject_seq`."""
        self._fences[service] = last_subject_seq

    def disown(self, service: str) -> None:
        self._fences.pop(service, None)

    def owns(self, service: str) -> bool:
        return service in self._fences

    def take_refused(self) -> dict[str, str]:
        """The services the stream refused this node's writes for since the last call (another
        node wrote them: the lease moved), each with why. Their queued events were dropped."""
        refused, self._refused = self._refused, {}
        return refused

    # --- writing ------------------------------------------------------------------------------

    def append(self, events: Sequence[Event]) -> list[Event]:
        """Buffer `events`, their ts stamped where 0 and their seq left 0: the stream numbers
        them. An event about a service this node does not own is refused here already."""
        self._check_open()
        now: float | None = None
        out: list[Event] = []
        for event in events:
            if not event.ts:
                now = now if now is not None else self._clock()
                event = msgspec.structs.replace(event, ts=now)
            out.append(event)
            service = _fenced_service(event)
            if service is not None and service not in self._fences:
                self._refused.setdefault(service, f"{self.node} does not own {service}")
                continue
            self._count += 1
            self._queued.append((f"{self.node}:{self._run}:{self._count}", event))
        return out

    def flush(self) -> None:
        self._check_open()
        if not self._queued:
            return
        if not self._connected:
            raise LogUnavailableError("not connected to its NATS server (reconnecting)")
        try:
            self._io.run(self._publish_all(), self.timeout, "publishing")
        except LogError as exc:  # no answer in time, or no connection: worth a retry
            raise LogUnavailableError(str(exc)) from None

    async def _publish_all(self) -> None:
        chains: dict[str, list[tuple[str, Event]]] = {}
        for item in self._queued:
            chains.setdefault(subject_of(self.prefix, item[1], self.node), []).append(item)
        taken: set[str] = set()  # Msg-Ids the stream has (or refused for good)
        try:
            await asyncio.gather(*(self._chain(s, items, taken) for s, items in chains.items()))
        except nats.errors.Error as exc:
            raise LogError(f"{self.where}: {str(exc) or type(exc).__name__}") from None
        finally:
            # Kept on a failure: the next flush sends the rest (the taken ones are not resent).
            self._queued = [item for item in self._queued if item[0] not in taken]

    async def _chain(self, subject: str, items: list[tuple[str, Event]], taken: set[str]) -> None:
        acks = self._acks
        assert acks is not None
        service = _fenced_service(items[0][1])
        if service is None:  # unfenced: pipelined
            futures = [await acks.publish(subject, _encoded(e), {"Nats-Msg-Id": i})
                       for i, e in items]  # fmt: skip
            for future, (msg_id, event) in zip(futures, items, strict=True):
                self._check(await future, event)
                taken.add(msg_id)
            return
        for msg_id, event in items:
            fence = self._fences.get(service)
            if fence is None:  # refused earlier in this chain: the rest is void too
                taken.add(msg_id)
                continue
            headers = {"Nats-Msg-Id": msg_id, "Nats-Expected-Last-Subject-Sequence": str(fence)}
            ack = await (await acks.publish(subject, _encoded(event), headers))
            error = ack.get("error")
            if error is not None and error.get("err_code") == _WRONG_LAST_SEQUENCE:
                self._fences.pop(service, None)
                self._refused[service] = (
                    f"another node wrote {service} since seq {fence}: its lease moved"
                )
                taken.add(msg_id)
                continue
            self._check(ack, event)
            self._fences[service] = int(ack["seq"])
            taken.add(msg_id)

    def _check(self, ack: dict[str, Any], event: Event) -> None:
        error = ack.get("error")
        if error is not None:
            what = type(event).__name__
            raise LogError(f"{self.where}: {what} refused: {error.get('description', error)}")


def _fenced_service(event: Event) -> str | None:
    """The service whose fenced subject `event` goes to (None: an unfenced subject)."""
    if isinstance(event, ProbeSeen):
        return None
    service: str | None = getattr(event, "service", None)
    return service or None


def _encoded(event: Event) -> bytes:
    # The seq is the stream's, known only once it takes the message. Written as 0, not left
    # out, so a reader that does not know this kind of event still finds one (OpaqueEvent).
    data = encode(event)
    return b'{"seq":0,' + data[1:] if event.seq == 0 else data
