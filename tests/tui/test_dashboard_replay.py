"""Pilot drives the real app over the recorded samples in replay mode."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SAMPLES

from hbsm.events import Probe, ProbeSeen, ServiceOwned, ServiceRegistered, Vote, encode_lines
from hbsm.log import read_history
from hbsm.projection import Projection
from tui.app import DashboardApp
from tui.board import ReplayBoard
from tui.screens.service import ServiceScreen
from tui.widgets.services import ServicesTable

SIZE = (140, 45)
CRASH = SAMPLES / "crash_restart_cooldown.jsonl"


def _app(path: Path) -> DashboardApp:
    return DashboardApp(replay=[str(path)])


def _states(app: DashboardApp) -> dict[str, str]:
    table = app.main.query_one(ServicesTable)
    out = {}
    for i in range(table.row_count):
        row = table.get_row_at(i)
        out[str(row[0])] = str(row[1]).strip()
    return out


def _expected(path: Path, cursor: int) -> dict[str, str]:
    projection = Projection()
    projection.apply_all(list(read_history(path))[: cursor + 1])
    return {name: view.fsm.state for name, view in projection.services.items()}


@pytest.mark.parametrize(
    ("sample", "services"),
    [
        ("crash_restart_cooldown.jsonl", {"billing", "postgres"}),
        ("flapping.jsonl", {"search", "postgres"}),
        ("budget_exhausted.jsonl", {"ingest", "postgres"}),
    ],
)
async def test_rows_for_every_service_at_the_end(sample: str, services: set[str]) -> None:
    path = SAMPLES / sample
    app = _app(path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        states = _states(app)
        assert set(states) == services
        assert states == _expected(path, len(list(read_history(path))) - 1)
    if sample == "budget_exhausted.jsonl":
        assert states["ingest"] == "failed"


async def test_keys_move_the_cursor_and_the_table_follows() -> None:
    app = _app(CRASH)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        board = app.replay
        assert board is not None
        last = len(board.events) - 1
        assert board.cursor == last
        await pilot.press("g")
        assert board.cursor == 0
        seen_states = set()
        # Walk every transition forward, then back, checking the table against a fresh fold.
        for _ in range(len(board.transitions)):
            await pilot.press("n")
            assert _states(app) == _expected(CRASH, board.cursor)
            seen_states.add(_states(app).get("billing"))
        assert {"degraded", "repairing", "restarting", "cooldown", "healthy"} <= seen_states
        at = board.cursor
        await pilot.press("n")  # no transition after the last: stays
        assert board.cursor == at
        await pilot.press("N")
        assert board.cursor == board.transitions[-2]
        await pilot.press("right", "right", "right")
        assert board.cursor == board.transitions[-2] + 3
        await pilot.press("left")
        assert board.cursor == board.transitions[-2] + 2
        assert _states(app) == _expected(CRASH, board.cursor)
        await pilot.press("G")
        assert board.cursor == last
        assert _states(app) == _expected(CRASH, last)


async def test_billing_reaches_cooldown_at_its_transition_event() -> None:
    events = list(read_history(CRASH))
    index = next(i for i, e in enumerate(events) if getattr(e, "dst", None) == "cooldown")
    app = _app(CRASH)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("g")
        for _ in range(index):
            await pilot.press("right")
        assert app.replay is not None and app.replay.cursor == index
        assert _states(app)["billing"] == "cooldown"
        await pilot.press("left")
        assert _states(app)["billing"] == "restarting"
        table = app.main.query_one(ServicesTable)
        row = table.get_row("billing")
        # "next action" counts down in event time: the cursor's ts, not the wall clock.
        assert str(row[-1]).startswith("restart")


async def test_enter_opens_the_service_screen_with_its_repair_run() -> None:
    app = _app(CRASH)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.main.query_one(ServicesTable)
        table.move_cursor(row=table.get_row_index("billing"))
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ServiceScreen) and screen.service == "billing"
        runs = str(screen.query_one("#runs").render())
        assert "run 1" in runs and "diagnose" in runs and "check_config" in runs
        restarts = str(screen.query_one("#restarts").render())
        # The cooldown gates the next restart only: that is what the screen counts down to.
        assert "restart ok" in restarts and "no restart before 03:03:43.110" in restarts
        timeline = str(screen.query_one("#timeline").render())
        assert "repairing" in timeline and "cooldown" in timeline
        # Replay keys work here too: back to the start, no repair run yet.
        await pilot.press("g")
        assert "no repair run" in str(screen.query_one("#runs").render())
        await pilot.press("escape")
        assert app.screen is app.main


async def test_a_first_rules_log_shows_its_cooldown_holding_the_service() -> None:
    old = Path(__file__).parents[1] / "replay" / "data" / "first_rules" / CRASH.name
    app = _app(old)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.app.push_screen(ServiceScreen("billing"))
        await pilot.pause()
        restarts = str(app.screen.query_one("#restarts").render())
        assert "cooldown 1:00 until 03:03:46.846 (over)" in restarts
        assert "no restart before" not in restarts


async def test_slash_filters_rows_and_escape_clears() -> None:
    app = _app(CRASH)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.main.query_one(ServicesTable)
        assert table.row_count == 2
        await pilot.press("slash", "b", "i", "l")
        await pilot.pause()
        assert table.row_count == 1 and str(table.get_row_at(0)[0]) == "billing"
        # While typing, replay keys are letters of the filter, not cursor moves.
        assert app.replay is not None and app.replay.cursor == len(app.replay.events) - 1
        await pilot.press("escape")
        await pilot.pause()
        assert table.row_count == 2


async def test_sort_by_state_puts_the_sick_first() -> None:
    app = _app(SAMPLES / "budget_exhausted.jsonl")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.main.query_one(ServicesTable)
        table.sort_by("state")
        await pilot.pause()
        assert str(table.get_row_at(0)[0]) == "ingest"  # failed
        await pilot.press("s")  # next column: fails
        assert table.sort_column == "fails"


async def test_space_plays_to_the_end_at_1000x() -> None:
    app = _app(CRASH)
    async with app.run_test(size=SIZE) as pilot:
        board = app.replay
        assert board is not None
        await pilot.press("g", "right_square_bracket", "right_square_bracket", "space")
        assert app.playing
        for _ in range(100):
            await pilot.pause(0.05)
            if not app.playing:
                break
        assert not app.playing and board.cursor == len(board.events) - 1


def test_checkpoints_make_a_seek_equal_a_fold() -> None:
    events = list(read_history(SAMPLES / "flapping.jsonl")) * 30  # > 2 checkpoints
    board = ReplayBoard(events)
    for index in (0, 4100, 17, 5000, len(events) - 1, 2500):
        board.seek(index)
        expected = Projection()
        expected.apply_all(events[: index + 1])
        got = {n: v.fsm.state for n, v in board.projection.services.items()}
        assert got == {n: v.fsm.state for n, v in expected.services.items()}
        assert board.projection.monitor.events_total == index + 1


async def test_the_feed_words_the_logs_own_events_as_the_timeline_does() -> None:
    from hbsm import events as ev
    from hbsm.describe import describe
    from hbsm.replay.timeline import entry
    from tui.widgets.feed import EventFeed

    events: list[ev.Event] = [
        ev.MonitorStarted(seq=1, ts=1.0, pid=7, version="0.1.0"),
        ev.LogRecovered(seq=2, ts=1.0, path="hbsm.jsonl", offset=99, cut_bytes=17),
        ev.LogOutage(seq=3, ts=70.0, since=10.0, error="disk full", skipped=4),
    ]
    board = ReplayBoard(list(events), "log events")
    board.seek(len(events) - 1)
    app = DashboardApp(replay_boards=[board])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        lines = str(app.main.query_one(EventFeed).content).splitlines()
    assert len(lines) == 3  # newest first
    assert lines[0].endswith(
        "log unwritable for 60.0 s (disk full): 4 probes not run, no repair or restart started"
    )
    assert lines[1].endswith(
        "log recovered: cut a torn line of 17 bytes at offset 99 of hbsm.jsonl"
    )
    for line, event in zip(lines, reversed(events), strict=True):
        timeline = entry(event)
        assert timeline is not None and line.endswith(timeline.text)
        assert line.endswith(describe(event, with_service=False))


async def test_the_service_screen_names_the_owner_and_what_each_vantage_point_saw(
    tmp_path: Path,
) -> None:
    history = [
        ServiceRegistered(seq=1, ts=100.0, service="web", target="http://10.0.0.7/health"),
        ServiceOwned(seq=2, ts=100.0, service="web", node="n2", reason="taken"),
        ProbeSeen(seq=3, ts=101.0, service="web", node="n1", ok=False, error="timeout"),
        ProbeSeen(seq=4, ts=101.2, service="web", node="n3", ok=True),
        Probe(seq=5, ts=101.5, service="web", node="n2", ok=True, votes=(
            Vote(node="n2", ok=True, seq=0), Vote(node="n1", ok=False, seq=3, error="timeout"),
            Vote(node="n3", ok=True, seq=4))),
    ]  # fmt: skip
    path = tmp_path / "cluster.jsonl"
    path.write_bytes(encode_lines(history))
    app = _app(path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.app.push_screen(ServiceScreen("web"))
        await pilot.pause()
        summary = str(app.screen.query_one("#summary").render())
        assert "decided by n2" in summary
        assert "n1 timeout" in summary and "n2 ok" in summary and "n3 ok" in summary


async def test_the_header_shows_the_version_of_the_configuration_in_force() -> None:
    from hbsm import events as ev
    from tui.widgets.header import MonitorHeader

    events: list[ev.Event] = [
        ev.MonitorStarted(seq=1, ts=1.0, pid=7, version="0.1.0", config_hash="aaaabbbbcccc"),
        ev.ServiceRegistered(seq=2, ts=1.0, service="web"),
        ev.ConfigReloaded(seq=3, ts=5.0, version=2, hash="0123456789ab", added=["api"]),
        ev.ServiceRegistered(seq=4, ts=5.0, service="api"),
        ev.ConfigReloaded(seq=5, ts=9.0, version=2, hash="0123456789ab", error="bad file"),
    ]
    shown = []
    for cursor in (1, len(events) - 1):
        board = ReplayBoard(list(events), "log events")
        board.seek(cursor)
        app = DashboardApp(replay_boards=[board])
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            shown.append(str(app.main.query_one(MonitorHeader).content))
    assert "config v1 aaaabbbb" in shown[0]
    assert "config v2 01234567" in shown[1]  # the refused file changed nothing
