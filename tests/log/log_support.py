"""Helpers shared by the log tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

from hbsm.events import Event, OpaqueEvent, Probe, Snapshot

REPO = Path(__file__).resolve().parents[2]


def probes(count: int, *, prefix: str = "svc", ts: float = 0.0) -> list[Event]:
    return [
        Probe(service=f"{prefix}-{i}", ok=i % 3 != 0, latency_ms=float(i), ts=ts)
        for i in range(count)
    ]


def seqs(events: Sequence[Event | OpaqueEvent]) -> list[int]:
    return [event.seq for event in events]


def without_snapshots(events: Sequence[Event | OpaqueEvent]) -> list[Event | OpaqueEvent]:
    return [event for event in events if not isinstance(event, Snapshot)]


def raw_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def python(code: str, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter (a real second process), from the repository root."""
    return subprocess.run(  # type: ignore[call-overload]
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        **kwargs,
    )


def spawn(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
