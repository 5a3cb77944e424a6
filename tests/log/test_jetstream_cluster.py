"""The JetStream log (hbsm.log.jetstream) on an R3 stream of a three-server cluster, when the
server leading the stream is SIGKILLed while the writer is flushing.

Until the two servers left elect a new leader, nothing answers a publish: a flush raises
LogUnavailableError (an outage, which the monitor already rides out) and keeps its events; the
first flush after the election writes them. Whatever the old leader took before it died is
de-duplicated by Nats-Msg-Id, so the stream ends with every event once, at its own seq. How long
writes paused is printed (`pytest -s`), not asserted: it is the servers' election time.
"""

from __future__ import annotations

import threading
import time

import pytest
from support.nats_server import NatsCluster
from support.waiting import DEADLINE, wait_for_sync

from hbsm.events import Event, OpaqueEvent
from hbsm.log import LogError, LogUnavailableError
from hbsm.log.jetstream import JetStreamLog
from log.log_support import probes, seqs

pytestmark = pytest.mark.slow  # `just test-slow` (CI runs it)

STREAM = "R3"
BATCH = 20  # events per flush, as the monitor's batches of facts and decisions
KILL_AFTER = 1_000  # events written before the leader dies
TOTAL = 3_000  # events appended in all, so that as many are written after the election


def write_through(
    log: JetStreamLog, events: int, on_written: threading.Event
) -> tuple[list[float], set[str]]:
    """Append and flush `events` in batches, each flush retried until it works (bounded by the
    deadline); `on_written` is set once KILL_AFTER are written. The pauses (seconds from a
    flush's first failure to its success) and why the flushes failed."""
    pauses: list[float] = []
    reasons: set[str] = set()
    deadline = time.monotonic() + 3 * DEADLINE
    for start in range(0, events, BATCH):
        log.append(probes(BATCH, prefix=f"b{start}"))
        failed_at = None
        while True:
            try:
                log.flush()
                break
            except LogUnavailableError as exc:
                reasons.add(str(exc).rsplit(": ", 1)[-1])  # without the store and the seq
                failed_at = failed_at or time.monotonic()
                assert time.monotonic() < deadline, "writes never resumed"
                time.sleep(0.02)  # the monitor's outage retries every 0.2 s; finer here
        if failed_at is not None:
            pauses.append(time.monotonic() - failed_at)
        if start + BATCH >= KILL_AFTER:
            on_written.set()
    return pauses, reasons


@pytest.mark.parametrize("writer_on", ["the leader", "a follower"])
def test_the_stream_leader_killed_mid_flush_pauses_writes_and_loses_nothing(
    nats_cluster: NatsCluster, writer_on: str
) -> None:
    # The stream first, to learn its leader; then the writer connects where the case says. On
    # the leader, given its URL alone: the client reconnects to the servers the cluster told it
    # of. On a follower: given the two others, it is never disconnected, only unanswered.
    JetStreamLog.open(nats_cluster.url, stream=STREAM, replicas=3).close()
    leader = nats_cluster.index(nats_cluster.stream_leader(STREAM))
    others = [url for i, url in enumerate(nats_cluster.urls) if i != leader]
    url = nats_cluster.urls[leader] if writer_on == "the leader" else ",".join(others)
    with JetStreamLog.open(url, stream=STREAM, timeout=2) as log:
        written = threading.Event()
        # Killed from another thread, so the kill lands wherever the writer is: mid-flush with
        # publishes unanswered, most of the time.
        killer = threading.Thread(target=lambda: written.wait() and nats_cluster.kill(leader))
        killer.start()
        try:
            pauses, reasons = write_through(log, TOTAL, written)
        finally:
            written.set()
            killer.join()
        new_leader = nats_cluster.stream_leader(STREAM)
        print(f"\nwriter on {writer_on}: writes paused {sum(pauses):.2f} s "
              f"(flushes {', '.join(f'{p:.2f}' for p in pauses)} s); "
              f"leader {nats_cluster.names[leader]} -> {new_leader}; "
              f"flushes failed with: {'; '.join(sorted(reasons))}")  # fmt: skip
        assert pauses, "the kill did not interrupt a single flush"
        assert new_leader != nats_cluster.names[leader]
        # Read as soon as the stream answers: just after an election a read may find no one yet.
        events = wait_for_sync(lambda: _read(log), "the stream read back")
    # Every event once, in order, no hole: the seqs are 1..TOTAL and each carries the event
    # appended at that seq (batch `b<start>`, service `<batch>-<i>`).
    assert seqs(events) == list(range(1, TOTAL + 1))
    expected = [f"b{start}-{i}" for start in range(0, TOTAL, BATCH) for i in range(BATCH)]
    assert [getattr(e, "service", None) for e in events] == expected

    # The killed server back: it catches up from the others, a third copy again.
    nats_cluster.restart(leader)
    wait_for_sync(
        lambda: nats_cluster.replica_current(STREAM, nats_cluster.names[leader]),
        "the restarted server caught up",
    )


def _read(log: JetStreamLog) -> list[Event | OpaqueEvent] | None:
    try:
        return list(log.read())
    except LogError:
        return None
