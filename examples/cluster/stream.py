"""The demo's view of the cluster: the JetStream stream every node writes, read as it grows.

The demo learns everything it waits for from the stream, as an operator would (`hbsm
dashboard --store`): who owns each service (`service.owned`), each service's state
(`transition`), when a restart started (`restart.started`).
"""

from __future__ import annotations

from collections.abc import Callable

from hbsm.events import (
    Event,
    OpaqueEvent,
    RestartFinished,
    RestartStarted,
    ServiceOwned,
    Transition,
)
from hbsm.log import LogError
from hbsm.log.jetstream_read import JetStreamReader

__all__ = ["Watch"]

Say = Callable[[str, str, float | None], None]  # who, what, when (an event's ts, or now)


class Watch:
    """Reads what the nodes wrote since the last `update()`; says what matters as it goes:
    the transitions of the `followed` services, every restart, and, once `loud`, every
    change of owner."""

    def __init__(self, url: str, say: Say) -> None:
        self.url = url
        self.say = say
        self.events: list[Event | OpaqueEvent] = []
        self.owner: dict[str, str] = {}  # service -> node
        self.state: dict[str, str] = {}  # service -> its state
        self.followed: set[str] = set()  # the broken services
        self.loud = False
        self._reader: JetStreamReader | None = None

    def update(self) -> None:
        reader = self._reader or self._open()
        if reader is None:
            return  # no stream yet: no node has written
        after = self.events[-1].seq if self.events else 0
        try:
            new = reader.read(after)
        except LogError:
            self.close()  # the connection went: a new one at the next update
            return
        for event in new:
            self._take(event)

    def _open(self) -> JetStreamReader | None:
        try:
            self._reader = JetStreamReader.open(self.url, timeout=5.0)
        except LogError:
            return None
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _take(self, event: Event | OpaqueEvent) -> None:
        self.events.append(event)
        if isinstance(event, ServiceOwned):
            self.owner[event.service] = event.node
            if self.loud and event.previous != event.node:
                self.say(event.node, f"{event.service} {event.reason}", event.ts)
        elif isinstance(event, Transition):
            self.state[event.service] = event.dst
            if event.service in self.followed:
                who = self.owner.get(event.service, "?")
                self.say(who, f"{event.service} {event.src} -> {event.dst}", event.ts)
        elif isinstance(event, RestartStarted):
            who = self.owner.get(event.service, "?")
            self.say(who, f"{event.service} restart #{event.attempt} started", event.ts)
        elif isinstance(event, RestartFinished) and event.interrupted:
            who = self.owner.get(event.service, "?")
            what = "interrupted (its node died): counted as done"
            self.say(who, f"{event.service} restart {what}", event.ts)

    def owned_by(self, node: str) -> list[str]:
        return sorted(name for name, owner in self.owner.items() if owner == node)

    def restart_started(self, service: str, since: float) -> RestartStarted | None:
        """The first restart of `service` that started at or after `since`."""
        for event in self.events:
            if isinstance(event, RestartStarted) and event.service == service and event.ts >= since:
                return event
        return None
