"""The standalone API's limits, tried as an attacker on the same host would: `hbsm run` as a
child process, real sockets on 127.0.0.1, before any token is looked at (hbsm/api/guard.py).

* huge headers (20 connections each sending a 50 MB header) and too many header lines: 431
  JSON, the connection closed, the rest never read; the process's peak memory barely moves;
* a request line no parser takes: 400 JSON, not uvicorn's plain text;
* 600 connections that trickle their headers, against a process allowed 512 descriptors: a new
  client is still answered, the monitor's probes go on, the slow ones are closed at their
  deadline, and hbsm's stderr holds a few lines and a count, not a traceback per accept();
* a body that never arrives: the connection closed at its deadline.

No timing is asserted: each wait has a deadline only a hang would miss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.waiting import wait_for_sync

from hbsm.api.guard import out_of_descriptors
from hbsm.events import Probe

from .attack_support import Hbsm, hbsm, open_listener, raise_own_nofile, read_answer

__all__ = ["hbsm"]  # the fixture, used by name

MB = 2**20


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=30)


def _head(port: int, extra: bytes = b"") -> bytes:
    return b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % port + extra


# --- 3. bounded request heads ---------------------------------------------------------------


def test_huge_headers_are_431_unread_and_memory_stays_flat(hbsm: Hbsm) -> None:
    hbsm.start()
    before = hbsm.peak_rss_mb()
    sent: list[int] = []

    def attack() -> None:
        total = 0
        chunk = b"a" * MB
        try:
            with _connect(hbsm.port) as sock:
                sock.sendall(_head(hbsm.port, b"X-Big: "))
                while total < 50 * MB:
                    sock.sendall(chunk)
                    total += len(chunk)
        except OSError:
            pass  # refused and closed: what is expected
        sent.append(total)

    threads = [threading.Thread(target=attack) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(sent) == 20
    # The server stopped reading each one early (it closed the connection).
    assert max(sent) < 50 * MB, sent
    # Before: 20 x 50 MB were buffered (60 MB -> 887 MB).
    assert hbsm.peak_rss_mb() - before < 30, (before, hbsm.peak_rss_mb())

    # The answer, read by a client that stops at the limit: 431, JSON, naming the limit.
    with _connect(hbsm.port) as sock:
        sock.sendall(_head(hbsm.port, b"X-Big: " + b"a" * 40_000 + b"\r\n\r\n"))
        status, body = read_answer(sock)
    assert status == 431
    assert body is not None and "over 32768 bytes" in body["error"], body
    assert httpx.get(hbsm.base + "/health", timeout=30).status_code == 200


def test_too_many_header_lines_are_431(hbsm: Hbsm) -> None:
    hbsm.start({"api": {"max_headers": 20}})
    lines = b"".join(b"X-H%d: v\r\n" % i for i in range(19))  # + Host: 20 lines
    with _connect(hbsm.port) as sock:
        sock.sendall(_head(hbsm.port, lines + b"Connection: close\r\n\r\n"))
        status, body = read_answer(sock)
    assert status == 431 and body is not None
    assert body["error"] == "more than 20 header lines" and body["status"] == 431
    with _connect(hbsm.port) as sock:
        sock.sendall(
            _head(hbsm.port, lines[: -len(b"X-H18: v\r\n")] + b"Connection: close\r\n\r\n")
        )
        status, _ = read_answer(sock)
    assert status == 200


# --- 6. malformed requests ------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_line",
    [b"BR\x01W /health HTTP/1.1", b"\xff\xfe /health HTTP/1.1", b"GET /health HTTP/9.9"],
    ids=["control-byte-in-method", "non-ascii", "bad-version"],
)
def test_a_malformed_request_line_is_400_json(hbsm: Hbsm, request_line: bytes) -> None:
    hbsm.start()
    with _connect(hbsm.port) as sock:
        sock.sendall(request_line + b"\r\nHost: 127.0.0.1\r\n\r\n")
        status, body = read_answer(sock)
    assert status == 400
    assert body is not None, "not JSON (uvicorn's plain-text 400?)"
    assert body["status"] == 400 and body["error"].startswith("malformed HTTP request"), body


# --- 4. slow connections and the descriptor limit -------------------------------------------


def test_slow_connections_past_the_descriptor_limit_starve_neither_clients_nor_probes(
    hbsm: Hbsm, tmp_path: Path
) -> None:
    raise_own_nofile(1200)
    target = open_listener()
    port = target.getsockname()[1]
    service = f'\n[[services]]\nname = "db"\nurl = "127.0.0.1:{port}"\nprobe = {{ kind = "tcp" }}\n'

    hbsm.start({"concurrency": 20, "api": {"header_timeout": 3.0}}, tables=service, nofile=512)

    def probes() -> int:
        return sum(1 for e in hbsm.history() if isinstance(e, Probe) and e.service == "db")

    slow: list[socket.socket] = []
    try:
        for _ in range(600):
            sock = _connect(hbsm.port)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            slow.append(sock)
        # Past the cap, a new connection takes the place of the oldest slow one: a real
        # client is answered while they are all still trickling (before: it waited for ever).
        assert httpx.get(hbsm.base + "/health", timeout=30).status_code == 200
        # The monitor's own probes go on: they have descriptors of their own.
        counted = probes()
        wait_for_sync(lambda: probes() >= counted + 5, "5 more probes of db", 60)
        for sock in slow:
            with contextlib.suppress(OSError):
                sock.send(b"x")
        # Each slow one is closed by its deadline, with a 408 when it had sent something.
        answers = [read_answer(sock)[0] for sock in slow]
        assert set(answers) <= {408, 0}, sorted(set(answers))
        assert answers.count(408) >= 500
    finally:
        for sock in slow:
            sock.close()
        target.close()
    assert hbsm.stop() == 0
    err = hbsm.err()
    # Before: one traceback per failed accept(), ~113,000 in 4 s.
    # (A burst may still outrun the cap's reserve: then one line, not asyncio's traceback.)
    assert "socket.accept()" not in err and "Traceback" not in err, err[-3000:]
    # 600 alike warnings: 5 written, then one line with the count of the rest.
    assert err.count("HTTP 408 to") == 6, err
    assert "more like it in the last 60 s" in err, err
    assert len(err.splitlines()) < 40, err


def test_a_body_that_never_arrives_is_cut_off_at_its_deadline(hbsm: Hbsm) -> None:
    hbsm.start({"api": {"body_timeout": 1.0}})
    with _connect(hbsm.port) as sock:
        sock.sendall(
            b"POST /admin/heartbeat/stop HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        sock.settimeout(30)  # only a hang misses it: the server closes after 1 s
        status, _ = read_answer(sock)
    assert status in (0, 408)
    assert httpx.get(hbsm.base + "/health", timeout=30).status_code == 200


def test_a_failed_accept_is_one_warning_line_and_other_loop_errors_pass_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.new_event_loop()
    passed_on: list[dict[str, Any]] = []
    try:
        with caplog.at_level(logging.WARNING, logger="hbsm.api"):
            out_of_descriptors(
                loop,
                {
                    "message": "socket.accept() out of system resource",
                    "exception": OSError(24, "Too many open files"),
                },
                previous=lambda _loop, context: passed_on.append(context),
            )
            other = {"message": "Task exception was never retrieved"}
            out_of_descriptors(loop, other, previous=lambda _loop, c: passed_on.append(c))
    finally:
        loop.close()
    (record,) = caplog.records
    assert "could not accept a connection" in record.getMessage()
    assert "Too many open files" in record.getMessage() and record.exc_info is None
    assert passed_on == [other]
