"""The Flask blueprint behind the WSGI server the README recommends, with its settings as given
there (gunicorn, gthread workers, request limits): bounded request heads, as `hbsm run` has.

The blueprint cannot bound what the server reads before the app is called: the server's own
limits do. gunicorn answers a head over `--limit-request-field_size` or with more than
`--limit-request-fields` lines 431 and closes the connection; the rest is never read.
(gunicorn does not time out a client that trickles its headers: the README says to put a
reverse proxy with header and body timeouts in front, or to use `hbsm run`'s own API.)
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.net import free_port
from support.waiting import wait_for_sync

from hbsm.log import FileEventLog

from .attack_support import read_answer

PY = sys.executable
MB = 2**20
# The README's command line ("In a Flask application"), but for the address and the app.
README_FLAGS = [
    "--worker-class", "gthread", "--threads", "8", "--timeout", "30",
    "--limit-request-line", "4094", "--limit-request-fields", "50",
    "--limit-request-field_size", "8190",
]  # fmt: skip

APP = """
from flask import Flask
from hbsm.flask import follow_log

app = Flask(__name__)
follow_log(app, {log!r})
"""


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[int]:
    log = tmp_path / "events" / "heartbeat.jsonl"
    FileEventLog.open(log).close()
    (tmp_path / "wsgi_app.py").write_text(APP.format(log=str(log)))
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(PY).parent / "gunicorn"), "--bind", f"127.0.0.1:{port}", *README_FLAGS,
         "wsgi_app:app"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "gunicorn.err").open("wb"),
    )  # fmt: skip

    def answers() -> bool:
        if proc.poll() is not None:
            raise AssertionError((tmp_path / "gunicorn.err").read_text())
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for_sync(answers, "gunicorn serving the blueprint", 60)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


def test_a_50_mb_header_is_431_unread(gunicorn: int) -> None:
    sent = 0
    with socket.create_connection(("127.0.0.1", gunicorn), timeout=30) as sock:
        try:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
            while sent < 50 * MB:
                sock.sendall(b"a" * MB)
                sent += MB
        except OSError:
            pass  # refused and closed: what is expected
        status, _ = read_answer(sock)
    assert sent < 50 * MB
    assert status in (431, 0)  # 0: the answer was lost to the reset of a client still sending
    with socket.create_connection(("127.0.0.1", gunicorn), timeout=30) as sock:
        sock.sendall(
            b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
        )
        assert read_answer(sock)[0] == 431
    assert httpx.get(f"http://127.0.0.1:{gunicorn}/health", timeout=30).status_code == 200


def test_too_many_header_lines_are_431(gunicorn: int) -> None:
    lines = b"".join(b"X-H%d: v\r\n" % i for i in range(60))
    with socket.create_connection(("127.0.0.1", gunicorn), timeout=30) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + lines + b"\r\n")
        assert read_answer(sock)[0] == 431
