"""A monitor asked for more probes than its loop can do: every service slowed down alike, said
once in the log, and back to its own interval once the load goes away.

Real parts: the monitor probes a local HTTP target; each probe also burns 6 ms of CPU in the
monitor's loop (the prober wrapped by the test), so 40 services every 100 ms ask for 2.4 s of
CPU a second. Nothing here is timed: only who was probed how often, and what was recorded."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from probes.servers import SwitchableTarget
from support.configs import make_config, service
from support.waiting import wait_for

from hbsm.config import ServiceConfig
from hbsm.events import MonitorCaughtUp, MonitorOverloaded, Probe
from hbsm.probes import Pace

from .conftest import Harness
from .support import of
from .test_runtime import StartMonitor, assert_consistent, log_path


def burn(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def test_an_overloaded_monitor_slows_every_service_alike_and_says_so_once(
    tmp_path: Path, target: SwitchableTarget, start_monitor: StartMonitor
) -> None:
    names = [f"svc-{i:02d}" for i in range(40)]
    services = [
        service(name, target.svc_url(name), check_interval=0.1, ladder=["diagnose"])
        for name in names
    ]
    h: Harness = await start_monitor(make_config(log_path(tmp_path), services))
    m = h.monitor
    m.scheduler.pace = Pace(window=0.5)  # judged every half second: a shorter test
    load = {"burn": 0.006}
    probe = m.prober.probe_with_cert  # what the monitor's scheduled probes call

    async def costly(svc: ServiceConfig) -> Any:
        burn(load["burn"])
        return await probe(svc)

    m.prober.probe_with_cert = costly  # type: ignore[method-assign]
    began = await h.wait_logged(lambda e: isinstance(e, MonitorOverloaded), "monitor.overloaded")
    assert isinstance(began, MonitorOverloaded)
    assert began.stretch > 1.5 and began.asked == 400.0
    await wait_for(lambda: m.projection.monitor.overloaded_since is not None, "the view says so")
    assert m.projection.monitor.stretch == began.stretch
    # Overloaded for a while: count every service's probes over it.
    await wait_for(lambda: m.scheduler.stats.overloads == 1 and _seq(h) > began.seq + 800,
                   "800 probes overloaded", timeout=60)  # fmt: skip
    load["burn"] = 0.0  # the load goes away
    load_gone = _seq(h)
    ended = await h.wait_logged(
        lambda e: isinstance(e, MonitorCaughtUp), "monitor.caught_up", timeout=60
    )
    assert isinstance(ended, MonitorCaughtUp)
    assert ended.since == began.ts and ended.stretch_max >= began.stretch
    assert m.scheduler.stats.stretch == 1.0
    assert m.projection.monitor.overloaded_since is None and m.projection.monitor.stretch == 1.0
    history = await h.stop()
    # Once each: one episode.
    assert len(of(history, MonitorOverloaded)) == len(of(history, MonitorCaughtUp)) == 1
    # While overloaded, no service starved: every one probed about as often as the others.
    during = Counter(
        p.service for p in of(history, Probe) if began.seq < p.seq < min(load_gone, ended.seq)
    )
    counts = [during[name] for name in names]
    assert min(counts) / max(counts) > 0.7, counts
    assert_consistent(h, history)


def _seq(h: Harness) -> int:
    return h.monitor.projection.monitor.last_seq
