"""Issue 8, fault 7: the event log rotates many times a second under load (another process
writes it, as `hbsm run` does) while the dashboard's reader (tui.sources.LogTail, as
`hbsm dashboard --log` drives it) and the Flask blueprint's reader (follow mode, hbsm.api.LogSource)
follow it.

Each reader delivers every event exactly once, in order: the seqs it delivers are exactly
first..N, where first is 1 for a reader that was there from the start and the seq of the
active segment's opening snapshot for one that starts late (a snapshot is an event like any
other: delivered once, in its place). Each ends with the projection `read_history` gives of the
whole log, and the blueprint answers with the bodies of that projection. A reader stalled while
several rotations go by catches up from the compressed segments; if retention pruned a segment
it still needed, it says which events it lost and goes on from the oldest segment kept (which
opens with a snapshot, so its state is right again) — never a silent skip.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import queue
import re
import select
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from flask import Flask
from support.waiting import wait_for_sync

from hbsm.api import bodies
from hbsm.api import source as api_source
from hbsm.api.source import redact
from hbsm.events import Event, OpaqueEvent, Snapshot
from hbsm.flask import HeartbeatHandle, follow_log
from hbsm.log import read_history, segment_paths
from hbsm.projection import Projection
from tui.board import LiveBoard
from tui.sources import LogTail

REPO = Path(__file__).resolve().parents[2]
WRITER = Path(__file__).with_name("rotation_writer.py")
DEADLINE = 60.0  # only a deadline for hangs: the box may be busy (and rotations are slow)
NOW = 1_800_000_000.0  # the blueprint's clock: its bodies can be compared with expected ones
# The writer's snapshot is ~12 KB (4 services with their latency history): a segment holds its
# snapshot and ~100 events, so a burst of 2,500 batches rotates the log ~80 times.
MAX_BYTES = 24_000

AnyEvent = Event | OpaqueEvent


def state_of(projection: Projection) -> Any:
    """What a projection shows: every service's view and the monitor's (with counts, last seq,
    segment), as plain data."""
    return msgspec.to_builtins({"monitor": projection.monitor, "services": projection.services})


def same(a: object, b: object) -> bool:
    """Equal as recorded (an FSM state is compared by identity, not by value)."""
    return bool(msgspec.to_builtins(a) == msgspec.to_builtins(b))


def folded(path: Path) -> Projection:
    projection = Projection()
    projection.apply_all(read_history(path))
    return projection


def segment_numbers(path: Path) -> list[int]:
    return [int(p.name.split(".")[1]) for p in segment_paths(path)]


# --- the writer: another process --------------------------------------------------------------


class WriterProcess:
    """tests/reliability/rotation_writer.py in a child process; `command` returns the
    (last_seq, active segment) it answers."""

    def __init__(self, path: Path, *, keep_segments: int, max_bytes: int = MAX_BYTES) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(path), str(max_bytes), str(keep_segments)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert self._line() == "open"

    def _line(self) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], DEADLINE)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            raise AssertionError(f"the writer did not answer: {err[-2000:]}")
        return line.strip()

    def command(self, line: str) -> tuple[int, int]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        last_seq, segment = self._line().split()
        return int(last_seq), int(segment)

    def quit(self) -> tuple[int, int]:
        answer = self.command("quit")
        assert self.proc.wait(DEADLINE) == 0
        return answer

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)


# --- what a reader delivered -----------------------------------------------------------------


class Delivered:
    """The seqs of the events a reader handed over, in order, and which of them were
    snapshots."""

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.snapshots: dict[int, Snapshot] = {}

    def note(self, batch: list[AnyEvent]) -> None:
        self.seqs.extend(event.seq for event in batch)
        for event in batch:
            if isinstance(event, Snapshot):
                self.snapshots[event.seq] = event

    @property
    def first(self) -> AnyEvent | int | None:
        """The first event if it was a snapshot, else its seq."""
        if not self.seqs:
            return None
        return self.snapshots.get(self.seqs[0], self.seqs[0])

    def jumps(self) -> list[tuple[int, int]]:
        """(first, last) seq of every run of events missing between two delivered ones."""
        return [(a + 1, b - 1) for a, b in itertools.pairwise(self.seqs) if b != a + 1]


def assert_losses_reported(
    delivered: Delivered, reported: list[tuple[int, int]], last: int, what: str
) -> None:
    """Seqs strictly increase from 1 to `last`; every run of events missing was reported, and
    only those; the reader went on at a snapshot (so its state is right again)."""
    seqs = delivered.seqs
    assert seqs[0] == 1 and seqs[-1] == last, what
    assert all(a < b for a, b in itertools.pairwise(seqs)), f"{what} repeated or reordered"
    jumps = delivered.jumps()
    assert jumps == reported, f"{what}: missing {jumps}, reported {reported}"
    for _, end in jumps:
        assert end + 1 in delivered.snapshots, f"{what} went on at {end + 1}, not at a snapshot"


LOST = re.compile(r"events (\d+)\.\.(\d+) were lost")


def losses(messages: Iterable[str]) -> list[tuple[int, int]]:
    return [(int(m.group(1)), int(m.group(2))) for text in messages if (m := LOST.search(text))]


# --- the dashboard's reader -------------------------------------------------------------------


class Dashboard:
    """LogTail driven as tui.app.DashboardApp drives it: `deliver` posts each batch to the UI
    thread, which folds it into the LiveBoard and then acks, so the next batch may come.

    `stall()` makes the next `deliver` block until `resume()`: the source's thread, which also
    polls the follower, stops reading the log meanwhile (a dashboard starved of CPU)."""

    def __init__(self, path: Path) -> None:
        self.source = LogTail(path)
        self.board = LiveBoard(self.source.label)
        self.delivered = Delivered()
        self.reports: list[tuple[str, str]] = []
        self._inbox: queue.Queue[list[AnyEvent] | None] = queue.Queue()
        self._open = threading.Event()
        self._open.set()
        self.stalled = threading.Event()
        self._ui = threading.Thread(target=self._ui_loop, name="test-dashboard-ui")

    def start(self) -> Dashboard:
        self._ui.start()
        self.source.start(
            self._deliver, lambda severity, text: self.reports.append((severity, text))
        )
        return self

    def stop(self) -> None:
        self._open.set()
        self.source.stop()
        self._inbox.put(None)
        self._ui.join(10)

    def stall(self) -> None:
        self.stalled.clear()
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    @property
    def seqs(self) -> list[int]:
        return self.delivered.seqs

    @property
    def last_seq(self) -> int:
        return self.seqs[-1] if self.seqs else 0

    def _deliver(self, batch: list[AnyEvent]) -> None:
        if not self._open.is_set():
            self.stalled.set()
            self._open.wait()
        self._inbox.put(batch)

    def _ui_loop(self) -> None:
        while (batch := self._inbox.get()) is not None:
            try:
                self.board.apply(batch)
                self.delivered.note(batch)
            finally:
                self.source.ack()


# --- the Flask blueprint's reader -------------------------------------------------------------


class RecordingProjection(Projection):
    """The real Projection, noting the seq of every event folded into it (and able to hold the
    follower thread at its next fold: a blueprint starved of CPU)."""

    gate: threading.Event | None = None
    stalled = threading.Event()

    def __init__(self) -> None:
        super().__init__()
        self.delivered = Delivered()

    def apply_all(self, events: Iterable[AnyEvent]) -> int:
        batch = list(events)
        gate = RecordingProjection.gate
        if gate is not None and not gate.is_set():
            RecordingProjection.stalled.set()
            gate.wait()
        self.delivered.note(batch)
        return super().apply_all(batch)


class Blueprint:
    """A host Flask app with `follow_log` (the blueprint in follow mode), its clock fixed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.app = Flask("host")
        self.handle: HeartbeatHandle = follow_log(self.app, path, clock=lambda: NOW)
        self.client = self.app.test_client()

    @property
    def source(self) -> api_source.LogSource:
        source = self.handle.source
        assert isinstance(source, api_source.LogSource)
        return source

    @property
    def delivered(self) -> Delivered:
        """What was folded into the projection the routes answer from."""

        def delivered(projection: Projection) -> Delivered:
            assert isinstance(projection, RecordingProjection)
            return projection.delivered

        return self.handle.read(delivered)

    def seqs(self) -> list[int]:
        return list(self.delivered.seqs)

    def last_seq(self) -> int:
        return self.source.last_seq

    def state(self) -> Any:
        return self.handle.read(state_of)

    def get(self, url: str) -> Any:
        answer = self.client.get(url)
        assert answer.status_code in (200, 503), answer.data
        return json.loads(answer.data)

    def stop(self) -> None:
        if RecordingProjection.gate is not None:
            RecordingProjection.gate.set()  # a test that failed while it was stalled
        self.handle.stop()


def expected_bodies(path: Path, projection: Projection) -> dict[str, Any]:
    """The bodies `hbsm.api.bodies` builds from `projection`, as JSON, at the blueprint's now."""
    config = redact(dict(projection.monitor.config))
    status = bodies.heartbeat_status(projection, now=NOW, log_path=str(path), config=config)
    detailed, _ = bodies.detailed_health(projection, now=NOW, show_targets=True)
    return {
        "/admin/heartbeat/status": json.loads(bodies.encode(status)),
        "/health/detailed": json.loads(bodies.encode(detailed)),
    }


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The blueprint's LogSource folds into a RecordingProjection."""
    monkeypatch.setattr(api_source, "Projection", RecordingProjection)
    RecordingProjection.gate = None
    RecordingProjection.stalled = threading.Event()
    yield
    if RecordingProjection.gate is not None:
        RecordingProjection.gate.set()
    RecordingProjection.gate = None


@pytest.fixture
def cleanup() -> Iterator[Callable[[Any], Any]]:
    """`cleanup(thing)` -> thing; `thing.stop()` at the end of the test (last first)."""
    things: list[Any] = []

    def register(thing: Any) -> Any:
        things.append(thing)
        return thing

    yield register
    for thing in reversed(things):
        thing.stop()


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "events" / "heartbeat.jsonl"


def assert_agrees_with_the_log(path: Path, dashboard: Dashboard, blueprint: Blueprint) -> None:
    expected = folded(path)
    assert state_of(dashboard.board.projection) == state_of(expected)
    assert blueprint.state() == state_of(expected)
    for url, body in expected_bodies(path, expected).items():
        assert blueprint.get(url) == body, url
    assert dashboard.source.events == len(dashboard.seqs)  # what it delivered, once each


def stall_both(writer: WriterProcess, dashboard: Dashboard, blueprint: Blueprint) -> int:
    """Let both readers read a first burst, then stall them with what they read of the next
    events in hand and their follower open on the active segment, k; returns k."""
    before, _ = writer.command("burst 300")
    wait_for_sync(
        lambda: dashboard.last_seq == before, "the dashboard reads the first burst", DEADLINE
    )
    wait_for_sync(
        lambda: blueprint.last_seq() == before, "the blueprint reads the first burst", DEADLINE
    )
    dashboard.stall()
    RecordingProjection.gate = threading.Event()
    _, k = writer.command("burst 1")
    assert dashboard.stalled.wait(DEADLINE) and RecordingProjection.stalled.wait(DEADLINE)
    return k


def resume_both(writer: WriterProcess, dashboard: Dashboard, blueprint: Blueprint) -> int:
    """Let them go on, stop the writer, wait for both to read to its last seq; returns it."""
    dashboard.resume()
    assert RecordingProjection.gate is not None
    RecordingProjection.gate.set()
    last, _ = writer.quit()
    wait_for_sync(lambda: dashboard.last_seq >= last, "the dashboard catches up", DEADLINE)
    wait_for_sync(lambda: blueprint.last_seq() >= last, "the blueprint catches up", DEADLINE)
    return last


# --- the tests --------------------------------------------------------------------------------


def test_both_readers_see_every_event_once_in_order_while_another_process_rotates(
    log_path: Path, recording: None, cleanup: Callable[[Any], Any]
) -> None:
    # Retention keeps more segments than the burst makes: nothing can be pruned under a reader
    # however the machine schedules it, so exactly 1..N is the only right answer.
    writer = cleanup(WriterProcess(log_path, keep_segments=150))
    dashboard = cleanup(Dashboard(log_path).start())
    blueprint = cleanup(Blueprint(log_path))
    writer.command("burst 2500")  # as fast as it can: both readers compete with it for the CPU
    last, segment = writer.quit()
    wait_for_sync(lambda: dashboard.last_seq >= last, "the dashboard reads to the end", DEADLINE)
    wait_for_sync(lambda: blueprint.last_seq() >= last, "the blueprint reads to the end", DEADLINE)

    assert segment >= 60  # rotations, each segment compressed once closed
    assert segment_numbers(log_path) == list(range(segment))
    assert all(p.name.endswith(".jsonl.gz") for p in segment_paths(log_path))
    everything = list(range(1, last + 1))
    assert dashboard.seqs == everything, "the dashboard missed or repeated an event"
    assert blueprint.seqs() == everything, "the blueprint missed or repeated an event"
    # Every segment's opening snapshot was delivered, once, in its place.
    for delivered in (dashboard.delivered, blueprint.delivered):
        snapshots = list(delivered.snapshots.values())
        assert [s.segment for s in snapshots] == list(range(1, segment + 1))
    assert dashboard.reports == [] and blueprint.source.error is None
    assert_agrees_with_the_log(log_path, dashboard, blueprint)
    status = blueprint.get("/admin/heartbeat/status")
    assert (status["log"]["last_seq"], status["log"]["segment"]) == (last, segment)


def test_readers_that_start_late_begin_at_the_active_segments_snapshot(
    log_path: Path, recording: None, cleanup: Callable[[Any], Any]
) -> None:
    writer = cleanup(WriterProcess(log_path, keep_segments=5))
    writer.command("burst 800")
    # The monitor restarted keeping more segments: the readers below cannot fall behind it.
    _, active = writer.command("reopen 150")
    # The old segments are compressed, the oldest pruned: the readers cannot start there.
    assert active >= 15 and segment_numbers(log_path) == list(range(active - 5, active))
    assert all(p.name.endswith(".jsonl.gz") for p in segment_paths(log_path))
    opening = [e for e in read_history(log_path) if isinstance(e, Snapshot)][-1]
    assert opening.segment == active
    dashboard = cleanup(Dashboard(log_path).start())
    blueprint = cleanup(Blueprint(log_path))
    writer.command("burst 1500")
    last, segment = writer.quit()
    assert segment >= active + 30
    wait_for_sync(lambda: dashboard.last_seq >= last, "the dashboard reads to the end", DEADLINE)
    wait_for_sync(lambda: blueprint.last_seq() >= last, "the blueprint reads to the end", DEADLINE)

    # They begin at the snapshot that opens the segment active when they started.
    for delivered in (dashboard.delivered, blueprint.delivered):
        first = delivered.first
        assert isinstance(first, Snapshot) and same(first, opening)
    assert dashboard.seqs == list(range(opening.seq, last + 1))
    assert blueprint.seqs() == list(range(opening.seq, last + 1))
    assert dashboard.reports == [] and blueprint.source.error is None
    assert_agrees_with_the_log(log_path, dashboard, blueprint)


@pytest.mark.parametrize("keep", [150, 2], ids=["segments-kept", "segments-pruned"])
def test_readers_stalled_behind_several_rotations(
    keep: int, log_path: Path, recording: None, cleanup: Callable[[Any], Any]
) -> None:
    # Until they stall, retention keeps everything: the writer is fast enough to outrun even a
    # reader that only sleeps between polls, and this test is about the stall.
    writer = cleanup(WriterProcess(log_path, keep_segments=150))
    dashboard = cleanup(Dashboard(log_path).start())
    blueprint = cleanup(Blueprint(log_path))
    k = stall_both(writer, dashboard, blueprint)
    writer.command(f"reopen {keep}")
    writer.command(f"until {k + 1}")
    head = json.loads(log_path.read_bytes().partition(b"\n")[0])
    assert (head["type"], head["segment"]) == ("snapshot", k + 1)
    end_of_k = head["seq"] - 1
    writer.command(f"until {k + 8}")  # seven more rotations behind them
    writer.command(f"reopen {keep}")  # settles: every closed segment compressed, or pruned
    last = resume_both(writer, dashboard, blueprint)

    if keep > 8:
        # Segments k+1..k+7 were there only as .gz: both read them, and lost nothing.
        assert segment_numbers(log_path)[0] == 0
        assert all(p.name.endswith(".jsonl.gz") for p in segment_paths(log_path))
        assert dashboard.seqs == list(range(1, last + 1))
        assert blueprint.seqs() == list(range(1, last + 1))
        assert dashboard.reports == [] and blueprint.source.error is None
    else:
        # Retention deleted k+1..k+5 before they were read. Each drained segment k from the
        # file it had open, said exactly which events it lost, and went on at the snapshot of
        # the oldest segment kept (k+6).
        kept = list(read_history(log_path))
        assert segment_numbers(log_path)[0] == k + 6
        assert isinstance(kept[0], Snapshot) and kept[0].segment == k + 6
        resumed = kept[0].seq
        expected = [*range(1, end_of_k + 1), *range(resumed, last + 1)]
        assert dashboard.seqs == expected
        assert blueprint.seqs() == expected
        lost = (end_of_k + 1, resumed - 1)
        ((severity, text),) = dashboard.reports
        assert severity == "error" and "pruned" in text
        assert losses([text]) == [lost]
        assert blueprint.source.lost == [lost]
        assert blueprint.source.error is not None and "pruned" in blueprint.source.error
    assert_agrees_with_the_log(log_path, dashboard, blueprint)


def test_stalled_readers_meet_a_damaged_compressed_segment(
    log_path: Path, recording: None, cleanup: Callable[[Any], Any]
) -> None:
    writer = cleanup(WriterProcess(log_path, keep_segments=150))
    dashboard = cleanup(Dashboard(log_path).start())
    blueprint = cleanup(Blueprint(log_path))
    k = stall_both(writer, dashboard, blueprint)
    writer.command(f"until {k + 8}")
    writer.command("reopen 150")  # settles: every closed segment compressed
    # A segment they still need is cut to half its size (a disk that filled up while it was
    # copied, say); the next one opens with a snapshot, as always.
    damaged = log_path.with_name(f"heartbeat.{k + 3:08d}.jsonl.gz")
    with gzip.open(damaged) as f:
        damaged_from = json.loads(f.readline())["seq"]
    with gzip.open(log_path.with_name(f"heartbeat.{k + 4:08d}.jsonl.gz")) as f:
        after_damage = json.loads(f.readline())["seq"]
    whole = damaged.read_bytes()
    damaged.write_bytes(whole[: len(whole) // 2])
    last = resume_both(writer, dashboard, blueprint)

    # Each read on (the thread of neither died), said that the segment is damaged and which
    # events it could not read, and went on at the next segment's snapshot.
    warnings = [text for severity, text in dashboard.reports if severity == "warning"]
    errors = [text for severity, text in dashboard.reports if severity == "error"]
    assert len(warnings) == 1 and str(damaged) in warnings[0]
    assert "damaged compressed segment" in warnings[0]
    ((first, end),) = losses(errors)
    assert damaged_from <= first and end == after_damage - 1
    assert_losses_reported(dashboard.delivered, [(first, end)], last, "the dashboard")
    assert_losses_reported(blueprint.delivered, [(first, end)], last, "the blueprint")
    assert blueprint.source.lost == [(first, end)]
    # Their state is the log's, read with --skip-bad (which skips the same damage).
    expected = Projection()
    expected.apply_all(read_history(log_path, skip_bad=True))
    assert state_of(dashboard.board.projection) == state_of(expected)
    assert blueprint.state() == state_of(expected)


def test_readers_outrun_by_retention_under_load_report_every_loss(
    log_path: Path, recording: None, cleanup: Callable[[Any], Any]
) -> None:
    # Three segments kept at hundreds of rotations a second: a reader that sleeps between polls
    # (0.1 s the dashboard, 0.2 s the blueprint) finds its next segment pruned, again and again,
    # racing the writer's compression and pruning. Whatever the timing, nothing is repeated,
    # every event missing is reported, and both end with the log's state.
    writer = cleanup(WriterProcess(log_path, keep_segments=3))
    dashboard = cleanup(Dashboard(log_path).start())
    blueprint = cleanup(Blueprint(log_path))
    writer.command("burst 2500")
    last, segment = writer.quit()
    assert segment >= 60 and segment_numbers(log_path) == list(range(segment - 3, segment))
    wait_for_sync(lambda: dashboard.last_seq >= last, "the dashboard reads to the end", DEADLINE)
    wait_for_sync(lambda: blueprint.last_seq() >= last, "the blueprint reads to the end", DEADLINE)

    assert all(severity == "error" for severity, _ in dashboard.reports)
    reported = losses(text for _, text in dashboard.reports)
    assert_losses_reported(dashboard.delivered, reported, last, "the dashboard")
    assert_losses_reported(blueprint.delivered, blueprint.source.lost, last, "the blueprint")
    if blueprint.source.lost:
        assert blueprint.source.error is not None and "were lost" in blueprint.source.error
    assert_agrees_with_the_log(log_path, dashboard, blueprint)


def test_whole_histories_read_while_retention_prunes_have_no_hole(
    log_path: Path, cleanup: Callable[[Any], Any]
) -> None:
    # What `hbsm replay` and a blueprint starting up do: read the whole history, here over and
    # over while the writer rotates at every other append and keeps one closed segment. A
    # segment pruned between the listing and its open must not leave a hole between the one
    # before it (already open) and the one after.
    # 8 KB: a little more than a segment's opening snapshot (smaller since snapshots carry no
    # latency times and the recorded config only what services set), so most appends rotate.
    writer = cleanup(WriterProcess(log_path, keep_segments=1, max_bytes=8_000))
    writer.command("burst 20")
    done = threading.Event()
    answers: list[tuple[int, int]] = []

    def write() -> None:
        try:
            answers.append(writer.command("burst 800"))
        finally:
            done.set()

    thread = threading.Thread(target=write)
    thread.start()
    histories = 0
    end = 0
    try:
        while True:
            finished = done.is_set()  # one more read after the writer is done, at least one
            history = list(read_history(log_path))
            seqs = [event.seq for event in history]
            holes = [(a, b) for a, b in itertools.pairwise(seqs) if b != a + 1]
            assert holes == [], f"a history with a hole: {holes}"
            # It begins at seq 1 or at a segment's snapshot: folded, it is a whole state.
            assert seqs and (seqs[0] == 1 or isinstance(history[0], Snapshot))
            # And it ends with the newest events (the active file's): never before the end of
            # a history read earlier.
            assert seqs[-1] >= end, f"a history ends at {seqs[-1]}, one read before at {end}"
            end = seqs[-1]
            histories += 1
            if finished:
                break
    finally:
        thread.join(DEADLINE)
    ((last, segment),) = answers
    assert segment >= 120 and end == last
