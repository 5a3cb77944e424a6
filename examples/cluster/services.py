"""Many HTTP services behind one local server, for the cluster demo and its tests.

`GET /<name>` answers 200, or 500 while the marker file `broken/<name>` exists. The server is a
process of its own, so that nothing its starter does (reading the stream back, say) can hold
its answers up past a probe's timeout. A service is
broken by creating the marker, and mended by its restart command: a small script that waits a
moment (a restart takes time), removes the marker and appends one line to `restarts.log` (the
service and the pid of the process that ran it: the hbsm node). So `restarts.log` counts the
restarts actually carried out, whatever the event log says was decided.

Only the standard library: tests/cluster imports this file too, and it must not depend on hbsm.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["RESTART_SCRIPT", "SERVER_SCRIPT", "Services"]

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


SERVER_SCRIPT = """\
import http.server, os, sys
broken, port = sys.argv[1], int(sys.argv[2])

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = not os.path.exists(os.path.join(broken, self.path.strip("/")))
        self.send_response(200 if ok else 500)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok" if ok else b"no")

    def log_message(self, *args):
        pass  # a line per probe, several nodes probing every second: noise

class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a prober that gave up mid-answer (a timeout): not worth a traceback

Server(("127.0.0.1", port), Handler).serve_forever()
"""


class Services:
    """HTTP services `/<name>` served by one local process on a free loopback port;
    `break_(name)` makes one answer 500 until its restart command runs (or `mend`)."""

    def __init__(self, workdir: Path, timeout: float = 20.0) -> None:
        self.workdir = workdir
        self.broken = workdir / "broken"
        self.broken.mkdir(parents=True, exist_ok=True)
        self.script = workdir / "restart.py"
        self.script.write_text(RESTART_SCRIPT)
        server = workdir / "server.py"
        server.write_text(SERVER_SCRIPT)
        self.port = _free_port()
        argv = [sys.executable, str(server), str(self.broken), str(self.port)]
        self._server = subprocess.Popen(argv, process_group=0)  # its own: see processes.py
        self._wait_listening(timeout)

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self._server.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    why = f"the services' server is not listening on port {self.port}"
                    raise RuntimeError(why) from None
                time.sleep(0.05)

    def url(self, name: str, port: int | None = None) -> str:
        return f"http://127.0.0.1:{port or self.port}/{name}"

    def break_(self, name: str) -> None:
        (self.broken / name).touch()

    def mend(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.broken / name).unlink()

    def is_broken(self, name: str) -> bool:
        return (self.broken / name).exists()

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
        """The [[services]] table of `name` in an hbsm.toml, restarted by the counting
        command (which takes `delay` seconds)."""
        argv = [sys.executable, str(self.script), name, str(self.workdir), str(delay)]
        return {
            "name": name,
            "url": self.url(name, port),
            "probe": {"timeout": 2.0},
            "restart": {"kind": "command", "argv": argv},
            **fields,
        }

    def close(self) -> None:
        if self._server.poll() is None:
            self._server.kill()
        self._server.wait(10)


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
