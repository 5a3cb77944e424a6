"""examples/flask_app, run as its README says (`python app/main.py`, werkzeug's development
server, hbsm embedded), in a process of its own: the original feature's routes answer, and a
broken login page is repaired in grades by restarting the app itself (the process re-executed,
the port handed over), the cooldown holding across the restarts; `hbsm replay --verify`
agrees with the log."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from example_support import ExampleRun, answers_as_documented, documented_curls, verified
from support.waiting import wait_for_sync

from hbsm.events import (
    MonitorStarted,
    MonitorStopped,
    RepairFinished,
    RepairStarted,
    RestartStarted,
    Transition,
)

HEALTHY = {"main_service": "healthy", "login_page": "healthy"}


@pytest.fixture
def example(tmp_path: Path) -> Iterator[ExampleRun]:
    app = ExampleRun(tmp_path, lambda port: [sys.executable, "app/main.py"])
    try:
        yield app
    finally:
        app.stop()


def test_the_readme_curls_answer_as_documented(tmp_path):
    # The original feature's six curl commands, as the README gives them (its thresholds).
    example = ExampleRun(tmp_path, lambda port: [sys.executable, "app/main.py"], fast=False)
    try:
        wait_for_sync(lambda: example.services() == HEALTHY, "watched and healthy", 30)
        assert len(documented_curls()) == 6
        assert answers_as_documented(example) == []
    finally:
        example.stop()


def of(history: list, kind: type, service: str) -> list:
    return [e for e in history if isinstance(e, kind) and e.service == service]


def test_the_example_serves_the_original_routes_and_restarts_itself_when_login_breaks(example):
    wait_for_sync(
        lambda: example.services() == HEALTHY, "the app's own /health and /login watched", 30
    )
    pid = example.process.pid
    for restarts in (1, 2):

        def mended(restarts: int = restarts) -> bool:
            restarted = len(of(example.history(), RestartStarted, "login_page")) == restarts
            return restarted and (example.services() or {}).get("login_page") == "healthy"

        assert example.post("/demo/break/login").status_code == 200
        assert example.get("/login").status_code == 500
        wait_for_sync(mended, f"the app restarted ({restarts}) and its login page healthy", 60)
        assert example.get("/login").status_code == 200  # mended by the restart
    assert example.process.poll() is None and example.process.pid == pid  # re-executed

    history = example.history()
    # Graded: diagnose, then check the configuration, then restart.
    steps = [e.step for e in of(history, RepairStarted, "login_page")]
    assert steps[:2] == ["diagnose", "check_config"]
    first, second = of(history, RestartStarted, "login_page")
    # The cooldown holds across the re-execution: the second restart waited it out (doubled,
    # as the app had no stable period in between).
    assert second.ts - first.ts >= first.cooldown_s == 2.0
    assert second.cooldown_s == 4.0
    starts = [e for e in history if isinstance(e, MonitorStarted)]
    assert len(starts) == 3 and {e.pid for e in starts} == {pid}
    stops = [e.reason for e in history if isinstance(e, MonitorStopped)]
    assert stops == ["restarting the process for login_page (re-executing it)"] * 2

    assert verified(example.log)

    example.process.send_signal(signal.SIGTERM)
    assert example.process.wait(30) == -signal.SIGTERM
    last = example.history()[-1]
    assert isinstance(last, MonitorStopped) and last.reason == "SIGTERM"
    assert "Traceback" not in example.err.read_text()


def test_a_broken_config_file_holds_the_restart_until_it_is_mended(example):
    wait_for_sync(lambda: example.services() == HEALTHY, "watched and healthy", 30)
    good = example.settings.read_text()
    example.settings.write_text('{"name": "flask-app example",\n  "greeting": }\n')  # a typo
    assert example.get("/login").status_code == 500  # the app reads its config on every request

    def held() -> list:
        return [
            e for e in of(example.history(), Transition, "login_page")
            if e.reason.startswith("restart held")
        ]  # fmt: skip

    wait_for_sync(held, "the restart held back: the config file is broken", 60)
    history = example.history()
    diagnose, check = of(history, RepairFinished, "login_page")[:2]
    assert (diagnose.step, check.step, check.ok) == ("diagnose", "check_config", False)
    assert "config.json: invalid JSON at line 2, column 15" in check.output
    (transition,) = held()
    assert transition.dst == "degraded" and "config.json: invalid JSON" in transition.reason
    assert not of(history, RestartStarted, "login_page")  # it would not have started again
    assert [e.pid for e in history if isinstance(e, MonitorStarted)] == [example.process.pid]

    example.settings.write_text(good)  # mended by hand: the app takes it at once
    wait_for_sync(lambda: example.services() == HEALTHY, "healthy again, no restart", 30)
    assert not of(example.history(), RestartStarted, "login_page")
    assert verified(example.log)


@pytest.mark.slow  # `just test-slow` (CI runs it)
def test_a_hung_login_page_is_mended_by_restarting_the_app(example):
    # Requests that never end (a deadlock, say): the probes time out; the restart re-executes
    # the process with a request thread still stuck.
    wait_for_sync(lambda: example.services() == HEALTHY, "watched and healthy", 30)
    assert example.post("/demo/break/hang").status_code == 200
    wait_for_sync(
        lambda: of(example.history(), RestartStarted, "login_page"), "the app restarted", 90
    )
    wait_for_sync(lambda: example.services() == HEALTHY, "mended by the restart", 60)
    diagnosed = of(example.history(), RepairFinished, "login_page")[0]
    assert diagnosed.step == "diagnose" and diagnosed.error_class == "timeout"
    assert example.get("/login").status_code == 200
    assert example.process.poll() is None
    assert verified(example.log)
