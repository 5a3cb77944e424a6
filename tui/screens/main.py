"""The main screen: monitor header, replay bar and notice (replay mode), services table, event
feed."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Input

from tui.widgets.feed import EventFeed
from tui.widgets.header import MonitorHeader
from tui.widgets.replaybar import ReplayBar, ReplayNotice
from tui.widgets.services import ServicesTable

__all__ = ["MainScreen"]


class MainScreen(Screen[None]):
    def __init__(self, replay: bool) -> None:
        super().__init__()
        self.replay = replay

    def compose(self) -> ComposeResult:
        yield MonitorHeader(id="header")
        if self.replay:
            yield ReplayBar(id="replay-bar")
            yield ReplayNotice(id="replay-notice")
        yield Input(placeholder="filter services by name (enter: keep, escape: clear)", id="filter")
        yield ServicesTable(id="services")
        with VerticalScroll(id="feed-box"):
            yield EventFeed(id="feed")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#services").border_title = "services (enter: details, s: sort, /: filter)"
        self.query_one(ServicesTable).focus()
        refresh = getattr(self.app, "refresh_views", None)
        if refresh is not None:
            self.call_after_refresh(refresh, None)
