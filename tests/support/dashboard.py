"""The dashboard as a person reads it."""

from __future__ import annotations

from textual.pilot import Pilot

from tui.app import DashboardApp
from tui.screens.confirm import ConfirmScreen
from tui.widgets.services import ServicesTable

__all__ = ["ask", "row_state", "select_row"]


def row_state(app: DashboardApp, name: str) -> str | None:
    """The state column of a service's row in the services table (None: no such row)."""
    table = app.main.query_one(ServicesTable)
    if name not in table.rows:
        return None
    return str(table.current_row(name)[1]).strip()


def select_row(app: DashboardApp, name: str) -> None:
    """Put the services table's cursor on a service's row, as the arrow keys would."""
    table = app.main.query_one(ServicesTable)
    table.move_cursor(row=table.get_row_index(name))


async def ask(pilot: Pilot[None], app: DashboardApp, key: str) -> None:
    """Press an admin action's key: the dashboard asks for a confirmation first."""
    await pilot.press(key)
    await pilot.pause()
    assert isinstance(app.screen, ConfirmScreen), app.screen
