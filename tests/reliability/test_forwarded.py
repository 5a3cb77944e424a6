"""Who the client is, as an attacker on the same host would try to lie about it: `hbsm run` as a
child process and the Flask blueprint on a real port, raw requests on 127.0.0.1.

* uvicorn believes `X-Forwarded-For` from 127.0.0.1 by default: a local client then passed for
  any address it liked, past the per-address limit on recorded refusals (1,033 recorded in
  1.5 s against "10 a minute") and into the `source` of admin events. Now no proxy is believed
  unless `[api] trusted_proxies` names it;
* a request carrying a proxy header is no loopback client (a local reverse proxy would make
  every remote user one), in both front ends;
* two Host headers: werkzeug joins them ("127.0.0.1:5000,evil.example" read as local), uvicorn
  passes both (the first was read): refused in both.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import heartbeat_support as flask_support
import pytest
from probes.servers import SwitchableTarget
from support.configs import service

from hbsm.events import Admin

from .attack_support import Hbsm, hbsm
from .raw_http import raw_request

__all__ = ["hbsm"]  # the fixture, used by name

WRONG = {"Authorization": "Bearer not-the-token"}


def refused(run: Hbsm) -> list[Admin]:
    return [e for e in run.history() if isinstance(e, Admin) and not e.allowed]


def test_a_forged_forwarded_for_from_loopback_neither_escapes_the_limit_nor_forges_the_source(
    hbsm: Hbsm,
) -> None:
    hbsm.start()
    for i in range(50):
        headers = {**WRONG, "X-Forwarded-For": f"10.66.{i // 250}.{i % 250 + 1}"}
        answer = raw_request(hbsm.port, "POST", "/admin/heartbeat/stop", headers=headers)
        assert answer.status == 403
    assert hbsm.stop() == 0
    events = refused(hbsm)
    # One client (127.0.0.1), one budget: 10 recorded one by one, the rest counted in a summary
    # recorded at the stop. Before: 50 events, each "from" a forged address.
    assert len(events) == 11, [(e.source, e.suppressed) for e in events]
    assert sum(1 + e.suppressed for e in events) == 50
    assert all(e.source.startswith("127.0.0.1:") for e in events), {e.source for e in events}


def test_a_proxy_named_in_trusted_proxies_is_believed(hbsm: Hbsm) -> None:
    hbsm.start({"api": {"trusted_proxies": ["127.0.0.1"]}})
    headers = {**WRONG, "X-Forwarded-For": "10.66.0.7"}
    assert raw_request(hbsm.port, "POST", "/admin/heartbeat/stop", headers=headers).status == 403
    assert hbsm.stop() == 0
    (event,) = refused(hbsm)
    assert event.source.startswith("10.66.0.7:"), event.source


# --- without a token: loopback only, and a proxied request is not loopback ------------------


def test_without_a_token_a_proxied_or_two_host_request_is_refused_standalone(hbsm: Hbsm) -> None:
    hbsm.start(token=None)
    assert raw_request(hbsm.port, "GET", "/admin/heartbeat/status").status == 200
    check_refused(hbsm.port)


@pytest.fixture
def blueprint_port(tmp_path: Path) -> Iterator[int]:
    target = SwitchableTarget().start()
    config = flask_support.flask_config(
        tmp_path / "events" / "heartbeat.jsonl",
        [service("web", target.svc_url("web"))],
    )
    try:
        with flask_support.heartbeat_served(config) as port:
            yield port
    finally:
        target.stop()


def test_without_a_token_a_proxied_or_two_host_request_is_refused_blueprint(
    blueprint_port: int,
) -> None:
    assert raw_request(blueprint_port, "GET", "/admin/heartbeat/status").status == 200
    check_refused(blueprint_port)


def check_refused(port: int) -> None:
    # raw_request sends "Host: 127.0.0.1:PORT" first; a second Host follows it.
    for name, value in [
        ("Host", "evil.example"),
        ("X-Forwarded-For", "127.0.0.1"),
        ("Forwarded", "for=127.0.0.1"),
        ("X-Real-IP", "127.0.0.1"),
    ]:
        answer = raw_request(port, "GET", "/admin/heartbeat/status", headers={name: value})
        assert answer.status == 403, (name, answer.status, answer.body[:200])
        assert answer.headers["content-type"] == "application/json"
    answer = raw_request(port, "GET", "/admin/heartbeat/status", headers={"Host": "evil.example"})
    assert b"more than one Host header" in answer.body
