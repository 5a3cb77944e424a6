"""The `hbsm` command line (placeholder until the replay command lands)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    return 0
