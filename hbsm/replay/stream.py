"""Reading the history of `hbsm replay --store`: a log kept in a NATS JetStream stream, fed to
the replay as hbsm.replay.reading feeds a file's (the same `run`, notices and counts), so every
mode of the replay works on it unchanged.

The stream is read once, whole, as of the call (hbsm.export.store.read_store); a store that
cannot be read raises LogError, which the command says in one line, exit 3. A stream has no
torn line, bad line or segment, so --skip-bad changes nothing; a seq missing between two events
(a message deleted from the stream: hbsm's writer never leaves one) is refused, exit 2.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from hbsm.events import Event, OpaqueEvent
from hbsm.export.store import read_store
from hbsm.log.errors import SeqHole
from hbsm.replay.analysis import Hole, TornLine
from hbsm.replay.fold import paused_gc
from hbsm.replay.reading import BadInput

__all__ = ["StreamReading", "stream_name"]

# The replay folds a file block by block; a stream's history is fed in slices of this size.
_BATCH = 4096


def stream_name(url: str, stream: str) -> str:
    """How the report names a stream's history (where it names a file)."""
    return f"{url} (stream {stream})"


class StreamReading:
    """The history of `stream` at `url`, feeding batches to `consume` like `Reading`."""

    def __init__(self, url: str, stream: str) -> None:
        self.url, self.stream = url, stream
        self.name = stream_name(url, stream)
        self.files = [self.name]
        self.skipped = 0
        self.torn: list[TornLine] = []
        self.segments = 0
        self.holes: list[Hole] = []
        # Never called (a hole is refused), kept for the replay that sets it on any reading.
        self.on_hole: Callable[[SeqHole], object] = lambda hole: None

    def run(self, consume: Callable[[list[Event | OpaqueEvent]], bool]) -> None:
        """`consume` returns False to stop early. Raises BadInput, LogError."""
        history = list(read_store(self.url, self.stream))
        for before, after in itertools.pairwise(history):
            if after.seq != before.seq + 1:
                raise BadInput(_hole(self.name, before.seq + 1, after.seq - 1))
        with paused_gc():
            for start in range(0, len(history), _BATCH):
                if not consume(history[start : start + _BATCH]):
                    return

    def notices(self) -> None:
        """Nothing to say: a stream has no torn, bad or skipped line (a file's notices)."""

    def where(self, seq: int) -> str:
        """Where the event `seq` is, for an error naming it (which names the seq itself)."""
        return self.name


def _hole(name: str, first: int, last: int) -> str:
    seqs = f"seq {first} is" if first == last else f"seqs {first}..{last} are"
    return f"{name}: a hole in the history: {seqs} missing (deleted from the stream)"
