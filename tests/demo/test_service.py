"""The demo service's modes, each observed with a real HTTP client against a real child
process; fixconfig; chaos's schedule and records; the demo config hbsm runs with."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.net import free_port

from hbsm.config import load_config
from hbsm.demo.chaos import Chaos, FaultTracker, read_faults
from hbsm.demo.service import FAULTS, corrupt_config, set_mode, write_config
from hbsm.demo.workdir import DEMO_SERVICES, LADDERS, prepare


class Svc:
    def __init__(self, tmp: Path, name: str = "main_service") -> None:
        self.name = name
        self.port = free_port()
        self.control = tmp / "control"
        self.config = write_config(tmp / f"{name}.toml", name, slow_seconds=0.6)
        self.out = (tmp / f"{name}.out").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hbsm.demo.service", "--name", name, "--port", str(self.port),
             "--config", str(self.config), "--control", str(self.control)],
            stdout=self.out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(self.base + "/", timeout=1)
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.05)

    def mode(self, mode: str) -> None:
        set_mode(self.control, self.name, mode)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        self.out.close()


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Svc]:
    service = Svc(tmp_path)
    yield service
    service.stop()


def test_ok_answers_200_on_its_route(svc: Svc) -> None:
    r = httpx.get(svc.base + "/health", timeout=2)
    assert r.status_code == 200
    assert r.json() == {"status": "healthy", "service": "main_service"}
    assert httpx.get(svc.base + "/nope", timeout=2).status_code == 404


def test_login_page_and_worker_routes(tmp_path: Path) -> None:
    login = Svc(tmp_path, "login_page")
    worker = Svc(tmp_path, "worker")
    try:
        r = httpx.get(login.base + "/login", timeout=2)
        assert r.status_code == 200 and "<form" in r.text
        assert httpx.get(worker.base + "/worker/health", timeout=2).json()["status"] == "healthy"
    finally:
        login.stop()
        worker.stop()


def test_error_answers_500_until_reset(svc: Svc) -> None:
    svc.mode("error")
    assert httpx.get(svc.base + "/health", timeout=2).status_code == 500
    r = httpx.post(svc.base + "/_reset", timeout=2)
    assert r.status_code == 200 and r.json()["mode_before"] == "error"
    assert httpx.get(svc.base + "/health", timeout=2).status_code == 200


def test_slow_answers_late(svc: Svc) -> None:
    svc.mode("slow")
    r = httpx.get(svc.base + "/health", timeout=5)
    assert r.status_code == 200
    assert r.elapsed.total_seconds() >= 0.5


def test_hang_accepts_and_never_answers(svc: Svc) -> None:
    svc.mode("hang")
    with pytest.raises(httpx.ReadTimeout):  # connected (accepted), then no answer
        httpx.get(svc.base + "/health", timeout=httpx.Timeout(0.5, connect=2))
    with pytest.raises(httpx.ReadTimeout):  # the reset hook does not help either
        httpx.post(svc.base + "/_reset", timeout=httpx.Timeout(0.5, connect=2))


def test_crash_exits_with_status_1_at_once(svc: Svc) -> None:
    svc.mode("crash")
    assert svc.proc.wait(3) == 1  # without any request
    with pytest.raises(httpx.ConnectError):
        httpx.get(svc.base + "/health", timeout=1)


def test_restart_clears_the_mode(tmp_path: Path) -> None:
    first = Svc(tmp_path)
    first.mode("error")
    first.stop()
    again = Svc(tmp_path)
    try:
        assert httpx.get(again.base + "/health", timeout=2).status_code == 200
    finally:
        again.stop()


def test_badconfig_answers_500_until_fixconfig_restores_it(svc: Svc) -> None:
    corrupt_config(svc.config)
    r = httpx.get(svc.base + "/health", timeout=2)
    assert r.status_code == 500 and "config unreadable" in r.json()["error"]
    fix = subprocess.run(
        [sys.executable, "-m", "hbsm.demo.fixconfig", str(svc.config)],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert fix.returncode == 0, fix.stdout + fix.stderr
    assert "restored" in fix.stdout
    assert httpx.get(svc.base + "/health", timeout=2).status_code == 200  # no restart
    again = subprocess.run(
        [sys.executable, "-m", "hbsm.demo.fixconfig", str(svc.config)],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert again.returncode == 0 and "left as it is" in again.stdout


def test_fixconfig_without_a_good_copy_fails(tmp_path: Path) -> None:
    from hbsm.demo.fixconfig import fix

    broken = tmp_path / "x.toml"
    broken.write_text("[[[")
    ok, line = fix(broken)
    assert not ok and "no good copy" in line


def test_chaos_cycles_through_every_kind_and_records_each(tmp_path: Path) -> None:
    configs = {n: write_config(tmp_path / f"{n}.toml", n) for n in DEMO_SERVICES}
    record = tmp_path / "faults.jsonl"
    chaos = Chaos(control_dir=tmp_path / "control", configs=configs, record=record, seed=1)
    faults = [chaos.inject_random(list(DEMO_SERVICES), float(i)) for i in range(len(FAULTS))]
    assert sorted(f.kind for f in faults if f is not None) == sorted(FAULTS)
    assert read_faults(record) == faults
    again = Chaos(control_dir=tmp_path / "c2", configs=configs, record=tmp_path / "f2", seed=1)
    replayed = [again.inject_random(list(DEMO_SERVICES), float(i)) for i in range(len(FAULTS))]
    assert replayed == faults  # the same seed, the same schedule
    assert chaos.inject_random([], 9.0) is None


def test_tracker_keeps_a_service_out_until_its_fault_is_repaired() -> None:
    from hbsm.demo.chaos import Fault

    t = FaultTracker()
    t.transition("a", "healthy", 1.0)
    t.transition("b", "healthy", 1.0)
    fault = Fault(n=1, ts=2.0, service="a", kind="crash")
    t.injected(fault)
    assert t.ready(["a", "b"]) == ["b"]
    assert t.transition("a", "degraded", 3.0) is None
    assert t.transition("a", "repairing", 4.0) is None
    assert t.transition("a", "healthy", 5.0) == fault
    assert t.ready(["a", "b"]) == ["a", "b"]


def test_the_demo_config_is_valid_and_supervises_every_service(tmp_path: Path) -> None:
    setup = prepare(tmp_path / "work", api_port=free_port())
    config = load_config(setup.config_path, {}).config
    assert [s.name for s in config.services] == list(DEMO_SERVICES)
    assert config.check_interval == 1.0 and config.max_retries == 2
    for s in config.services:
        assert s.restart.kind == "supervise" and s.restart.stop_on_exit
        assert s.steps["check_config"].files == [str(setup.services[s.name].config)]
        assert "hbsm.demo.fixconfig" in s.steps["command"].argv
        policy = config.policy_for(s)
        for cls, ladder in LADDERS.items():
            assert policy.ladder_for(cls) == tuple(ladder)
    ports = {s.port for s in setup.services.values()} | {setup.api_port}
    assert len(ports) == 4


def test_chaos_record_is_one_json_object_per_line(tmp_path: Path) -> None:
    configs = {"worker": write_config(tmp_path / "w.toml", "worker")}
    record = tmp_path / "f.jsonl"
    chaos = Chaos(control_dir=tmp_path, configs=configs, record=record, seed=3)
    chaos.inject("worker", "badconfig", 1.5)
    with pytest.raises(ValueError, match="unknown fault 'nonsense': one of "):
        chaos.inject("worker", "nonsense", 2.0)
    lines = record.read_text().splitlines()
    assert [json.loads(x) for x in lines] == [
        {"n": 1, "ts": 1.5, "service": "worker", "kind": "badconfig"}
    ]
