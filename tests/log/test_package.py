"""The package's surface and layering (docs/architecture.md, layers: no UI or network imports in
hbsm.log)."""

from __future__ import annotations

import json

import hbsm.log
from hbsm.log import CorruptLineError, LogError, LogLockedError

from .log_support import python


def test_the_public_api_is_exactly_the_agreed_one() -> None:
    assert sorted(hbsm.log.__all__) == sorted(
        [
            "CorruptLineError",
            "EventStore",
            "FileEventLog",
            "Follower",
            "LogError",
            "LogFollower",
            "LogLockedError",
            "LogUnavailableError",
            "MemoryEventLog",
            "Position",
            "ReadStats",
            "SegmentPrunedError",
            "read_blocks",
            "read_history",
            "segment_paths",
        ]
    )
    for name in hbsm.log.__all__:
        assert getattr(hbsm.log, name) is not None


def test_errors_form_one_tree() -> None:
    assert issubclass(LogLockedError, LogError)
    assert issubclass(CorruptLineError, LogError)
    error = CorruptLineError("events/heartbeat.jsonl", 17, "not JSON:\n  bad byte")
    assert str(error) == "events/heartbeat.jsonl, line 17: not JSON: bad byte"
    locked = LogLockedError("events/heartbeat.jsonl", 1234)
    assert str(locked) == (
        "events/heartbeat.jsonl is locked by pid 1234 (another hbsm writer); "
        "stop it or use another --log"
    )


def test_importing_the_log_pulls_in_no_ui_network_or_asyncio() -> None:
    result = python(
        """
        import json, sys
        import hbsm.log
        print(json.dumps(sorted(sys.modules)))
        """
    )
    assert result.returncode == 0, result.stderr
    roots = {name.split(".")[0] for name in json.loads(result.stdout)}
    assert not roots & {"asyncio", "httpx", "textual", "anyio", "transitions"}
