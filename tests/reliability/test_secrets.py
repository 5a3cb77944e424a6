"""No secret in the log, and nothing internal in front of a client without the token: `hbsm run`
as a child process on a real port, the Flask blueprint on a real port, raw sockets.

Markers are planted where internals come from: OUT in targets (a URL, a command probe's argv),
in a repair step's and a restart command's argv and output, and in a restart's env (echoed by
the command as `postgres://app:<env>@10.1.2.3/db`, the way a real restart command shows its
DSN); SECRET_* in the config's secrets (the admin token, webhook headers and URL path, the
SMTP password, probe headers, restart env values that nothing echoes).

* Every answer a client without the token can get, every route, every Accept, wrong tokens
  too: no OUT (before: `restart failed: postgres://app:DBPASS...` in last_reason, and the
  health+json `output`), no SECRET. The token holder sees OUT (so the markers were planted).
* The event log (every line), `/events`, `/admin/heartbeat/status` and `hbsm config`: no
  SECRET (before: webhook headers, the SMTP password and restart env in clear, 0644).
* The log and its segments are 0600 (0640 with `[log] group_read`); `hbsm replay --verify`
  works from the masked config; a log written before, with its secrets in clear and 0644, is
  still read, shown masked, and made 0600 by the next writer.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import heartbeat_support as flask_support
import httpx
import msgspec
import pytest
from monitor.support import toml_value
from support.net import free_port
from support.waiting import wait_for_sync

from hbsm.config import BUILTIN_STEPS, Config, LogConfig
from hbsm.config.validate import Blame, validate
from hbsm.events import MonitorStarted
from hbsm.flask import follow_log
from hbsm.log import FileEventLog

from .attack_support import TOKEN, Hbsm, hbsm
from .raw_http import raw_request

__all__ = ["hbsm"]  # the fixture, used by name

PY = sys.executable
OUT = "0UT-MARK-5150"
SECRETS = {
    "SECRET_H": "SECRET-probe-header-1",
    "SECRET_E": "SECRET-restart-env-2",
    "SECRET_W": "SECRET-webhook-path-3",
    "SECRET_A": "SECRET-webhook-auth-4",
    "SECRET_P": "SECRET-smtp-password-5",
    "SECRET_U": "SECRET-apprise-path-6",
    "TOKEN": TOKEN,
}
ECHO_DSN = (
    "import os, sys; print('postgres://app:' + os.environ['DBPASS'] + '@10.1.2.3/db', "
    "sys.argv[1]); sys.exit(1)"
)


def planted(closed: int) -> dict[str, Any]:
    """The config (as TOML-ready builtins) whose internals carry the markers."""
    return {
        "max_retries": 1,
        "services": [
            {
                "name": "web",
                "url": f"http://127.0.0.1:{closed}/{OUT}/health",
                "ladder": ["command", "restart"],
                "steps": {
                    "command": {
                        "argv": [PY, "-c", "import sys; print('saw', sys.argv[1]); exit(2)", OUT]
                    }
                },
                "restart": {
                    "kind": "command",
                    "argv": [PY, "-c", ECHO_DSN, OUT],
                    "env": {"DBPASS": f"{OUT}-DBPASS"},
                },
            },
            {
                "name": "job",
                "url": "",
                "ladder": ["diagnose"],
                "probe": {
                    "kind": "command",
                    "argv": [PY, "-c", "import sys; print(sys.argv[1]); exit(1)", OUT],
                },
            },
            {
                "name": "quiet",
                "url": f"http://127.0.0.1:{closed}/quiet",
                "ladder": ["diagnose"],
                "probe": {"headers": {"X-Auth": SECRETS["SECRET_H"]}},
                "restart": {
                    "kind": "command",
                    "argv": [PY, "-c", "pass"],
                    "env": {"API_KEY": SECRETS["SECRET_E"]},
                },
            },
        ],
        "notify": {
            "webhooks": [
                {
                    "url": f"http://127.0.0.1:{closed}/hooks/{SECRETS['SECRET_W']}",
                    "headers": {"Authorization": f"Bearer {SECRETS['SECRET_A']}"},
                    "retries": 0,
                }
            ],
            "smtp": {
                "host": "127.0.0.1",
                "port": closed,
                "to": ["ops@example.com"],
                "password": SECRETS["SECRET_P"],
            },
            # Notified when "web" fails, to a closed port: the failure's error must not name it.
            "apprise": [f"json://127.0.0.1:{closed}/hooks/{SECRETS['SECRET_U']}?cto=2"],
        },
    }


def as_toml(doc: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(top-level settings, the tables) of `doc` as TOML text for Hbsm.start."""
    top = {k: v for k, v in doc.items() if not isinstance(v, dict | list)}
    text = ""
    notify = doc["notify"]
    text += f"\n[notify]\nsmtp = {toml_value(notify['smtp'])}\n"
    text += f"apprise = {toml_value(notify['apprise'])}\n"
    for hook in notify["webhooks"]:
        text += "\n[[notify.webhooks]]\n" + "".join(
            f"{k} = {toml_value(v)}\n" for k, v in hook.items()
        )
    for service in doc["services"]:
        text += "\n[[services]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in service.items())
    return top, text


def no_secret_in(text: str | bytes, where: str) -> None:
    data = text.encode() if isinstance(text, str) else text
    for name, secret in SECRETS.items():
        assert secret.encode() not in data, f"{name} in {where}"


# --- the walk -------------------------------------------------------------------------------

ACCEPTS = [None, "application/json", "application/health+json"]


def unauthenticated_requests(services: list[str], admin_actions: bool) -> list[tuple[str, str]]:
    gets = ["/health", "/health/detailed", *(f"/health/service/{s}" for s in services)]
    gets += ["/health/service/nope", "/admin/heartbeat/status", "/nope"]
    posts = ["/admin/heartbeat/stop", "/admin/heartbeat/start"]
    if admin_actions:  # the standalone app's own routes
        gets += ["/metrics", "/openapi.json", "/events"]
        posts += [f"/admin/service/{s}/reset" for s in services]
    return [("GET", p) for p in gets] + [("POST", p) for p in posts]


def walk(port: int, services: list[str], *, standalone: bool) -> int:
    """Every answer a client without the right token can get; asserts no marker in any.
    Returns how many answers were looked at."""
    seen = 0
    for method, path in unauthenticated_requests(services, standalone):
        for accept in ACCEPTS:
            for auth in (None, "Bearer wrong-token"):
                headers = {k: v for k, v in (("Accept", accept), ("Authorization", auth)) if v}
                answer = raw_request(port, method, path, headers=headers)
                where = f"{method} {path} (Accept {accept}, {auth or 'no token'}): {answer.status}"
                everything = answer.body + repr(answer.headers).encode()
                assert OUT.encode() not in everything, f"{where}: {answer.body[:600]!r}"
                no_secret_in(everything, where)
                seen += 1
    return seen


def wait_planted(base: str) -> dict[str, Any]:
    """/health/detailed as the token holder sees it, once every marker has surfaced."""

    def ready() -> dict[str, Any] | None:
        body = httpx.get(
            base + "/health/detailed", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        ).json()
        web, job = body["services"]["web"], body["services"]["job"]
        surfaced = OUT in web["last_reason"] and "restart failed" in web["last_reason"]
        if surfaced and OUT in job["last_probe"]["detail"] and web["last_problem"]:
            return dict(body)
        return None

    return wait_for_sync(ready, "the restart failed and every marker is in the views", 60)


# --- 1 and 2 against `hbsm run` --------------------------------------------------------------


def test_hbsm_run_shows_no_internals_without_the_token_and_logs_no_secret(
    hbsm: Hbsm, tmp_path: Path
) -> None:
    doc = planted(free_port())
    top, tables = as_toml(doc)
    hbsm.start(top, tables=tables)
    detailed = wait_planted(hbsm.base)
    # The markers were planted: the token holder sees them, through every kind of field.
    web = detailed["services"]["web"]
    assert OUT in web["target"] and "postgres://app:" in web["last_reason"], web
    assert OUT in web["last_problem"]

    assert walk(hbsm.port, ["web", "job", "quiet"], standalone=True) >= 90

    # 2: the admin's own views carry no secret either.
    auth = {"Authorization": f"Bearer {TOKEN}"}
    status = httpx.get(hbsm.base + "/admin/heartbeat/status", headers=auth, timeout=30)
    assert status.status_code == 200
    no_secret_in(status.content, "/admin/heartbeat/status")
    config = status.json()["config"]
    assert config["services"][2]["restart"]["env"] == {"API_KEY": "***"}
    assert config["notify"]["webhooks"][0]["headers"] == {"Authorization": "***"}
    with httpx.stream("GET", hbsm.base + "/events?since=0", headers=auth, timeout=30) as stream:
        streamed = b""
        for chunk in stream.iter_bytes():
            streamed += chunk
            if b"event: service.registered" in streamed and streamed.count(b"\n\n") > 20:
                break
    assert b"event: monitor.started" in streamed
    no_secret_in(streamed, "/events")

    assert hbsm.stop() == 0
    logged = hbsm.log.read_bytes()
    no_secret_in(logged, "the event log")
    assert b'"channel":"apprise:json://127.0.0.1:' in logged  # it was tried, and failed
    assert stat.S_IMODE(hbsm.log.stat().st_mode) == 0o600
    shown = subprocess.run(
        [PY, "-m", "hbsm", "config", "--config", str(tmp_path / "hbsm.toml")],
        capture_output=True,
        text=True,
        check=True,
    )
    no_secret_in(shown.stdout, "hbsm config")
    verify = subprocess.run(
        [PY, "-m", "hbsm", "replay", "--verify", str(hbsm.log)], capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


# --- 1 against the blueprint ----------------------------------------------------------------


@pytest.fixture
def blueprint(tmp_path: Path) -> Iterator[int]:
    doc = planted(free_port())
    config = msgspec.convert(
        {
            **doc,
            "admin_token": TOKEN,
            "check_interval": 0.2,
            "log": {"path": str(tmp_path / "events" / "heartbeat.jsonl")},
        },
        Config,
    )
    validate(config, Blame(None, {}), BUILTIN_STEPS)
    with flask_support.heartbeat_served(config) as port:
        yield port


def test_the_blueprint_shows_no_internals_without_the_token(blueprint: int) -> None:
    detailed = wait_planted(f"http://127.0.0.1:{blueprint}")
    assert OUT in detailed["services"]["web"]["target"]
    assert walk(blueprint, ["web", "job", "quiet"], standalone=False) > 50


# --- 2: modes, and logs written before ------------------------------------------------------


def test_group_read_makes_the_log_and_its_segments_0640(hbsm: Hbsm) -> None:
    hbsm.start(tables="group_read = true\nmax_bytes = 4000\n")
    wait_for_sync(lambda: list(hbsm.log.parent.glob("heartbeat.*.jsonl.gz")), "a rotation", 60)
    assert hbsm.stop() == 0
    files = [hbsm.log, *hbsm.log.parent.glob("heartbeat.*.jsonl*")]
    assert len(files) >= 2
    assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: 0o640 for f in files}


def test_a_log_written_before_with_secrets_in_clear_is_still_read_and_shown_masked(
    hbsm: Hbsm, tmp_path: Path
) -> None:
    # As an older hbsm wrote it: 0644, the config in clear but for the admin token.
    log = hbsm.log
    log.parent.mkdir(parents=True)
    clear = msgspec.to_builtins(
        msgspec.convert(
            {**planted(1), "log": msgspec.to_builtins(LogConfig(path=str(log)))}, Config
        )
    )
    writer = FileEventLog.open(log)
    writer.append([MonitorStarted(ts=1.0e9, pid=1, version="0.0.9", host="h", config=clear)])
    writer.close()
    os.chmod(log, 0o644)
    assert SECRETS["SECRET_P"].encode() in log.read_bytes()

    # A Flask app following it shows it masked (to the token holder: it is an admin route).
    app = flask_support.flask_app()
    follow_log(app, log, admin_token=TOKEN)
    served = flask_support.ServedApp(app).serve()
    try:
        answer = raw_request(
            served.port,
            "GET",
            "/admin/heartbeat/status",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    finally:
        served.stop()
    assert answer.status == 200
    no_secret_in(answer.body, "the status of an old log")

    # The next writer takes it on, and makes it 0600.
    hbsm.start()
    assert hbsm.stop() == 0
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    verify = subprocess.run(
        [PY, "-m", "hbsm", "replay", "--verify", str(log)], capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
