"""One service in depth: state timeline, latency chart, last errors, repair runs, restarts and
cooldowns, all as of the board's "now" (the replay cursor, in replay mode)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from hbsm.events import (
    Probe,
    RepairFinished,
    RepairStarted,
    RestartFinished,
    RestartStarted,
    ServiceView,
    Transition,
)
from hbsm.projection import cert_days_left, vantage_points
from tui.board import AnyEvent, Board
from tui.format import clock, duration, latency, next_text, stamp
from tui.widgets.badges import STATE_CLASSES, badge
from tui.widgets.latency import LatencyChart

__all__ = ["ServiceScreen", "slow_threshold"]

TIMELINE = 20
ERRORS = 8
RUNS = 6
OUTPUT_TAIL = 160


def slow_threshold(config: dict[str, Any], name: str) -> float | None:
    """The service's `probe.slow_ms` from the config the monitor recorded at start, if any."""
    for entry in config.get("services") or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            probe = entry.get("probe")
            value = probe.get("slow_ms") if isinstance(probe, dict) else None
            return float(value) if isinstance(value, int | float) else None
    return None


def _tail(output: str) -> str:
    output = " ".join(output.split())
    return output if len(output) <= OUTPUT_TAIL else "…" + output[-OUTPUT_TAIL:]


class Section(Static):
    COMPONENT_CLASSES = STATE_CLASSES


class ServiceScreen(Screen[None]):
    BINDINGS = [Binding("escape,q", "app.pop_screen", "back")]

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="service-body"):
            yield Section(id="summary")
            yield LatencyChart(id="latency")
            yield Section(id="timeline")
            yield Section(id="errors")
            yield Section(id="runs")
            yield Section(id="restarts")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#latency").border_title = "latency"
        self.query_one("#timeline").border_title = "state timeline"
        self.query_one("#errors").border_title = "last errors"
        self.query_one("#runs").border_title = "repair runs"
        self.query_one("#restarts").border_title = "restarts and cooldowns"
        board = getattr(self.app, "board", None)
        if board is not None:
            self.show(board)

    def show(self, board: Board) -> None:
        view = board.projection.services.get(self.service)
        now = board.now()
        events = board.notable(self.service)
        summary = self.query_one("#summary", Section)
        chart = self.query_one(LatencyChart)
        if view is None:
            summary.update(f" {self.service}: not in the log as of {stamp(now)}")
            chart.show([], None)
        else:
            summary.update(self._summary(summary, view, now))
            slow = slow_threshold(board.projection.monitor.config, self.service)
            chart.show(view.latency_ms, slow)
        timeline = self.query_one("#timeline", Section)
        timeline.update(_timeline(timeline, events, now))
        self.query_one("#errors", Section).update(_errors(view, events))
        self.query_one("#runs", Section).update(_runs(events))
        self.query_one("#restarts", Section).update(_restarts(events, now))

    def _summary(self, widget: Section, view: ServiceView, now: float) -> Text:
        fsm = view.fsm
        text = Text()
        text.append(f" {view.name} ", style="bold reverse")
        text.append(" ")
        text.append_text(badge(widget, fsm.state))
        text.append(f"  for {duration(now - fsm.since)}" if fsm.since else "")
        text.append(f"   next: {next_text(view, now)}", style="bold")
        text.append(f"\n {view.description or '-'}  ·  {view.probe_kind} {view.target}")
        text.append("  ·  critical" if view.critical else "")
        text.append(f"  ·  pid {view.pid}" if view.pid is not None else "")
        if view.owner is not None or view.seen:
            text.append(f"\n decided by {view.owner or 'no node now'}  ·  seen: ")
            text.append(_vantage(view, now))
        if view.cert is not None:
            text.append_text(_certificate(view, now))
        p = view.policy
        text.append(
            f"\n failures {fsm.failures}/{p.max_retries}  ·  probes failed {view.probes_failed}"
            f"  ·  repairs {view.repairs_total}  ·  restarts {view.restarts_total}"
            f" ({len(fsm.restarts)}/{p.restart_budget} in {duration(p.restart_window)})"
            f"  ·  every {p.check_interval:g} s  ·  as of {stamp(now)}",
            style="dim",
        )
        return text


def _certificate(view: ServiceView, now: float) -> Text:
    """The TLS certificate an https service presents: its end, and how near it is."""
    cert = view.cert
    assert cert is not None
    left = cert_days_left(cert, now)
    line = Text(f"\n certificate until {stamp(cert.not_after)}  ·  ")
    if view.cert_expiring is not None:
        when = f"{left:.1f} days left" if left >= 0 else "EXPIRED"
        line.append(f"{when} (reported: renew it)", style="bold yellow")
    else:
        line.append(f"{left:.0f} days left")
    return line


def _vantage(view: ServiceView, now: float) -> str:
    """Each vantage point's latest word, e.g. "n1 ok, n2 timeout 4 s ago, n3 ok"."""
    return ", ".join(
        f"{node} ok" if f.ok else f"{node} {f.error or 'failing'} {duration(now - f.ts)} ago"
        for node, f in vantage_points(view).items()
    )


def _timeline(widget: Section, events: Sequence[AnyEvent], now: float) -> Text:
    moves = [e for e in events if isinstance(e, Transition) and e.src != e.dst]
    text = Text(no_wrap=True, overflow="ellipsis")
    if not moves:
        return Text("no transition yet", style="dim")
    shown = moves[-TIMELINE:]
    for i, e in enumerate(shown):
        nxt = shown[i + 1].ts if i + 1 < len(shown) else now
        if i:
            text.append("\n")
        text.append(f"{clock(e.ts)} ", style="dim")
        text.append_text(badge(widget, e.src))
        text.append(" → ")
        text.append_text(badge(widget, e.dst))
        text.append(f" {duration(nxt - e.ts):>8}  ", style="bold")
        text.append(f"{e.trigger}: {e.reason}", style="italic")
    return text


def _errors(view: ServiceView | None, events: Sequence[AnyEvent]) -> Text:
    failed = [e for e in events if isinstance(e, Probe) and (not e.ok or e.error)]
    text = Text(no_wrap=True, overflow="ellipsis")
    if view is not None and view.last_problem:
        when = clock(view.last_problem_ts)
        text.append(f"{when} {view.last_problem}\n", style="bold red")
    if not failed:
        text.append("no failed probe", style="dim")
        return text
    for i, e in enumerate(reversed(failed[-ERRORS:])):
        if i:
            text.append("\n")
        status = f" HTTP {e.status}" if e.status is not None else ""
        text.append(f"{clock(e.ts)} ", style="dim")
        text.append(f"{e.error or 'failed'}{status}", style="red")
        text.append(f" {latency(e.latency_ms)}  {e.detail}")
    return text


def _runs(events: Sequence[AnyEvent]) -> Text:
    runs: dict[int, list[RepairStarted | RepairFinished]] = {}
    for e in events:
        if isinstance(e, RepairStarted | RepairFinished):
            runs.setdefault(e.run, []).append(e)
    if not runs:
        return Text("no repair run", style="dim")
    text = Text(no_wrap=True, overflow="ellipsis")
    numbers = sorted(runs)[-RUNS:]
    for n, run in enumerate(numbers):
        steps = runs[run]
        first = steps[0]
        ladder = first.ladder if isinstance(first, RepairStarted) else ()
        if n:
            text.append("\n")
        text.append(f"run {run}", style="bold")
        text.append(f"  {stamp(first.ts)}  ladder: {' → '.join(ladder) or '?'}\n", style="dim")
        finished = {(e.index, e.step): e for e in steps if isinstance(e, RepairFinished)}
        for e in steps:
            if not isinstance(e, RepairStarted):
                continue
            done = finished.get((e.index, e.step))
            text.append(f"  {e.index + 1}. {e.step:<14}")
            if done is None:
                text.append("running…", style="yellow")
            elif done.ok:
                text.append("ok    ", style="green")
            else:
                text.append("FAILED", style="bold red")
            if done is not None:
                cls = f" [{done.error_class}]" if done.error_class else ""
                text.append(f" {done.duration_ms:>6.0f} ms{cls}  ")
                text.append(_tail(done.output), style="dim")
            text.append("\n")
    text.rstrip()
    return text


def _cooldown(e: Transition, until: float, now: float) -> str:
    left = duration(until - now) if until > now else ""
    if e.hold:  # a log of the first rules: the cooldown held the service until its end
        state = f"ends in {left}" if left else "over"
        return f"cooldown {duration(until - e.ts)} until {clock(until)} ({state})"
    # A cooldown only gates the next restart (its length runs from the restart's decision).
    state = f"in {left}" if left else "allowed now"
    return f"no restart before {clock(until)} ({state})"


def _restarts(events: Sequence[AnyEvent], now: float) -> Text:
    rows: list[tuple[float, Text]] = []
    for e in events:
        line = Text(f"{stamp(e.ts)} ", style="dim")
        if isinstance(e, RestartStarted):
            line.append(f"restart #{e.attempt} started (backoff {e.backoff})")
        elif isinstance(e, RestartFinished):
            code = f" exit {e.exit_code}" if e.exit_code is not None else ""
            style = "green" if e.ok else "bold red"
            line.append(f"restart {'ok' if e.ok else 'FAILED'}{code}", style=style)
            line.append(f" {e.duration_ms:.0f} ms  {_tail(e.output)}")
        elif isinstance(e, Transition) and e.dst == "cooldown" and e.until is not None:
            line.append(_cooldown(e, e.until, now), style="blue")
        else:
            continue
        rows.append((e.ts, line))
    if not rows:
        return Text("no restart", style="dim")
    text = Text(no_wrap=True, overflow="ellipsis")
    for i, (_, line) in enumerate(rows[-12:]):
        if i:
            text.append("\n")
        text.append_text(line)
    return text
