"""The README's performance table, from a `just bench` run's bench-results.json.

    python -m tests.bench.summary [bench-results.json]

Prints, in Markdown, the machine the run was on and every figure that has a goal: its value,
its baseline measured in the same run, the ratio, the goal and whether it was met. Paste it
over the README's table after a full run, so the table is always one run's, on one machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec

from tests.bench.results import Record, fmt

__all__ = ["main", "markdown"]


def markdown(body: dict[str, Any]) -> str:
    machine = body.get("machine", {})
    records = [Record(**r) for r in body.get("results", [])]
    lines = [
        f"Measured {machine.get('when', '?')} on {machine.get('cpu') or 'an unknown CPU'}, "
        f"{machine.get('cpu_count', '?')} CPUs, Python {machine.get('python', '?')}:",
        "",
        "| figure | value | baseline, same run | ratio | goal | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in records:
        if not r.goal:
            continue
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}"
        met = "" if r.met is None else ("yes" if r.met else "**no**")
        baseline = "" if r.baseline is None else fmt(r.baseline, r.unit)
        cells = [r.figure, fmt(r.value, r.unit), baseline, ratio, r.goal, met]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.summary", description=__doc__.splitlines()[0]
    )
    parser.add_argument("results", nargs="?", type=Path, default=Path("bench-results.json"))
    path = parser.parse_args(argv).results
    try:
        body = msgspec.json.decode(path.read_bytes())
    except (OSError, msgspec.DecodeError) as exc:
        print(f"{path}: cannot read a bench run ({exc}); run `just bench` first", file=sys.stderr)
        return 2
    print(markdown(body))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
