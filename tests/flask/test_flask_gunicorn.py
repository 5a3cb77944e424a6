"""examples/flask_app under gunicorn with 4 workers, each importing the app (hbsm embedded):
one worker monitors (the log's lock elects it), the others serve the log it writes and relay
admin actions to it; killed, it is taken over from where it left off, and every worker
answers with the same view, and the README's curl commands as documented."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from example_support import ExampleRun, answers_as_documented, verified
from support.waiting import wait_for_sync

from hbsm.events import Admin, MonitorStopped, RestartFinished, RestartStarted, Transition

GUNICORN = str(Path(sys.executable).parent / "gunicorn")
WORKERS = 4


def all_say(served: ExampleRun, services: dict[str, str]) -> bool:
    """Whether enough answers in a row (from whichever workers gunicorn picks) all say so."""
    return all(served.services() == services for _ in range(3 * WORKERS))


def gunicorn(port: int) -> list[str]:
    return [GUNICORN, "--workers", str(WORKERS), "--bind", f"127.0.0.1:{port}", "app.main:app"]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ExampleRun]:
    app = ExampleRun(tmp_path, gunicorn)
    try:
        yield app
    finally:
        app.stop()


def test_the_readme_curls_answer_as_documented_from_any_worker(tmp_path):
    # The README's thresholds; its curls, POSTs included, land on whichever worker gunicorn
    # picks: a standing-by worker relays an admin action to the monitoring one.
    served = ExampleRun(tmp_path, gunicorn, fast=False)
    try:
        healthy = {"main_service": "healthy", "login_page": "healthy"}

        wait_for_sync(lambda: all_say(served, healthy), "every worker: healthy", 60)
        for _ in range(3):
            # An action is on disk when answered, and a standing-by worker reads the log up
            # to its end before answering: what was just done reads as done, on any worker.
            assert answers_as_documented(served) == []
        # The original test_heartbeat.py's checks (start/stop, then status) from any worker.
        checked = subprocess.run(
            [sys.executable, "-m", "hbsm", "check", served.base],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert len(served.monitors()) == 1  # acted on by the one monitor, whichever was asked
        # Each recorded once, and on disk by the time it was answered.
        assert [e.action for e in served.history() if isinstance(e, Admin)] == ["stop", "start"] * 4
    finally:
        served.stop()


def test_one_worker_monitors_another_takes_over_and_all_serve_the_same(served):
    healthy = {"main_service": "healthy", "login_page": "healthy"}
    # Every worker serves the same services (the others a poll behind the monitor's).
    wait_for_sync(lambda: all_say(served, healthy), "every worker: watched and healthy", 60)
    assert len(served.monitors()) == 1  # exactly one monitor

    first = served.monitors()[0]
    os.kill(first, signal.SIGKILL)  # the monitoring worker dies without a word
    wait_for_sync(lambda: len(served.monitors()) == 2, "another worker took over", 60)
    second = served.monitors()[1]
    assert second != first
    wait_for_sync(lambda: all_say(served, healthy), "every worker: healthy again", 60)

    served.process.send_signal(signal.SIGTERM)  # gunicorn stops its workers gracefully
    assert served.process.wait(30) == 0
    stopped = {e.pid: e.reason for e in served.history() if isinstance(e, MonitorStopped)}
    assert stopped[second] == "SIGTERM"
    # Every monitor but the killed one recorded its stop (a worker still standing by when the
    # master stopped them one by one may have taken over for the last moments, and stopped).
    assert set(stopped) == set(served.monitors()) - {first}
    assert "Traceback" not in served.err.read_text()


def test_restarting_the_app_is_a_graceful_reload_of_every_worker(served):
    healthy = {"main_service": "healthy", "login_page": "healthy"}
    wait_for_sync(lambda: served.services() == healthy, "the app watched and healthy", 60)
    (decider,) = served.monitors()
    assert httpx.post(served.base + "/demo/break/login", timeout=5).status_code == 200

    def restarted() -> list:
        return [e for e in served.history() if isinstance(e, RestartFinished)]

    wait_for_sync(lambda: restarted(), "the app restarted", 60)
    (started,) = [e for e in served.history() if isinstance(e, RestartStarted)]
    (finished,) = restarted()
    # Decided by one worker's monitor, finished by the next one's: the reload replaced them.
    assert started.service == "login_page" and finished.ok
    assert finished.pid is not None and finished.pid != decider
    wait_for_sync(lambda: served.services() == healthy, "the login page mended", 60)
    assert httpx.get(served.base + "/login", timeout=5).status_code == 200
    stops = [(e.pid, e.reason) for e in served.history() if isinstance(e, MonitorStopped)]
    assert (decider, "SIGTERM") in stops  # the old worker recorded its stop


def test_a_hung_monitoring_worker_is_replaced_and_another_takes_over(tmp_path):
    # SIGSTOP: the worker neither answers nor probes, and holds the log's lock. gunicorn's
    # master kills it once it misses its heartbeat (--timeout), and a standby takes over.
    served = ExampleRun(tmp_path, lambda port: [*gunicorn(port), "--timeout", "2"])
    try:
        healthy = {"main_service": "healthy", "login_page": "healthy"}
        wait_for_sync(lambda: served.services() == healthy, "watched and healthy", 60)
        (hung,) = served.monitors()
        os.kill(hung, signal.SIGSTOP)
        wait_for_sync(lambda: len(served.monitors()) == 2, "another worker took over", 60)
        assert served.monitors()[1] != hung
        wait_for_sync(lambda: all_say(served, healthy), "every worker: healthy", 60)
        wait_for_sync(lambda: not Path(f"/proc/{hung}").exists(), "the hung worker gone", 30)
        assert verified(served.log)
    finally:
        served.stop()


def test_a_broken_config_file_is_no_reason_to_reload_every_worker(served):
    # A reload would start workers that cannot boot (gunicorn's master then exits): the
    # restart is held back until the file is mended, and the app was never down.
    healthy = {"main_service": "healthy", "login_page": "healthy"}
    wait_for_sync(lambda: served.services() == healthy, "watched and healthy", 60)
    good = served.settings.read_text()
    served.settings.write_text("{")

    def held() -> bool:
        return any(
            isinstance(e, Transition) and e.reason.startswith("restart held")
            for e in served.history()
        )

    wait_for_sync(held, "the restart held back", 60)
    served.settings.write_text(good)
    wait_for_sync(lambda: all_say(served, healthy), "every worker: healthy again", 60)
    assert not [e for e in served.history() if isinstance(e, RestartStarted)]
    assert served.process.poll() is None and len(served.monitors()) == 1
    assert verified(served.log)
