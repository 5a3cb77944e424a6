"""The contract every EventStore must pass, as a base class each store's tests subclass (the
in-memory reference and the file log in tests/log/test_store_contract.py, and later a
replicated stream). A store may open segments with `snapshot` events of its own; the contract is
about the events callers append, so those are set aside where the tests compare.

A new store gets the whole contract by subclassing `EventStoreContract` in a test module of its
own (named test_*.py, the class Test*) and saying how to make one::

    from pathlib import Path

    from support.clock import ManualClock

    from hbsm.log import EventStore
    from log.store_contract import EventStoreContract


    class TestReplicatedEventLog(EventStoreContract):
        def make_store(self, tmp_path: Path, clock: ManualClock) -> EventStore:
            return ReplicatedEventLog.open(tmp_path / "replicas", clock=clock)

`make_store` gets a fresh directory and the test's clock, and returns an empty store that stamps
`ts` from that clock; the base class closes it after each test. The import works from any test
folder: tests/conftest.py puts tests/ on sys.path, so this module is `log.store_contract`
everywhere. This module is not collected on its own (its name is not test_*.py, and the base
class's is not Test*), so the contract runs once per subclass and never without a store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.clock import ManualClock

from hbsm.events import Admin, Probe, RestartStarted, Transition
from hbsm.log import EventStore, FileEventLog, LogError
from log.log_support import probes, seqs, without_snapshots


class EventStoreContract(ABC):
    """The contract's tests; a subclass provides the store under test with `make_store`."""

    @abstractmethod
    def make_store(self, tmp_path: Path, clock: ManualClock) -> EventStore:
        """A new, empty store that writes under `tmp_path` (if it writes anywhere) and stamps
        `ts` from `clock`."""

    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock()

    @pytest.fixture
    def store(self, tmp_path: Path, clock: ManualClock) -> Iterator[EventStore]:
        made = self.make_store(tmp_path, clock)
        yield made
        made.close()

    def test_append_stamps_increasing_seq_from_one(self, store: EventStore) -> None:
        assert store.last_seq == 0
        first = store.append(probes(3))
        second = store.append(probes(2))
        assert seqs(first) == [1, 2, 3]
        assert seqs(second) == [4, 5]
        assert store.last_seq == 5
        assert [e.service for e in first] == ["svc-0", "svc-1", "svc-2"]  # type: ignore[attr-defined]

    def test_append_stamps_ts_only_where_it_is_zero(
        self, store: EventStore, clock: ManualClock
    ) -> None:
        clock.now = 1234.5
        stamped = store.append([Probe(service="a", ok=True), Probe(service="b", ok=True, ts=99.0)])
        assert [e.ts for e in stamped] == [1234.5, 99.0]

    def test_append_nothing_changes_nothing(self, store: EventStore) -> None:
        store.append(probes(2))
        assert store.append([]) == []
        assert store.last_seq == 2

    def test_flushed_events_read_back_equal_and_in_order(self, store: EventStore) -> None:
        appended = store.append(
            [
                Probe(service="api", ok=False, latency_ms=None, status=503, error="http_5xx"),
                Transition(
                    service="api", src="healthy", dst="degraded", trigger="probe", failures=1
                ),
                RestartStarted(service="api", attempt=1, cooldown_s=300.0, recent=[1.0, 2.5]),
                Admin(action="pause", service="api", who="ops", source="127.0.0.1"),
            ]
        )
        appended += store.append(probes(50))
        store.flush()
        assert without_snapshots(list(store.read())) == appended

    def test_read_after_seq(self, store: EventStore) -> None:
        store.append(probes(30))
        store.flush()
        assert seqs(without_snapshots(list(store.read(after_seq=17)))) == list(range(18, 31))
        assert list(store.read(after_seq=30)) == []
        assert list(store.read(after_seq=1000)) == []

    def test_follow_from_the_end_sees_exactly_the_new_events(self, store: EventStore) -> None:
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

    def test_follow_sees_every_batch_once_in_order(self, store: EventStore) -> None:
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

    def test_follow_from_the_middle_of_the_history(self, store: EventStore) -> None:
        store.append(probes(40))
        store.flush()
        with store.follow(25) as follower:
            assert seqs(without_snapshots(follower.poll())) == list(range(26, 41))

    def test_follow_from_zero_replays_the_history_then_continues(self, store: EventStore) -> None:
        old = store.append(probes(10))
        store.flush()
        with store.follow(0) as follower:
            assert without_snapshots(follower.poll()) == old
            new = store.append(probes(3, prefix="late"))
            store.flush()
            assert without_snapshots(follower.poll()) == new

    def test_followers_are_independent(self, store: EventStore) -> None:
        store.append(probes(4))
        store.flush()
        with store.follow(0) as one, store.follow(2) as two:
            assert seqs(without_snapshots(one.poll())) == [1, 2, 3, 4]
            store.append(probes(1))
            store.flush()
            assert seqs(without_snapshots(two.poll())) == [3, 4, 5]
            assert seqs(without_snapshots(one.poll())) == [5]

    def test_close_is_idempotent_and_ends_writing(self, store: EventStore) -> None:
        store.append(probes(2))
        store.close()
        store.close()
        with pytest.raises(LogError):
            store.append(probes(1))
        with pytest.raises(LogError):
            store.flush()

    def test_close_keeps_what_was_appended(self, store: EventStore) -> None:
        appended = store.append(probes(6))
        store.close()
        assert without_snapshots(list(store.read())) == appended

    def test_a_store_says_where_it_writes_and_what_it_has_not_written(
        self, store: EventStore, tmp_path: Path
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
