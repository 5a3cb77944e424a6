"""The contract every EventStore must pass (the file log, the in-memory reference, and later a
replicated stream). A store may open segments with `snapshot` events of its own; the contract is
about the events callers append, so those are set aside where the tests compare."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.clock import ManualClock

from hbsm.events import Admin, Probe, RestartStarted, Transition
from hbsm.log import EventStore, FileEventLog, LogError, MemoryEventLog

from .log_support import probes, seqs, without_snapshots


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(params=["memory", "file", "file-rotating"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> Iterator[EventStore]:
    made: EventStore
    if request.param == "memory":
        made = MemoryEventLog(clock=clock)
    elif request.param == "file":
        made = FileEventLog.open(tmp_path / "events" / "heartbeat.jsonl", clock=clock)
    else:
        # Segments of ~1.5 KB: most flushes below rotate, so the contract holds across them.
        made = FileEventLog.open(tmp_path / "heartbeat.jsonl", clock=clock, max_bytes=1500)
    yield made
    made.close()


def test_append_stamps_increasing_seq_from_one(store: EventStore) -> None:
    assert store.last_seq == 0
    first = store.append(probes(3))
    second = store.append(probes(2))
    assert seqs(first) == [1, 2, 3]
    assert seqs(second) == [4, 5]
    assert store.last_seq == 5
    assert [e.service for e in first] == ["svc-0", "svc-1", "svc-2"]  # type: ignore[attr-defined]


def test_append_stamps_ts_only_where_it_is_zero(store: EventStore, clock: ManualClock) -> None:
    clock.now = 1234.5
    stamped = store.append([Probe(service="a", ok=True), Probe(service="b", ok=True, ts=99.0)])
    assert [e.ts for e in stamped] == [1234.5, 99.0]


def test_append_nothing_changes_nothing(store: EventStore) -> None:
    store.append(probes(2))
    assert store.append([]) == []
    assert store.last_seq == 2


def test_flushed_events_read_back_equal_and_in_order(store: EventStore) -> None:
    appended = store.append(
        [
            Probe(service="api", ok=False, latency_ms=None, status=503, error="http_5xx"),
            Transition(service="api", src="healthy", dst="degraded", trigger="probe", failures=1),
            RestartStarted(service="api", attempt=1, cooldown_s=300.0, recent=[1.0, 2.5]),
            Admin(action="pause", service="api", who="ops", source="127.0.0.1"),
        ]
    )
    appended += store.append(probes(50))
    store.flush()
    assert without_snapshots(list(store.read())) == appended


def test_read_after_seq(store: EventStore) -> None:
    store.append(probes(30))
    store.flush()
    assert seqs(without_snapshots(list(store.read(after_seq=17)))) == list(range(18, 31))
    assert list(store.read(after_seq=30)) == []
    assert list(store.read(after_seq=1000)) == []


def test_follow_from_the_end_sees_exactly_the_new_events(store: EventStore) -> None:
    store.append(probes(5))
    store.flush()
    follower = store.follow(store.last_seq)
    try:
        assert follower.poll() == []
        new = store.append(probes(7, prefix="new"))
        store.flush()
        assert without_snapshots(follower.poll()) == new
        assert follower.poll() == []
    finally:
        follower.close()


def test_follow_sees_every_batch_once_in_order(store: EventStore) -> None:
    follower = store.follow(0)
    seen = []
    appended = []
    for batch in range(20):
        appended += store.append(probes(batch % 4 + 1, prefix=f"b{batch}"))
        store.flush()
        if batch % 3 == 0:
            seen += follower.poll()
    seen += follower.poll()
    follower.close()
    assert without_snapshots(seen) == appended
    assert seqs(seen) == sorted(set(seqs(seen)))


def test_follow_from_the_middle_of_the_history(store: EventStore) -> None:
    store.append(probes(40))
    store.flush()
    with store.follow(25) as follower:
        assert seqs(without_snapshots(follower.poll())) == list(range(26, 41))


def test_follow_from_zero_replays_the_history_then_continues(store: EventStore) -> None:
    old = store.append(probes(10))
    store.flush()
    with store.follow(0) as follower:
        assert without_snapshots(follower.poll()) == old
        new = store.append(probes(3, prefix="late"))
        store.flush()
        assert without_snapshots(follower.poll()) == new


def test_followers_are_independent(store: EventStore) -> None:
    store.append(probes(4))
    store.flush()
    with store.follow(0) as one, store.follow(2) as two:
        assert seqs(without_snapshots(one.poll())) == [1, 2, 3, 4]
        store.append(probes(1))
        store.flush()
        assert seqs(without_snapshots(two.poll())) == [3, 4, 5]
        assert seqs(without_snapshots(one.poll())) == [5]


def test_close_is_idempotent_and_ends_writing(store: EventStore) -> None:
    store.append(probes(2))
    store.close()
    store.close()
    with pytest.raises(LogError):
        store.append(probes(1))
    with pytest.raises(LogError):
        store.flush()


def test_close_keeps_what_was_appended(store: EventStore) -> None:
    appended = store.append(probes(6))
    store.close()
    assert without_snapshots(list(store.read())) == appended


def test_a_store_says_where_it_writes_and_what_it_has_not_written(
    store: EventStore, tmp_path: Path
) -> None:
    # Both are named in the monitor's message when the store refuses writes at shutdown.
    assert store.where
    if isinstance(store, FileEventLog):
        assert store.where == str(store.path) and store.where.startswith(str(tmp_path))
    store.append(probes(2))
    pending = store.unwritten_bytes
    store.flush()
    if pending is not None:  # a store that can tell: the appended bytes, then none
        assert pending > 0 and store.unwritten_bytes == 0
    else:
        assert store.unwritten_bytes is None
