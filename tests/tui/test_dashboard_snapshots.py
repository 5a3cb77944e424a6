"""Snapshot tests (pytest-textual-snapshot): fixed terminal size, replay cursor at a fixed event,
so every time on screen comes from the history, none from the wall clock. Textual is pinned to a
minor (pyproject) so they stay stable. Update with `pytest tests/tui --snapshot-update`."""

from __future__ import annotations

from typing import Any

from conftest import SAMPLES

from hbsm.log import read_history
from tui.app import DashboardApp
from tui.board import ReplayBoard
from tui.screens.service import ServiceScreen

SIZE = (132, 40)
LABEL = "events/samples/crash_restart_cooldown.jsonl"


def _app(event: int) -> DashboardApp:
    board = ReplayBoard(list(read_history(SAMPLES / "crash_restart_cooldown.jsonl")), LABEL)
    board.seek(event - 1)
    return DashboardApp(replay_boards=[board])


def test_main_screen_mid_incident(snap_compare: Any) -> None:
    assert snap_compare(_app(63), terminal_size=SIZE)  # billing enters cooldown


def test_main_screen_sorted_by_state_feed_transitions(snap_compare: Any) -> None:
    assert snap_compare(_app(58), press=["s", "f"], terminal_size=SIZE)


def test_service_screen(snap_compare: Any) -> None:
    async def open_billing(pilot: Any) -> None:
        await pilot.app.push_screen(ServiceScreen("billing"))
        await pilot.pause()

    assert snap_compare(_app(70), run_before=open_billing, terminal_size=SIZE)
