"""What the writer repairs when it opens a log after a crash.

* An interrupted rotation: a leftover `.next` (dropped if the active file was never renamed away,
  since its snapshot is redone by the next rotation; renamed into place if it was), plain closed
  segments still to compress, and half-written `.gz.tmp` files.
* A torn last line (no newline: the write was cut short): truncated away. The writer records it
  as a `log.recovered` event. Nothing was acknowledged for it: flush had not returned.
* The last seq, read backwards from the end rather than by reading the whole log.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import NamedTuple

from hbsm.events import EventDecodeError, decode
from hbsm.log.errors import CorruptLineError
from hbsm.log.reader import read_history
from hbsm.log.scan import complete_end, count_lines_at, last_newline_before
from hbsm.log.segments import closed_segments, fsync_dir, next_path, plain_segment_path

__all__ = ["Torn", "cut_torn_tail", "finish_rotation", "last_seq_before"]

_PREVIEW_BYTES = 60


class Torn(NamedTuple):
    offset: int
    cut_bytes: int
    preview: bytes


def finish_rotation(path: Path) -> list[Path]:
    """Complete or undo an interrupted rotation; return plain closed segments to compress."""
    pending = next_path(path)
    if pending.exists():
        if path.exists():
            pending.unlink()
        else:
            os.replace(pending, path)
        fsync_dir(path.parent)
    for tmp in glob.glob(glob.escape(str(path.with_name(path.stem))) + ".*.jsonl.gz.tmp"):
        os.unlink(tmp)
    plains: list[Path] = []
    for segment in closed_segments(path):
        plain = plain_segment_path(path, segment.number)
        if segment.path == plain:
            plains.append(plain)
        elif plain.exists():
            plain.unlink()  # the .gz is complete (renamed into place only once fsynced)
    return plains


def cut_torn_tail(fd: int, path: Path | None = None, *, skip_bad: bool = False) -> Torn | None:
    """Cut a torn last line (bytes after the last newline) and return what was cut.

    Only what a torn write of this log can leave is cut: the start of an event line, or the
    zeros a crash leaves where data was not written yet; and, unless `skip_bad`, only after
    an event as the last complete line. Anything else raises CorruptLineError and the file
    is left as it was.
    """
    size = os.fstat(fd).st_size
    end = complete_end(fd, size)
    if end == size:
        return None
    preview = os.pread(fd, min(size - end, _PREVIEW_BYTES), end)
    # Fix (tests/reliability): `--log notes.txt` (a file not ending in a newline) had its last
    # line cut as "torn", or, all on one line, the whole file replaced by an event log. A
    # reader error comes first now, and the file is not touched.
    where = Path("?") if path is None else path
    if not _torn_write(preview):
        raise CorruptLineError(
            where,
            count_lines_at(fd, end) + 1,
            f"the last line has no newline and is not the start of an event (it begins "
            f"{preview[:30]!r}): not cut, since this may not be an hbsm event log",
        )
    if end > 0 and not skip_bad:
        last_seq_before(where, fd, end, skip_bad=False)  # a bad last complete line: raises
    os.ftruncate(fd, end)
    os.fsync(fd)
    return Torn(end, size - end, preview)


# How every line this log writes begins (msgspec puts the tag field first).
_EVENT_START = b'{"type":"'


def _torn_write(head: bytes) -> bool:
    """Whether `head` (the start of a last line without its newline) can be a torn append."""
    if not head.strip(b"\0 \t\r"):
        return True  # zeros (a crash before the data reached the disk) or blanks
    n = min(len(head), len(_EVENT_START))
    return head[:n] == _EVENT_START[:n]


def last_seq_before(path: Path, fd: int, end: int, *, skip_bad: bool) -> int:
    """The seq of the last complete event before byte `end` of the active file, else of the
    newest closed segment, else 0. A bad last line is a CorruptLineError unless skip_bad."""
    pos = end
    while pos > 0:
        start = last_newline_before(fd, pos - 1) + 1
        line = os.pread(fd, pos - 1 - start, start)
        if line.strip():
            try:
                return decode(line).seq
            except EventDecodeError as exc:
                if not skip_bad:
                    number = count_lines_at(fd, start) + 1
                    raise CorruptLineError(path, number, exc.message) from None
        pos = start
    closed = closed_segments(path)
    if not closed:
        return 0
    # Rare (an active file emptied by hand or cut to nothing): read the newest segment.
    last = 0
    for event in read_history(closed[-1].path, skip_bad=True):
        last = event.seq
    return last
