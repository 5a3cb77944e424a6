"""The dashboard app: one board (live or replay), a main screen and a service screen.

Live: a source thread delivers coalesced batches as `EventsArrived` messages; each is folded
into the board at once and the source acknowledged so the next batch may come. The views are
drawn at most every DRAW_EVERY seconds (a flood costs a bounded number of repaints; the screen
is at most that much behind the board), with only the rows of the services touched since the
last drawing updated; and at least every second, for the clock columns (time in state,
countdowns). Replay: the keys move a cursor and every view is redrawn as of it.
"""

from __future__ import annotations

import gc
import time
from functools import partial
from typing import ClassVar, Final

from textual import on
from textual.app import App
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Input

from hbsm.log import LogError
from tui.board import FEED_FILTERS, Board, LiveBoard, ReplayBoard
from tui.screens.confirm import ConfirmScreen
from tui.screens.main import MainScreen
from tui.screens.service import ServiceScreen
from tui.sources import Batch, Source
from tui.widgets.feed import EventFeed
from tui.widgets.header import MonitorHeader
from tui.widgets.replaybar import ReplayBar, ReplayNotice
from tui.widgets.services import COLUMNS, ServicesTable

__all__ = ["SPEEDS", "DashboardApp"]

SPEEDS = (1, 10, 100, 1000)
PLAY_TICK = 0.1
# Live: the views are drawn at most this often (seconds) while events arrive...
DRAW_EVERY: Final = 0.3
# ... and at least this often, for the clock columns.
CLOCK_EVERY: Final = 1.0

_REPLAY_ACTIONS = frozenset(
    {"play", "step", "next_transition", "previous_transition", "start", "end", "speed", "open"}
)
_ADMIN_ACTIONS = frozenset({"admin"})


def _settle_heap() -> None:
    gc.collect()
    gc.freeze()


class EventsArrived(Message):
    def __init__(self, batch: Batch) -> None:
        super().__init__()
        self.batch = batch


class SourceReport(Message):
    def __init__(self, severity: str, text: str) -> None:
        super().__init__()
        self.severity = severity
        self.text = text


class DashboardApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "hbsm dashboard"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        Binding("slash", "filter", "filter"),
        Binding("s", "sort", "sort"),
        Binding("f", "feed_kind", "feed kind"),
        Binding("enter", "open_service", "details", show=True),
        # Replay: priority, so the table's own arrow keys do not take them.
        Binding("space", "play", "play/pause", priority=True),
        Binding("left", "step(-1)", "◀ event", priority=True),
        Binding("right", "step(1)", "event ▶", priority=True),
        Binding("n", "next_transition", "next transition", priority=True),
        Binding("N", "previous_transition", "prev transition", priority=True),
        Binding("g", "start", "start", priority=True),
        Binding("G", "end", "end", priority=True),
        Binding("right_square_bracket", "speed(1)", "faster", priority=True),
        Binding("left_square_bracket", "speed(-1)", "slower", priority=True),
        Binding("o", "open", "next file", priority=True),
        # Admin, through a live monitor's API.
        Binding("p", "admin('pause')", "pause/resume"),
        Binding("r", "admin('reset')", "reset"),
        Binding("x", "admin('probe-now')", "probe now"),
        Binding("R", "admin('repair-now')", "repair now"),
        Binding("t", "admin('heartbeat')", "start/stop"),
    ]

    def __init__(
        self,
        *,
        source: Source | None = None,
        replay: list[str] | None = None,
        replay_boards: list[ReplayBoard] | None = None,
        settle: bool = False,
    ) -> None:
        """`settle` (live): a second after the first batch is drawn, collect and freeze the
        heap, as `hbsm run` does after start-up: what the catch-up built (a view per service,
        the widgets) lives as long as the app, and the collector stops walking it again and
        again while the log grows (docs/performance.md). `hbsm dashboard` sets it; a process
        running many apps one after the other (the tests) had better not."""
        super().__init__()
        self.source = source
        self.replay_paths = replay or []
        self._replay_boards: dict[int, ReplayBoard] = dict(enumerate(replay_boards or []))
        self.replay_index = 0
        self.board: Board
        if replay_boards or replay:
            self.board = self._replay_board(0)
        elif source is not None:
            self.board = LiveBoard(source.label)
        else:
            raise ValueError("a source or a replay is needed")
        self.name_filter = ""
        self.playing = False
        self.speed_index = 1
        self._play_ts = 0.0
        self._play_timer: Timer | None = None
        # Live: the services touched since the last drawing, and when that was.
        self._touched: set[str] = set()
        self._drawn_at = 0.0
        self._draw_timer: Timer | None = None
        self._settle = settle
        self.main = MainScreen(replay=self.replay is not None)

    # --- set up -----------------------------------------------------------------------------

    @property
    def replay(self) -> ReplayBoard | None:
        return self.board if isinstance(self.board, ReplayBoard) else None

    def _replay_board(self, index: int) -> ReplayBoard:
        board = self._replay_boards.get(index)
        if board is None:
            board = self._replay_boards[index] = ReplayBoard.load(self.replay_paths[index])
        return board

    def get_default_screen(self) -> Screen[None]:
        return self.main

    def on_mount(self) -> None:
        self.refresh_views(None)
        if self.source is not None:
            self.source.start(
                lambda batch: self.post_message(EventsArrived(batch)),
                lambda severity, text: self.post_message(SourceReport(severity, text)),
            )
            self.set_interval(CLOCK_EVERY, self._clock)

    def on_unmount(self) -> None:
        if self.source is not None:
            self.source.stop()

    # --- drawing ----------------------------------------------------------------------------

    def refresh_views(self, changed: set[str] | None) -> None:
        """Redraw as of the board: `changed` names the services whose view changed (None:
        all); the others only get their clock columns moved."""
        main = self.main
        headers = main.query(MonitorHeader) if main.is_mounted else None
        if not headers:
            # Not composed yet, or torn down at exit while the 1 s timer still ticks (seen on a
            # loaded machine): there is nothing to draw on.
            return
        board = self.board
        self._drawn_at = time.monotonic()
        headers.first().show(board)
        replay = self.replay
        if replay is not None:
            main.query_one(ReplayBar).show(replay, self.playing, SPEEDS[self.speed_index])
            main.query_one(ReplayNotice).show(replay)
        main.query_one(ServicesTable).sync(board, changed, self.name_filter)
        main.query_one(EventFeed).show(board, self.name_filter)
        screen = self.screen
        if isinstance(screen, ServiceScreen) and (
            changed is None or replay is not None or screen.service in changed or not changed
        ):
            screen.show(board)

    def on_events_arrived(self, message: EventsArrived) -> None:
        board = self.board
        assert isinstance(board, LiveBoard)
        try:
            self._touched |= board.apply(message.batch)
        finally:
            if self.source is not None:
                self.source.ack()
        if self._draw_timer is None:
            wait = self._drawn_at + DRAW_EVERY - time.monotonic()
            if wait <= 0:
                self._draw_touched()
            else:
                self._draw_timer = self.set_timer(wait, self._draw_touched)

    def _clock(self) -> None:
        # Not when a drawing (events arriving) just moved the clock columns.
        if time.monotonic() - self._drawn_at >= CLOCK_EVERY / 2:
            self._draw_touched()

    def _draw_touched(self) -> None:
        """Draw the views, the rows of the services touched since the last drawing updated."""
        if self._draw_timer is not None:
            self._draw_timer.stop()
            self._draw_timer = None
        touched, self._touched = self._touched, set()
        self.refresh_views(touched)
        if self._settle and touched:
            self._settle = False
            # Later: the batch just drawn is garbage once its message is done with.
            self.set_timer(1.0, _settle_heap)

    def on_source_report(self, message: SourceReport) -> None:
        severity = message.severity if message.severity in ("warning", "error") else "information"
        self.notify(
            message.text,
            severity=severity,  # type: ignore[arg-type]
            timeout=6 if severity == "error" else 3,
            markup=False,
        )

    # --- keys -------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in _REPLAY_ACTIONS:
            if self.replay is None or isinstance(self.focused, Input):
                return False
            if action == "open" and len(self.replay_paths) < 2:
                return False
            if isinstance(self.screen, ConfirmScreen):
                return False
        if action in _ADMIN_ACTIONS:
            return self.source is not None and self.source.admin_enabled
        main_only = action in ("filter", "sort", "feed_kind", "open_service")
        return not (main_only and self.screen is not self.main)

    def action_filter(self) -> None:
        box = self.main.query_one("#filter", Input)
        box.add_class("shown")
        box.focus()

    @on(Input.Changed, "#filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.name_filter = event.value.strip()
        self.refresh_views(set())

    @on(Input.Submitted, "#filter")
    def filter_done(self, event: Input.Submitted) -> None:
        box = self.main.query_one("#filter", Input)
        if not box.value:
            box.remove_class("shown")
        self.main.query_one(ServicesTable).focus()

    def on_key(self, event: object) -> None:
        key = getattr(event, "key", None)
        box = self.main.query_one("#filter", Input) if self.main.is_mounted else None
        if key == "escape" and box is not None and self.focused is box:
            box.value = ""
            box.remove_class("shown")
            self.main.query_one(ServicesTable).focus()

    def action_sort(self) -> None:
        column = self.main.query_one(ServicesTable).next_sort()
        label = next(label for key, label, _ in COLUMNS if key == column)
        self.notify(f"sorted by {label}", timeout=1.5)

    def action_feed_kind(self) -> None:
        feed = self.main.query_one(EventFeed)
        feed.kind = (feed.kind + 1) % len(FEED_FILTERS)
        feed.show(self.board, self.name_filter)

    def action_open_service(self) -> None:
        name = self.main.query_one(ServicesTable).selected
        if name is not None:
            self.push_screen(ServiceScreen(name))

    def on_data_table_row_selected(self, message: DataTable.RowSelected) -> None:
        if message.row_key.value is not None:
            self.push_screen(ServiceScreen(message.row_key.value))

    # --- replay -----------------------------------------------------------------------------

    def _moved(self, changed: set[str]) -> None:
        self.refresh_views(changed)

    def action_step(self, by: int) -> None:
        if self.replay is not None:
            self._moved(self.replay.step(by))

    def action_next_transition(self) -> None:
        replay = self.replay
        if replay is not None:
            index = replay.next_transition()
            if index is None:
                self.notify("no transition after this event", timeout=1.5)
            else:
                self._moved(replay.seek(index))

    def action_previous_transition(self) -> None:
        replay = self.replay
        if replay is not None:
            index = replay.previous_transition()
            if index is None:
                self.notify("no transition before this event", timeout=1.5)
            else:
                self._moved(replay.seek(index))

    def action_start(self) -> None:
        if self.replay is not None:
            self._moved(self.replay.seek(0))

    def action_end(self) -> None:
        if self.replay is not None:
            self._moved(self.replay.seek(len(self.replay.events) - 1))

    def action_speed(self, by: int) -> None:
        self.speed_index = max(0, min(len(SPEEDS) - 1, self.speed_index + by))
        self.refresh_views(set())

    def action_play(self) -> None:
        replay = self.replay
        if replay is None:
            return
        if self.playing:
            self._stop_playing()
        else:
            if replay.cursor >= len(replay.events) - 1:
                replay.seek(0)
            self.playing = True
            self._play_ts = replay.play_time()
            self._play_timer = self.set_interval(PLAY_TICK, self._play_tick)
        self.refresh_views(None)

    def _stop_playing(self) -> None:
        self.playing = False
        if self._play_timer is not None:
            self._play_timer.stop()
            self._play_timer = None

    def _play_tick(self) -> None:
        replay = self.replay
        if replay is None:
            return
        self._play_ts += PLAY_TICK * SPEEDS[self.speed_index]
        index = replay.index_at(self._play_ts)
        if index >= len(replay.events) - 1:
            self._stop_playing()
            index = len(replay.events) - 1
        self._moved(replay.seek(index) if index > replay.cursor else set())

    def action_open(self) -> None:
        if len(self.replay_paths) < 2:
            return
        self._stop_playing()
        index = (self.replay_index + 1) % len(self.replay_paths)
        try:
            board = self._replay_board(index)
        except (LogError, OSError, ValueError) as exc:
            # Fix (tests/reliability): a FILE after the first that cannot be shown (no event
            # in it, or unreadable since the start) was a traceback that ended the app.
            name = self.replay_paths[index]
            what = str(exc) if isinstance(exc, LogError) else f"{name}: {exc}"
            self.notify(f"cannot replay {what}", severity="error", timeout=6, markup=False)
            return
        self.replay_index = index
        self.board = board
        self.refresh_views(None)

    # --- admin ------------------------------------------------------------------------------

    def _target(self) -> str | None:
        if isinstance(self.screen, ServiceScreen):
            return self.screen.service
        return self.main.query_one(ServicesTable).selected

    def action_admin(self, action: str) -> None:
        source = self.source
        if source is None or not source.admin_enabled:
            return
        service: str | None
        if action == "heartbeat":
            running = self.board.projection.monitor.running
            action, service = ("stop" if running else "start"), None
            question = f"{action.capitalize()} the heartbeat (all probing) of {source.label}?"
        else:
            service = self._target()
            if service is None:
                self.notify("no service selected", severity="warning")
                return
            if action == "pause":
                view = self.board.projection.services.get(service)
                if view is not None and view.fsm.state == "paused":
                    action = "resume"
            question = f"{action} {service}?"
        self.push_screen(ConfirmScreen(question), partial(self._confirmed, action, service))

    def _confirmed(self, action: str, service: str | None, yes: bool | None) -> None:
        if not yes:
            self.notify(f"{action}: cancelled", timeout=1.5, markup=False)
            return
        self.run_worker(
            partial(self._send_admin, action, service),
            thread=True,
            group="admin",
            exit_on_error=False,
        )

    def _send_admin(self, action: str, service: str | None) -> None:
        assert self.source is not None
        try:
            answer = self.source.admin(action, service)
            ok, text = answer.ok, answer.message
        except Exception as exc:  # never a crash for an admin action: say what went wrong
            ok, text = False, f"{action}: {type(exc).__name__}: {exc}"
        self.call_from_thread(
            self.notify,
            text,
            title="admin",
            severity="information" if ok else "error",
            timeout=4 if ok else 8,
            markup=False,
        )
