"""Latency over time as a text chart, with the slow threshold drawn across it when there is one."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

from tui.format import latency

__all__ = ["LatencyChart", "render_chart"]

_EIGHTHS = " ▁▂▃▄▅▆▇█"


def render_chart(
    values: Sequence[float | None], slow_ms: float | None, height: int = 6, width: int = 60
) -> Text:
    tail = list(values[-width:])
    numbers = [v for v in tail if v is not None]
    if not numbers:
        return Text("no latency recorded yet", style="dim")
    top = max([*numbers, slow_ms or 0.0]) * 1.05 or 1.0
    # The row the threshold falls in, counted from the bottom (0-based), if any.
    slow_row = int(slow_ms / top * height) if slow_ms else None
    text = Text(no_wrap=True)
    for row in range(height - 1, -1, -1):
        label = latency(top * (row + 1) / height)
        text.append(f"{label:>9} ┤", style="dim")
        for v in tail:
            if v is None:
                text.append("✗" if row == 0 else " ", style="red")
                continue
            level = v / top * height - row  # how much of this cell the bar fills
            if level >= 1:
                cell = "█"
            elif level > 0:
                cell = _EIGHTHS[max(1, int(level * 8))]
            else:
                cell = "┄" if row == slow_row else " "
            style = "red" if slow_ms is not None and v > slow_ms else "green"
            text.append(cell, style=style if cell.strip() and cell != "┄" else "yellow")
        text.append("\n")
    text.append(" " * 10 + "└" + "─" * len(tail), style="dim")
    last = numbers[-1]
    summary = f"\n last {latency(last)}  max {latency(max(numbers))}  min {latency(min(numbers))}"
    if slow_ms is not None:
        summary += f"  slow above {latency(slow_ms)} (┄)"
    text.append(summary)
    return text


class LatencyChart(Static):
    def show(self, values: Sequence[float | None], slow_ms: float | None) -> None:
        self.update(render_chart(values, slow_ms))
