"""`hbsm run --store URL,URL,URL` on an R3 stream of a three-server NATS cluster, when the
server leading the stream is SIGKILLed: the monitor rides it out as an outage (nothing probed,
decided or started until the log takes writes again), records the outage when a new leader is
elected, and goes on; `hbsm export` afterwards, through the two servers left, writes a log that
`hbsm replay --verify` accepts, every event once at its own seq."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from support.configs import TIGHT, supervised
from support.nats_server import NatsCluster

from hbsm.events import Event, LogOutage, OpaqueEvent, Probe
from hbsm.log import LogError
from hbsm.log.jetstream import read_stream

from .conftest import HbsmRun
from .support import ChildService, exported_and_verified, of, write_toml_config

pytestmark = pytest.mark.slow  # `just test-slow` (CI runs it)


def history(url: str) -> list[Event | OpaqueEvent]:
    """The stream's log as of now; none while it cannot be read (before it exists, or while
    its servers elect a leader)."""
    with contextlib.suppress(LogError):
        return list(read_stream(url))
    return []


def test_run_rides_out_the_stream_leaders_death(
    tmp_path: Path,
    nats_cluster: NatsCluster,
    children: Callable[..., ChildService],
    hbsm_run: Callable[..., HbsmRun],
) -> None:
    api = children("api")
    config = write_toml_config(tmp_path / "hbsm.toml", [supervised(api)], log={"replicas": 3},
                               **TIGHT)  # fmt: skip
    url = nats_cluster.url
    run = hbsm_run(config, None, args=["--store", url])
    run.until(lambda: len(of(history(url), Probe, "api")) >= 5, "api probed, in the stream")
    leader = nats_cluster.index(nats_cluster.stream_leader("HBSM"))

    nats_cluster.kill(leader)
    # The outage is recorded once writes work again, under the new leader; the monitor has
    # probed again since.
    run.until(lambda: of(history(url), LogOutage), "the outage recorded")
    (outage,) = of(history(url), LogOutage)
    run.until(lambda: of(history(url)[outage.seq :], Probe, "api"), "api probed again")
    print(f"\nhbsm run: writes paused {outage.ts - outage.since:.2f} s ({outage.error}); "
          f"{outage.skipped} probes skipped")  # fmt: skip
    assert nats_cluster.stream_leader("HBSM") != nats_cluster.names[leader]

    run.signal(signal.SIGTERM)
    assert run.wait() == 0, run.err()
    exported = tmp_path / "exported.jsonl"
    exported_and_verified(url, exported)
    seqs = [e.seq for e in history(url)]
    assert seqs == list(range(1, len(seqs) + 1))  # once each, no hole
    assert exported.read_bytes().count(b"\n") == len(seqs)
