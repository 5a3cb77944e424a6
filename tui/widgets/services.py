"""The services table. Rows are keyed by service name and only the cells that changed are updated
(DataTable.update_cell): a full repaint costs tens of ms (docs/performance.md), so the table is
never cleared and rebuilt. Only the rows on screen are brought up to date: a row that changed off
screen is marked stale and written when it scrolls into view (or is read: `current_row`), so a log
touching every service several times a second costs the screenful, not the thousand. The filter
removes and re-adds only the rows it hides or shows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from hbsm.events import ServiceView
from hbsm.projection import next_action
from tui.board import Board
from tui.format import STATE_RANK, duration, latency, next_text, sparkline
from tui.widgets.badges import STATE_CLASSES, badge

__all__ = ["COLUMNS", "ServicesTable"]

Cell = str | Text
SortKey = Callable[[ServiceView, float], Any]


def _since(view: ServiceView, now: float) -> float:
    return now - view.fsm.since if view.fsm.since else -1.0


def _next_when(view: ServiceView, now: float) -> tuple[int, float]:
    _, when = next_action(view)
    return (0, when - now) if when is not None else (1, 0.0)


def _last_latency(view: ServiceView, now: float) -> float:
    probe = view.last_probe
    return -1.0 if probe is None or probe.latency_ms is None else probe.latency_ms


# key, label, sort key. "time in state" and "next" depend on the clock: refreshed every frame.
COLUMNS: Final[tuple[tuple[str, str, SortKey], ...]] = (
    ("name", "service", lambda v, now: v.name),
    ("state", "state", lambda v, now: (STATE_RANK.get(v.fsm.state, 9), v.name)),
    ("fails", "fails", lambda v, now: (-v.fsm.failures, v.name)),
    ("latency", "latency", lambda v, now: -_last_latency(v, now)),
    ("trend", "latency trend", lambda v, now: -_last_latency(v, now)),
    ("since", "in state", lambda v, now: -_since(v, now)),
    ("restarts", "restarts", lambda v, now: (-v.restarts_total, v.name)),
    ("next", "next action", _next_when),
)
CLOCK_COLUMNS: Final = ("since", "next")
SPARK_WIDTH: Final = 16


class ServicesTable(DataTable[Cell]):
    COMPONENT_CLASSES = DataTable.COMPONENT_CLASSES | STATE_CLASSES

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.sort_column = "name"
        self.sort_reverse = False
        # Per row: the cells last written to the table.
        self._cells: dict[str, dict[str, Cell]] = {}
        # Rows whose service changed since their cells were written (off screen, then).
        self._stale: set[str] = set()
        # Per row: its sort key with the clock at 0, which changes only with the service (the
        # clock columns' keys move with the clock, but all alike): a change means a resort.
        self._order: dict[str, Any] = {}
        self._board: Board | None = None

    def on_mount(self) -> None:
        for key, label, _ in COLUMNS:
            width = SPARK_WIDTH if key == "trend" else None
            self.add_column(label, key=key, width=width)

    # --- contents ---------------------------------------------------------------------------

    def cells(self, view: ServiceView, now: float) -> dict[str, Cell]:
        fsm = view.fsm
        probe = view.last_probe
        return {
            "name": view.name,
            "state": badge(self, fsm.state),
            "fails": f"{fsm.failures}/{view.policy.max_retries}",
            "latency": latency(probe.latency_ms if probe is not None else None),
            "trend": sparkline(view.latency_ms, SPARK_WIDTH),
            "since": duration(now - fsm.since) if fsm.since else "",
            "restarts": str(view.restarts_total),
            "next": next_text(view, now),
        }

    def sync(self, board: Board, changed: set[str] | None, name_filter: str = "") -> None:
        """Bring the rows up to date: `changed` names the services whose view changed (None:
        all of them); the clock columns follow `board.now()`. Rows on screen are written now,
        the others when they come into view."""
        self._board = board
        services = board.projection.services
        known = self._cells
        moved = False
        first = not known
        for name in [n for n in known if n not in services or name_filter not in n]:
            self.remove_row(name)
            del known[name]
            self._stale.discard(name)
            self._order.pop(name, None)
            moved = True
        now = board.now()
        order_key = self._sort_key()
        for name, view in services.items():
            if name not in known and (not name_filter or name_filter in name):
                cells = self.cells(view, now)
                self.add_row(*(cells[key] for key, _, _ in COLUMNS), key=name)
                known[name] = cells
                self._order[name] = order_key(view, 0.0)
                moved = True
        touched = known.keys() if changed is None else [n for n in changed if n in known]
        self._stale.update(touched)
        if self.sort_column != "name":  # a name never changes
            order = self._order
            for name in touched:
                key = order_key(services[name], 0.0)
                if order[name] != key:
                    order[name] = key
                    moved = True
        if moved:
            self.resort()
            if first:
                self.move_cursor(row=0, animate=False)
        self._write_visible()

    def _visible(self) -> list[str]:
        """The rows on screen (and one either side), top to bottom."""
        rows = self.size.height - (self.header_height if self.show_header else 0)
        top = max(0, round(self.scroll_y) - 1)
        bottom = min(self.row_count, top + rows + 2)
        return [
            self.coordinate_to_cell_key(Coordinate(i, 0)).row_key.value or ""
            for i in range(top, bottom)
        ]

    def _write_visible(self) -> None:
        board = self._board
        if board is not None and self.row_count:
            self._write(board, self._visible())

    def _write(self, board: Board, names: list[str]) -> None:
        """Write the rows `names` as of the board: all their cells if stale, else the clock's."""
        services = board.projection.services
        now = board.now()
        stale = self._stale
        for name in names:
            view = services.get(name)
            known = self._cells.get(name)
            if view is None or known is None:
                continue
            if name in stale:
                stale.discard(name)
                cells = self.cells(view, now)
            else:
                cells = dict(known)
                cells["since"] = duration(now - view.fsm.since) if view.fsm.since else ""
                cells["next"] = next_text(view, now)
            for key, value in cells.items():
                if known[key] != value:
                    self.update_cell(name, key, value)
            self._cells[name] = cells

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        # Rows scrolled into view are written before they are drawn.
        super().watch_scroll_y(old_value, new_value)
        if round(old_value) != round(new_value):
            self._write_visible()

    def on_resize(self) -> None:
        self._write_visible()

    def current_row(self, name: str) -> list[Cell]:
        """The service's row as the board says, on screen or not (`get_row` gives what was
        last written: for a row out of view, maybe not that; the drawing reads it, so it is
        not overridden)."""
        if self._board is not None:
            self._write(self._board, [name])
        return self.get_row(name)

    # --- sorting ----------------------------------------------------------------------------

    def sort_by(self, column: str, reverse: bool | None = None) -> None:
        if reverse is None:
            reverse = not self.sort_reverse if column == self.sort_column else False
        if column != self.sort_column and self._board is not None:
            # The order kept is the old column's: the new one's, for every row.
            services = self._board.projection.services
            key = next(key for k, _, key in COLUMNS if k == column)
            self._order = {n: key(services[n], 0.0) for n in self._cells if n in services}
        self.sort_column, self.sort_reverse = column, reverse
        self.resort()
        self._write_visible()

    def next_sort(self) -> str:
        keys = [key for key, _, _ in COLUMNS]
        column = keys[(keys.index(self.sort_column) + 1) % len(keys)]
        self.sort_by(column, reverse=False)
        return column

    def resort(self) -> None:
        board = self._board
        if board is None or not self.row_count:
            return
        selected = self.selected
        services = board.projection.services
        now = board.now()
        sort_key = self._sort_key()

        def key(name: str) -> Any:
            view = services.get(name)
            return (0, sort_key(view, now)) if view is not None else (1, name)

        self.sort("name", key=key, reverse=self.sort_reverse)
        if selected is not None:
            self.move_cursor(row=self.get_row_index(selected), animate=False)

    def _sort_key(self) -> SortKey:
        return next(key for k, _, key in COLUMNS if k == self.sort_column)

    @property
    def selected(self) -> str | None:
        """The service under the cursor."""
        if not self.row_count:
            return None
        row = min(self.cursor_row, self.row_count - 1)
        value = self.coordinate_to_cell_key(Coordinate(row, 0)).row_key.value
        return value

    def on_data_table_header_selected(self, message: DataTable.HeaderSelected) -> None:
        message.stop()
        if message.column_key.value is not None:
            self.sort_by(message.column_key.value)
