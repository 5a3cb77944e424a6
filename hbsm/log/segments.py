"""Where a log's files live, and what happens to a segment once it is closed.

For an active file `events/heartbeat.jsonl`:

    events/heartbeat.jsonl.lock            the writer's lock (holds its pid)
    events/heartbeat.jsonl.next            a new segment being prepared by a rotation
    events/heartbeat.00000003.jsonl        a closed segment not yet compressed
    events/heartbeat.00000003.jsonl.gz     a closed segment (numbers increase, oldest smallest)

The active file's segment number is the last closed one + 1 (0 when there is none).
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
from pathlib import Path
from typing import NamedTuple

from hbsm.log.errors import LogError

__all__ = [
    "ClosedSegment",
    "active_segment_number",
    "closed_segments",
    "compress_segment",
    "fsync_dir",
    "gz_segment_path",
    "lock_path",
    "next_path",
    "plain_segment_path",
    "prune_segments",
    "segment_paths",
]

# Level 1: on event JSONL it compresses ~9x at ~370 MB/s, against ~11x at ~140 MB/s for level 6
# (measured here). A writer appending >1M events/s must never wait for the previous segment's
# compression at the next rotation, so speed wins over the last 15% of disk.
_GZIP_LEVEL = 1
_COPY_CHUNK = 4 * 2**20


class ClosedSegment(NamedTuple):
    number: int
    path: Path  # the .jsonl.gz, or the plain .jsonl while it is still being compressed


def _pattern(path: Path) -> re.Pattern[str]:
    return re.compile(re.escape(path.stem) + r"\.(\d{8,})\.jsonl(\.gz)?")


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def next_path(path: Path) -> Path:
    return path.with_name(path.name + ".next")


def plain_segment_path(path: Path, number: int) -> Path:
    return path.with_name(f"{path.stem}.{number:08d}.jsonl")


def gz_segment_path(path: Path, number: int) -> Path:
    return path.with_name(f"{path.stem}.{number:08d}.jsonl.gz")


def closed_segments(path: Path) -> list[ClosedSegment]:
    """Closed segments, oldest first. When both forms of one number exist the .gz wins: it is
    renamed into place only once complete, and the plain file is deleted right after."""
    pattern = _pattern(Path(path))
    found: dict[int, Path] = {}
    try:
        names = os.listdir(Path(path).parent)
    except FileNotFoundError:
        return []
    except OSError as exc:
        # A directory the user may search but not list: the segments cannot be found, and a
        # history without them would silently start late.
        raise LogError(
            f"{Path(path).parent}: cannot list the log's directory (to find its closed "
            f"segments): {exc.strerror or exc}"
        ) from None
    for name in names:
        match = pattern.fullmatch(name)
        if match is None:
            continue
        number = int(match.group(1))
        if match.group(2) or number not in found:
            found[number] = Path(path).with_name(name)
    return [ClosedSegment(n, found[n]) for n in sorted(found)]


def segment_paths(path: str | os.PathLike[str]) -> list[Path]:
    """The closed segments of the log at `path`, oldest first."""
    return [segment.path for segment in closed_segments(Path(path))]


def active_segment_number(path: Path) -> int:
    closed = closed_segments(path)
    return closed[-1].number + 1 if closed else 0


def fsync_dir(directory: Path) -> None:
    # A rename is durable only once the directory entry is: fsync the directory itself.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def compress_segment(plain: Path, mode: int = 0o600) -> Path:
    """Gzip a closed plain segment: write `.gz.tmp`, fsync, rename into place, then delete the
    plain file, so a crash at any point leaves one complete copy (recovery redoes the rest).
    The `.gz` gets `mode` (the log's: see FileEventLog.open)."""
    final = plain.with_name(plain.name + ".gz")
    tmp = plain.with_name(plain.name + ".gz.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    with open(plain, "rb") as src, open(fd, "wb") as raw:
        with gzip.GzipFile(
            filename=plain.name, mode="wb", fileobj=raw, compresslevel=_GZIP_LEVEL
        ) as gz:
            shutil.copyfileobj(src, gz, _COPY_CHUNK)
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(tmp, final)
    fsync_dir(final.parent)
    plain.unlink()
    return final


def prune_segments(path: Path, keep: int) -> list[Path]:
    """Delete the oldest closed segments beyond `keep`; return what was deleted."""
    closed = closed_segments(path)
    doomed = closed[: max(0, len(closed) - keep)]
    removed: list[Path] = []
    for segment in doomed:
        # A number can exist in both forms for an instant during compression: remove both.
        for candidate in (
            gz_segment_path(path, segment.number),
            plain_segment_path(path, segment.number),
        ):
            try:
                candidate.unlink()
                removed.append(candidate)
            except FileNotFoundError:
                pass
    return removed
