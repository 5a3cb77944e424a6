"""Debian packages a benchmark may install for itself (a peer to compare with, a load tool)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

__all__ = ["ensure_command"]


def ensure_command(command: str, package: str | None = None) -> str | None:
    """`command`'s path; one try at `apt-get install -y PACKAGE` (root only, short timeout)
    when it is missing. None when it is still missing: the caller skips its rows with a note."""
    found = shutil.which(command)
    if found or not shutil.which("apt-get") or os.geteuid() != 0:
        return found
    package = package or command
    print(f"  {command} missing: apt-get install -y {package} (once)", file=sys.stderr, flush=True)
    try:
        subprocess.run(
            ["apt-get", "install", "-y", "-q", package],
            capture_output=True,
            timeout=120,
            check=False,
            # RUNLEVEL=1: a package's init script does not start its system daemon (monit,
            # supervisord); the benchmarks run their own.
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive", "RUNLEVEL": "1"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return shutil.which(command)
