"""State badges coloured by the stylesheet: each state is a component class (`state--healthy`,
...), so app.tcss sets the colours and widgets ask for the Rich style by name."""

from __future__ import annotations

from typing import Final

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from hbsm.state import STATES

__all__ = ["STATE_CLASSES", "badge", "state_style"]

STATE_CLASSES: Final[set[str]] = {f"state--{state}" for state in STATES}


def state_style(widget: Widget, state: str) -> Style:
    name = f"state--{state}"
    if name not in STATE_CLASSES:
        name = "state--unknown"
    return widget.get_component_rich_style(name, partial=True)


def badge(widget: Widget, state: str) -> Text:
    return Text(f" {state} ", style=state_style(widget, state))
