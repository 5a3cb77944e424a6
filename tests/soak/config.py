"""The soak's hbsm.toml: N HTTP services on the flaky targets (tests/soak/target.py), probed
every INTERVAL, repaired by a cheap and safe ladder: `diagnose`, then the `http` step POSTing the
service's hook on the target (which mends it). No restarts: nothing is killed or started.

No service is critical, so GET /health answers 200 however many are broken: any other status
from the API is an error of the soak. The log rotates past MAX_BYTES: with 1,000 services about
every 50 s (each new segment opens with a ~2.5 MB snapshot), so rotation, snapshots and the
dashboard's following across segments are exercised a dozen times in ten minutes. Every segment
is kept, so `hbsm replay --verify` sees the whole run.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.soak.target import HANG_MS

__all__ = ["INTERVAL", "MAX_BYTES", "MAX_RETRIES", "PROBE_TIMEOUT", "write_config"]

INTERVAL = 1.0
MAX_RETRIES = 3
# Below the interval (a probe never overlaps the next) and below HANG_MS (a hanging target
# times out), with room for a loaded machine's scheduling delays.
PROBE_TIMEOUT = 0.8
assert PROBE_TIMEOUT < INTERVAL and PROBE_TIMEOUT * 1000 < HANG_MS
MAX_BYTES = 8 * 2**20
LADDER = ["diagnose", "http"]


def write_config(
    directory: Path,
    names: list[str],
    target_port: int,
    api_port: int,
    log: Path,
    max_bytes: int = MAX_BYTES,
) -> Path:
    target = f"http://127.0.0.1:{target_port}"
    lines = [
        "auto_start = true",
        'host = "127.0.0.1"',
        f"port = {api_port}",
        f"check_interval = {INTERVAL}",
        f"max_retries = {MAX_RETRIES}",
        "concurrency = 200",
        f"ladder = {json.dumps(LADDER)}",
        "",
        "[log]",
        f"path = {json.dumps(str(log))}",
        f"max_bytes = {max_bytes}",
        "keep_segments = 1000",
        'level = "INFO"',
    ]
    for name in names:
        lines += [
            "",
            "[[services]]",
            f'name = "{name}"',
            f'url = "{target}/svc/{name}"',
            f"probe = {{ timeout = {PROBE_TIMEOUT} }}",
            f'steps = {{ http = {{ url = "{target}/fix/{name}", timeout = 5.0 }} }}',
        ]
    path = directory / "hbsm.toml"
    path.write_text("\n".join(lines) + "\n")
    return path
