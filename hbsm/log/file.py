"""The event log as a JSONL file: one writer (locked), group-committed appends, crash recovery
and size-based rotation into numbered, compressed segments."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Self

import msgspec

from hbsm.events import Event, LogRecovered, OpaqueEvent, Snapshot
from hbsm.log.compressor import Compressor
from hbsm.log.durability import FsyncPolicy, Syncer, check_policy
from hbsm.log.errors import LogError
from hbsm.log.follower import LogFollower, position_after
from hbsm.log.lock import WriterLock
from hbsm.log.reader import read_history
from hbsm.log.recovery import cut_torn_tail, finish_rotation, last_seq_before
from hbsm.log.segments import (
    active_segment_number,
    fsync_dir,
    next_path,
    plain_segment_path,
    segment_paths,
)
from hbsm.log.store import EventStore, stamp

__all__ = ["FileEventLog"]

log = logging.getLogger("hbsm.log")

# Appends beyond this are written out (not fsynced) before flush, to bound the buffer's memory.
_WRITE_THRESHOLD = 4 * 2**20


def _restrict(path: Path, mode: int, fd: int | None = None) -> None:
    """Give the log's file `mode` whatever the umask (and whatever it had: an older hbsm made
    its logs 0644). A file the writer does not own stays as it is, with a warning."""
    try:
        if fd is not None:
            os.fchmod(fd, mode)
        else:
            os.chmod(path, mode)
    except FileNotFoundError:
        pass  # a segment pruned meanwhile
    except OSError as exc:
        log.warning("%s: cannot set its permissions to %o: %s", path, mode, exc.strerror)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class FileEventLog(EventStore):
    """Open with `FileEventLog.open(path, ...)`; one open writer per log (LogLockedError).

    Durability follows `fsync` (see hbsm.log.durability): under "batch" (the default) appends
    are buffered and each flush is one write and one fsync.

    Rotation: once a flush leaves the active file at `max_bytes` or more, the next append first
    closes the segment and opens a new one with a `snapshot` event from the `snapshot` callback
    (called with the new segment's number; the log sets its `segment`, `seq` and, if 0, `ts`).
    It runs at the next append rather than inside flush so that a caller that folds each batch
    before appending the next hands out a snapshot that matches the seq it gets.

    Beyond EventStore: `segment` (the active segment's number) and `fsyncs` (a count, for tests
    and the benchmark). One thread appends; readers and followers may run anywhere.
    """

    path: Path
    recovered: LogRecovered | None

    def __init__(
        self,
        path: Path,
        fd: int,
        lock: WriterLock,
        *,
        last_seq: int,
        segment: int,
        syncer: Syncer,
        max_bytes: int,
        keep_segments: int,
        snapshot: Callable[[int], Snapshot] | None,
        skip_bad: bool,
        clock: Callable[[], float],
        mode: int = 0o600,
    ) -> None:
        # Use FileEventLog.open: it takes the lock and recovers the file first.
        self.path = path
        self.last_seq = last_seq
        self.recovered = None
        self.segment = segment  # the active segment's number
        self._fd = fd
        self._lock = lock
        self._syncer = syncer
        self._max_bytes = max_bytes
        self._snapshot = snapshot
        self._skip_bad = skip_bad
        self._clock = clock
        self._encoder = msgspec.json.Encoder()
        self._buffer = bytearray()
        self._size = os.fstat(fd).st_size
        self._rotate_due = False  # set by open once recovery is recorded in this segment
        self._mode = mode
        self._compressor = Compressor(path, keep_segments, mode)
        self._closed = False

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        fsync: FsyncPolicy = "batch",
        fsync_interval: float = 1.0,
        max_bytes: int = 64 * 2**20,
        keep_segments: int = 10,
        snapshot: Callable[[int], Snapshot] | None = None,
        skip_bad: bool = False,
        clock: Callable[[], float] = time.time,
        mode: int = 0o600,
    ) -> Self:
        """`mode`: the permissions of the log and of every segment, 0600 by default (they name
        internal hosts and commands and hold repair output); files already there are brought
        to it too, so a log written before (0644) stops being readable by everyone."""
        policy = check_policy(fsync, fsync_interval)
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive; got {max_bytes!r}")
        if keep_segments < 0:
            raise ValueError(f"keep_segments must be 0 or more; got {keep_segments!r}")
        log_path = Path(path)
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LogError(f"{log_path}: cannot create its directory: {exc.strerror}") from exc
        lock = WriterLock(log_path)
        lock.acquire()
        fd = -1
        try:
            plains = finish_rotation(log_path)
            fd = os.open(log_path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, mode)
            _restrict(log_path, mode, fd)
            torn = cut_torn_tail(fd, log_path, skip_bad=skip_bad)
            end = os.fstat(fd).st_size
            last_seq = last_seq_before(log_path, fd, end, skip_bad=skip_bad)
            log = cls(
                log_path,
                fd,
                lock,
                last_seq=last_seq,
                segment=active_segment_number(log_path),
                syncer=Syncer(policy, float(fsync_interval), clock),
                max_bytes=max_bytes,
                keep_segments=keep_segments,
                snapshot=snapshot,
                skip_bad=skip_bad,
                clock=clock,
                mode=mode,
            )
            for segment in segment_paths(log_path):
                _restrict(segment, mode)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            lock.release()
            raise
        try:
            if plains:
                log._compressor.submit(plains)
            if torn is not None:
                detail = f"torn last line cut (no newline), it began {torn.preview!r}"
                recovered = LogRecovered(
                    path=str(log_path), offset=torn.offset, cut_bytes=torn.cut_bytes, detail=detail
                )
                (stamped,) = log._append_now([recovered])
                assert isinstance(stamped, LogRecovered)
                log.recovered = stamped
        except BaseException:
            log.close()
            raise
        log._rotate_due = log._size >= max_bytes
        return log

    @property
    def where(self) -> str:
        return str(self.path)

    @property
    def unwritten_bytes(self) -> int:
        """Bytes of appended events not yet written to the file (kept through a full disk)."""
        return len(self._buffer)

    @property
    def fsyncs(self) -> int:
        """fsyncs of the active file so far (one per flush under "batch")."""
        return self._syncer.fsyncs

    # -- EventStore -----------------------------------------------------------------------

    def append(self, events: Sequence[Event]) -> list[Event]:
        self._check_open()
        if not events:
            return []
        if self._rotate_due:
            try:
                self._rotate()
            except OSError:
                # Fix (tests/reliability): a full disk refused the new segment. Its file was
                # removed and nothing was renamed, so the events go on in this segment and
                # rotation is tried again at the next append after a successful flush.
                self._rotate_due = False
        stamped = stamp(events, self.last_seq, self._clock)
        self._buffer += self._encoder.encode_lines(stamped)
        self.last_seq = stamped[-1].seq
        if self._syncer.policy == "always":
            self.flush()
        elif len(self._buffer) >= _WRITE_THRESHOLD:
            # Fix (tests/reliability): once buffered, the events are the log's; a write that
            # fails here (a full disk) must not make the caller think they were refused. The
            # bytes stay buffered and the next flush reports the error.
            with contextlib.suppress(OSError):
                self._write_buffer()
        return stamped

    def flush(self) -> None:
        self._check_open()
        if self._write_buffer():
            self._rotate_due = self._size >= self._max_bytes
        self._syncer.after_flush(self._fd)

    def read(self, after_seq: int = 0) -> Iterator[Event | OpaqueEvent]:
        return read_history(self.path, skip_bad=self._skip_bad, after_seq=after_seq)

    def follow(self, after_seq: int = 0) -> LogFollower:
        start = position_after(self.path, after_seq)
        return LogFollower(self.path, start, after_seq=after_seq, skip_bad=self._skip_bad)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._write_buffer()
            if self._syncer.policy != "never" and self._syncer.dirty:
                self._syncer.sync(self._fd)
        finally:
            try:
                self._compressor.join()
            finally:
                os.close(self._fd)
                self._lock.release()

    # -- internals ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise LogError(f"{self.path}: event log is closed")

    def _write_buffer(self) -> bool:
        if not self._buffer:
            return False
        # Only what was written leaves the buffer: after a failed write (disk full) a retry
        # continues the same bytes, so the file never holds a line twice or half of one.
        written = 0
        try:
            with memoryview(self._buffer) as view:
                while written < len(view):
                    written += os.write(self._fd, view[written:])
        finally:
            if written:
                del self._buffer[:written]
                self._size += written
                self._syncer.dirty = True
        return True

    def _append_now(self, events: Sequence[Event]) -> list[Event]:
        """Append and make durable whatever the policy (recovery records must survive)."""
        stamped = self.append(events)
        self._write_buffer()
        if self._syncer.dirty:
            self._syncer.sync(self._fd)
        return stamped

    def _rotate(self) -> None:
        self._rotate_due = False
        self._write_buffer()
        # Whatever the policy, a segment is complete on disk before it is renamed away.
        if self._syncer.dirty:
            self._syncer.sync(self._fd)
        number = self.segment + 1
        opening = self._snapshot(number) if self._snapshot is not None else Snapshot()
        opening = msgspec.structs.replace(
            opening, segment=number, seq=self.last_seq + 1, ts=opening.ts or self._clock()
        )
        line = self._encoder.encode(opening) + b"\n"
        pending = next_path(self.path)
        flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(pending, flags, self._mode)
        _restrict(pending, self._mode, fd)
        closed = plain_segment_path(self.path, self.segment)
        try:
            _write_all(fd, line)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            pending.unlink(missing_ok=True)
            raise
        # From here the files are mid-rotation: a failure leaves them for the next open to
        # finish (recovery), and this writer stops rather than append to a renamed file.
        try:
            os.rename(self.path, closed)
            os.rename(pending, self.path)
            fsync_dir(self.path.parent)
        except OSError as exc:
            os.close(fd)
            self._abandon()
            raise LogError(
                f"{self.path}: rotation failed ({exc.strerror}); the log is closed, "
                "reopen it to finish the rotation"
            ) from exc
        os.close(self._fd)
        self._fd = fd
        self._size = len(line)
        self.segment = number
        self.last_seq = opening.seq
        self._compressor.submit([closed])

    def _abandon(self) -> None:
        self._closed = True
        try:
            self._compressor.join()
        except LogError:
            pass  # the rotation error is the one to report
        finally:
            os.close(self._fd)
            self._lock.release()
