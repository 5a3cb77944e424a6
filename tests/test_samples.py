"""The sample logs in events/samples: reproducible, saying what their names say, verifiable."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from hbsm.events import (
    Admin,
    Event,
    MonitorStarted,
    MonitorStopped,
    Notification,
    OpaqueEvent,
    Probe,
    RepairStarted,
    RestartStarted,
    ServiceRegistered,
    Transition,
    decode_lines,
)
from hbsm.projection import Projection

ROOT = Path(__file__).resolve().parents[1]
SAMPLES_DIR = ROOT / "events" / "samples"
NAMES = ["flapping.jsonl", "crash_restart_cooldown.jsonl", "budget_exhausted.jsonl"]
DECISIONS = (Transition, RepairStarted, RestartStarted)


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_samples", SAMPLES_DIR / "make_samples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look the module up in sys.modules while the class body is processed.
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def _events(name: str) -> list[Event | OpaqueEvent]:
    return decode_lines((SAMPLES_DIR / name).read_bytes())


def _fold(events: list[Event | OpaqueEvent]) -> Projection:
    projection = Projection()
    projection.apply_all(events)
    return projection


def _transitions(events: list[Event | OpaqueEvent], service: str) -> list[Transition]:
    return [e for e in events if isinstance(e, Transition) and e.service == service]


def test_regenerating_gives_the_committed_files(tmp_path: Path) -> None:
    script = _load_script()
    written = script.write_samples(tmp_path)
    assert sorted(p.name for p in written) == sorted(NAMES)
    for name in NAMES:
        assert (tmp_path / name).read_bytes() == (SAMPLES_DIR / name).read_bytes(), (
            f"{name} differs from what make_samples.py makes: regenerate it with "
            "`python events/samples/make_samples.py`"
        )
    # No lock file or segment left beside the samples.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_sample_is_a_whole_monitor_run(name: str) -> None:
    events = _events(name)
    assert not any(isinstance(e, OpaqueEvent) for e in events)
    assert 100 <= len(events) <= 400
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    stamps = [e.ts for e in events]
    assert stamps == sorted(stamps), "time runs forward"
    assert isinstance(events[0], MonitorStarted) and events[0].config
    assert isinstance(events[-1], MonitorStopped)
    registered = [e for e in events if isinstance(e, ServiceRegistered)]
    assert len(registered) >= 2, "a bystander besides the service the sample is about"
    assert events[1 : 1 + len(registered)] == registered
    assert not any(isinstance(e, Admin) for e in events)

    projection = _fold(events)
    assert projection.monitor.running is False
    assert projection.monitor.events_total == len(events)
    # The bystander stays healthy throughout.
    assert projection.services["postgres"].fsm.state == "healthy"
    assert [t.dst for t in _transitions(events, "postgres")] == ["healthy"]


def test_flapping_goes_healthy_degraded_many_times_and_a_repair_verifies_fixed() -> None:
    events = _events("flapping.jsonl")
    moves = [(t.src, t.dst) for t in _transitions(events, "search")]
    assert moves.count(("healthy", "degraded")) >= 10
    assert moves.count(("degraded", "healthy")) >= 10
    verified = [t for t in _transitions(events, "search") if t.trigger == "verified"]
    assert verified and all((t.src, t.dst) == ("repairing", "healthy") for t in verified)
    assert {t.reason for t in verified} >= {"repair step http fixed it"}
    # Flapping never needed a restart.
    assert not any(isinstance(e, RestartStarted) for e in events)
    view = _fold(events).services["search"]
    assert view.fsm.state == "healthy"
    assert view.repairs_total == len(verified)
    assert view.restarts_total == 0


def test_crash_is_restarted_and_healthy_at_once_while_its_cooldown_gates_restarts() -> None:
    events = _events("crash_restart_cooldown.jsonl")
    moves = [(t.src, t.dst) for t in _transitions(events, "billing")]
    assert moves == [
        ("unknown", "healthy"),
        ("healthy", "degraded"),
        ("degraded", "repairing"),
        ("repairing", "restarting"),
        ("restarting", "cooldown"),
        ("cooldown", "healthy"),
    ]
    steps = [e.step for e in events if isinstance(e, RepairStarted)]
    assert steps == ["diagnose", "check_config"]
    failures = [e for e in events if isinstance(e, Probe) and not e.ok and e.service == "billing"]
    assert failures[0].error == "refused"

    # The restarted service warms up: its failures inside the start grace count for nothing,
    # and it is healthy at its first good probe, long before the cooldown's end, which stays
    # recorded to keep the next restart away.
    (restart,) = [e for e in events if isinstance(e, RestartStarted)]
    *_, cooldown, to_healthy = _transitions(events, "billing")
    assert cooldown.until == restart.ts + restart.cooldown_s
    warming = [p for p in failures if cooldown.ts <= p.ts < to_healthy.ts]
    assert warming and all(p.error == "http_5xx" for p in warming), "it was still starting up"
    assert cooldown.failures == 0 and to_healthy.trigger == "probe_ok"
    assert to_healthy.ts < cooldown.until
    projection = _fold(events)
    assert projection.services["billing"].fsm.cooldown_until == cooldown.until

    view = projection.services["billing"]
    assert view.fsm.state == "healthy"
    assert view.restarts_total == 1


def test_budget_exhausted_ends_failed_after_restart_budget_restarts() -> None:
    events = _events("budget_exhausted.jsonl")
    policy = next(
        e.policy for e in events if isinstance(e, ServiceRegistered) and e.service == "ingest"
    )
    restarts = [e for e in events if isinstance(e, RestartStarted)]
    assert len(restarts) == policy.restart_budget
    # Growing backoff: each restart's cooldown doubles.
    cooldowns = [r.cooldown_s for r in restarts]
    assert cooldowns == [policy.restart_cooldown * 2**i for i in range(len(restarts))]
    assert restarts[-1].ts - restarts[0].ts < policy.restart_window

    # The fourth time its ladder reaches the restart step it waits for the cooldown's end, and
    # gives up only then, the budget still spent: restart budget restarts inside the window.
    *_, waited, last = _transitions(events, "ingest")
    assert (waited.src, waited.dst, last.src, last.dst) == (
        "repairing", "cooldown", "cooldown", "failed",
    )  # fmt: skip
    assert waited.until is not None and last.ts >= waited.until
    assert last.reason.startswith("restart budget spent: 3 restart(s)")
    assert any(
        isinstance(e, Notification) and e.level == "critical" and e.service == "ingest"
        for e in events
    )
    # It stays failed: probes keep failing after it, and nobody resets it.
    after = [e for e in events if e.seq > last.seq and getattr(e, "service", None) == "ingest"]
    assert isinstance(after[0], Notification)
    assert len(after) >= 5 and all(isinstance(e, Probe) and not e.ok for e in after[1:])

    view = _fold(events).services["ingest"]
    assert view.fsm.state == "failed"
    assert view.restarts_total == policy.restart_budget
    assert len(view.fsm.restarts) == policy.restart_budget


@pytest.mark.parametrize("name", NAMES)
def test_sample_replays_with_verify(name: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hbsm", "replay", "--verify", str(SAMPLES_DIR / name)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_verify_fails_on_a_tampered_sample(tmp_path: Path) -> None:
    """Guards the test above against passing vacuously: a decision the FSM would not make."""
    text = (SAMPLES_DIR / "crash_restart_cooldown.jsonl").read_text()
    original = '"src":"repairing","dst":"restarting"'
    assert text.count(original) == 1
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text(text.replace(original, '"src":"repairing","dst":"failed"'))
    proc = subprocess.run(
        [sys.executable, "-m", "hbsm", "replay", "--verify", str(tampered)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
