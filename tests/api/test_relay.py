"""The admin relay (hbsm.api.relay) on real abstract Unix sockets: a relayed action is answered
by the desk at the other end, byte for byte; nobody at the other end is a 503 naming who
monitors; a peer of another user gets nothing."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest

from hbsm.api.admin import AdminAsk, AdminDesk
from hbsm.api.refusals import RefusalLimiter
from hbsm.api.relay import RelayClient, RelayServer, relay_address
from hbsm.api.security import Decision
from hbsm.api.source import LogSource, NotRunning

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="abstract sockets: Linux only")

ALLOWED = Decision(True, "loopback", 200)
NOBODY = 65534


def served_log(tmp_path: Path) -> tuple[Path, AdminDesk]:
    """A desk over a log this process only reads: it answers every action, with a 409."""
    log = tmp_path / "events" / "heartbeat.jsonl"
    log.parent.mkdir()
    log.touch()
    return log, AdminDesk(LogSource(log), RefusalLimiter())


def test_one_log_one_address_however_it_is_spelled(tmp_path):
    (tmp_path / "events").mkdir()
    log = tmp_path / "events" / "heartbeat.jsonl"
    assert relay_address(log) == relay_address(tmp_path / "events" / ".." / "events" / log.name)
    assert relay_address(log) != relay_address(tmp_path / "other.jsonl")
    assert relay_address(log).startswith("\0")  # abstract: nothing left in the filesystem


async def test_a_relayed_action_is_answered_as_the_desk_answers_it(tmp_path):
    log, desk = served_log(tmp_path)
    server = RelayServer(log, desk)
    await server.start()
    try:
        client = RelayClient(log, lambda: "unused")
        relayed = await client.act(AdminAsk(b"", ALLOWED, ("127.0.0.1", 5000), "stop", None))
        direct = await desk.act(AdminAsk(b"", ALLOWED, ("127.0.0.1", 5000), "stop", None))
        assert relayed == direct and relayed.status == 409
        # A refusal travels as decided by the relaying process.
        refused = Decision(False, "anonymous", 403, "no token")
        assert (await client.act(AdminAsk(b"", refused, None, "stop", None))).status == 403
        bad = await client.act(AdminAsk(b"not json", ALLOWED, None, "start", None))
        assert bad == await desk.act(AdminAsk(b"not json", ALLOWED, None, "start", None))
        assert bad.status == 400
    finally:
        await server.close()


async def test_nobody_at_the_other_end_is_a_503_naming_who_monitors(tmp_path):
    log, _ = served_log(tmp_path)
    client = RelayClient(log, lambda: "the monitor of this app runs in another process (pid 7)")
    with pytest.raises(NotRunning, match=r"pid 7"):
        await client.act(AdminAsk(b"", ALLOWED, None, "stop", None))


async def test_a_second_server_for_one_log_cannot_listen(tmp_path):
    log, desk = served_log(tmp_path)
    first = RelayServer(log, desk)
    await first.start()
    try:
        with pytest.raises(OSError):
            await RelayServer(log, desk).start()
    finally:
        await first.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
async def test_a_peer_of_another_user_gets_nothing(tmp_path):
    log, desk = served_log(tmp_path)
    server = RelayServer(log, desk)
    await server.start()
    try:
        pid = os.fork()
        if pid == 0:  # the child: another user, asking for a stop
            code = 3
            report = (tmp_path / "child.err").open("w")  # opened while still root
            try:
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as peer:
                    peer.settimeout(10)
                    peer.connect(server.address)
                    try:
                        peer.sendall(
                            b'{"action":"stop","service":null,"body":"","allowed":true,'
                            b'"who":"loopback","status":200,"message":"","client":null}\n'
                        )
                        answer = peer.recv(65536)
                    except (BrokenPipeError, ConnectionResetError):  # closed on us, unread
                        answer = b""
                    code = 0 if answer == b"" else 1  # no answer
            except BaseException as exc:  # what went wrong, for the parent's message
                report.write(repr(exc))
                report.flush()
                raise
            finally:
                os._exit(code)
        _, status = await asyncio.to_thread(os.waitpid, pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, (tmp_path / "child.err").read_text()
    finally:
        await server.close()
