"""Fixtures of the `hbsm check` tests: real instances to check (a Flask app with the embedded
monitor on a real port, `hbsm run`), every one stopped at the end whatever the outcome
(support.fixtures' `stop_later`), each test in a clean environment."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _clean(clean_environment: None) -> None:
    """Every test here: no HEARTBEAT_* setting or proxy of the machine, no ./hbsm.toml."""
