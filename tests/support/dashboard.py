"""The dashboard as a person reads it."""

from __future__ import annotations

from tui.app import DashboardApp
from tui.widgets.services import ServicesTable

__all__ = ["row_state"]


def row_state(app: DashboardApp, name: str) -> str | None:
    """The state column of a service's row in the services table (None: no such row)."""
    table = app.main.query_one(ServicesTable)
    if name not in table.rows:
        return None
    return str(table.get_row(name)[1]).strip()
