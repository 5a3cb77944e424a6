"""The monitor's state in one line: running or not, uptime, services by state, events/s, and
the version of the configuration in force (it changes with each reload)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from hbsm.state import STATES
from tui.board import Board
from tui.format import duration
from tui.widgets.badges import STATE_CLASSES, state_style

__all__ = ["MonitorHeader"]


class MonitorHeader(Static):
    COMPONENT_CLASSES = STATE_CLASSES

    def show(self, board: Board) -> None:
        m = board.projection.monitor
        now = board.now()
        text = Text()
        if m.running:
            text.append(" ● running ", style="bold black on green")
            up = now - m.started_at if m.started_at is not None else None
            text.append(f"  up {duration(up)}" if up is not None else "")
        else:
            text.append(" ■ stopped ", style="bold white on red")
            if m.stopped_at is not None:
                text.append(f"  for {duration(now - m.stopped_at)}")
        counts = board.projection.by_state()
        text.append("   ")
        for state in STATES:
            n = counts.get(state)
            if n:
                text.append(f" {state} {n} ", style=state_style(self, state))
                text.append("  ")
        if not counts:
            text.append("no services yet  ")
        text.append(f"  {board.rate():.1f} ev/s", style="bold")
        text.append(f"   {m.events_total} events", style="dim")
        if m.config_hash:  # a log written before configurations had versions has none
            text.append(f"   config v{m.config_version} {m.config_hash[:8]}", style="dim")
        text.append(f"   {board.label}", style="dim italic")
        self.update(text, layout=False)  # one line, full width, whatever it says
