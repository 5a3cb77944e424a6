"""Fault 2 of docs/reliability.md: the disk under the event log fills up.

A real `hbsm run` writes its log on a small tmpfs of its own; the test fills that filesystem with a
file until it refuses writes, kills the supervised service meanwhile, and frees the space again. No
record, no side effect (docs/architecture.md) says what must happen: while appends fail the monitor
starts no repair or restart, `/health` says why it is unhealthy, its own log (stderr) says so once,
an admin action is refused rather than carried out unrecorded, and when space returns it records the
outage, repairs what broke meanwhile and goes on, by itself.

Mounting needs root (or an unprivileged user namespace, which the test cannot share with the
monitor); without it the test is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from monitor.conftest import HbsmRun, children, hbsm_run
from monitor.support import PY, ChildService
from monitor.test_run_command import service_is, supervised, write_config
from notify.servers import WebhookReceiver

from hbsm.events import (
    LogOutage,
    MonitorStopped,
    Notification,
    ProcessStarted,
    RestartFinished,
    RestartStarted,
)
from hbsm.log import read_history

__all__ = ["children", "hbsm_run"]  # tests/monitor's fixtures, used here

DISK_BYTES = 1 << 20  # room for a few thousand events: enough to start, soon full


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted on a folder of tmp_path, unmounted at the end."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES},mode=0755", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


def fill(disk: Path) -> Path:
    """Write a file until the filesystem refuses more; return it (delete it to free the space)."""
    filler = disk / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        # The last partial chunk: byte by byte is cheap at the end of a tmpfs.
        with contextlib.suppress(OSError):
            while True:
                out.write(chunk[:512])
    return filler


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def post(url: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_full_disk_stops_every_side_effect_and_the_monitor_resumes_when_space_returns(
    tmp_path: Path,
    small_disk: Path,
    children: Callable[..., ChildService],
    hbsm_run: Callable[[Path, Path], HbsmRun],
    hook: WebhookReceiver,
) -> None:
    web = children("web")
    log = small_disk / "heartbeat.jsonl"
    config = write_config(
        tmp_path / "hbsm.toml",
        [supervised(web)],
        max_retries=1,
        restart_cooldown=0.5,
        cooldown_max=0.5,
        notify={
            "webhooks": [{"url": hook.url(), "retries": 0}],
            "on": ["log_unwritable", "log_writable"],
        },
    )
    port = next(line for line in config.read_text().splitlines() if line.startswith("port "))
    base = f"http://127.0.0.1:{port.split('=')[1].strip()}"
    run = hbsm_run(config, log)
    run.until(lambda: service_is(log, "web", "healthy"), "web healthy")
    run.until(lambda: get(f"{base}/health")[0] == 200, "/health answering 200")
    (first,) = web.started_pids()

    filler = fill(small_disk)
    run.until(lambda: not get(f"{base}/health")[1]["event_log"]["writable"], "/health: log full")
    on_disk = log.read_bytes()
    os.kill(first, signal.SIGKILL)

    # Many check intervals and cooldowns: nothing is restarted, nothing more reaches the disk.
    status, body = get(f"{base}/health")
    assert status == 503 and body["status"] == "unhealthy", body
    assert "No space left on device" in body["event_log"]["error"], body
    time.sleep(3.0)
    assert web.started_pids() == [first], "restarted while nothing could be recorded"
    _, detailed = get(f"{base}/health/detailed")
    assert detailed["event_log"]["writable"] is False
    assert detailed["event_log"]["probes_not_run"] > 0
    _, status_body = get(f"{base}/admin/heartbeat/status")
    assert status_body["log"]["writable"] is False
    # An admin action that cannot be recorded is not carried out.
    refused, answer = post(f"{base}/admin/heartbeat/stop")
    assert refused == 503 and "cannot be written" in answer["error"], answer
    assert log.read_bytes() == on_disk
    assert run.err().count("cannot write the event log") == 1, run.err()
    # Someone is told, though it cannot be recorded yet: nothing will be repaired meanwhile.
    run.until(lambda: len(hook.requests) == 1, "the log_unwritable notice")
    told = hook.requests[0].json()
    assert (told["kind"], told["level"], told["service"]) == ("log_unwritable", "critical", "")
    assert "No space left on device" in told["message"]

    filler.unlink()
    run.until(lambda: get(f"{base}/health")[1]["event_log"]["writable"], "log writable again")
    run.until(lambda: len(web.started_pids()) == 2, "web restarted once space returned")
    run.until(lambda: service_is(log, "web", "healthy"), "web healthy again")
    assert get(f"{base}/admin/heartbeat/status")[1]["running"] is True  # the stop was refused
    assert "the event log is writable again" in run.err()
    run.until(lambda: len(hook.requests) == 2, "the log_writable notice")
    assert hook.requests[1].json()["kind"] == "log_writable"
    assert hook.requests[1].json()["incident"] == told["incident"]

    run.signal(signal.SIGTERM)
    assert run.wait() == 0, run.err()
    assert "Traceback" not in run.err()
    history = list(read_history(log))
    # Nothing already recorded was lost: the log before the outage is a prefix of the log now.
    assert log.read_bytes().startswith(on_disk)
    # Both notices are on record: the first one written once the log took writes again.
    notices = [e for e in history if isinstance(e, Notification)]
    assert [(n.level, n.delivered, n.service) for n in notices] == [
        ("critical", True, None),
        ("info", True, None),
    ]
    (outage,) = [e for e in history if isinstance(e, LogOutage)]
    assert "No space left on device" in outage.error and outage.skipped > 0
    (restart,) = [e for e in history if isinstance(e, RestartStarted)]
    assert restart.ts >= outage.ts, "a restart started during the outage"
    started = [e.pid for e in history if isinstance(e, ProcessStarted | RestartFinished)]
    assert started == web.started_pids()  # every process hbsm started is on record
    assert isinstance(history[-1], MonitorStopped)
    verified = subprocess.run(
        [PY, "-m", "hbsm", "replay", "--verify", str(log)], capture_output=True, text=True
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_stopped_while_the_disk_is_full_it_writes_everything_once_space_returns(
    tmp_path: Path,
    small_disk: Path,
    children: Callable[..., ChildService],
    hbsm_run: Callable[[Path, Path], HbsmRun],
) -> None:
    # SIGTERM in an outage: the monitor keeps what it buffered and tries for its grace period
    # rather than exit with events unwritten; space returns in time, so nothing is lost.
    web = children("web")
    log = small_disk / "heartbeat.jsonl"
    run = hbsm_run(write_config(tmp_path / "hbsm.toml", [supervised(web)]), log)
    run.until(lambda: service_is(log, "web", "healthy"), "web healthy")
    filler = fill(small_disk)
    run.until(lambda: "cannot write the event log" in run.err(), "the outage noticed")
    run.signal(signal.SIGTERM)
    time.sleep(1.0)
    assert run.proc.poll() is None, "exited with events unwritten: " + run.err()
    filler.unlink()
    assert run.wait() == 0, run.err()
    history = list(read_history(log))
    assert any(isinstance(e, LogOutage) for e in history)
    last = history[-1]
    assert isinstance(last, MonitorStopped) and last.reason == "SIGTERM"
