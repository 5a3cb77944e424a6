"""`hbsm run` under systemd (Type=notify): a datagram socket the test binds stands in for
systemd's, and `hbsm run` is the real command line in a child process.

The watchdog's point is that a hung event loop stops the pings; that is shown on a real loop
blocked on purpose (a subprocess offers no way in to block its loop from outside)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from probes.servers import closed_port
from support.net import free_port
from support.waiting import wait_for

from hbsm.events import MonitorStarted
from hbsm.monitor.diagnostics import JournalFormatter
from hbsm.monitor.systemd import (
    NotifySocket,
    SystemdLink,
    ping_interval,
    settings,
    socket_address,
    status_text,
)

from .conftest import HbsmRun
from .support import PY, events, http_get, write_toml_config

StartRun = Callable[..., HbsmRun]

# A command probe that fails when hbsm passed systemd's variables on to what it starts.
NOT_INHERITED = (
    "import os, sys; "
    "sys.exit(any(v in os.environ for v in ('NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID')))"
)


class Listener:
    """systemd's end: a bound AF_UNIX datagram socket; `got` is every datagram so far, in
    order, each as its lines."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.setblocking(False)
        self.got: list[list[str]] = []

    def poll(self) -> list[list[str]]:
        with contextlib.suppress(BlockingIOError):
            while True:
                self.got.append(self.sock.recv(4096).decode().split("\n"))
        return self.got

    def lines(self) -> list[str]:
        return [line for datagram in self.poll() for line in datagram]

    def statuses(self) -> list[str]:
        return [line.removeprefix("STATUS=") for line in self.lines() if line.startswith("STATUS=")]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory whose socket paths fit AF_UNIX's 108 bytes (pytest's tmp_path may not)."""
    with tempfile.TemporaryDirectory(prefix="hbsm-sd-") as name:
        yield Path(name)


@pytest.fixture
def listener(short_dir: Path) -> Iterator[Listener]:
    made = Listener(str(short_dir / "notify.sock"))
    yield made
    made.close()


def config_file(tmp_path: Path, port: int, down_port: int) -> Path:
    """Two services: one healthy (a command probe that checks systemd's variables did not
    reach it), one whose port refuses, degraded and left so (no repair within the test)."""
    clean = {"name": "clean-env", "probe": {"kind": "command", "argv": [PY, "-c", NOT_INHERITED]}}
    down = {"name": "down", "url": f"127.0.0.1:{down_port}", "probe": {"kind": "tcp"}}
    return write_toml_config(
        tmp_path / "hbsm.toml", [clean, {**down, "max_retries": 10_000}], port=port,
        check_interval=0.2,
    )  # fmt: skip


# --- `hbsm run` and its notifications --------------------------------------------------------


def test_ready_status_pings_and_stopping_from_a_real_hbsm_run(tmp_path, listener, hbsm_run):
    port = free_port()
    log = tmp_path / "heartbeat.jsonl"
    with closed_port() as down:
        config = config_file(tmp_path, port, down)
        started = time.monotonic()
        run: HbsmRun = hbsm_run(
            config, log, env={"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "200000"}
        )
        run.until(listener.poll, "a first datagram")
        # READY=1 comes first, once the monitor has resumed from its log and the API answers.
        first = listener.got[0]
        assert first[0] == "READY=1", listener.got
        assert http_get(f"http://127.0.0.1:{port}/health")[0] in (200, 503)
        assert any(isinstance(e, MonitorStarted) for e in events(log))
        assert first[1].startswith("STATUS=2 services: "), first

        # The counts, sent again as they change: one service healthy, the other degraded.
        run.until(
            lambda: "2 services: 1 healthy, 1 degraded" in listener.statuses(),
            "a STATUS with the counts",
        )
        statuses = listener.statuses()
        assert all(a != b for a, b in itertools.pairwise(statuses)), statuses

        # Pings, from the first moment, and no more often than asked (every 0.1 s). The bound
        # only errs towards passing: every ping counted was sent between `started` and now.
        run.until(lambda: listener.lines().count("WATCHDOG=1") >= 5, "five pings")
        pings = listener.lines().count("WATCHDOG=1")
        assert pings <= 2 + (time.monotonic() - started) / 0.1

        run.signal(signal.SIGTERM)
        run.until(lambda: "STOPPING=1" in listener.lines(), "STOPPING=1")
        assert run.wait() == 0, run.err()
    stopping = next(d for d in listener.got if d[0] == "STOPPING=1")
    assert stopping == ["STOPPING=1", "STATUS=stopping: SIGTERM"]
    assert "cannot tell systemd" not in run.err()


def test_an_abstract_socket_and_a_watchdog_meant_for_another_process(tmp_path, hbsm_run):
    name = f"hbsm-test-{uuid.uuid4().hex}"
    listener = Listener("\0" + name)
    try:
        config = write_toml_config(tmp_path / "hbsm.toml", [])
        # WATCHDOG_PID names another process (the variables were inherited): no pings.
        env = {"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"}
        run: HbsmRun = hbsm_run(config, tmp_path / "heartbeat.jsonl", env=env)
        run.until(lambda: "READY=1" in listener.lines(), "READY=1 on the abstract socket")
        run.signal(signal.SIGTERM)
        run.until(lambda: "STOPPING=1" in listener.lines(), "STOPPING=1")
        assert run.wait() == 0, run.err()
        assert "WATCHDOG=1" not in listener.lines()
    finally:
        listener.close()


def test_an_unreachable_socket_is_one_warning_and_hbsm_runs_on(tmp_path, short_dir, hbsm_run):
    port = free_port()
    config = write_toml_config(tmp_path / "hbsm.toml", [], port=port)
    # Nobody listens there; pings every 25 ms, each failing.
    env = {"NOTIFY_SOCKET": str(short_dir / "nobody.sock"), "WATCHDOG_USEC": "50000"}
    run: HbsmRun = hbsm_run(config, tmp_path / "heartbeat.jsonl", env=env)
    run.until(lambda: http_get(f"http://127.0.0.1:{port}/health")[0] == 200, "the API answers")
    run.until(lambda: "cannot tell systemd" in run.err(), "the warning")
    time.sleep(0.5)  # some twenty failed pings more
    assert http_get(f"http://127.0.0.1:{port}/health")[0] == 200
    run.signal(signal.SIGTERM)
    assert run.wait() == 0, run.err()
    assert run.err().count("cannot tell systemd") == 1, run.err()
    assert "Traceback" not in run.err()


def test_a_bad_notify_socket_is_a_warning_and_nothing_is_sent(tmp_path, hbsm_run):
    port = free_port()
    config = write_toml_config(tmp_path / "hbsm.toml", [], port=port)
    env = {"NOTIFY_SOCKET": "relative/notify.sock", "WATCHDOG_USEC": "soon"}
    run: HbsmRun = hbsm_run(config, tmp_path / "heartbeat.jsonl", env=env)
    run.until(lambda: http_get(f"http://127.0.0.1:{port}/health")[0] == 200, "the API answers")
    run.signal(signal.SIGTERM)
    assert run.wait() == 0, run.err()
    assert "NOTIFY_SOCKET='relative/notify.sock': expected an absolute path" in run.err()
    assert "WATCHDOG_USEC='soon': expected microseconds" in run.err()


# --- the pings come from the loop: a blocked loop sends none ---------------------------------


async def test_a_blocked_loop_stops_the_pings(listener):
    loop = asyncio.get_running_loop()
    link = SystemdLink(NotifySocket(listener.address), 0.02, lambda: "0 services")
    link.ready(loop)
    try:
        await wait_for(lambda: listener.lines().count("WATCHDOG=1") >= 3, "pings flowing")
        during: list[int] = []

        def hang() -> None:
            # A callback that does not return for 15 intervals: nothing else runs meanwhile.
            listener.poll()
            listener.got.clear()
            time.sleep(0.3)
            during.append(listener.lines().count("WATCHDOG=1"))

        loop.call_soon(hang)
        await wait_for(lambda: during, "the blocking callback to end")
        assert during == [0]
        # Unblocked, the pings resume (and do not catch up: no burst of the missed ones).
        await wait_for(lambda: "WATCHDOG=1" in listener.lines(), "pings again")
    finally:
        link.close()


async def test_status_is_sent_when_the_counts_change_only(listener):
    loop = asyncio.get_running_loop()
    text = ["1 service: 1 unknown"]
    link = SystemdLink(NotifySocket(listener.address), None, lambda: text[0], status_every=0.01)
    link.ready(loop)
    try:
        assert listener.poll() == [["READY=1", "STATUS=1 service: 1 unknown"]]
        await asyncio.sleep(0.2)  # some twenty looks at unchanged counts
        text[0] = "1 service: 1 healthy"
        await wait_for(lambda: len(listener.poll()) == 2, "the new counts")
        await asyncio.sleep(0.2)
        link.stopping("SIGTERM")
        assert listener.poll() == [
            ["READY=1", "STATUS=1 service: 1 unknown"],
            ["STATUS=1 service: 1 healthy"],
            ["STOPPING=1", "STATUS=stopping: SIGTERM"],
        ]
        assert "WATCHDOG=1" not in listener.lines()  # no WATCHDOG_USEC, no pings
    finally:
        link.close()


async def test_counts_that_fail_do_not_stop_ready_nor_the_pings(listener, caplog):
    def broken() -> str:
        raise KeyError("a service the projection lost")

    link = SystemdLink(NotifySocket(listener.address), 0.02, broken, status_every=0.01)
    with caplog.at_level(logging.ERROR, logger="hbsm.systemd"):
        link.ready(asyncio.get_running_loop())
        try:
            await wait_for(lambda: listener.lines().count("WATCHDOG=1") >= 3, "pings flowing")
        finally:
            link.close()
    assert listener.got[0] == ["READY=1"]
    assert not listener.statuses()
    assert "counting the services failed" in caplog.text


def test_a_socket_nobody_listens_on_warns_once(short_dir, caplog):
    sock = NotifySocket(str(short_dir / "nobody.sock"))
    with caplog.at_level(logging.DEBUG, logger="hbsm.systemd"):
        assert [sock.send("WATCHDOG=1") for _ in range(5)] == [False] * 5
    sock.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "nobody.sock" in warnings[0].getMessage()


# --- the variables read, the messages worded -------------------------------------------------


def test_socket_addresses():
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@hbsm/notify") == "\0hbsm/notify"
    for bad in ("relative.sock", "@", "vsock:2:1234"):
        with pytest.raises(ValueError, match="absolute path or an @abstract"):
            socket_address(bad)


def test_ping_interval_is_half_the_watchdog_for_this_process_only():
    assert ping_interval("30000000", None, 42) == 15.0
    assert ping_interval("30000000", "42", 42) == 15.0
    assert ping_interval("30000000", "7", 42) is None  # meant for another process
    assert ping_interval(None, None, 42) is None
    assert ping_interval("", "42", 42) is None
    for bad in ("30s", "0", "-5"):
        with pytest.raises(ValueError, match="WATCHDOG_USEC"):
            ping_interval(bad, None, 42)


def test_settings_take_the_variables_out_of_the_environment():
    env = {"NOTIFY_SOCKET": "@sd", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "9", "PATH": "/b"}
    found = settings(env, 9)
    assert found == ("\0sd", 0.5, ())
    assert env == {"PATH": "/b"}
    found = settings({"NOTIFY_SOCKET": "x", "WATCHDOG_USEC": "x"}, 9)
    assert found.address is None and found.ping_every is None
    assert len(found.problems) == 2


def test_status_text():
    states = ["healthy"] * 990 + ["degraded"] * 9 + ["failed"]
    assert status_text(states) == "1000 services: 990 healthy, 9 degraded, 1 failed"
    assert status_text(["paused", "unknown"]) == "2 services: 1 unknown, 1 paused"
    assert status_text(["healthy"]) == "1 service: 1 healthy"
    assert status_text([]) == "0 services"
    assert status_text(["healthy"], ["probing stopped"]) == "1 service: 1 healthy; probing stopped"


def test_without_notify_socket_nothing_is_imported():
    code = (
        "import asyncio, sys\n"
        "from hbsm.cli import main\n"
        "main(['run', '--duration', '0.5', '--port', sys.argv[1], '--log', sys.argv[2]])\n"
        "print('hbsm.monitor.systemd' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    with tempfile.TemporaryDirectory() as d:
        done = subprocess.run(
            [sys.executable, "-c", code, str(free_port()), str(Path(d) / "log.jsonl")],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "False"


# --- diagnostics to the journal ---------------------------------------------------------------


def test_stderr_to_the_journal_carries_priorities_not_times(tmp_path, short_dir, hbsm_run):
    port = free_port()
    config = write_toml_config(tmp_path / "hbsm.toml", [], port=port)
    # What systemd does: names the stream it gave as stderr (here a file: device and inode).
    err = tmp_path / "hbsm-1.err"  # where the fixture sends the first run's stderr
    err.touch()
    st = err.stat()
    env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}",
           "NOTIFY_SOCKET": str(short_dir / "nobody.sock")}  # fmt: skip
    run: HbsmRun = hbsm_run(config, tmp_path / "heartbeat.jsonl", env=env)
    run.until(lambda: "cannot tell systemd" in run.err(), "the warning")
    run.signal(signal.SIGTERM)
    assert run.wait() == 0, run.err()
    lines = run.err().splitlines()
    assert any(line.startswith("<6>hbsm: API on http://127.0.0.1:") for line in lines), lines
    assert any(line.startswith("<4>hbsm.systemd: cannot tell systemd") for line in lines), lines
    assert all(re.match(r"<[2-7]>", line) for line in lines), lines


def test_stderr_elsewhere_keeps_its_times(tmp_path, hbsm_run):
    config = write_toml_config(tmp_path / "hbsm.toml", [])
    # A JOURNAL_STREAM inherited from a unit whose stderr this is not.
    run: HbsmRun = hbsm_run(config, tmp_path / "heartbeat.jsonl", env={"JOURNAL_STREAM": "1:2"})
    run.until(lambda: "monitoring" in run.err(), "started")
    run.signal(signal.SIGTERM)
    assert run.wait() == 0, run.err()
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO hbsm", run.err()), run.err()


def test_a_traceback_to_the_journal_keeps_its_priority_on_every_line():
    formatter = JournalFormatter()
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("hbsm", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = formatter.format(record)
    lines = text.splitlines()
    assert lines[0] == "<3>hbsm: failed"
    assert lines[-1] == "<3>RuntimeError: boom"
    assert all(line.startswith("<3>") for line in lines)
