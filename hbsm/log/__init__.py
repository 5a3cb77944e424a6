"""The event log: append, lock, rotate, follow, recover.

Everything outside this package goes through `EventStore` (append, flush, read, follow, close),
so a replicated stream can later stand in for the file. `FileEventLog` is the JSONL file on
disk, `MemoryEventLog` the in-memory reference, `read_history` and `LogFollower` the lock-free
readers the replay, the API and the dashboard use; `hbsm.log.fold.LogFold` folds a followed log
into a projection and hands its gaps back as values.

Exceptions: LogError ⊃ LogLockedError (another writer holds the lock), LogUnavailableError
(writes refused for now by something outside the process: a NATS server that does not answer),
CorruptLineError (a bad line, with file and line number; its subclass SeqHoleError in
hbsm.log.errors: a segment begins past the seq after the previous one's last, so events between
them are missing),
SegmentPrunedError (a follower fell behind retention: the segment it needed next was deleted;
`LogFollower.skip_pruned()` goes on past the loss). A bad argument (an unknown fsync policy,
say) is a ValueError.
"""

from hbsm.log.errors import CorruptLineError, LogError, LogLockedError, LogUnavailableError
from hbsm.log.file import FileEventLog
from hbsm.log.follower import LogFollower, SegmentPrunedError
from hbsm.log.memory import MemoryEventLog
from hbsm.log.reader import ReadStats, read_blocks, read_history
from hbsm.log.segments import segment_paths
from hbsm.log.store import EventStore, Follower, Position

__all__ = [
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
