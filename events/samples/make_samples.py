"""Make the sample logs in this directory from scripted fact streams.

    python events/samples/make_samples.py [OUT_DIR]    (default: beside this script)

A small scripted runtime stands in for the monitor: simulated targets answer probes, repair
steps and restarts; every answer is a fact fed through the real state machine
(`hbsm.fsm.decide`), and the fact and the decisions it led to are appended in order through the
real event log (`hbsm.log.FileEventLog`), which stamps `seq`. Time is simulated (a fixed base
time) and every random figure comes from a seeded `random.Random`, so the output is
byte-identical on every run: tests/test_samples.py checks that the committed files are what
this script makes.
"""

from __future__ import annotations

import heapq
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from hbsm.events import (
    Event,
    MonitorStarted,
    MonitorStopped,
    Notification,
    Probe,
    RepairFinished,
    RepairStarted,
    RestartFinished,
    RestartStarted,
    ServiceRegistered,
    Transition,
)
from hbsm.fsm import decide, machine_for
from hbsm.log import FileEventLog
from hbsm.state import RULES, Policy, ServiceState

__all__ = ["SAMPLES", "main", "make_sample", "write_samples"]

HERE = Path(__file__).resolve().parent
# 2026-11-01T03:00:00Z
BASE_TS = 1793502000.0
# The hbsm version and pid the samples claim to come from: fixed, so a version bump does not
# change the bytes of a sample that did not otherwise change.
VERSION = "0.1.0"
PID = 48213
HOST = "web-01"

# Short intervals so that a sample spans minutes, not hours.
POLICY = Policy(
    check_interval=5.0,
    max_retries=3,
    restart_cooldown=60.0,
    cooldown_max=600.0,
    stable_period=300.0,
    restart_budget=3,
    restart_window=1800.0,
    # A restarted service warms up for about 12 s (see Crashing): failures meanwhile do not count.
    start_grace=15.0,
)
BYSTANDER_POLICY = Policy(check_interval=15.0, max_retries=3, restart_cooldown=60.0)

# After a repair step finishes, the runtime probes again at once to verify it.
VERIFY_DELAY = 0.25


def _r(x: float) -> float:
    return round(x, 3)


# --- simulated targets: what a probe, a repair step or a restart finds --------------------------


class Target:
    """A service as the probes see it. Subclasses decide when it fails and what fixes it."""

    def __init__(self, rng: random.Random, *, latency_ms: float, port: int) -> None:
        self.rng = rng
        self.latency_ms = latency_ms
        self.port = port

    # What the target is like at time t: None when healthy, else a failure class.
    def failure(self, t: float) -> str | None:
        return None

    def probe(self, t: float) -> dict[str, Any]:
        error = self.failure(t)
        rng = self.rng
        if error is None:
            latency = self.latency_ms * rng.lognormvariate(0.0, 0.25)
            return {"ok": True, "latency_ms": round(latency, 1), "status": 200}
        if error == "refused":
            return {
                "ok": False,
                "latency_ms": round(rng.uniform(0.2, 0.7), 1),
                "error": "refused",
                "detail": f"connect 127.0.0.1:{self.port}: [Errno 111] Connection refused",
            }
        if error == "timeout":
            return {"ok": False, "error": "timeout", "detail": "no response within 2.0 s"}
        if error == "starting":
            return {
                "ok": False,
                "latency_ms": round(rng.uniform(1.0, 4.0), 1),
                "status": 503,
                "error": "http_5xx",
                "detail": "HTTP 503 Service Unavailable: starting up (warming caches)",
            }
        # http_5xx
        status = rng.choice((502, 503, 503, 503))
        reason = "Bad Gateway" if status == 502 else "Service Unavailable"
        return {
            "ok": False,
            "latency_ms": round(self.latency_ms * rng.uniform(2.0, 5.0), 1),
            "status": status,
            "error": "http_5xx",
            "detail": f"HTTP {status} {reason}: upstream pool exhausted",
        }

    def repair(self, step: str, t: float) -> dict[str, Any]:
        raise NotImplementedError(step)

    def restart(self, t: float) -> dict[str, Any]:
        raise NotImplementedError


class Steady(Target):
    """The bystander: always answers."""


class Flapping(Target):
    """Fails inside scripted windows. A window with no end lasts until the `http` repair step
    (a POST to the service's reload hook) fixes it."""

    def __init__(self, rng: random.Random, windows: list[list[Any]], **kw: Any) -> None:
        super().__init__(rng, **kw)
        self.windows = windows  # [start, end or None, error class]

    def _window(self, t: float) -> list[Any] | None:
        for w in self.windows:
            start, end, _ = w
            if start <= t and (end is None or t < end):
                return w
        return None

    def failure(self, t: float) -> str | None:
        w = self._window(t)
        return None if w is None else w[2]

    def repair(self, step: str, t: float) -> dict[str, Any]:
        rng = self.rng
        if step == "diagnose":
            duration = round(rng.uniform(350, 700), 1)
            # What it finds by the time it has looked.
            w = self._window(t + duration / 1000)
            if w is None:
                out = (
                    f"GET http://127.0.0.1:{self.port}/health -> 200 in "
                    f"{self.latency_ms:.0f} ms now\n"
                    "recent failures: HTTP 503 from the upstream pool, 3 in 15 s\n"
                    "class: http_5xx (intermittent)"
                )
            else:
                out = (
                    f"GET http://127.0.0.1:{self.port}/health -> 503 Service Unavailable\n"
                    'body: {"error": "upstream pool exhausted", "in_use": 64, "max": 64}\n'
                    "class: http_5xx"
                )
            return {"ok": True, "output": out, "duration_ms": duration, "error_class": "http_5xx"}
        if step == "http":
            w = self._window(t)
            if w is not None and w[1] is None:
                w[1] = t  # the reload drained the stuck pool
            return {
                "ok": True,
                "output": (
                    f"POST http://127.0.0.1:{self.port}/admin/reload -> 200\n"
                    '{"reloaded": true, "workers": 4, "pool": {"in_use": 0, "max": 64}}'
                ),
                "duration_ms": round(rng.uniform(180, 450), 1),
            }
        raise NotImplementedError(step)


class Crashing(Target):
    """Up until `crash_at`, then down (connection refused) until restarted. After a restart it
    answers 503 while warming up, then 200. With `relapse_after`, it crashes again that long
    after each restart (a crash loop)."""

    def __init__(
        self,
        rng: random.Random,
        *,
        crash_at: float,
        unit: str,
        warmup: float = 12.0,
        relapse_after: float | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(rng, **kw)
        self.crash_at: float | None = crash_at
        self.unit = unit
        self.warmup = warmup
        self.relapse_after = relapse_after
        self.restarted_at: float | None = None
        self.main_pid = 2211
        self.crashes = 0

    def _status(self, t: float) -> str:
        if self.restarted_at is not None and t < self.restarted_at + self.warmup:
            return "starting"
        if self.crash_at is not None and t >= self.crash_at:
            return "down"
        return "up"

    def failure(self, t: float) -> str | None:
        status = self._status(t)
        return {"up": None, "down": "refused", "starting": "starting"}[status]

    def repair(self, step: str, t: float) -> dict[str, Any]:
        rng = self.rng
        if step == "diagnose":
            if self.relapse_after is not None:
                cause = (
                    f"journal: Out of memory: Killed process {self.main_pid} ({self.unit}) "
                    f"total-vm:{rng.randint(4100, 4400)}124kB, anon-rss:{rng.randint(3900, 4000)}"
                    "316kB"
                )
            else:
                cause = (
                    f"journal: {self.unit}.service: Main process exited, code=dumped, "
                    "status=11/SEGV"
                )
            return {
                "ok": True,
                "output": (
                    f"GET http://127.0.0.1:{self.port}/health: connection refused\n"
                    f"ss -ltn: nothing listening on 127.0.0.1:{self.port}\n"
                    f"{cause}\nclass: refused"
                ),
                "duration_ms": round(rng.uniform(380, 750), 1),
                "error_class": "refused",
            }
        if step == "check_config":
            return {
                "ok": True,
                "output": (
                    f"/etc/{self.unit}/{self.unit}.toml: parses (37 keys)\n"
                    f"/etc/{self.unit}/tls/server.pem: present, expires 2027-03-14\n"
                    f"port {self.port}: free\n"
                    "no configuration problem found"
                ),
                "duration_ms": round(rng.uniform(90, 220), 1),
            }
        raise NotImplementedError(step)

    def restart(self, t: float) -> dict[str, Any]:
        rng = self.rng
        duration = rng.uniform(2400, 4200)
        done = t + duration / 1000
        self.restarted_at = done
        self.crashes += 1
        old_pid, self.main_pid = self.main_pid, self.main_pid + rng.randint(40, 400)
        self.crash_at = (
            None if self.relapse_after is None else done + self.warmup + self.relapse_after
        )
        return {
            "ok": True,
            "exit_code": 0,
            "duration_ms": round(duration, 1),
            "output": (
                f"$ systemctl restart {self.unit}.service\n"
                f"{self.unit}.service: Deactivated successfully (was pid {old_pid}).\n"
                f"Started {self.unit}.service - {self.unit} (pid {self.main_pid})."
            ),
        }


# --- the scripted runtime ----------------------------------------------------------------------


@dataclass
class Service:
    name: str
    target: Target
    policy: Policy
    url: str
    description: str
    probe_kind: str = "http"
    critical: bool = False
    phase: float = 0.0  # offset of its first probe from the start
    state: ServiceState = field(init=False)

    def __post_init__(self) -> None:
        self.state = ServiceState(name=self.name)


class Runtime:
    """Feeds facts through decide() in time order and carries out (in simulation) what the
    decisions ask for, the way the monitor's effects runner does."""

    def __init__(self, services: list[Service], *, start: float, seed: int) -> None:
        self.services = {s.name: s for s in services}
        self.start = start
        self.rng = random.Random(seed)
        self.out: list[Event] = []
        self._queue: list[tuple[float, int, Callable[[float], None]]] = []
        self._order = 0

    def at(self, t: float, action: Callable[[float], None]) -> None:
        self._order += 1
        heapq.heappush(self._queue, (t, self._order, action))

    def run(self, duration: float) -> list[Event]:
        config = {
            "enabled": True,
            "check_interval": POLICY.check_interval,
            "max_retries": POLICY.max_retries,
            "restart_cooldown": POLICY.restart_cooldown,
            "auto_start": True,
            "event_log": "events/heartbeat.jsonl",
            "fsync": "batch",
            "host": "127.0.0.1",
            "port": 5000,
        }
        t = self.start
        self.out.append(
            MonitorStarted(ts=t, pid=PID, version=VERSION, host=HOST, config=config, rules=RULES)
        )
        for i, s in enumerate(self.services.values()):
            self.out.append(
                ServiceRegistered(
                    ts=_r(t + 0.001 * (i + 1)),
                    service=s.name,
                    policy=s.policy,
                    target=s.url,
                    description=s.description,
                    critical=s.critical,
                    probe_kind=s.probe_kind,
                )
            )
            self.at(t + s.phase, self._scheduled_probe(s))
        end = self.start + duration
        while self._queue and self._queue[0][0] < end:
            when, _, action = heapq.heappop(self._queue)
            action(when)
        self.out.append(MonitorStopped(ts=end, pid=PID, reason="SIGTERM: shutdown requested"))
        return self.out

    # Facts and the decisions they lead to.

    def feed(self, s: Service, fact: Event) -> None:
        decisions = decide(s.state, fact, s.policy, machine_for(RULES))
        self.out.append(fact)
        self.out.extend(decisions)
        for d in decisions:
            if isinstance(d, RepairStarted):
                self._run_repair(s, d)
            elif isinstance(d, RestartStarted):
                self._run_restart(s, d)
            elif isinstance(d, Transition):
                self._notify(s, d)

    def _probe(self, s: Service, t: float) -> None:
        self.feed(s, Probe(ts=_r(t), service=s.name, **s.target.probe(t)))

    def _scheduled_probe(self, s: Service) -> Callable[[float], None]:
        def probe(t: float) -> None:
            # No scheduled probe while hbsm's own repair or restart runs: the step's
            # verification probe follows it instead.
            if s.state.state not in ("repairing", "restarting"):
                jitter = self.rng.uniform(0.0, 0.04)
                self._probe(s, t + jitter)
            self.at(t + s.policy.check_interval, probe)

        return probe

    def _run_repair(self, s: Service, d: RepairStarted) -> None:
        outcome = s.target.repair(d.step, d.ts)
        done = d.ts + outcome["duration_ms"] / 1000

        def finished(t: float) -> None:
            fact = RepairFinished(
                ts=_r(t), service=s.name, run=d.run, step=d.step, index=d.index, **outcome
            )
            self.feed(s, fact)
            self.at(t + VERIFY_DELAY, lambda t2: self._probe(s, t2))

        self.at(done, finished)

    def _run_restart(self, s: Service, d: RestartStarted) -> None:
        outcome = s.target.restart(d.ts)
        done = d.ts + outcome["duration_ms"] / 1000
        self.at(done, lambda t: self.feed(s, RestartFinished(ts=_r(t), service=s.name, **outcome)))

    def _notify(self, s: Service, d: Transition) -> None:
        if d.dst == "restarting":
            level, message = "warning", f"{s.name}: restarting ({d.reason})"
        elif d.dst == "failed":
            p = s.policy
            level = "critical"
            message = (
                f"{s.name} FAILED: restart budget spent ({p.restart_budget} restarts in "
                f"{p.restart_window / 60:.0f} min); needs a human reset"
            )
        else:
            return
        self.out.append(
            Notification(ts=d.ts, service=s.name, channel="webhook", level=level, message=message)
        )


# --- the three samples ---------------------------------------------------------------------------


def _bystander(rng: random.Random) -> Service:
    return Service(
        name="postgres",
        target=Steady(rng, latency_ms=1.2, port=5432),
        policy=BYSTANDER_POLICY,
        url="tcp://10.0.4.12:5432",
        description="primary database",
        probe_kind="tcp",
        critical=True,
        phase=0.7,
    )


# One character per check interval of the flapping service: `.` answers, `x` fails the whole
# interval, `r` fails its probe and recovers within a fraction of a second (before a repair
# step's verification probe), `H` fails until the `http` repair step reloads the service.
FLAP_SCRIPT = (
    "............"  # a quiet minute
    "x..x.x...xx..x.x.."
    "xxr......."  # three in a row: a repair, and the service is back before it is verified
    "x.x..xx.x...x.."
    "xxH......"  # three in a row again: diagnose does not fix it, the reload hook does
    "..x.x..x...x.xx..x......"
    "............"
)


def _flap_windows(script: str, start: float, interval: float) -> list[list[Any]]:
    windows: list[list[Any]] = []
    for i, ch in enumerate(script):
        t0 = start + i * interval
        if ch == "x":
            windows.append([t0, t0 + interval, "timeout" if i % 7 == 3 else "http_5xx"])
        elif ch == "r":
            windows.append([t0, t0 + 0.2, "http_5xx"])
        elif ch == "H":
            windows.append([t0, None, "http_5xx"])
    return windows


def flapping(seed: int = 1) -> list[Event]:
    rng = random.Random(seed)
    phase = 2.0
    windows = _flap_windows(FLAP_SCRIPT, BASE_TS + phase, POLICY.check_interval)
    search = Service(
        name="search",
        target=Flapping(rng, windows, latency_ms=38.0, port=8090),
        policy=msgspec.structs.replace(
            POLICY, ladders={"http_5xx": ("diagnose", "http", "restart")}
        ),
        url="http://127.0.0.1:8090/health",
        description="search API behind a small upstream pool",
        phase=phase,
    )
    runtime = Runtime([_bystander(rng), search], start=BASE_TS, seed=seed)
    return runtime.run(len(FLAP_SCRIPT) * POLICY.check_interval + 1.0)


def crash_restart_cooldown(seed: int = 2) -> list[Event]:
    rng = random.Random(seed)
    billing = Service(
        name="billing",
        target=Crashing(
            rng,
            crash_at=BASE_TS + 150.0,
            unit="billing",
            warmup=12.0,
            latency_ms=24.0,
            port=8081,
        ),
        policy=POLICY,
        url="http://127.0.0.1:8081/health",
        description="billing API",
        critical=True,
        phase=2.0,
    )
    runtime = Runtime([_bystander(rng), billing], start=BASE_TS, seed=seed)
    return runtime.run(420.0)


def budget_exhausted(seed: int = 3) -> list[Event]:
    rng = random.Random(seed)
    ingest = Service(
        name="ingest",
        target=Crashing(
            rng,
            crash_at=BASE_TS + 60.0,
            unit="ingest",
            warmup=10.0,
            relapse_after=75.0,
            latency_ms=17.0,
            port=8082,
        ),
        policy=POLICY,
        url="http://127.0.0.1:8082/health",
        description="event ingest worker (leaks memory, OOM-killed)",
        phase=2.0,
    )
    runtime = Runtime([_bystander(rng), ingest], start=BASE_TS, seed=seed)
    return runtime.run(660.0)


SAMPLES: dict[str, Callable[[], list[Event]]] = {
    "flapping.jsonl": flapping,
    "crash_restart_cooldown.jsonl": crash_restart_cooldown,
    "budget_exhausted.jsonl": budget_exhausted,
}


# --- writing -------------------------------------------------------------------------------------


def _write(path: Path, events: list[Event]) -> None:
    """Append through the real log so seq is stamped the way the monitor's log stamps it."""
    lock = path.with_name(path.name + ".lock")
    for leftover in (path, lock):
        leftover.unlink(missing_ok=True)
    log = FileEventLog.open(path, fsync="never")
    try:
        log.append(events)
        log.flush()
    finally:
        log.close()
    # The lock file only matters while a writer runs; a sample directory needs none.
    lock.unlink(missing_ok=True)


def make_sample(name: str) -> list[Event]:
    return SAMPLES[name]()


def write_samples(out_dir: Path = HERE) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, make in SAMPLES.items():
        path = out_dir / name
        _write(path, make())
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out_dir = Path(args[0]) if args else HERE
    for path in write_samples(out_dir):
        lines = path.read_bytes().count(b"\n")
        print(f"{path}: {lines} events")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
