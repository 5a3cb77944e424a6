"""A large, realistic event log for the benchmarks, generated once and cached.

What the monitor writes: `monitor.started`, one `service.registered` per service, then rounds
of probes (every service once per check interval, spread over it), about 5% of them failing:
isolated blips, and outages lasting a few probes that the state machine answers with repairs
and restarts. Every fact goes through the real `hbsm.fsm.decide`; its decisions follow it in
the log, and the outcomes a runtime would feed back (repair.finished and its verification probe,
restart.finished) come in the service's next slot. Now and then an operator resets a `failed`
service. The file is JSONL encoded with `hbsm.events.encode`.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import msgspec

from hbsm.events import (
    Admin,
    Event,
    MonitorStarted,
    MonitorStopped,
    Probe,
    RepairFinished,
    RepairStarted,
    RestartFinished,
    RestartStarted,
    ServiceRegistered,
    encode,
)
from hbsm.fsm import decide
from hbsm.state import RULES, Policy, ServiceState

__all__ = ["GeneratedLog", "cached_log", "generate", "prefix_log"]

# Bump when the generator changes: cached files are keyed by it.
GENERATOR_VERSION = 1
BASE_TS = 1793502000.0  # 2026-11-01T03:00:00Z
POLICY = Policy(check_interval=30.0, max_retries=3, restart_cooldown=300.0)
# Per probe of a service that is up: a blip (one failed probe), or the start of an outage that
# lasts until a repair fixes it or it ends by itself (with OUTAGE_END per probe).
P_BLIP = 0.03
P_OUTAGE = 0.006
OUTAGE_END = 0.12
P_STEP_FIXES = 0.3  # a repair step (diagnose, check_config) ends the outage
P_RESTART_FIXES = 0.9
P_RESET = 0.02  # per round, an operator resets a failed service
WRITE_CHUNK = 50_000

_OK_LATENCY = (18.0, 0.45)  # lognormal median ms, sigma
_FAILURES = (
    ("timeout", None, None, "no response within 5.0 s"),
    ("refused", 0.4, None, "connect 10.0.0.1:8080: [Errno 111] Connection refused"),
    ("http_5xx", 35.0, 503, "HTTP 503 Service Unavailable"),
    ("http_5xx", 60.0, 502, "HTTP 502 Bad Gateway"),
)


@dataclass(frozen=True)
class GeneratedLog:
    path: Path
    events: int
    services: int
    probes: int
    failed_probes: int
    seconds: float  # generation time (0 when taken from the cache)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cache_dir() -> Path:
    return Path(os.environ.get("HBSM_BENCH_CACHE", Path(tempfile.gettempdir()) / "hbsm-bench"))


class _Generator:
    def __init__(self, n_events: int, n_services: int, seed: int) -> None:
        self.n_events = n_events
        self.rng = random.Random(seed)
        self.names = [f"svc-{i:04d}" for i in range(n_services)]
        self.states = [ServiceState(name=name) for name in self.names]
        self.down = [False] * n_services
        # The side effect each service waits for: a RepairStarted or RestartStarted decision.
        self.pending: list[Event | None] = [None] * n_services
        self.out: list[Event] = []
        self.seq = 0
        self.written = 0
        self.probes = 0
        self.failed_probes = 0

    # Appending, with seq stamped the way the log stamps it.

    def add(self, event: Event) -> None:
        self.seq += 1
        self.out.append(msgspec.structs.replace(event, seq=self.seq))

    def feed(self, i: int, fact: Event) -> None:
        self.add(fact)
        for decision in decide(self.states[i], fact, POLICY):
            self.add(decision)
            if isinstance(decision, RepairStarted | RestartStarted):
                self.pending[i] = decision

    def probe(self, i: int, ts: float) -> None:
        rng = self.rng
        self.probes += 1
        if self.down[i]:
            if rng.random() < OUTAGE_END:
                self.down[i] = False
            fails = True
        elif rng.random() < P_OUTAGE:
            self.down[i] = fails = True
        else:
            fails = rng.random() < P_BLIP
        self.seq += 1
        name = self.names[i]
        if fails:
            self.failed_probes += 1
            error, latency, status, detail = _FAILURES[rng.randrange(len(_FAILURES))]
            fact = Probe(
                seq=self.seq,
                ts=ts,
                service=name,
                ok=False,
                latency_ms=latency,
                status=status,
                error=error,
                detail=detail,
            )
        else:
            median, sigma = _OK_LATENCY
            latency = round(median * rng.lognormvariate(0.0, sigma), 1)
            fact = Probe(seq=self.seq, ts=ts, service=name, ok=True, latency_ms=latency, status=200)
        self.out.append(fact)
        for decision in decide(self.states[i], fact, POLICY):
            self.add(decision)
            if isinstance(decision, RepairStarted | RestartStarted):
                self.pending[i] = decision

    def outcome(self, i: int, ts: float) -> None:
        """The side effect requested in this service's last slot has finished."""
        rng = self.rng
        started = self.pending[i]
        self.pending[i] = None
        name = self.names[i]
        if isinstance(started, RepairStarted):
            if self.down[i] and rng.random() < P_STEP_FIXES:
                self.down[i] = False
            self.feed(
                i,
                RepairFinished(
                    ts=ts,
                    service=name,
                    run=started.run,
                    step=started.step,
                    index=started.index,
                    ok=True,
                    output=f"{started.step}: done",
                    duration_ms=round(rng.uniform(80, 900), 1),
                    error_class="refused" if started.step == "diagnose" else None,
                ),
            )
            self.probe(i, round(ts + 0.25, 3))  # the step's verification probe
        elif isinstance(started, RestartStarted):
            if rng.random() < P_RESTART_FIXES:
                self.down[i] = False
            self.feed(
                i,
                RestartFinished(
                    ts=ts,
                    service=name,
                    ok=True,
                    exit_code=0,
                    output=f"$ systemctl restart {name}.service",
                    duration_ms=3100.0,
                ),
            )

    def slot(self, i: int, ts: float) -> None:
        if self.pending[i] is not None:
            self.outcome(i, ts)
        elif self.states[i].state == "failed" and self.rng.random() < P_RESET:
            self.down[i] = False
            self.feed(
                i,
                Admin(
                    ts=ts, action="reset", service=self.names[i], who="ops", source="api 10.0.0.5"
                ),
            )
        else:
            self.probe(i, ts)

    def flush(self, out_file: BinaryIO) -> None:
        out_file.write(b"".join([encode(e) + b"\n" for e in self.out]))
        self.written += len(self.out)
        self.out.clear()

    def run(self, path: Path) -> None:
        n = len(self.names)
        step = POLICY.check_interval / n
        with open(path, "wb") as f:
            self.add(
                MonitorStarted(
                    ts=BASE_TS,
                    pid=41000,
                    version="0.1.0",
                    host="bench",
                    config={"check_interval": POLICY.check_interval, "services": n},
                    rules=RULES,  # the rules decide() applied below
                )
            )
            for i, name in enumerate(self.names):
                self.add(
                    ServiceRegistered(
                        ts=BASE_TS,
                        service=name,
                        policy=POLICY,
                        target=f"http://10.0.{i // 250}.{i % 250}:8080/health",
                    )
                )
            # Leave room for the last slot's decisions and monitor.stopped.
            limit = self.n_events - 8
            rnd = 0
            ts = BASE_TS
            while self.seq < limit:
                start = BASE_TS + 1.0 + rnd * POLICY.check_interval
                for i in range(n):
                    ts = round(start + i * step, 3)
                    self.slot(i, ts)
                    if self.seq >= limit:
                        break
                rnd += 1
                if len(self.out) >= WRITE_CHUNK:
                    self.flush(f)
                    if rnd % 100 == 0:
                        _log(f"  generated {self.seq:,} events")
            # Fill up to exactly n_events - 1 with probes that decide nothing.
            i = 0
            while self.seq < self.n_events - 1:
                i = (i + 1) % n
                ts = round(ts + step, 3)
                state = self.states[i]
                if state.state == "healthy" and self.pending[i] is None and not self.down[i]:
                    self.seq += 1
                    self.probes += 1
                    self.out.append(
                        Probe(
                            seq=self.seq,
                            ts=ts,
                            service=self.names[i],
                            ok=True,
                            latency_ms=17.5,
                            status=200,
                        )
                    )
            self.add(MonitorStopped(ts=round(ts + 0.5, 3), pid=41000, reason="bench"))
            self.flush(f)


def generate(path: Path, n_events: int, n_services: int, seed: int = 7) -> GeneratedLog:
    started = time.perf_counter()
    gen = _Generator(n_events, n_services, seed)
    gen.run(path)
    return GeneratedLog(
        path=path,
        events=gen.written,
        services=n_services,
        probes=gen.probes,
        failed_probes=gen.failed_probes,
        seconds=time.perf_counter() - started,
    )


def _meta_path(path: Path) -> Path:
    return path.with_suffix(".meta.json")


def cached_log(n_events: int, n_services: int, seed: int = 7) -> GeneratedLog:
    """The log for these parameters, generated on first use and kept under cache_dir()."""
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"log-v{GENERATOR_VERSION}-{n_events}-{n_services}-{seed}"
    path = directory / f"{stem}.jsonl"
    meta = _meta_path(path)
    if path.exists() and meta.exists():
        info = msgspec.json.decode(meta.read_bytes())
        return GeneratedLog(path=path, seconds=0.0, **info)
    _log(f"generating {n_events:,} events for {n_services:,} services -> {path}")
    tmp = path.with_name(path.name + ".tmp")
    made = generate(tmp, n_events, n_services, seed)
    os.replace(tmp, path)
    info = {
        "events": made.events,
        "services": made.services,
        "probes": made.probes,
        "failed_probes": made.failed_probes,
    }
    meta.write_bytes(msgspec.json.encode(info))
    _log(f"  done in {made.seconds:.1f} s")
    return GeneratedLog(path=path, seconds=made.seconds, **info)


def prefix_log(log: GeneratedLog, n_events: int) -> Path:
    """The first n_events lines of `log`, as a file of its own (cached beside it)."""
    path = log.path.with_name(f"{log.path.stem}-first{n_events}.jsonl")
    if path.exists():
        return path
    tmp = path.with_name(path.name + ".tmp")
    with open(log.path, "rb") as src, open(tmp, "wb") as dst:
        for count, line in enumerate(src):
            if count >= n_events:
                break
            dst.write(line)
    os.replace(tmp, path)
    return path
