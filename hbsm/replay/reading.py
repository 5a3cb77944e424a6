"""Reading the FILEs of `hbsm replay` as histories: what is refused at once (a directory, a
file that cannot be a log, one the user may not read), how read errors read on stderr, the
notices of what was skipped or read across, and finding the line of an event for an error.
With hbsm.replay.command, the only modules of `hbsm.replay` that do I/O.
"""

from __future__ import annotations

import codecs
import gzip
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from hbsm.errors import HbsmError
from hbsm.events import Event, EventDecodeError, OpaqueEvent, decode
from hbsm.log import CorruptLineError, LogError, ReadStats, read_blocks, segment_paths
from hbsm.log.errors import SeqHole, SeqHoleError
from hbsm.replay.analysis import Hole, TornLine
from hbsm.replay.fold import paused_gc

__all__ = ["PROG", "BadInput", "Reading", "err", "locate"]

PROG = "hbsm replay"


class BadInput(HbsmError):
    """One line for stderr; exit 2."""


def err(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def _sniff(path: Path, skip_bad: bool) -> None:
    """Refuse at once a plain file that cannot be an event log (an image, a text file)."""
    try:
        # Fix (tests/reliability): Path.is_dir lets EACCES through (a log in a directory the
        # user may not search): a PermissionError traceback.
        mode = path.stat().st_mode
    except FileNotFoundError:
        return  # the reader names what is missing (a log may be only its closed segments)
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise BadInput(
            f"{path}: is a directory; name the log file, e.g. {path / 'heartbeat.jsonl'}"
        )
    if skip_bad or path.name.endswith(".gz") or not stat.S_ISREG(mode):
        return  # the reader says what is wrong with those
    try:
        with open(path, "rb") as f:
            head = f.read(64).removeprefix(codecs.BOM_UTF8).lstrip()
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror or exc}") from None
    if head and not head.startswith(b"{"):
        raise BadInput(f"{path}: not an hbsm event log (it does not start with a JSON object)")


# How the reader words a .gz segment it cannot decompress: the file is a log, but damaged.
_DAMAGED = "damaged compressed segment"


def _read_error(path: Path, exc: BaseException) -> BadInput:
    if isinstance(exc, SeqHoleError):
        return BadInput(f"{exc.path}:{exc.line}: {exc.reason}; --skip-bad replays across it")
    if isinstance(exc, CorruptLineError):
        if exc.line == 1 and not exc.reason.startswith(_DAMAGED):
            return BadInput(f"{exc.path}:1: not an hbsm event log ({exc.reason})")
        return BadInput(f"{exc.path}:{exc.line}: {exc.reason}")
    if isinstance(exc, OSError):
        return BadInput(f"{exc.filename or path}: {exc.strerror or exc}")
    return BadInput(" ".join(str(exc).split()))


# Skipped lines named one by one on stderr before the count of them all.
_BAD_SHOWN = 5


class Reading:
    """Reads FILEs in order as one history, feeding batches to `consume`."""

    def __init__(self, files: list[str], skip_bad: bool) -> None:
        self.files = files
        self.skip_bad = skip_bad
        self.stats: list[ReadStats] = []
        self.current: Path | None = None
        # Told of each hole read across (--skip-bad), before the batch that follows it.
        self.on_hole: Callable[[SeqHole], object] = lambda hole: None

    def run(self, consume: Callable[[list[Event | OpaqueEvent]], bool]) -> None:
        """`consume` returns False to stop early. Raises BadInput."""
        with paused_gc():
            self._run(consume)

    def _run(self, consume: Callable[[list[Event | OpaqueEvent]], bool]) -> None:
        for name in self.files:
            path = self.current = Path(name)
            _sniff(path, self.skip_bad)
            stats = ReadStats()
            self.stats.append(stats)
            holes = 0
            try:
                for batch in read_blocks(path, skip_bad=self.skip_bad, stats=stats):
                    while holes < len(stats.holes):
                        self.on_hole(stats.holes[holes])
                        holes += 1
                    if not consume(batch):
                        return
            except (LogError, OSError) as exc:
                raise _read_error(path, exc) from None
            if self.skip_bad and stats.events == 0 and (stats.skipped or stats.torn):
                raise BadInput(
                    f"{path}: not an hbsm event log (no event in it; "
                    f"{stats.skipped} bad lines skipped)"
                )

    @property
    def skipped(self) -> int:
        return sum(s.skipped for s in self.stats)

    @property
    def torn(self) -> list[TornLine]:
        return [TornLine(str(p), off, cut) for s in self.stats for (p, off, cut) in s.torn]

    @property
    def segments(self) -> int:
        return sum(s.segments for s in self.stats)

    @property
    def holes(self) -> list[Hole]:
        return [Hole.of(hole) for s in self.stats for hole in s.holes]

    def where(self, seq: int) -> str:
        """The file and line of the event `seq`, for an error naming it (the file only if the
        line is not found)."""
        path = self.current or Path(self.files[0])
        found = locate(path, seq)
        return f"{found[0]}:{found[1]}" if found else str(path)

    def notices(self) -> None:
        for stats in self.stats:
            for path, line, reason in stats.damaged:
                err(
                    f"notice: {path}:{line}: {reason}: skipped from this line to its end "
                    "(--skip-bad; counted as one bad line)"
                )
        for hole in self.holes:
            err(
                f"notice: {hole.path}:{hole.line}: {hole.message}; replayed across it "
                "(--skip-bad): incidents open across it are marked and left out of MTTR"
            )
        for t in self.torn:
            err(
                f"notice: {t.path}: ignored a torn last line ({t.cut_bytes} bytes at offset "
                f"{t.offset}): the writer stopped mid-line or is writing it now"
            )
        bad = [b for stats in self.stats for b in stats.bad]
        for path, line, reason in bad[:_BAD_SHOWN]:
            err(f"notice: {path}:{line}: {reason}: skipped (--skip-bad)")
        if self.skipped:
            err(f"notice: skipped {self.skipped} bad line(s) (--skip-bad)")


def _open(path: Path) -> BinaryIO:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def locate(path: Path, seq: int) -> tuple[Path, int] | None:
    """The file and line of the event `seq` in the log at `path`, looked up on the error path
    only (the readers do not count lines for the events they deliver)."""
    needle = b'"seq":%d' % seq
    candidates = [path] if path.name.endswith(".gz") else [*segment_paths(path), path]
    for candidate in candidates:
        try:
            stream = _open(candidate)
        except OSError:
            continue
        with stream:
            try:
                for number, line in enumerate(stream, start=1):
                    if needle in line:
                        try:
                            if decode(line).seq == seq:
                                return candidate, number
                        except EventDecodeError:
                            continue
            except (OSError, EOFError):
                continue
    return None
