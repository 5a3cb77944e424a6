"""The JetStream event store (hbsm.log.jetstream) against a real nats-server: the whole store
contract, and what only a shared stream can get wrong: a second writer, a retried flush, a
server that is not there."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from support.clock import ManualClock
from support.nats_server import NatsServer
from support.waiting import wait_for_sync

from hbsm.log import EventStore, LogError, LogUnavailableError
from hbsm.log.jetstream import JetStreamLog, JetStreamWriterError
from hbsm.log.jetstream_io import LoopThread
from log.log_support import probes, seqs
from log.store_contract import EventStoreContract

_names = (f"T{n}" for n in itertools.count())


@pytest.fixture
def server(module_nats_server: NatsServer) -> NatsServer:
    return module_nats_server


class TestJetStreamLog(EventStoreContract):
    @pytest.fixture(autouse=True)
    def _server(self, server: NatsServer) -> None:
        self.server = server

    def make_store(self, tmp_path: Path, clock: ManualClock) -> EventStore:
        # A stream of its own per test, on the one server of the module.
        return JetStreamLog.open(self.server.url, stream=next(_names), clock=clock)


def test_a_second_writer_is_refused_not_interleaved(server):
    stream = next(_names)
    with JetStreamLog.open(server.url, stream=stream) as first:
        first.append(probes(2))
        first.flush()
        with JetStreamLog.open(server.url, stream=stream) as second:
            assert second.last_seq == 2  # it resumes from the stream
            second.append(probes(1))
            second.flush()  # seq 3: the stream's next
            first.append(probes(1))  # also seq 3, from a writer that lost track
            with pytest.raises(JetStreamWriterError, match="another writer"):
                first.flush()
            assert seqs(list(second.read())) == [1, 2, 3]


def test_a_reopened_stream_goes_on_from_its_last_seq(server):
    stream = next(_names)
    with JetStreamLog.open(server.url, stream=stream) as log:
        log.append(probes(3))
    with JetStreamLog.open(server.url, stream=stream) as log:
        assert log.last_seq == 3
        assert seqs(log.append(probes(1))) == [4]
        log.flush()
        assert seqs(list(log.read(after_seq=2))) == [3, 4]


def test_no_server_is_a_log_error_naming_where():
    with pytest.raises(LogError, match=r"nats://127\.0\.0\.1:1.*cannot connect"):
        JetStreamLog.open("nats://127.0.0.1:1", timeout=2)


def test_several_urls_reach_whichever_server_answers(server):
    # Comma-separated, as `hbsm run --store` takes them: one of them down is not a failure.
    with JetStreamLog.open(f"nats://127.0.0.1:1, {server.url}", stream=next(_names)) as log:
        log.append(probes(1))
        log.flush()
        assert seqs(list(log.read())) == [1]


def test_a_server_gone_and_back_is_an_outage_then_nothing_lost_or_doubled(tmp_path):
    server = NatsServer(tmp_path / "nats").start()
    try:
        with JetStreamLog.open(server.url, stream="OUTAGE", timeout=5) as log:
            log.append(probes(2))
            log.flush()
            server.stop()
            wait_for_sync(lambda: not log.connected, "the client noticed")
            log.append(probes(2))
            with pytest.raises(LogUnavailableError, match="not connected"):
                log.flush()  # at once: the monitor's loop is not held for the timeout
            server.start()  # the same port and files: the stream is still there
            wait_for_sync(lambda: log.connected, "reconnected", 30)
            log.flush()  # what was kept, now written
            assert seqs(list(log.read())) == [1, 2, 3, 4]
    finally:
        server.stop()


def test_a_wait_without_its_own_deadline_that_times_out_is_a_log_error():
    # A read waits with no deadline of its own (each step bounds itself); one of those steps
    # timing out is said in words, not a TypeError from formatting the missing deadline.
    io = LoopThread("hbsm-test-loop")

    async def times_out() -> None:
        raise TimeoutError

    try:
        with pytest.raises(LogError, match="reading: no answer in time"):
            io.run(times_out(), None, "reading")
    finally:
        io.stop()
