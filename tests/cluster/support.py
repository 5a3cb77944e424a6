"""Parts for tests of several `hbsm run --node` sharing one stream: many HTTP services behind
one local server, each broken by a marker file and mended by its restart command (which counts
the restarts), the nodes as real processes, and the stream read back."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

from hbsm.events import Event, OpaqueEvent, ServiceOwned
from hbsm.log import LogError
from hbsm.log.jetstream import read_stream
from hbsm.projection import Projection

try:
    from support.net import free_port
except ModuleNotFoundError:  # imported as tests.cluster.support (by the benchmarks)
    from tests.support.net import free_port

PY = sys.executable


def _example(name: str) -> ModuleType:
    """A module of examples/cluster/, the demo's folder (a script's, not a package): its
    services are these tests' too, so the demo shows what the tests check."""
    path = Path(__file__).resolve().parents[2] / "examples" / "cluster" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"hbsm_cluster_example_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# HTTP services `/<name>` served by one local process, each broken by a marker file and mended
# by its restart command, which counts the restarts carried out (examples/cluster/services.py).
Services = _example("services").Services


class Node:
    """One `hbsm run --node NAME --store URL` process; output in `workdir`/NAME.err."""

    def __init__(self, name: str, config: Path, store: str, workdir: Path,
                 env: Mapping[str, str] | None = None) -> None:  # fmt: skip
        self.name = name
        self.killed = False
        self.api_port = free_port()
        self.stderr = workdir / f"{name}.err"
        argv = [PY, "-m", "hbsm", "run", "--config", str(config), "--node", name,
                "--store", store, "--port", str(self.api_port)]  # fmt: skip
        with self.stderr.open("ab") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err, cwd=workdir,
                                         env={**os.environ, **(env or {})})  # fmt: skip

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        self.killed = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int:
        self.killed = True  # exiting now is what was asked
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def output(self) -> str:
        return self.stderr.read_text(errors="replace")


def history(url: str, stream: str = "HBSM") -> list[Event | OpaqueEvent]:
    with contextlib.suppress(LogError):  # no stream yet
        return list(read_stream(url, stream))
    return []


def fold(url: str) -> Projection:
    projection = Projection()
    projection.apply_all(history(url))
    return projection


def owners(url: str) -> dict[str, str | None]:
    return {name: view.owner for name, view in fold(url).services.items()}


def takeovers(events: list[Event | OpaqueEvent], service: str) -> list[ServiceOwned]:
    return [e for e in events if isinstance(e, ServiceOwned) and e.service == service]


def http_post(url: str) -> tuple[int, str]:
    request = urllib.request.Request(url, data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
