"""Shared by every test folder: `tests/` and `tests/flask` on sys.path, so the folders' helpers
import by name (`from support.waiting import wait_for`, `from probes.servers import HttpTarget`,
`import heartbeat_support`) whichever folders pytest was asked to run; the fixtures of
tests/support/fixtures.py, for every folder.

The folders are separate packages (tests/flask is not one: it would shadow Flask), and pytest
puts a folder's parent on the path only when it collects something there.
"""

import os
import sys
from pathlib import Path

import pytest
from hypothesis import Phase, settings

import hbsm.fsm

_HERE = Path(__file__).resolve().parent
for folder in (_HERE / "flask", _HERE):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

pytest_plugins = ["support.fixtures"]

# `just mutate`: the same examples for every mutant, so a kill rate can be compared run to run
# (hypothesis's own draws, different each run, would kill a few survivors only sometimes).
if os.environ.get("HBSM_MUTATE"):
    # No shrinking: a mutant is killed by the first failing example, and shrinking one (every
    # example fails when the mutant breaks a fold) took longer than the mutant's time limit.
    settings.register_profile(
        "mutate", derandomize=True, database=None, phases=(Phase.explicit, Phase.generate)
    )
    settings.load_profile("mutate")

    @pytest.fixture(autouse=True)
    def _fresh_machines() -> None:
        """mutmut runs a mutant against the tests it saw call the mutated function. The state
        machines are built once per process and shared (hbsm.fsm.machine_for), so it saw only
        the first test build one, and a mutant of the table met that test alone."""
        hbsm.fsm._SHARED.clear()


@pytest.fixture(autouse=True)
def _never_reexec_the_test_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """An embedded monitor in this process whose app is restarted (restart.kind "self", the
    default when embedded) would re-execute pytest itself (or signal its parent). It fails the
    test instead, loudly:
    self-restarts are tested with apps in processes of their own."""

    def refuse() -> None:
        raise AssertionError("a monitor inside the test process tried to re-execute it")

    monkeypatch.setattr("hbsm.repair.self_restart.reexec", refuse)
    monkeypatch.setattr("hbsm.repair.self_restart.reload_gunicorn", refuse)
