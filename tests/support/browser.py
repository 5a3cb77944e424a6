"""A real headless Chromium driven by Selenium, for the status page's tests and benchmark.

Debian's `chromium` and `chromium-driver` packages (.ci/run installs them when missing): no
browser download of Selenium's own. Without them a test skips, saying what to install; in CI
(CI=true) it fails instead, since there they must be installed and the page tested.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

__all__ = [
    "CHROMEDRIVER",
    "CHROMIUM",
    "WAIT",
    "chromium",
    "csp_violations",
    "enter_token",
    "missing",
    "need_chromium",
    "state_of",
    "until",
    "visible_buttons",
]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Headless, in a container (no sandbox, no GPU, /dev/shm is small there), and quiet: nothing of
# the browser's own goes out to the network (updates, sync, first-run pages).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


# Generous: the page shows a change within a second or so (`just bench`, page); this only
# bounds how long a broken page makes a test wait.
WAIT = 15.0


def missing() -> str | None:
    """Why no browser can be driven here (None: one can)."""
    absent = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if absent:
        return (
            f"no {' nor '.join(absent)}: install Debian's chromium and chromium-driver "
            "(apt-get install -y chromium chromium-driver) to test the status page in a browser"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (the dev extra): `just install`"
    return None


def need_chromium() -> None:
    """Skip the calling test when there is no browser; in CI, fail: there it must run."""
    why = missing()
    if why is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must test the status page in a browser: {why}")
    pytest.skip(why)


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[WebDriver]:
    """A headless Chromium with a profile of its own (removed afterwards), its console kept
    (`driver.get_log("browser")`: CSP violations show there)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="hbsm-chromium-")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# --- the status page, as a test reads it ---------------------------------------------------


def until(driver: WebDriver, what: Callable[[WebDriver], Any], timeout: float = WAIT) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(what)


def state_of(driver: WebDriver, name: str) -> str:
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, "#services tbody tr")
    for row in rows:
        if row.get_attribute("data-service") == name:
            return row.find_element(By.CSS_SELECTOR, ".state").text
    return ""


def visible_buttons(driver: WebDriver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [
        b.get_attribute("data-action") or ""
        for b in driver.find_elements(By.CSS_SELECTOR, "button[data-action]")
        if b.is_displayed()
    ]


def enter_token(driver: WebDriver, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "usetoken").click()


def csp_violations(driver: WebDriver) -> list[str]:
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if "Content Security Policy" in entry["message"]
    ]
