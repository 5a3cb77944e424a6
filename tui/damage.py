"""What a replayed history lacked or got wrong, in the few words the dashboard's replay notice
has room for: bad lines skipped, compressed segments cut short, holes in seq (a segment
deleted), a clock that went back. `hbsm replay` refuses such a log (exit 2) unless --skip-bad;
the dashboard shows what it can, and says what it read past. No Textual here.
"""

from __future__ import annotations

from pathlib import Path

from hbsm._format import duration
from hbsm.log import ReadStats
from hbsm.replay.clock import ClockStep

__all__ = ["damage_notes"]

# Places named in one note; the rest are counted.
_PLACES = 3
_REASON = 60


def _where(path: Path, line: int) -> str:
    return f"{path.name}:{line}"


def _short(text: str) -> str:
    return text if len(text) <= _REASON else text[: _REASON - 1] + "…"


def damage_notes(stats: ReadStats, steps: list[ClockStep], steps_total: int) -> list[str]:
    """One line per kind of damage met (none: an empty list)."""
    notes: list[str] = []
    lines = stats.skipped - len(stats.damaged)  # each damaged segment also counts one
    if lines > 0:
        places = ", ".join(
            f"{_where(path, line)} ({_short(reason)})" for path, line, reason in stats.bad[:_PLACES]
        )
        more = f" and {lines - min(lines, _PLACES)} more" if lines > _PLACES else ""
        notes.append(f"skipped {lines} bad line{'s' if lines != 1 else ''}: {places}{more}")
    for path, line, reason in stats.damaged:
        notes.append(f"skipped the rest of {_where(path, line)} on: {_short(reason)}")
    for hole in stats.holes:
        seqs = f"seq {hole.first}" if hole.first == hole.last else f"seqs {hole.first}..{hole.last}"
        notes.append(
            f"{seqs} missing before {_where(hole.path, hole.line)}: a hole in the history "
            f"(after {hole.after.name}: a segment deleted, or lost); the state after it is "
            "the snapshot's"
        )
    for step in steps:
        notes.append(
            f"time goes back {duration(step.back_s)} at seq {step.seq} ({step.time}, after "
            f"{step.previous_time}): the clock was stepped back"
        )
    if steps_total > len(steps):
        notes.append(f"and {steps_total - len(steps)} more steps back of the clock")
    return notes
