"""Parts for tests of several `hbsm run --node` sharing one stream: many HTTP services behind
one local server, each broken by a marker file and mended by its restart command (which counts
the restarts), the nodes as real processes, and the stream read back."""

from __future__ import annotations

import contextlib
import http.server
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hbsm.events import Event, OpaqueEvent, ServiceOwned
from hbsm.log import LogError
from hbsm.log.jetstream import read_stream
from hbsm.projection import Projection

try:
    from support.net import free_port
except ModuleNotFoundError:  # imported as tests.cluster.support (by the benchmarks)
    from tests.support.net import free_port

PY = sys.executable

# The restart command of every service: after `delay` seconds, mend the service and count the
# restart (one line per restart carried out, with the pid of the node that ran it).
RESTART_SCRIPT = """\
import os, sys, time
name, workdir, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
time.sleep(delay)
try:
    os.unlink(os.path.join(workdir, "broken", name))
except FileNotFoundError:
    pass
with open(os.path.join(workdir, "restarts.log"), "a") as out:
    out.write(f"{name} {os.getppid()}\\n")
"""


class Services:
    """HTTP services `/<name>` on one threaded server; `break_(name)` makes one answer 500 until
    its restart command runs (or `mend`)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        (workdir / "broken").mkdir(parents=True, exist_ok=True)
        self.script = workdir / "restart.py"
        self.script.write_text(RESTART_SCRIPT)
        self.port = free_port()
        broken = workdir / "broken"

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.strip("/")
                status = 500 if (broken / name).exists() else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"no")

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a prober that gave up mid-answer (a timeout): not worth a traceback

        self._server = Server(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, name: str, port: int | None = None) -> str:
        return f"http://127.0.0.1:{port or self.port}/{name}"

    def break_(self, name: str) -> None:
        (self.workdir / "broken" / name).touch()

    def mend(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.workdir / "broken" / name).unlink()

    def is_broken(self, name: str) -> bool:
        return (self.workdir / "broken" / name).exists()

    def restarts(self) -> list[tuple[str, int]]:
        """(service, pid of the node whose restart command ran), in order."""
        log = self.workdir / "restarts.log"
        if not log.exists():
            return []
        out = []
        for line in log.read_text().splitlines():
            name, pid = line.split()
            out.append((name, int(pid)))
        return out

    def table(self, name: str, *, delay: float = 0.0, port: int | None = None,
              **fields: Any) -> dict[str, Any]:  # fmt: skip
        """The [[services]] table of `name`, restarted by the counting command."""
        return {
            "name": name,
            "url": self.url(name, port),
            "probe": {"timeout": 1.0},
            "restart": {"kind": "command",
                        "argv": [PY, str(self.script), name, str(self.workdir), str(delay)]},
            **fields,
        }  # fmt: skip

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


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
