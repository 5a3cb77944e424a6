"""`hbsm run --store nats://...`: the event log in a JetStream stream of a real nats-server, not
in a file. Killed (SIGKILL) in a cooldown, a new `hbsm run` resumes from the stream as it does
from a file: the cooldown holds; `hbsm export` writes the stream out as JSONL, which `hbsm
replay --verify` checks like any log, as `hbsm replay --store` checks the stream itself."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.configs import TIGHT, supervised
from support.nats_server import NatsServer

from hbsm.events import MonitorStarted, RestartStarted
from hbsm.log import LogError
from hbsm.log.jetstream import read_stream
from hbsm.projection import Projection

from .conftest import HbsmRun
from .support import PY, ChildService, exported_and_verified, of, write_toml_config


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()


def fold(url: str) -> Projection:
    """The views of the stream's log as of now (none before the stream exists)."""
    projection = Projection()
    with contextlib.suppress(LogError):  # no stream yet
        projection.apply_all(list(read_stream(url)))
    return projection


def service_is(url: str, name: str, state: str, restarts: int) -> bool:
    view = fold(url).services.get(name)
    return view is not None and view.fsm.state == state and view.restarts_total == restarts


def test_run_keeps_its_log_in_jetstream_and_resumes_from_it(
    tmp_path: Path,
    nats_server: NatsServer,
    children: Callable[..., ChildService],
    hbsm_run: Callable[..., HbsmRun],
) -> None:
    api = children("api")
    cooldown = 3.0
    config = write_toml_config(
        tmp_path / "hbsm.toml",
        [supervised(api)],
        log={"store": nats_server.url},
        **{**TIGHT, "ladder": ["diagnose", "restart"], "restart_cooldown": cooldown,
           "cooldown_max": cooldown},
    )  # fmt: skip
    url = nats_server.url
    first = hbsm_run(config, None)
    first.until(lambda: service_is(url, "api", "healthy", 0), "api healthy")
    os.kill(fold(url).services["api"].pid or 0, signal.SIGKILL)
    first.until(lambda: service_is(url, "api", "cooldown", 1), "api restarted, in cooldown")
    first.signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL

    second = hbsm_run(config, None)
    second.until(lambda: service_is(url, "api", "healthy", 1), "resumed: api healthy")
    os.kill(fold(url).services["api"].pid or 0, signal.SIGKILL)  # dies again at once
    second.until(lambda: service_is(url, "api", "healthy", 2), "api restarted again")
    second.signal(signal.SIGTERM)
    assert second.wait() == 0, second.err()

    exported = tmp_path / "exported.jsonl"
    verified = exported_and_verified(url, exported)
    history = list(read_stream(url))
    assert exported.read_bytes().count(b"\n") == len(history)
    assert [e.seq for e in history] == list(range(1, len(history) + 1))  # the stream's seqs
    _, resumed = of(history, MonitorStarted)
    first_restart, second_restart = of(history, RestartStarted, "api")
    # One restart by each run, the second's a cooldown after the first's, across the crash.
    assert first_restart.seq < resumed.seq < second_restart.seq
    assert second_restart.ts - first_restart.ts >= cooldown
    # The stream itself, read where it is, verifies the same.
    direct = subprocess.run(
        [PY, "-m", "hbsm", "replay", "--verify", "--store", url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert direct.returncode == 0, direct.stdout + direct.stderr
    assert direct.stdout == verified
    assert not (tmp_path / "events" / "heartbeat.jsonl").exists()  # no file log beside it


def test_run_without_its_nats_server_exits_3_naming_it(
    tmp_path: Path, hbsm_run: Callable[..., HbsmRun]
) -> None:
    config = write_toml_config(tmp_path / "hbsm.toml", [], log={"store": "nats://127.0.0.1:1"})
    run = hbsm_run(config, None)
    assert run.wait() == 3
    assert "nats://127.0.0.1:1" in run.err() and "cannot connect" in run.err()
    assert len(run.err().splitlines()) == 1, run.err()  # one line, not a retry log


def test_export_says_in_one_line_what_it_cannot_read(nats_server: NatsServer) -> None:
    for store, stream, words in (
        ("nats://127.0.0.1:1", "HBSM", "cannot connect"),  # nothing listens there
        (nats_server.url, "NOPE", "no stream NOPE"),
    ):
        done = subprocess.run(
            [PY, "-m", "hbsm", "export", "--store", store, "--stream", stream],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert done.returncode == 3, done.stderr
        assert done.stderr.startswith("hbsm export: ") and words in done.stderr
        assert len(done.stderr.splitlines()) == 1 and done.stdout == ""
