"""Shared by the dashboard tests: the samples, and the API fixtures of tests/api (a real Monitor
on uvicorn), imported as pytest imports them (tests/ is their package root)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

from api.conftest import start_api  # noqa: E402, F401  (a fixture, re-exported)

SAMPLES = ROOT / "events" / "samples"
