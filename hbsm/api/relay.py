"""Admin actions relayed from the processes that serve a log to the one that writes it.

An app served by several processes (gunicorn workers) runs one monitor: the process holding
the event log's lock. The others serve the log it writes. An admin action (a POST) lands on
whichever process the server picks, so one that only serves the log relays the action to the
monitoring one and answers with what that one answered, byte for byte: a client cannot tell
which worker it reached.

The channel is a Unix socket in Linux's abstract namespace, named after the log's real path:
one name per log, found by every process that opens it, nothing in the filesystem to clean up
after a crash (the name goes with its process, and with an `exec`), no path length limit. An
abstract socket has no file permissions, so the monitor accepts only peers of its own user id
(SO_PEERCRED). The relaying process has already authorized the request (the processes of one
app share the config and its token); the monitor records and carries it out under that
decision, so a refused attempt is recorded (and rate-limited) by the monitor too.

Elsewhere than on Linux there is no relay: a process that only serves the log answers 503,
naming the one that monitors.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import struct
import sys
from collections.abc import Callable
from pathlib import Path

import msgspec

from hbsm.api.admin import AdminAsk, AdminDesk
from hbsm.api.answer import MAX_BODY, Answer
from hbsm.api.security import Decision
from hbsm.api.source import NotRunning

__all__ = ["RELAY_SUPPORTED", "RelayClient", "RelayServer", "relay_address"]

log = logging.getLogger("hbsm.api")

RELAY_SUPPORTED = sys.platform == "linux"
# One request or answer, as a JSON line: the body (base64) and a bounded answer.
_LINE_LIMIT = 4 * MAX_BODY
# How long the monitor waits for a relayed request once connected, and a relaying process for
# its answer (an admin action records an event: quick, unless the log's disk is stuck).
_READ_TIMEOUT = 5.0
ANSWER_TIMEOUT = 30.0
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class RelayedAction(msgspec.Struct, frozen=True):
    """An admin action as the relaying process received and authorized it."""

    action: str
    service: str | None
    body: bytes
    allowed: bool
    who: str
    status: int
    message: str
    client: tuple[str, int | None] | None


class RelayedAnswer(msgspec.Struct, frozen=True):
    status: int
    body: bytes
    media_type: str
    extra: dict[str, str] | None


_encoder = msgspec.json.Encoder()
_action_decoder = msgspec.json.Decoder(RelayedAction)
_answer_decoder = msgspec.json.Decoder(RelayedAnswer)


def relay_address(log_path: str | os.PathLike[str]) -> str:
    """The abstract socket name of the monitor writing `log_path` (its real path: two
    spellings of one log meet)."""
    real = os.path.realpath(Path(log_path))
    digest = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return f"\0hbsm-admin-{digest}"


class RelayServer:
    """The monitoring process's end: carries out relayed actions with its own AdminDesk. Runs
    on the monitor's loop (the desk's source is read there)."""

    def __init__(self, log_path: str | os.PathLike[str], desk: AdminDesk) -> None:
        self.address = relay_address(log_path)
        self.desk = desk
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen; raises OSError when the name is taken (another monitor of this log)."""
        self._server = await asyncio.start_unix_server(
            self._serve, path=self.address, limit=_LINE_LIMIT
        )

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), _READ_TIMEOUT)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            peer = writer.get_extra_info("socket")
            if peer is None or _peer_uid(peer) != os.getuid():
                log.warning("admin relay: refused a peer of another user")
                return
            line = await asyncio.wait_for(reader.readline(), _READ_TIMEOUT)
            asked = _action_decoder.decode(line)
            decision = Decision(asked.allowed, asked.who, asked.status, asked.message)
            answer = await self.desk.act(
                AdminAsk(asked.body, decision, asked.client, asked.action, asked.service)
            )
            extra = dict(answer.extra) if answer.extra else None
            relayed = RelayedAnswer(answer.status, answer.body, answer.media_type, extra)
            writer.write(_encoder.encode(relayed) + b"\n")
            await writer.drain()
        except (OSError, TimeoutError, ValueError, msgspec.DecodeError) as exc:
            # The relaying process gave up, or sent what it should not: it answers for itself.
            log.warning("admin relay: a relayed action failed: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class RelayClient:
    """A serving process's end: relays one action to the monitor of `log_path`. `elsewhere()`
    says who monitors, for the 503 when it cannot be reached (it ended, and nobody took over
    yet)."""

    def __init__(self, log_path: str | os.PathLike[str], elsewhere: Callable[[], str]) -> None:
        self.address = relay_address(log_path)
        self.elsewhere = elsewhere

    async def act(self, ask: AdminAsk) -> Answer:
        body, decision, client, action, service = ask
        asked = RelayedAction(
            action, service, body, decision.allowed, decision.who, decision.status,
            decision.message, client,
        )  # fmt: skip
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT):
                reader, writer = await asyncio.open_unix_connection(self.address, limit=_LINE_LIMIT)
                try:
                    writer.write(_encoder.encode(asked) + b"\n")
                    await writer.drain()
                    line = await reader.readline()
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
        except TimeoutError:
            raise NotRunning(
                f"the monitoring process did not answer within {ANSWER_TIMEOUT:g} s; "
                + self.elsewhere()
            ) from None
        except OSError:
            raise NotRunning(self.elsewhere()) from None
        if not line:  # it closed without an answer: it refused us, or it is stopping
            raise NotRunning(self.elsewhere())
        try:
            got = _answer_decoder.decode(line)
        except msgspec.DecodeError:
            raise NotRunning(
                f"the monitoring process answered garbage; {self.elsewhere()}"
            ) from None
        return Answer(got.status, got.body, got.media_type, got.extra)


def _peer_uid(sock: socket.socket) -> int:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    _pid, uid, _gid = _PEERCRED.unpack(raw)
    return int(uid)
