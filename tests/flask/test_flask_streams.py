"""The blueprint's `/events` on a real WSGI server (werkzeug, threaded): streamed as it is
logged, and ended with its client, the log follower behind it closed, or with the app."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import httpx
import pytest
from heartbeat_support import flask_app, flask_config
from support.configs import service
from support.waiting import wait_for_sync

from hbsm.flask.embedded import MonitorThread


def open_log_files(log_path: Path) -> int:
    """Descriptors of this process open on the log's folder (the writer's, the followers')."""
    folder = str(log_path.parent)
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            count += os.readlink(f"/proc/self/fd/{fd}").startswith(folder)
    return count


def test_an_event_stream_follows_the_log_and_ends_with_its_client(
    embedded, target, log_path, served
):
    app = flask_app()
    side = served(app)
    embedded(flask_config(log_path, [service("api", target.svc_url("a"))]), app=app)
    side.serve()
    before = open_log_files(log_path)

    with httpx.stream("GET", side.base + "/events?since=0", timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["x-accel-buffering"] == "no"
        got = b""
        for chunk in response.iter_bytes():
            got += chunk
            if got.count(b"event: probe\n") >= 3:  # written after the stream opened, too
                break
        assert got.startswith(b"retry: 2000\n: hbsm events after seq 0\n\n")
        assert b"id: 1\nevent: monitor.started\n" in got
        assert open_log_files(log_path) > before  # the stream's own follower
    # The client is gone: the server finds out at its next write, and closes the follower.
    wait_for_sync(lambda: open_log_files(log_path) == before, "the stream's follower closed")


@pytest.mark.parametrize("mode", ["embedded", "follow"])
def test_open_streams_end_when_the_app_stops(
    mode, embedded, following, target, log_path, served, stop_later
):
    config = flask_config(log_path, [service("api", target.svc_url("a"))])
    app = flask_app()
    side = served(app)
    if mode == "embedded":
        _, handle = embedded(config, app=app)
    else:
        writer = stop_later(MonitorThread(config))
        writer.start()
        _, handle = following(log_path, app=app)
    side.serve()
    with httpx.stream("GET", side.base + "/events", timeout=10) as response:
        chunks = response.iter_bytes()
        assert next(chunks).startswith(b"retry: 2000")
        handle.stop()
        # The stream ends: iterating does not wait for the client's read timeout (10 s), which
        # would raise httpx.ReadTimeout here.
        for _ in chunks:
            pass
