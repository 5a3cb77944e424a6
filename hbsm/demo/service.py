"""A demo service: a tiny HTTP app run as `python -m hbsm.demo.service`.

    python -m hbsm.demo.service --name main_service --port 8001 \
        --config DIR/main_service.toml --control DIR/control

Routes: the service's own health route (`/health` for main_service, `/login` for login_page,
`/worker/health` for worker) and `POST /_reset` (the repair hook the `http` step calls: back to
mode "ok").

Misbehaviour is driven from outside without HTTP, through a control file `CONTROL/NAME.mode`
that the service reads on every request (and polls every 50 ms, so "crash" happens at once):

* ok     answer normally
* crash  exit with status 1 at once
* hang   accept connections, never answer (every route, /_reset too: only a restart helps)
* error  answer 500
* slow   answer after `slow_seconds` (from its config file; default 1.0)

The sixth fault, badconfig, is not a mode: the service's own TOML config file is corrupted
(`corrupt_config`). The service reads that file on every request and answers 500 "config
unreadable" while it does not parse, so restoring the file (`hbsm.demo.fixconfig`) repairs it
without a restart. On start the service resets its mode to "ok": a restart clears every mode
fault, but not a broken config file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = [
    "FAULTS",
    "MODES",
    "ROUTES",
    "control_path",
    "corrupt_config",
    "good_copy",
    "main",
    "read_mode",
    "set_mode",
    "write_config",
]

MODES = ("ok", "crash", "hang", "error", "slow")
# Every fault chaos can inject: the modes but "ok", and a broken config file.
FAULTS = ("crash", "hang", "error", "slow", "badconfig")
# Each demo service's health route.
ROUTES = {"main_service": "/health", "login_page": "/login", "worker": "/worker/health"}
RESET_ROUTE = "/_reset"
_POLL = 0.05
_GARBAGE = 'name = "unterminated\n[[[ this is not TOML\n'


def control_path(control_dir: str | os.PathLike[str], name: str) -> Path:
    return Path(control_dir) / f"{name}.mode"


def set_mode(control_dir: str | os.PathLike[str], name: str, mode: str) -> None:
    """Write `mode` into the service's control file (atomically: no torn reads)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: one of {', '.join(MODES)}")
    path = control_path(control_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(mode + "\n")
    os.replace(tmp, path)


def read_mode(control_dir: str | os.PathLike[str], name: str) -> str:
    try:
        mode = control_path(control_dir, name).read_text().strip()
    except OSError:
        return "ok"
    return mode if mode in MODES else "ok"


def good_copy(config: str | os.PathLike[str]) -> Path:
    """Where the known-good copy of a service's config file is kept."""
    path = Path(config)
    return path.with_name(path.name + ".good")


def write_config(path: str | os.PathLike[str], name: str, *, slow_seconds: float = 1.0) -> Path:
    """Write a service's config file and its known-good copy; return the file's path."""
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    text = f'# demo service config\nname = "{name}"\nslow_seconds = {slow_seconds}\n'
    file.write_text(text)
    good_copy(file).write_text(text)
    return file


def corrupt_config(path: str | os.PathLike[str]) -> None:
    """Break a service's config file (the badconfig fault)."""
    file = Path(path)
    tmp = file.with_name(f".{file.name}.broken")
    tmp.write_text(_GARBAGE)
    os.replace(tmp, file)


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name: str, port: int, config: Path, control: Path) -> None:
        self.name = name
        self.route = ROUTES.get(name, "/health")
        self.config_path = config
        self.control_dir = control
        self.stopping = threading.Event()
        super().__init__(("127.0.0.1", port), Handler)

    def mode(self) -> str:
        return read_mode(self.control_dir, self.name)

    def read_config(self) -> tuple[dict[str, Any] | None, str]:
        try:
            return tomllib.loads(self.config_path.read_text()), ""
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            return None, f"config unreadable: {self.config_path}: {exc}"


class Handler(BaseHTTPRequestHandler):
    server: DemoServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        mode = self._misbehave()
        if mode is None:
            return
        path = self.path.split("?", 1)[0]
        if path not in (self.server.route, "/"):
            self._answer(404, {"error": f"no route {path}"})
            return
        config, problem = self.server.read_config()
        if config is None:
            self._answer(500, {"status": "error", "error": problem})
            return
        if mode == "error":
            self._answer(500, {"status": "error", "error": "chaos: internal error"})
            return
        if mode == "slow":
            time.sleep(float(config.get("slow_seconds", 1.0)))
        if self.server.route == "/login":
            self._answer(200, None, html="<form method=post><input name=user></form>")
        else:
            self._answer(200, {"status": "healthy", "service": self.server.name})

    def do_POST(self) -> None:
        if self._misbehave() is None:
            return
        if self.path.split("?", 1)[0] != RESET_ROUTE:
            self._answer(404, {"error": f"no route {self.path}"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        before = self.server.mode()
        set_mode(self.server.control_dir, self.server.name, "ok")
        self._answer(200, {"reset": True, "mode_before": before})

    def _misbehave(self) -> str | None:
        """The mode in force; None when the request must not be answered."""
        mode = self.server.mode()
        if mode == "crash":
            os._exit(1)
        if mode == "hang":
            # Accepted, never answered (until the process is stopped).
            while not self.server.stopping.wait(1.0):
                pass
            return None
        return mode

    def _answer(self, status: int, body: dict[str, Any] | None, *, html: str = "") -> None:
        if body is not None:
            data = json.dumps(body).encode()
            kind = "application/json"
        else:
            data = html.encode()
            kind = "text/html; charset=utf-8"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        # Only errors: one line per probe would fill the output file.
        if len(args) > 1 and str(args[1]).startswith(("4", "5")):
            sys.stderr.write(f"{self.server.name}: {format % args}\n")


def _crash_watch(server: DemoServer) -> None:
    while not server.stopping.wait(_POLL):
        if server.mode() == "crash":
            sys.stderr.write(f"{server.name}: crash requested: exiting with status 1\n")
            sys.stderr.flush()
            os._exit(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hbsm.demo.service", description=__doc__)
    parser.add_argument("--name", required=True, help="main_service, login_page or worker")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--config", required=True, help="the service's own TOML config file")
    parser.add_argument("--control", required=True, help="the directory of control files")
    args = parser.parse_args(argv)
    control = Path(args.control)
    set_mode(control, args.name, "ok")  # a (re)start clears every mode fault
    server = DemoServer(args.name, args.port, Path(args.config), control)
    watcher = threading.Thread(target=_crash_watch, args=(server,), daemon=True)
    watcher.start()
    sys.stderr.write(
        f"{args.name}: pid {os.getpid()} serving http://127.0.0.1:{args.port}{server.route}\n"
    )
    sys.stderr.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.stopping.set()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
