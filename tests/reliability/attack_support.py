"""`hbsm run` as a child process on a real port of 127.0.0.1, for the attacks of
tests/reliability/test_http_limits.py and test_secrets.py: a config written by the test, an
optional descriptor limit (as `ulimit -n` would set it), its stderr in a file, its peak memory
read from /proc.
"""

from __future__ import annotations

import json
import resource
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from monitor.support import toml_value
from support.net import free_port
from support.waiting import wait_for_sync

from hbsm.events import Event, OpaqueEvent
from hbsm.log import read_history

from .raw_http import read_all

__all__ = ["TOKEN", "Hbsm", "hbsm", "open_listener", "raise_own_nofile", "read_answer"]

PY = sys.executable
TOKEN = "attack-test-token"


class Hbsm:
    """One `hbsm run --config FILE` in `workdir`; `start()` waits for /health to answer."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.log = workdir / "events" / "heartbeat.jsonl"
        self.stderr = workdir / "hbsm.err"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(
        self,
        top: dict[str, Any] | None = None,
        *,
        tables: str = "",
        nofile: int | None = None,
        token: str | None = TOKEN,
    ) -> Hbsm:
        settings: dict[str, Any] = {"port": self.port, "check_interval": 0.2, **(top or {})}
        if token is not None:
            settings["admin_token"] = token
        lines = [f"{key} = {toml_value(value)}" for key, value in settings.items()]
        text = "\n".join(lines) + f'\n\n[log]\npath = "{self.log}"\n' + tables
        config = self.workdir / "hbsm.toml"
        config.write_text(text)

        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        with self.stderr.open("wb") as err:
            self.proc = subprocess.Popen(
                [PY, "-m", "hbsm", "run", "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=self.workdir,
                preexec_fn=limit,
            )
        wait_for_sync(self._answers, f"hbsm run answering on {self.base}", 30)
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"hbsm run exited {self.proc.returncode}: {self.err()}")
        try:
            return httpx.get(self.base + "/health", timeout=5).status_code in (200, 503)
        except httpx.HTTPError:
            return False

    def err(self) -> str:
        return self.stderr.read_text(errors="replace")

    def peak_rss_mb(self) -> float:
        """The child's peak resident memory so far (VmHWM), in MB."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM in /proc/PID/status")

    def history(self) -> list[Event | OpaqueEvent]:
        return list(read_history(self.log))

    def stop(self) -> int:
        """SIGTERM, and its exit status (it records what it only counted as it stops)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


@pytest.fixture
def hbsm(tmp_path: Path) -> Iterator[Hbsm]:
    run = Hbsm(tmp_path)
    yield run
    run.kill()


def open_listener() -> socket.socket:
    """A TCP listener on 127.0.0.1 for a tcp probe to find up (connections are left queued)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict[str, Any] | None]:
    """(status, JSON body or None) of the answer waiting on `sock`, read to its end; (0, None)
    if the server closed without a word."""
    data = read_all(sock)
    if not data:
        return 0, None
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b"\r\n", 1)[0].split()[1])
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


def raise_own_nofile(wanted: int) -> None:
    """Let this process hold `wanted` descriptors (up to its hard limit), or skip the test."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"needs {wanted} file descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
