"""`hbsm notify [--test]`, the real command line in a child process, against real receivers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .servers import WebhookReceiver, closed_port

pytest.importorskip("apprise")


def hbsm(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTBEAT_")}
    return subprocess.run(
        [sys.executable, "-m", "hbsm", *map(str, args)],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def failing() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver().start()
    server.status = 500
    yield server
    server.stop()


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hbsm.toml"
    path.write_text(text)
    return path


def test_every_channel_works(tmp_path, receiver, smtp_server):
    path = write_config(
        tmp_path,
        f"""
[notify]
apprise = ["json://127.0.0.1:{receiver.port}/apprise/s3cr3t",
           "form://127.0.0.1:{receiver.port}/form/s3cr3t"]
[[notify.webhooks]]
url = "{receiver.url("/hook/s3cr3t")}"
[notify.smtp]
host = "127.0.0.1"
port = {smtp_server.port}
to = ["ops@example.com"]
""",
    )
    done = hbsm("notify", "--test", "--config", path, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    port = receiver.port
    assert done.stdout.splitlines() == [
        f"ok    notify.webhooks[0]  webhook:http://127.0.0.1:{port}",
        f"ok    notify.smtp  smtp:127.0.0.1:{smtp_server.port}",
        f"ok    notify.apprise[0]  apprise:json://127.0.0.1:{port}/***",
        f"ok    notify.apprise[1]  apprise:form://127.0.0.1:{port}/***",
        "4 of 4 channels worked",
    ]
    assert sorted(r.path for r in receiver.requests) == [
        "/apprise/s3cr3t",
        "/form/s3cr3t",
        "/hook/s3cr3t",
    ]
    hook = next(r for r in receiver.requests if r.path == "/hook/s3cr3t").json()
    assert hook["kind"] == "test" and hook["service"] == "" and hook["level"] == "info"
    assert hook["message"].startswith("hbsm test notice from ")
    apprise_body = next(r for r in receiver.requests if r.path == "/apprise/s3cr3t").json()
    assert apprise_body["title"] == "[hbsm] test notice"
    [mail] = smtp_server.mails
    assert mail.message["Subject"] == "[hbsm] test notice"


def test_a_failing_channel_is_named_with_its_reason_and_exits_1(tmp_path, receiver, failing):
    path = write_config(
        tmp_path,
        f"""
[notify]
apprise = ["json://127.0.0.1:{receiver.port}/ok", "json://127.0.0.1:{failing.port}/s3cr3t"]
[[notify.webhooks]]
url = "{failing.url("/hook")}"
retries = 0
""",
    )
    done = hbsm("notify", "--test", "-c", path, cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        f"FAIL  notify.webhooks[0]  webhook:http://127.0.0.1:{failing.port}: "
        "HTTP 500: refused with 500"
    )
    assert lines[1] == f"ok    notify.apprise[0]  apprise:json://127.0.0.1:{receiver.port}/***"
    assert lines[2].startswith(
        f"FAIL  notify.apprise[1]  apprise:json://127.0.0.1:{failing.port}/***: "
    )
    assert "500" in lines[2]
    assert lines[3:] == ["1 of 3 channels worked"]
    assert "s3cr3t" not in done.stdout + done.stderr
    assert len(failing.requests) == 2


def test_without_test_the_channels_are_listed_and_nothing_is_sent(tmp_path, receiver):
    path = write_config(
        tmp_path, f'[notify]\napprise = ["json://127.0.0.1:{receiver.port}/s3cr3t"]\n'
    )
    done = hbsm("notify", "-c", path, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"notify.apprise[0]  apprise:json://127.0.0.1:{receiver.port}/***\n"
    assert receiver.requests == []


def test_no_channel_configured_exits_2_saying_so(tmp_path):
    path = write_config(tmp_path, "[notify]\nrate_per_hour = 5\n")
    done = hbsm("notify", "--test", "-c", path, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        f"hbsm notify: no notification channel configured in {path} "
        "(set notify.webhooks, notify.smtp or notify.apprise)\n"
    )


def test_a_bad_config_exits_2_naming_the_key(tmp_path):
    path = write_config(tmp_path, '[notify]\napprise = ["nonsense://s3cr3t"]\n')
    done = hbsm("notify", "--test", "-c", path, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(f"hbsm notify: {path}: notify.apprise[0]: ")
    assert "s3cr3t" not in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_smtp_refusing_is_a_failure(tmp_path):
    # Nothing listens: the mail cannot go.
    path = write_config(
        tmp_path,
        f'[notify.smtp]\nhost = "127.0.0.1"\nport = {closed_port()}\nto = ["ops@example.com"]\n',
    )
    done = hbsm("notify", "--test", "-c", path, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout.splitlines()[0].startswith("FAIL  notify.smtp  smtp:127.0.0.1:")
    assert "ConnectionRefusedError" in done.stdout
