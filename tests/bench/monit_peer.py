"""Monit (C, Debian's package) checking the same kind of services, for its CPU per check.

Monit runs in the foreground (`monit -I`) on a control file of its own: `SERVICES` hosts, each
`if failed port P protocol http request "/ok"` every daemon cycle of 1 s, against a target in
this process's own thread (tests/probes/servers.py's HttpTarget counts the requests, so the checks
Monit actually made are known). Monit checks one service after another, so it cannot keep 1,000
services at 1 s even against a fast target: its checks per second are reported beside its CPU
per check. Missing Monit, and no way to install it: `measure` returns None (the row is skipped
with a note).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench.debian import ensure_command
from tests.bench.procstat import cpu_seconds
from tests.probes.servers import HttpTarget

__all__ = ["measure"]


def _control_file(directory: Path, port: int, services: int) -> Path:
    lines = [
        "set daemon 1",
        f"set logfile {directory / 'monit.log'}",
        f"set idfile {directory / 'monit.id'}",
        f"set statefile {directory / 'monit.state'}",
        f"set pidfile {directory / 'monit.pid'}",
    ]
    for i in range(services):
        lines += [
            f"check host svc-{i:04d} with address 127.0.0.1",
            f'    if failed port {port} protocol http request "/ok" with timeout 5 seconds'
            " then alert",
        ]
    path = directory / "monitrc"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)  # monit refuses a control file others can read
    return path


def measure(services: int, seconds: float, warmup: float = 3.0) -> dict[str, Any] | None:
    monit = ensure_command("monit")
    if monit is None:
        return None
    target = HttpTarget().start()
    try:
        with tempfile.TemporaryDirectory(prefix="hbsm-bench-monit-") as tmp:
            control = _control_file(Path(tmp), target.port, services)
            process = subprocess.Popen(
                [monit, "-I", "-c", str(control)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "HOME": tmp},
            )
            try:
                time.sleep(warmup)
                if process.poll() is not None:
                    return None
                cpu0, requests0, w0 = cpu_seconds(process.pid), target.requests, time.perf_counter()
                time.sleep(seconds)
                cpu1, requests1 = cpu_seconds(process.pid), target.requests
                elapsed = time.perf_counter() - w0
            finally:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            version = subprocess.run(
                [monit, "-V"], capture_output=True, text=True, check=False
            ).stdout.split("\n")[0]
    finally:
        target.stop()
    checks = requests1 - requests0
    return {
        "cpu_s": cpu1 - cpu0,
        "checks": checks,
        "seconds": elapsed,
        "version": version.strip(),
    }
