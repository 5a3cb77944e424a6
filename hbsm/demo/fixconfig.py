"""Restore a demo service's config file from its known-good copy (FILE.good).

    python -m hbsm.demo.fixconfig FILE [FILE ...]

The `command` step of the demo's ladder: `check_config` only checks, this repairs. A file that
parses is left alone. Exit status 0 when every file parses afterwards, 1 otherwise.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

from hbsm.demo.service import good_copy

__all__ = ["fix", "main"]


def _parses(path: Path) -> bool:
    try:
        tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return True


def fix(path: Path) -> tuple[bool, str]:
    """Restore `path` if it does not parse; (parses afterwards, what was done)."""
    if _parses(path):
        return True, f"{path}: parses, left as it is"
    good = good_copy(path)
    try:
        text = good.read_text()
    except OSError as exc:
        return False, f"{path}: broken, and no good copy to restore ({good}: {exc.strerror})"
    tmp = path.with_name(f".{path.name}.restoring")
    tmp.write_text(text)
    os.replace(tmp, path)
    if not _parses(path):
        return False, f"{path}: restored from {good}, still does not parse"
    return True, f"{path}: broken; restored from {good}"


def main(argv: list[str] | None = None) -> int:
    files = sys.argv[1:] if argv is None else argv
    if not files:
        print("usage: python -m hbsm.demo.fixconfig FILE [FILE ...]", file=sys.stderr)
        return 2
    ok = True
    for name in files:
        good, line = fix(Path(name))
        print(line)
        ok = ok and good
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
