"""The status page served by the Flask blueprint, in a real headless Chromium: the same bytes as
the standalone app's, and whatever the server says (a service's name, its description, a
probe's output) shown as text, never markup; on a phone's width, one card per service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from heartbeat_support import flask_app
from support.browser import (
    chromium,
    csp_violations,
    need_chromium,
    state_of,
    until,
    visible_buttons,
)

from hbsm.api.page import page
from hbsm.events import Event, MonitorStarted, Probe, ServiceRegistered, Transition
from hbsm.log import FileEventLog

HOSTILE_NAME = "<img src=x onerror=\"document.title='owned'\">"
HOSTILE_TEXT = "<b>bold</b><script>document.title='owned'</script>"


def hostile_log(path: Path) -> None:
    """A log (as another writer could leave it) whose names and texts are markup."""
    events: list[Event] = [
        MonitorStarted(ts=1.0, pid=1, version="test"),
        ServiceRegistered(ts=1.0, service=HOSTILE_NAME, description=HOSTILE_TEXT),
        ServiceRegistered(ts=1.0, service="plain", description="a plain one"),
        Probe(
            ts=2.0, service=HOSTILE_NAME, ok=False, status=500, error="status", detail=HOSTILE_TEXT
        ),
        Transition(
            ts=2.0,
            service=HOSTILE_NAME,
            src="unknown",
            dst="degraded",
            trigger="probe_failed",
            reason=HOSTILE_TEXT,
            failures=1,
        ),
        Probe(ts=2.0, service="plain", ok=True, status=200, latency_ms=3.0),
        Transition(ts=2.0, service="plain", src="unknown", dst="healthy", trigger="probe_ok"),
    ]
    log = FileEventLog.open(path)
    try:
        log.append(events)
    finally:
        log.close()


def test_the_blueprint_serves_the_same_page_and_shows_markup_as_text(
    tmp_path: Path, following: Any, served: Any
) -> None:
    need_chromium()
    from selenium.webdriver.common.by import By

    log = tmp_path / "events" / "heartbeat.jsonl"
    hostile_log(log)
    app, _ = following(log, app=flask_app("follower", index=False))
    server = served(app).serve()
    answer = httpx.get(server.base + "/")
    assert answer.content == page().body  # the standalone app's bytes, by the same code
    assert answer.headers["content-security-policy"] == page().headers()["Content-Security-Policy"]

    with chromium() as driver:
        driver.get(server.base + "/")
        until(driver, lambda d: state_of(d, "plain") == "healthy")
        assert state_of(driver, HOSTILE_NAME) == "degraded"
        row = driver.find_element(By.CSS_SELECTOR, "#services tbody tr")
        assert row.find_element(By.CSS_SELECTOR, ".name").text == HOSTILE_NAME
        assert row.find_element(By.CSS_SELECTOR, ".desc").text == HOSTILE_TEXT
        assert HOSTILE_TEXT in row.find_element(By.CSS_SELECTOR, ".incident").text
        # Nothing of it became markup, nor ran.
        assert driver.find_elements(By.CSS_SELECTOR, "#services img, #services b") == []
        assert driver.title == "hbsm status"
        assert visible_buttons(driver) == []  # no token entered
        # On a phone: one card per service, no table header.
        driver.set_window_size(390, 844)
        until(driver, lambda d: not d.find_element(By.CSS_SELECTOR, "thead").is_displayed())
        assert row.find_element(By.CSS_SELECTOR, ".name").is_displayed()
        assert csp_violations(driver) == []
