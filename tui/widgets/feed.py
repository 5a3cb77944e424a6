"""The event feed: the latest events, newest first, filtered by kind and service name."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget
from textual.widgets import Static

from hbsm.describe import describe
from tui.board import FEED_FILTERS, Board, service_of
from tui.format import clock

__all__ = ["EventFeed"]

LINES = 60


class EventFeed(Static):
    kind = 0
    # What the feed shows: (board, kind, filter, seqs). The same again is not drawn again: a
    # live board is redrawn every second for its clock, and 60 lines cost a few ms each time.
    _shown: tuple[int, int, str, list[int]] | None = None

    def show(self, board: Board, name_filter: str = "") -> None:
        label = FEED_FILTERS[self.kind % len(FEED_FILTERS)][0]
        where = f", service ~ {name_filter!r}" if name_filter else ""
        target = self.parent if isinstance(self.parent, Widget) else self
        target.border_title = f"events ({label}{where}; f: kind)"
        events = board.feed(self.kind, name_filter, LINES)
        shown = (id(board), self.kind, name_filter, [e.seq for e in events])
        if shown == self._shown:
            return
        # Its height is its lines: the screen's layout needs doing again only if they changed.
        layout = self._shown is None or len(self._shown[3]) != len(events) or not events
        self._shown = shown
        text = Text(no_wrap=True, overflow="ellipsis")
        for i, e in enumerate(events):
            if i:
                text.append("\n")
            text.append(clock(e.ts), style="dim")
            text.append(f" #{e.seq:<6} ", style="dim")
            text.append(f"{service_of(e) or '-':<12} ", style="bold")
            line = describe(e, with_service=False)  # the service has its column
            text.append(line, style="red" if "FAIL" in line else "")
        if not events:
            text.append("no events", style="dim")
        self.update(text, layout=layout)
