"""The read-only reader of a JetStream log (hbsm.log.jetstream_read.JetStreamReader) against a
real nats-server: it reads and follows what a writer appends, it never makes a stream, and what
it cannot reach it says in a LogError naming the server and the stream."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from support.nats_server import NatsServer
from support.waiting import wait_for_sync

from hbsm.log import LogError
from hbsm.log.jetstream import JetStreamLog
from hbsm.log.jetstream_read import JetStreamReader
from log.log_support import probes, seqs

_names = (f"R{n}" for n in itertools.count())


def test_it_reads_and_follows_what_a_writer_appends(module_nats_server: NatsServer) -> None:
    url, stream = module_nats_server.url, next(_names)
    with JetStreamLog.open(url, stream=stream) as log, JetStreamReader.open(url, stream) as reader:
        log.append(probes(2))
        log.flush()
        follower = reader.follow()
        assert seqs(follower.poll()) == [1, 2]
        log.append(probes(3))
        log.flush()
        assert seqs(follower.poll()) == [3, 4, 5]
        assert follower.poll() == []
        assert seqs(reader.read(after_seq=3)) == [4, 5]
        assert seqs(reader.follow(after_seq=4).poll()) == [5]
        follower.close()


def test_it_never_makes_the_stream(module_nats_server: NatsServer) -> None:
    url, stream = module_nats_server.url, next(_names)
    for _ in range(2):  # the first attempt left nothing behind for the second to find
        with pytest.raises(LogError, match=f"{url}: no stream {stream} on this NATS server"):
            JetStreamReader.open(url, stream)
    with JetStreamLog.open(url, stream=stream) as log:
        assert log.last_seq == 0  # a new stream, the writer's own


def test_no_server_is_one_log_error_naming_server_and_stream() -> None:
    with pytest.raises(LogError) as raised:
        JetStreamReader.open("nats://127.0.0.1:1", "HBSM", timeout=2)
    message = str(raised.value)
    assert message.startswith("the JetStream stream HBSM at nats://127.0.0.1:1: cannot connect")
    assert "\n" not in message


def test_a_server_gone_ends_the_follow_with_a_log_error(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats").start()
    try:
        with JetStreamLog.open(server.url, stream="GONE") as log:
            log.append(probes(1))
        reader = JetStreamReader.open(server.url, "GONE")
        follower = reader.follow()
        assert seqs(follower.poll()) == [1]
        server.stop()
        wait_for_sync(lambda: not reader.connected, "the reader noticed")
        with pytest.raises(LogError, match=r"stream GONE at .*: following"):
            follower.poll()  # the caller opens a new reader and follows on from position 1
        assert follower.position == 1
        reader.close()
    finally:
        server.stop()
