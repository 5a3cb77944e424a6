"""What a benchmark reports: records of (figure, value, baseline, ratio, goal, met), printed as a
table and written as JSON with the machine they were measured on. Benchmarks never assert."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["Record", "Results", "best_of", "fmt", "machine_info", "rate"]


@dataclass
class Record:
    figure: str
    value: float | None
    unit: str = ""
    baseline: float | None = None
    ratio: float | None = None
    # What the figure should reach, and whether it did (None: a figure without a goal).
    goal: str = ""
    met: bool | None = None
    note: str = ""
    bench: str = ""

    def cells(self) -> list[str]:
        met = "" if self.met is None else ("yes" if self.met else "no")
        return [
            self.figure,
            fmt(self.value, self.unit),
            fmt(self.baseline, self.unit),
            "" if self.ratio is None else f"{self.ratio:.3f}",
            self.goal,
            met,
        ]


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3f}"
    return f"{text} {unit}".strip()


@dataclass
class Results:
    records: list[Record] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def add(self, record: Record) -> Record:
        self.records.append(record)
        print(f"  {record.figure}: {' | '.join(c for c in record.cells()[1:] if c)}", flush=True)
        return record

    def print(self) -> None:
        """The table on stdout, then each figure's note."""
        print()
        print(self.table())
        notes = [f"  {r.figure}: {r.note}" for r in self.records if r.note]
        if notes:
            print("\nnotes:\n" + "\n".join(notes))

    def table(self) -> str:
        header = ["figure", "value", "baseline", "ratio", "goal", "met"]
        rows = [header, *[r.cells() for r in self.records]]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = []
        for n, row in enumerate(rows):
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(line.rstrip() for line in lines)

    def write_json(self, path: Path) -> None:
        body = {
            "machine": machine_info(),
            "params": self.params,
            "results": [asdict(r) for r in self.records],
        }
        path.write_bytes(msgspec.json.format(msgspec.json.encode(body), indent=2) + b"\n")


# The raw decode rate of the machine docs/performance.md's figures were measured on (2 vCPUs,
# AMD EPYC): a machine much below it is a slower machine, whose figures read as capacity, not as
# a bug.
DOCS_RAW_DECODE = 2_514_736


def raw_decode_rate(seconds: float = 0.5) -> float:
    """Events per second msgspec decodes untyped, here and now: the machine's speed at the work
    hbsm does most (the lines are probes as the log writes them)."""
    line = (b'{"type":"probe","seq":123456,"ts":1793502030.012,"service":"svc-042","ok":true,'
            b'"latency_ms":4.81,"status":200}\n')  # fmt: skip
    block = line * 10_000
    decoder = msgspec.json.Decoder()
    decoded, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        decoded += len(decoder.decode_lines(block))
    return decoded / elapsed


def machine_line() -> str:
    """One line naming the machine, for a verdict to be read against."""
    info = machine_info()
    rate = raw_decode_rate()
    return (
        f"machine: {info['cpu'] or 'unknown CPU'}, {info['cpu_count']} CPUs; raw decode "
        f"{rate / 1e6:.2f} M events/s ({rate / DOCS_RAW_DECODE:.2f}x the machine "
        "docs/performance.md was measured on)"
    )


def machine_info() -> dict[str, Any]:
    import hbsm

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu or platform.processor(),
        "msgspec": msgspec.__version__,
        "hbsm": hbsm.__version__,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def best_of(
    n: int, fn: Callable[[], Any], clock: Callable[[], float] = time.perf_counter
) -> tuple[float, Any]:
    """The shortest of n timed runs of fn, and what the last run returned."""
    best = float("inf")
    result = None
    for _ in range(n):
        start = clock()
        result = fn()
        best = min(best, clock() - start)
    return best, result


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")
