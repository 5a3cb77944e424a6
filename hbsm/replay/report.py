"""Rendering of replay results: text for a terminal, JSON (msgspec) for machines.

Text is what an operator reads during an incident review: times in UTC ISO-8601, durations in
the largest units that matter, one entry per line. JSON carries the same structures, with
seconds as numbers and times both as epoch seconds and ISO-8601.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

import msgspec

from hbsm._format import duration, rate
from hbsm.replay.analysis import Hole, ReplayReport, StatsReport
from hbsm.replay.clock import STEP_NAMED, ClockStep
from hbsm.replay.incidents import Incident
from hbsm.replay.verify import VerifyResult
from hbsm.replay.whatif import Side, WhatIfReport

__all__ = [
    "clock_notes",
    "hole_notes",
    "render_json",
    "stats_line",
    "text_replay",
    "text_stats",
    "text_verify",
    "text_whatif",
]

_json = msgspec.json.Encoder()


def render_json(report: Any) -> str:
    return msgspec.json.format(_json.encode(report), indent=2).decode() + "\n"


def _table(rows: Sequence[Sequence[str]], right: str = "", indent: str = "  ") -> list[str]:
    """Rows padded into columns; `right` holds "r" at the index of each right-aligned column."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(w) if i < len(right) and right[i] == "r" else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append((indent + "  ".join(cells)).rstrip())
    return lines


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _read_notes(
    skipped: int,
    torn: int,
    holes: Sequence[Hole] = (),
    steps: Sequence[ClockStep] = (),
    steps_total: int = 0,
) -> list[str]:
    notes = []
    if skipped:
        notes.append(f"skipped {_plural(skipped, 'bad line')} (--skip-bad)")
    if torn:
        notes.append(f"ignored {_plural(torn, 'torn last line')}")
    notes.extend(hole_notes(holes))
    notes.extend(clock_notes(steps, steps_total))
    return notes


def hole_notes(holes: Sequence[Hole]) -> list[str]:
    return [f"{h.path}:{h.line}: {h.message}; replayed across it (--skip-bad)" for h in holes]


def clock_notes(steps: Sequence[ClockStep], total: int) -> list[str]:
    notes = [f"warning: {step.describe()}" for step in steps]
    if total > len(steps):
        notes.append(f"warning: and {total - len(steps):,} more steps back of the clock")
    return notes


def text_replay(r: ReplayReport) -> str:
    out = []
    span = ""
    if r.first_seq is not None:
        span = f" (seq {r.first_seq}..{r.last_seq}, {r.first_time} .. {r.last_time})"
    out.append(f"replay of {', '.join(r.files)}: {_plural(r.events, 'event')}{span}")
    scope = []
    if r.since is not None:
        scope.append(f"since {r.since}")
    if r.until is not None:
        scope.append(f"until {r.until}")
    if r.services_filter:
        scope.append("services " + ", ".join(r.services_filter))
    if scope:
        out.append("reporting " + "; ".join(scope))
    out.extend(_read_notes(r.skipped, len(r.torn), r.holes, r.clock_steps, r.clock_steps_total))

    out.append("")
    n = len(r.timeline)
    out.append(f"timeline ({n:,} {'entry' if n == 1 else 'entries'})")
    out.extend(
        _table([[e.time, f"#{e.seq}", e.service or "-", e.text] for e in r.timeline], right=" r")
    )
    if not r.timeline:
        out.append("  (no entries)")

    out.append("")
    out.append(f"incidents ({r.totals.incidents}: {r.totals.closed} recovered, "
               f"{r.totals.ongoing} ongoing)")  # fmt: skip
    rows = []
    for i in r.incidents:
        if i.ongoing:
            end, took = f"ongoing ({i.state})", f"{duration(i.duration_s)} so far"
        else:
            end, took = i.end_time or "", duration(i.duration_s)
        rows.append([
            i.service, i.start_time, "->", end, took,
            f"detect {duration(i.detect_s)}", f"repairs {i.repairs}", f"restarts {i.restarts}",
            f"worst {i.worst}" + "".join(_incident_notes(i)),
        ])  # fmt: skip
    out.extend(_table(rows, right="    r"))
    if not r.incidents:
        out.append("  (none)")

    out.append("")
    out.append("time to recovery (MTTR) and to detect (MTTD) per service")
    rows = [["service", "state", "incidents", "recovered", "MTTR", "MTTD", "repairs", "restarts"]]
    for t in r.services:
        rows.append([
            t.service, t.state, str(t.incidents), str(t.closed), duration(t.mttr_s),
            duration(t.mttd_s), str(t.repairs), str(t.restarts),
        ])  # fmt: skip
    tot = r.totals
    rows.append([
        "all", "", str(tot.incidents), str(tot.closed), duration(tot.mttr_s),
        duration(tot.mttd_s), str(tot.repairs), str(tot.restarts),
    ])  # fmt: skip
    out.extend(_table(rows, right="  rrrrrr"))
    return "\n".join(out) + "\n"


def _incident_notes(i: Incident) -> list[str]:
    notes = []
    if i.hole:
        if i.end_seq is None and not i.ongoing:
            notes.append(" (recovered inside a hole in the history, by the snapshot after it;")
        else:
            notes.append(" (spans a hole in the history;")
        notes.append(" not in MTTR)")
    elif i.partial:
        notes.append(" (began before this history)")
    if i.clock_back_s >= STEP_NAMED:
        notes.append(f" (the clock went back {duration(i.clock_back_s)} during it)")
    return notes


def stats_line(events: int, seconds: float) -> str:
    """The last line of --stats, always in this shape."""
    seconds = max(seconds, 1e-9)
    shown = f"{seconds:.2f}" if seconds >= 0.1 else f"{seconds:.4f}"
    return f"replayed {events} events in {shown} s ({rate(events, seconds)} events/s)"


def text_stats(s: StatsReport) -> str:
    out = [f"events by type ({', '.join(s.files)})"]
    out.extend(_table([[k, f"{n:,}"] for k, n in s.counts.items()], right=" r"))
    if not s.counts:
        out.append("  (no events)")
    out.append(f"services by final state ({s.services})")
    out.extend(_table([[k, f"{n:,}"] for k, n in s.states.items()], right=" r"))
    if not s.states:
        out.append("  (no services)")
    out.extend(_read_notes(s.skipped, len(s.torn), s.holes, s.clock_steps, s.clock_steps_total))
    out.append(stats_line(s.events, s.seconds))
    return "\n".join(out) + "\n"


def text_verify(
    v: VerifyResult,
    holes: Sequence[Hole] = (),
    steps: Sequence[ClockStep] = (),
    steps_total: int = 0,
) -> str:
    out = [
        f"verified {_plural(v.events, 'event')}: {_plural(v.facts, 'fact')} re-decided, "
        f"{_plural(v.decisions, 'decision')} matched, "
        f"{_plural(len(v.services), 'service')}",
        *hole_notes(holes),
        *clock_notes(steps, steps_total),
    ]
    return "\n".join(out) + "\n"


def _signed_int(n: int) -> str:
    return f"{n:+d}" if n else "0"


def _signed_duration(s: float | None) -> str:
    if s is None:
        return "-"
    return ("+" if s > 0 else "") + duration(s) if s else "0"


def _side_rows(title: str, a: Side, b: Side, d: Side, *, total: bool) -> list[list[str]]:
    failed = (
        [str(a.failed), str(b.failed), _signed_int(d.failed)]
        if total
        else ["yes" if a.failed else "no", "yes" if b.failed else "no", ""]
    )
    return [
        [title, "", "", ""],
        ["  repair runs", str(a.repairs), str(b.repairs), _signed_int(d.repairs)],
        ["  restarts", str(a.restarts), str(b.restarts), _signed_int(d.restarts)],
        ["  ended failed" + (" (services)" if total else ""), *failed],
        ["  mean time to detect", duration(a.mttd_s), duration(b.mttd_s),
         _signed_duration(d.mttd_s)],
        ["  incidents", str(a.incidents), str(b.incidents), _signed_int(d.incidents)],
    ]  # fmt: skip


def text_whatif(w: WhatIfReport) -> str:
    out = [
        f"what-if: {', '.join(w.changes)}",
        textwrap.fill(f"approximation: {w.approximation}", 100, subsequent_indent="  "),
        f"re-decided {_plural(w.facts, 'fact')} of {_plural(w.events, 'event')}",
        "",
    ]
    rows = [["", "recorded", "what-if", "difference"]]
    for row in w.services:
        rows.extend(_side_rows(row.service, row.recorded, row.what_if, row.difference, total=False))
    t = w.total
    rows.extend(_side_rows("total", t.recorded, t.what_if, t.difference, total=True))
    out.extend(_table(rows, right=" rrr"))
    return "\n".join(out) + "\n"
