"""Reloading the configuration of a running `hbsm run`: SIGHUP, `POST /admin/config/reload`
and `hbsm reload`, against real targets, read back from the real event log."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from probes.servers import SwitchableTarget
from support.configs import supervised
from support.net import free_port

from hbsm.events import (
    Admin,
    ConfigReloaded,
    MonitorStarted,
    Probe,
    ProcessStarted,
    ProcessStopped,
    RepairFinished,
    RepairStarted,
    ServiceRegistered,
    ServiceRemoved,
    Transition,
)

from .conftest import HbsmRun
from .support import PY, ChildService, alive, events, of, verify_log, write_toml_config

TOKEN = "s3cret-token-for-tests"


@pytest.fixture
def target() -> Iterator[SwitchableTarget]:
    server = SwitchableTarget()
    server.start()
    yield server
    server.stop()


class Setup:
    """An hbsm.toml kept on one port (a reload must not see the port change), rewritten at will."""

    def __init__(self, tmp_path: Path, target: SwitchableTarget) -> None:
        self.path = tmp_path / "hbsm.toml"
        self.log = tmp_path / "events.jsonl"
        self.port = free_port()
        self.target = target

    def write(
        self, services: dict[str, dict[str, Any]], extra: Sequence[dict[str, Any]] = (), **top: Any
    ) -> Path:
        settings: dict[str, Any] = {
            "check_interval": 0.2, "max_retries": 2, "restart_cooldown": 2.0,
            "cooldown_max": 2.0, "repair_backoff": 0.2, "repair_backoff_max": 1.0,
            "ladder": ["diagnose"], "port": self.port, "admin_token": TOKEN, **top,
        }  # fmt: skip
        rows = [{"name": n, "url": self.target.svc_url(n), **s} for n, s in services.items()]
        rows += list(extra)
        return write_toml_config(self.path, rows, **settings)

    def history(self) -> list[Any]:
        return events(self.log) if self.log.exists() else []

    def reloads(self) -> list[ConfigReloaded]:
        return of(self.history(), ConfigReloaded)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def setup(tmp_path: Path, target: SwitchableTarget) -> Setup:
    return Setup(tmp_path, target)


def probed(history: list[Any], name: str, after: int = 0) -> list[Probe]:
    return [p for p in of(history, Probe, name) if p.seq > after]


def post(url: str, token: str | None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=b"", method="POST")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get(url: str, token: str) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def stop(run: HbsmRun) -> None:
    run.signal(signal.SIGTERM)
    assert run.wait() == 0, run.err()
    assert "Traceback" not in run.err(), run.err()


def started(run: HbsmRun, setup: Setup, *names: str) -> None:
    run.until(lambda: all(probed(setup.history(), n) for n in names), f"{names} probed")


# --- SIGHUP: added, removed, changed -------------------------------------------------------


def test_sighup_adds_removes_and_changes_services_and_replay_verifies_the_log(
    setup: Setup, hbsm_run: Callable[..., HbsmRun]
) -> None:
    setup.write({"keep": {"max_retries": 5}, "gone": {}})
    run = hbsm_run(setup.path, setup.log)
    started(run, setup, "keep", "gone")

    setup.write({"keep": {"max_retries": 1}, "new": {}})
    run.signal(signal.SIGHUP)
    run.until(setup.reloads, "the reload recorded")
    (reloaded,) = setup.reloads()
    assert reloaded.added == ["new"] and reloaded.removed == ["gone"]
    assert reloaded.changed == {"keep": ["max_retries"]}
    assert reloaded.version == 2 and reloaded.error == "" and reloaded.source == "signal"
    (start,) = of(setup.history(), MonitorStarted)
    assert start.config_hash and reloaded.hash != start.config_hash
    # The changes follow the reload at once: what replay and verify go by from there on.
    after = [e for e in setup.history() if e.seq > reloaded.seq]
    assert len(of(after, ServiceRegistered, "new")) == 1
    (keep_reg,) = of(after, ServiceRegistered, "keep")
    assert keep_reg.policy.max_retries == 1
    (removed,) = of(after, ServiceRemoved, "gone")

    # The new service is probed; the removed one never again, while the others go on.
    run.until(lambda: len(probed(setup.history(), "keep", removed.seq)) >= 5, "keep probed on")
    history = setup.history()
    assert probed(history, "new", reloaded.seq)
    assert not probed(history, "gone", removed.seq)

    # max_retries 5 -> 1: the first failed probe starts a repair run.
    setup.target.modes["keep"] = "/status/500"
    run.until(lambda: of(setup.history(), RepairStarted, "keep"), "keep repaired")
    history = setup.history()
    (first_repair, *_) = of(history, RepairStarted, "keep")
    failed = [p for p in probed(history, "keep", reloaded.seq) if not p.ok]
    assert [p for p in failed if p.seq < first_repair.seq] == failed[:1]

    # Back in the file, a removed service starts afresh (as `replay --verify` re-decides it).
    setup.write({"keep": {"max_retries": 1}, "new": {}, "gone": {}})
    run.signal(signal.SIGHUP)
    run.until(lambda: len(setup.reloads()) == 2, "the second reload recorded")
    back = setup.reloads()[1]
    assert back.added == ["gone"] and back.version == 3
    run.until(lambda: probed(setup.history(), "gone", back.seq), "gone probed again")
    run.until(
        lambda: [t for t in of(setup.history(), Transition, "gone") if t.seq > back.seq],
        "gone healthy again",
    )
    moved = [t for t in of(setup.history(), Transition, "gone") if t.seq > back.seq]
    assert (moved[0].src, moved[0].dst) == ("unknown", "healthy")
    stop(run)

    checked = verify_log(setup.log)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    shown = subprocess.run(
        [PY, "-m", "hbsm", "replay", str(setup.log)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "config reloaded (version 2" in shown.stdout, shown.stdout + shown.stderr


def test_a_bad_file_is_refused_in_one_line_and_the_running_config_stays(
    setup: Setup, hbsm_run: Callable[..., HbsmRun]
) -> None:
    setup.write({"web": {}})
    run = hbsm_run(setup.path, setup.log)
    started(run, setup, "web")

    setup.write({"web": {"max_retries": 0}})
    check = subprocess.run(
        [PY, "-m", "hbsm", "config", "--check", str(setup.path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert check.returncode == 2
    message = check.stderr.strip()
    assert "max_retries" in message and "\n" not in message

    run.signal(signal.SIGHUP)
    run.until(setup.reloads, "the refusal recorded")
    (refused,) = setup.reloads()
    assert refused.error == message and refused.version == 1
    run.until(lambda: message in run.err(), "the refusal on stderr")
    line = next(ln for ln in run.err().splitlines() if message in ln)
    assert "config reload refused" in line

    # Probing goes on under the old configuration.
    run.until(lambda: len(probed(setup.history(), "web", refused.seq)) >= 3, "web probed on")
    status = get(setup.url("/admin/heartbeat/status"), TOKEN)
    assert status["config_version"] == 1
    assert status["config"]["services"][0]["max_retries"] is None
    stop(run)


def test_the_api_and_the_reload_command_reload_with_a_token_only(
    setup: Setup, hbsm_run: Callable[..., HbsmRun]
) -> None:
    setup.write({"web": {}})
    run = hbsm_run(setup.path, setup.log)
    started(run, setup, "web")
    reload_url = setup.url("/admin/config/reload")

    setup.write({"web": {}, "api": {}}, concurrency=7)
    status, answer = post(reload_url, None)
    assert status == 401, answer
    assert not setup.reloads()
    run.until(lambda: of(setup.history(), Admin), "the refused attempt recorded")
    (refusal,) = of(setup.history(), Admin)
    assert refusal.action == "reload" and not refusal.allowed

    status, answer = post(reload_url, TOKEN)
    assert status == 200, answer
    assert answer["added"] == ["api"] and answer["version"] == 2
    # A setting the running process was built with is not applied, and says so.
    assert answer["needs_restart"] == ["concurrency"]
    assert get(setup.url("/admin/heartbeat/status"), TOKEN)["config_version"] == 2
    run.until(lambda: probed(setup.history(), "api"), "api probed")

    # `hbsm reload`: the address and the token from the file.
    setup.write({"web": {}}, concurrency=7)
    done = subprocess.run(
        [PY, "-m", "hbsm", "reload", "--config", str(setup.path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "removed api" in done.stdout and "version 3" in done.stdout
    assert "needs a restart to apply: concurrency" in done.stdout

    # The same refusal as `hbsm config --check`, from the monitor (--url, --token).
    setup.write({"web": {"check_interval": -1}}, concurrency=7)
    bad = subprocess.run(
        [PY, "-m", "hbsm", "reload", "--url", setup.url(""), "--token", TOKEN],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "check_interval" in bad.stderr and bad.stderr.count("\n") == 1
    status, answer = post(reload_url, TOKEN)
    assert status == 422 and "check_interval" in answer["error"]
    wrong = subprocess.run(
        [PY, "-m", "hbsm", "reload", "--url", setup.url(""), "--token", "wrong"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert wrong.returncode == 1 and "403: wrong admin token" in wrong.stderr
    assert [r.version for r in setup.reloads()] == [2, 3, 3, 3]
    stop(run)
    checked = verify_log(setup.log)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_repair_run_in_flight_finishes_under_the_policy_it_started_with(
    setup: Setup, hbsm_run: Callable[..., HbsmRun], tmp_path: Path
) -> None:
    # The repair step takes a while: the reload lands while it runs.
    marker = tmp_path / "step-running"
    slow = {"argv": [PY, "-c", f"import pathlib,time; pathlib.Path({str(marker)!r}).touch(); "
                     "time.sleep(2)"], "timeout": 30}  # fmt: skip
    web = {"max_retries": 1, "ladder": ["command"], "steps": {"command": slow}}
    setup.write({"web": web})
    run = hbsm_run(setup.path, setup.log)
    started(run, setup, "web")
    setup.target.modes["web"] = "/status/500"
    run.until(marker.exists, "the repair step running")

    setup.write({"web": {**web, "max_retries": 4, "ladder": ["diagnose"]}})
    run.signal(signal.SIGHUP)
    run.until(setup.reloads, "the reload recorded")
    (reloaded,) = setup.reloads()
    assert reloaded.changed == {"web": ["ladder", "max_retries"]}
    assert reloaded.deferred == ["web"]

    # The run ends as it began (its `command` step, verified), then the new policy is in force.
    def registered_again() -> list[ServiceRegistered]:
        return [e for e in of(setup.history(), ServiceRegistered, "web") if e.seq > reloaded.seq]

    run.until(registered_again, "web registered with its new policy")
    history = setup.history()
    (again,) = registered_again()
    assert again.policy.max_retries == 4 and again.policy.ladder == ("diagnose",)
    (step,) = [e for e in of(history, RepairFinished, "web") if e.seq < again.seq]
    assert step.step == "command" and not step.interrupted
    ended = [t for t in of(history, Transition, "web") if reloaded.seq < t.seq < again.seq]
    assert ended and ended[-1].src == "repairing" and ended[-1].dst != "repairing"

    # From there on, the next run takes the new ladder.
    run.until(
        lambda: [e for e in of(setup.history(), RepairStarted, "web") if e.seq > again.seq],
        "the next repair run",
    )
    nxt = next(e for e in of(setup.history(), RepairStarted, "web") if e.seq > again.seq)
    assert nxt.step == "diagnose"
    stop(run)
    checked = verify_log(setup.log)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_supervised_service_added_is_started_and_one_removed_is_stopped(
    setup: Setup, hbsm_run: Callable[..., HbsmRun], children: Callable[..., ChildService]
) -> None:
    api = children("api")
    setup.write({"web": {}})
    run = hbsm_run(setup.path, setup.log)
    started(run, setup, "web")

    setup.write({"web": {}}, extra=[supervised(api)])
    run.signal(signal.SIGHUP)
    run.until(lambda: [p for p in of(setup.history(), Probe, "api") if p.ok], "api started, up")
    (start,) = of(setup.history(), ProcessStarted, "api")
    assert start.pid == api.started_pids()[-1] and alive(start.pid)

    setup.write({"web": {}})
    run.signal(signal.SIGHUP)
    run.until(lambda: of(setup.history(), ServiceRemoved, "api"), "api removed")
    history = setup.history()
    (stopped,) = of(history, ProcessStopped, "api")
    (removed,) = of(history, ServiceRemoved, "api")
    assert stopped.pid == start.pid and stopped.seq < removed.seq
    run.until(lambda: not alive(start.pid), "its process gone")
    stop(run)
    checked = verify_log(setup.log)
    assert checked.returncode == 0, checked.stdout + checked.stderr
