"""Replay mode: the file, the cursor's time and event, playing or not and how fast; and under it,
while the history has any, what was read past to show it (bad lines, a hole, the clock)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from hbsm.describe import describe
from tui.board import ReplayBoard, service_of
from tui.format import stamp

__all__ = ["ReplayBar", "ReplayNotice"]


class ReplayBar(Static):
    def show(self, board: ReplayBoard, playing: bool, speed: int) -> None:
        e = board.event
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(" REPLAY ", style="bold black on magenta")
        text.append(f" {board.label}", style="bold")
        text.append(f"   {stamp(e.ts)}", style="bold cyan")
        text.append(f"   event {board.cursor + 1}/{len(board.events)} (seq {e.seq})")
        text.append("   ▶ playing" if playing else "   ❚❚ paused", style="bold")
        text.append(f" {speed}x")
        text.append("\n ")
        name = service_of(e)
        text.append(f"{name}: " if name else "", style="bold")
        text.append(describe(e, with_service=False), style="italic")
        self.update(text)


class ReplayNotice(Static):
    """The board's notes, one a line, shown only when there are some."""

    def show(self, board: ReplayBoard) -> None:
        notes = board.notes
        self.set_class(bool(notes), "shown")
        if notes == getattr(self, "_shown", None):
            return
        self._shown = notes
        text = Text()
        for number, note in enumerate(notes):
            text.append("\n" if number else "")
            text.append(" ⚠ ", style="bold black on yellow")
            text.append(f" {note}")
        self.update(text)
