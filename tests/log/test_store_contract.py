"""The EventStore contract (tests/log/store_contract.py) run against each store hbsm has: the
in-memory reference, the file log, and the file log rotating all the time."""

from __future__ import annotations

from pathlib import Path

from support.clock import ManualClock

from hbsm.log import EventStore, FileEventLog, MemoryEventLog
from log.store_contract import EventStoreContract


class TestMemoryEventLog(EventStoreContract):
    def make_store(self, tmp_path: Path, clock: ManualClock) -> EventStore:
        return MemoryEventLog(clock=clock)


class TestFileEventLog(EventStoreContract):
    def make_store(self, tmp_path: Path, clock: ManualClock) -> EventStore:
        return FileEventLog.open(tmp_path / "events" / "heartbeat.jsonl", clock=clock)


class TestRotatingFileEventLog(EventStoreContract):
    def make_store(self, tmp_path: Path, clock: ManualClock) -> EventStore:
        # Segments of ~1.5 KB: most flushes in the contract rotate, so it holds across them.
        return FileEventLog.open(tmp_path / "heartbeat.jsonl", clock=clock, max_bytes=1500)
