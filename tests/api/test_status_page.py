"""The status page (`GET /`) in a real headless Chromium, against a real `hbsm run` probing a
real local target: it follows a fault live (the event stream), offers admin actions only once
the operator's token is taken, and acts; it says when it lost the monitor and follows it again
once it is back. No CSP violation in the browser's console.
(The Flask blueprint's page: tests/flask/test_flask_status_page.py.)

HBSM_PAGE_SCREENSHOT=PATH saves the page of the first test, a few services in different states,
there (docs/status-page.png is made so).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from monitor.support import write_toml_config
from probes.servers import SwitchableTarget
from support.browser import (
    chromium,
    csp_violations,
    enter_token,
    need_chromium,
    state_of,
    until,
    visible_buttons,
)
from support.configs import TIGHT
from support.waiting import wait_for_sync

from hbsm.vocabulary import URL_SERVICE_ACTIONS

TOKEN = "page-token"


@pytest.fixture
def target() -> Iterator[SwitchableTarget]:
    served = SwitchableTarget()
    served.start()
    yield served
    served.stop()


class HbsmRun:
    """`hbsm run` probing four services of `target`, with an admin token, on a port of its
    own; `start()` again after `kill()` serves the same log on the same port."""

    def __init__(self, tmp_path: Path, target: SwitchableTarget) -> None:
        services = [
            {"name": name, "url": target.svc_url(name), "description": text}
            for name, text in [
                ("api", "the public API"),
                ("web", "the web front end"),
                ("db", "the database's health endpoint"),
                ("cache", "the cache"),
            ]
        ]
        self.tmp = tmp_path
        self.config = write_toml_config(
            tmp_path / "hbsm.toml",
            services,
            **{**TIGHT, "ladder": ["diagnose"], "admin_token": TOKEN},
        )
        lines = self.config.read_text().splitlines()
        port = int(next(line for line in lines if line.startswith("port")).split("=")[1])
        self.base = f"http://127.0.0.1:{port}"
        self.err = tmp_path / "hbsm.err"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTBEAT_")}
        with self.err.open("ab") as stderr:
            proc = self.proc = subprocess.Popen(
                [sys.executable, "-m", "hbsm", "run", "--config", str(self.config),
                 "--log", str(self.tmp / "events" / "heartbeat.jsonl")],
                cwd=self.tmp, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=stderr,
            )  # fmt: skip

        def serving() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"hbsm exited ({proc.returncode}): {self.err.read_text()}")
            try:
                return httpx.get(self.base + "/health", timeout=1).status_code in (200, 503)
            except httpx.TransportError:
                return False

        wait_for_sync(serving, "hbsm run serves /health")
        return self.base

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def run(tmp_path: Path, target: SwitchableTarget) -> Iterator[HbsmRun]:
    started = HbsmRun(tmp_path, target)
    try:
        yield started
    finally:
        started.kill()


@pytest.fixture
def hbsm_run(run: HbsmRun) -> str:
    """A started `hbsm run`'s base URL."""
    return run.start()


def test_the_page_follows_a_fault_live_and_acts_with_the_token(
    hbsm_run: str, target: SwitchableTarget
) -> None:
    need_chromium()
    from selenium.webdriver.common.by import By

    # Its own inline script and style, by hash, and nothing else: no 'unsafe-inline'.
    policy = httpx.get(hbsm_run + "/").headers["content-security-policy"]
    assert "script-src 'sha256-" in policy and "unsafe" not in policy
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy

    with chromium() as driver:
        driver.get(hbsm_run + "/")
        until(driver, lambda d: all(state_of(d, n) == "healthy" for n in ("api", "web", "db")))
        # No token: no action, and no event stream (it is an admin route): the page polls.
        assert visible_buttons(driver) == []
        assert "polling" in driver.find_element(By.ID, "live").text

        enter_token(driver, "not-the-token")
        until(driver, lambda d: "token refused" in d.find_element(By.ID, "message").text)
        assert visible_buttons(driver) == []

        enter_token(driver, TOKEN)
        until(driver, lambda d: d.find_element(By.ID, "live").text == "live")
        buttons = visible_buttons(driver)
        assert buttons.count("pause") == 4 and "stop" in buttons
        assert set(buttons) == {*URL_SERVICE_ACTIONS, "stop"}

        # A fault: the row says so, by the event stream (no reload: the live mark stays).
        shown = int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-seq") or 0)
        target.modes["db"] = "/status/500"
        until(driver, lambda d: state_of(d, "db") in ("degraded", "repairing"))
        assert int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-seq") or 0) > shown
        assert driver.find_element(By.ID, "live").text == "live"
        row = driver.find_element(By.CSS_SELECTOR, 'tr[data-service="db"]')
        until(driver, lambda d: "HTTP 500" in row.find_element(By.CSS_SELECTOR, ".incident").text)

        # An action, with the token: web paused.
        target.modes["web"] = "/status/500"
        web = driver.find_element(By.CSS_SELECTOR, 'tr[data-service="web"]')
        web.find_element(By.CSS_SELECTOR, 'button[data-action="pause"]').click()
        until(driver, lambda d: state_of(d, "web") == "paused")

        # The token forgotten: the buttons go.
        driver.find_element(By.ID, "forget").click()
        until(driver, lambda d: visible_buttons(d) == [])
        assert csp_violations(driver) == []
        screenshot = os.environ.get("HBSM_PAGE_SCREENSHOT")
        if screenshot:
            enter_token(driver, TOKEN)  # the picture shows the admin buttons
            until(driver, lambda d: d.find_element(By.ID, "live").text == "live")
            until(driver, lambda d: "HTTP 500" in row.text and state_of(d, "api") == "healthy")
            time.sleep(6)  # for the picture only: sparklines with some history
            driver.set_window_size(1280, 720)
            driver.save_screenshot(screenshot)


def test_the_page_says_it_lost_the_monitor_and_follows_it_again(run: HbsmRun) -> None:
    need_chromium()
    from selenium.webdriver.common.by import By

    base = run.start()
    with chromium() as driver:
        driver.get(base + "/")
        enter_token(driver, TOKEN)
        until(driver, lambda d: d.find_element(By.ID, "live").text == "live")
        until(driver, lambda d: state_of(d, "api") == "healthy")
        run.kill()
        until(driver, lambda d: d.find_element(By.ID, "live").text == "reconnecting")
        run.start()  # the same log, the same port: the page resumes after the seq it had
        until(driver, lambda d: d.find_element(By.ID, "live").text == "live")
        shown = int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-seq") or 0)
        until(
            driver,
            lambda d: (
                int(d.find_element(By.TAG_NAME, "body").get_attribute("data-seq") or 0) > shown
            ),
        )
        assert visible_buttons(driver)  # the token kept (this tab's sessionStorage)
        assert state_of(driver, "api") == "healthy"
