"""Save an SVG screenshot of the dashboard over a recorded history (the README's picture).

    python -m tui.screenshot [FILE] [--out docs/dashboard.svg] [--event N] [--service NAME]

The cursor goes to event N (1-based; default: the first entry into cooldown, mid-incident, or
the end), and with --service the service screen is shot instead of the main one.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from hbsm.events import Transition
from tui.app import DashboardApp
from tui.board import ReplayBoard

__all__ = ["main", "shoot"]

DEFAULT_FILE = "events/samples/crash_restart_cooldown.jsonl"
SIZE = (132, 40)


def default_cursor(board: ReplayBoard) -> int:
    for i, e in enumerate(board.events):
        if isinstance(e, Transition) and e.dst == "cooldown":
            return i
    return len(board.events) - 1


async def shoot(path: str, out: Path, event: int | None = None, service: str | None = None) -> Path:
    board = ReplayBoard.load(path)
    board.seek(event - 1 if event is not None else default_cursor(board))
    app = DashboardApp(replay_boards=[board])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        if service is not None:
            from tui.screens.service import ServiceScreen

            await app.push_screen(ServiceScreen(service))
            await pilot.pause()
        svg = app.export_screenshot(title="hbsm dashboard")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(svg, encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tui.screenshot", description=__doc__)
    parser.add_argument("file", nargs="?", default=DEFAULT_FILE)
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard.svg"))
    parser.add_argument("--event", type=int, help="cursor at this event (1-based)")
    parser.add_argument("--service", help="shoot this service's screen")
    args = parser.parse_args(argv)
    out = asyncio.run(shoot(args.file, args.out, args.event, args.service))
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
