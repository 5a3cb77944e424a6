"""Damaged event logs, read by `hbsm replay` and `read_history`, and opened by the writer
(`FileEventLog.open`, `hbsm run`).

Readers: a bad line is an error naming file and line (exit 2, one line, no traceback), or with
`--skip-bad` is skipped and counted; an unknown event kind is kept (opaque), a torn last line is
left out with a notice; a reader never modifies the file. The writer: a corrupt line in the middle
makes `hbsm run` refuse the log (exit 3) with the file untouched; only a torn *last* line is cut,
and that is recorded (`log.recovered`); a file that is not a log is never cut.

Every case runs `hbsm replay` in this process (`hbsm.cli.main`, the real command line); the
writer's refusals run `hbsm run` as child processes.
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from support.net import free_port

from hbsm.events import (
    Event,
    LogRecovered,
    MonitorStarted,
    OpaqueEvent,
    Probe,
    ServiceRegistered,
    encode,
)
from hbsm.log import CorruptLineError, FileEventLog, ReadStats, read_history

from .bad_input_support import (
    Done,
    finish,
    hbsm_inline,
    one_error_line,
    start_hbsm,
)

T0 = 1_793_502_000.0
MB = 2**20


def base_events() -> list[Event]:
    """Twelve events with seqs 10, 20, ... 120: room to slip a line in between."""
    events: list[Event] = [
        MonitorStarted(seq=10, ts=T0, pid=4242, version="test"),
        ServiceRegistered(seq=20, ts=T0, service="api", target="http://127.0.0.1:9/"),
    ]
    for i in range(10):
        ok = i not in (4, 5)
        error = None if ok else "refused"
        events.append(
            Probe(
                seq=30 + 10 * i, ts=T0 + 30 * i, service="api", ok=ok, latency_ms=1.5, error=error
            )
        )
    return events


BASE = [encode(e) + b"\n" for e in base_events()]
N = len(BASE)
# Slipped in between seq 40 (at T0 + 30) and seq 50 (at T0 + 60), at a time between theirs: a
# time out of order is a clock stepped back, which replay warns about.
UNKNOWN = b'{"type":"future.kind","seq":45,"ts":1793502045.0,"service":"api","x":[1,2]}\n'
BIG_EVENT = encode(Probe(seq=45, ts=T0 + 45, service="api", ok=False, detail="x" * MB)) + b"\n"


# Where the "p" of "api" is in line 5 (BASE[4]): the byte the UTF-8 damage below replaces.
BAD_BYTE_AT = BASE[4].index(b'"service":"a') + len(b'"service":"a')


def _with(index: int, *lines: bytes) -> Callable[[list[bytes]], bytes]:
    """The base log with `lines` slipped in before line `index` (0-based)."""
    return lambda base: b"".join(base[:index] + list(lines) + base[index:])


def _swapped(base: list[bytes]) -> bytes:
    return b"".join([*base[:4], base[5], base[4], *base[6:]])


def _replaced(index: int, old: bytes, new: bytes) -> Callable[[list[bytes]], bytes]:
    def damage(base: list[bytes]) -> bytes:
        lines = list(base)
        assert old in lines[index]
        lines[index] = lines[index].replace(old, new)
        return b"".join(lines)

    return damage


@dataclass(frozen=True)
class Damage:
    id: str
    make: Callable[[list[bytes]], bytes]
    # A bad line: its number and a fragment of the reason. None: the log reads.
    line: int | None = None
    why: str = ""
    # What is read: events (with --skip-bad when a line is bad) and lines skipped.
    events: int = N
    skipped: int = 1
    torn: bool = False
    opaque: int = 0


BAD_LINES = [
    Damage("garbage line", _with(4, b"hello world\n"), 5, "not JSON"),
    Damage("a line of NUL bytes", _with(6, b"\0" * 64 + b"\n"), 7, "not JSON"),
    Damage("JSON that is not an object", _with(3, b"[1, 2, 3]\n"), 4, "not an event"),
    Damage(
        "event without seq",
        _with(3, b'{"type":"probe","ts":1.0,"service":"api","ok":true}\n'),
        4,
        "seq 0 does not increase",  # seq defaults to 0: out of order wherever it is
    ),
    Damage(
        "known kind with a field of the wrong type",
        _replaced(5, b'"ok":true', b'"ok":"maybe"'),
        6,
        "invalid 'probe' event",
        events=N - 1,
    ),
    Damage("reordered lines", _swapped, 6, "seq 50 does not increase", events=N - 1, skipped=1),
    Damage(
        "duplicated seq (a line written twice)",
        lambda base: b"".join([*base[:5], base[4], *base[5:]]),
        6,
        "seq 50 does not increase (the event before has seq 50)",
    ),
    Damage(
        "seq going back (an older log appended)",
        lambda base: b"".join(base + base[:3]),
        N + 1,
        "seq 10 does not increase (the event before has seq 120)",
        skipped=3,
    ),
    Damage("a 1 MB garbage line", _with(4, b"x" * MB + b"\n"), 5, "not JSON"),
    Damage(
        "invalid UTF-8 inside a string",
        _replaced(4, b'"service":"api"', b'"service":"a\xff\xfei"'),
        5,
        # hbsm's words whatever msgspec's are: the byte, where it is, and why.
        f"not UTF-8: byte ff at offset {BAD_BYTE_AT} of the line, in a JSON string"
        " (invalid start byte)",
        events=N - 1,
    ),
    Damage(
        "invalid UTF-8 outside the JSON",
        _replaced(4, b"{", b"\xff{"),
        5,
        "not JSON",
        events=N - 1,
    ),
    Damage(
        "a line cut short, then more written",
        lambda base: b"".join([*base[:4], base[4][:25] + b"\n", *base[5:]]),
        5,
        "not JSON",
        events=N - 1,
    ),
]
READABLE = [
    Damage("unknown event kind (kept, opaque)", _with(4, UNKNOWN), events=N + 1, opaque=1),
    Damage("a 1 MB event line", _with(4, BIG_EVENT), events=N + 1),
    Damage(
        "torn last line",
        lambda base: b"".join(base) + b'{"type":"probe","seq":130,"ts":1.0,"serv',
        torn=True,
    ),
    Damage("NUL bytes at the end (a crash)", lambda base: b"".join(base) + b"\0" * 100, torn=True),
    Damage("CRLF line ends", lambda base: b"".join(line[:-1] + b"\r\n" for line in base)),
    Damage("empty file", lambda base: b"", events=0),
    Damage("a file of only newlines", lambda base: b"\n" * 5, events=0),
]


def write(tmp: Path, damage: Damage) -> Path:
    path = tmp / "heartbeat.jsonl"
    path.write_bytes(damage.make(list(BASE)))
    return path


def fingerprint(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def replay_json(done: Done) -> dict[str, object]:
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    doc = json.loads(done.stdout)
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize("damage", BAD_LINES, ids=[d.id for d in BAD_LINES])
def test_a_bad_line_is_named_or_skipped_and_counted(
    damage: Damage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, damage)
    before = fingerprint(path)

    line = one_error_line(hbsm_inline(["replay", path], capsys))
    assert line.startswith(f"hbsm replay: {path}:{damage.line}: "), line
    assert damage.why in line, line
    with pytest.raises(CorruptLineError) as caught:
        list(read_history(path))
    assert (Path(caught.value.path), caught.value.line) == (path, damage.line)
    assert damage.why in str(caught.value)

    done = hbsm_inline(["replay", path, "--skip-bad", "--json"], capsys)
    report = replay_json(done)
    assert (report["events"], report["skipped"]) == (damage.events, damage.skipped)
    assert f"skipped {damage.skipped} bad line(s) (--skip-bad)" in done.stderr
    stats = ReadStats()
    assert len(list(read_history(path, skip_bad=True, stats=stats))) == damage.events
    assert stats.skipped == damage.skipped

    assert fingerprint(path) == before  # readers never write


@pytest.mark.parametrize("damage", READABLE, ids=[d.id for d in READABLE])
def test_what_can_be_read_is_read(
    damage: Damage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, damage)
    before = fingerprint(path)

    done = hbsm_inline(["replay", path, "--json"], capsys)
    report = replay_json(done)
    assert (report["events"], report["skipped"]) == (damage.events, 0)
    if damage.torn:
        (notice,) = done.stderr.splitlines()
        assert notice.startswith(f"hbsm replay: notice: {path}: ignored a torn last line (")
        good = len(b"".join(BASE))
        cut = path.stat().st_size - good
        assert report["torn"] == [{"path": str(path), "offset": good, "cut_bytes": cut}]
    else:
        assert done.stderr == ""
    events = list(read_history(path))
    assert len(events) == damage.events
    opaque = [e for e in events if isinstance(e, OpaqueEvent)]
    assert len(opaque) == damage.opaque
    for event in opaque:  # kept whole: what a newer version wrote is not lost
        assert event.body == msgspec.json.decode(UNKNOWN)
    assert hbsm_inline(["replay", path, "--stats"], capsys).returncode == 0

    assert fingerprint(path) == before


# --- compressed segments -----------------------------------------------------------------------


def rotated_log(tmp: Path) -> Path:
    """A log of several gzip-compressed segments and an active file (real rotations)."""
    path = tmp / "log" / "heartbeat.jsonl"
    with FileEventLog.open(path, max_bytes=1500) as log:
        log.append([MonitorStarted(pid=1), ServiceRegistered(service="api")])
        for _ in range(40):
            log.append([Probe(service="api", ok=True, latency_ms=1.0, detail="x" * 40)])
            log.flush()
    segments = sorted(path.parent.glob("heartbeat.*.jsonl.gz"))
    assert len(segments) >= 3
    return path


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _bit_flipped(data: bytes) -> bytes:
    middle = len(data) // 2  # in the deflate data, past the header and its file name
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


GZ_DAMAGE: list[tuple[str, Callable[[bytes], bytes], str]] = [
    ("truncated", _truncated, "truncated"),
    ("bit flipped", _bit_flipped, "damaged compressed segment"),
    ("not gzip at all", lambda data: b"hello, not gzip\n", "Not a gzipped file"),
    ("empty (0 bytes)", lambda data: b"", "no data in it"),
]


@pytest.fixture(scope="module")
def pristine_rotated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rotated_log(tmp_path_factory.mktemp("rotated"))


@pytest.mark.parametrize(
    ("spoil", "why"), [g[1:] for g in GZ_DAMAGE], ids=[g[0] for g in GZ_DAMAGE]
)
def test_a_damaged_gz_segment_is_named_or_skipped(
    spoil: Callable[[bytes], bytes],
    why: str,
    pristine_rotated: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shutil.copytree(pristine_rotated.parent, tmp_path / "log")
    path = tmp_path / "log" / "heartbeat.jsonl"
    whole = len(list(read_history(path)))
    segment = sorted(path.parent.glob("heartbeat.*.jsonl.gz"))[1]
    lost = len(gzip.decompress(segment.read_bytes()).splitlines())
    segment.write_bytes(spoil(segment.read_bytes()))
    before = {p: fingerprint(p) for p in path.parent.iterdir()}

    line = one_error_line(hbsm_inline(["replay", path], capsys))
    assert line.startswith(f"hbsm replay: {segment}:"), line
    assert "damaged compressed segment" in line and why in line, line
    for reader in (path, segment):  # the whole history, or the segment alone
        with pytest.raises(CorruptLineError) as caught:
            list(read_history(reader))
        assert Path(caught.value.path) == segment

    done = hbsm_inline(["replay", path, "--skip-bad", "--json"], capsys)
    report = replay_json(done)
    assert report["skipped"] == 1
    assert whole - lost <= report["events"] < whole  # what precedes the damage is kept
    assert f"notice: {segment}:" in done.stderr and "skipped from this line" in done.stderr

    assert {p: fingerprint(p) for p in path.parent.iterdir()} == before


# --- the writer -------------------------------------------------------------------------------

REFUSED_BY_RUN = [d for d in BAD_LINES if d.id in {
    "garbage line", "reordered lines", "duplicated seq (a line written twice)",
    "invalid UTF-8 inside a string",
}]  # fmt: skip


def test_hbsm_run_refuses_a_log_with_a_bad_line_and_leaves_it_whole(tmp_path: Path) -> None:
    logs: list[tuple[Damage, Path, tuple[bytes, int]]] = []
    for damage in REFUSED_BY_RUN:
        folder = tmp_path / damage.id.split(" ")[0]
        folder.mkdir()
        path = write(folder, damage)
        logs.append((damage, path, fingerprint(path)))
    # A log whose segment is damaged: the monitor resumes from the whole history.
    rotated = rotated_log(tmp_path / "gz")
    segment = sorted(rotated.parent.glob("heartbeat.*.jsonl.gz"))[1]
    segment.write_bytes(_truncated(segment.read_bytes()))
    segment_before = fingerprint(segment)

    paths = [path for _, path, _ in logs] + [rotated]
    # All at once: each is refused while it resumes, before it serves or probes anything.
    runs = [["run", "--log", p, "--port", str(free_port()), "--duration", "30"] for p in paths]
    children = [start_hbsm(run, cwd=tmp_path) for run in runs]
    answers = [finish(child) for child in children]
    for (damage, path, before), done in zip(logs, answers, strict=False):
        line = one_error_line(done, code=3)
        assert line.startswith(f"hbsm run: {path}, line {damage.line}: "), line
        assert damage.why in line
        assert fingerprint(path) == before  # nothing cut, nothing appended
    line = one_error_line(answers[-1], code=3)
    assert line.startswith(f"hbsm run: {segment}, line ") and "truncated" in line, line
    assert fingerprint(segment) == segment_before


def test_the_writer_cuts_only_a_torn_last_line_and_records_it(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    good = b"".join(BASE)
    torn = b'{"type":"probe","seq":130,"ts":1.0,"serv'
    path.write_bytes(good + torn)
    with FileEventLog.open(path) as log:
        recovered = log.recovered
        assert isinstance(recovered, LogRecovered)
        assert (recovered.offset, recovered.cut_bytes) == (len(good), len(torn))
        assert recovered.seq == 121 and log.last_seq == 121
    data = path.read_bytes()
    assert data.startswith(good)  # every complete line kept, byte for byte
    events = list(read_history(path))
    assert [e.seq for e in events] == [e.seq for e in base_events()] + [121]


@pytest.mark.parametrize(
    ("content", "line"),
    [
        (b"my precious notes", 1),
        (b'{"a": 1}', 1),
        (b"line one\nline two", 2),
        (b"line one\nline two\n", 2),
        (b"".join(BASE[:3]) + b"a last line, not an event", 4),
    ],
    ids=["one line, no newline", "JSON config", "text, no final newline", "text", "log + text"],
)
def test_the_writer_never_cuts_a_file_that_is_not_its_log(
    tmp_path: Path, content: bytes, line: int
) -> None:
    path = tmp_path / "not-a-log.txt"
    path.write_bytes(content)
    with pytest.raises(CorruptLineError) as caught:
        FileEventLog.open(path)
    assert (Path(caught.value.path), caught.value.line) == (path, line)
    assert path.read_bytes() == content
    # The lock was released: a reader-style retry with the file fixed succeeds.
    path.write_bytes(b"".join(BASE))
    with FileEventLog.open(path) as log:
        assert log.last_seq == 120 and log.recovered is None


def test_hbsm_run_on_a_file_that_is_not_a_log(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"my precious notes, no newline at the end")
    before = notes.read_bytes()
    run = ["run", "--log", notes, "--port", str(free_port()), "--duration", "30"]
    line = one_error_line(finish(start_hbsm(run, cwd=tmp_path)), code=3)
    assert line.startswith(f"hbsm run: {notes}, line 1: the last line has no newline"), line
    assert notes.read_bytes() == before


def test_the_writer_keeps_an_unknown_kind_and_counts_on_from_it(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.jsonl"
    future = b'{"type":"future.kind","seq":130,"ts":1793502100.0,"x":{"nested":[1]}}\n'
    path.write_bytes(b"".join(BASE) + future)
    with FileEventLog.open(path) as log:
        assert log.last_seq == 130
        (stamped,) = log.append([Probe(service="api", ok=True)])
        assert stamped.seq == 131
    data = path.read_bytes()
    assert data.startswith(b"".join(BASE) + future)
    last = list(read_history(path))[-2:]
    assert isinstance(last[0], OpaqueEvent) and last[0].body == msgspec.json.decode(future)
    assert isinstance(last[1], Probe)
