"""Who may use the admin routes: the matrix of token set or not, by header missing, wrong or
right, by loopback or not. Loopback requests go over real TCP to uvicorn; non-loopback ones go
through httpx.ASGITransport with a fake client address in the ASGI scope. Every admin action,
allowed or not, is an `admin` event naming the client."""

from __future__ import annotations

import httpx
import msgspec
import pytest

from hbsm.api.bodies import DetailedHealth, ErrorBody, HeartbeatStatus, ServiceHealth
from hbsm.api.security import (
    authorize,
    bearer_token,
    binds_loopback_only,
    client_label,
    is_loopback,
)

from .conftest import NON_LOOPBACK, Live, StartApi

TOKEN = "s3cret-token"
RIGHT = {"Authorization": f"Bearer {TOKEN}"}
WRONG = {"Authorization": "Bearer not-the-token"}


def refused(r: httpx.Response, status: int) -> ErrorBody:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    err = msgspec.json.decode(r.content, type=ErrorBody)
    assert err.status == status and err.error
    return err


# --- no token set: loopback only -----------------------------------------------------------


async def test_no_token_loopback_is_served_and_others_get_403(live: Live) -> None:
    assert (await live.client.post("/admin/heartbeat/stop")).status_code == 200  # over TCP
    remote = live.asgi(NON_LOOPBACK)
    err = refused(await remote.post("/admin/heartbeat/start"), 403)
    assert "loopback" in err.error
    refused(await remote.post("/admin/service/web/pause"), 403)
    refused(await remote.get("/admin/heartbeat/status"), 403)
    refused(await remote.get("/events"), 403)
    # A token offered when none is set changes nothing for a remote client.
    refused(await remote.post("/admin/heartbeat/start", headers=RIGHT), 403)
    assert not live.monitor.heartbeat_running  # the refused start did nothing
    assert live.state("web") == "healthy"

    # The in-process client with a loopback address is served too (IPv4-mapped included).
    local = live.asgi(("::ffff:127.0.0.1", 5555))
    assert (await local.post("/admin/heartbeat/start")).status_code == 200

    admin = [(e.action, e.service, e.allowed, e.who, e.source) for e in live.admin_events()]
    assert admin[0][:4] == ("stop", None, True, "loopback")
    assert admin[0][4].startswith("127.0.0.1:")
    assert admin[1:] == [
        ("start", None, False, "anonymous", "10.1.2.3:1234"),
        ("pause", "web", False, "anonymous", "10.1.2.3:1234"),
        ("start", None, False, "token", "10.1.2.3:1234"),
        ("start", None, True, "loopback", "[::ffff:127.0.0.1]:5555"),
    ]


async def test_no_token_remote_clients_see_no_internal_urls(live: Live) -> None:
    remote = live.asgi(NON_LOOPBACK)
    r = await remote.get("/health/detailed")
    assert r.status_code == 200
    detailed = msgspec.json.decode(r.content, type=DetailedHealth)
    assert all(s.target is None for s in detailed.services.values())
    r = await remote.get("/health/service/web")
    assert msgspec.json.decode(r.content, type=ServiceHealth).target is None
    r = await live.client.get("/health/detailed")
    detailed = msgspec.json.decode(r.content, type=DetailedHealth)
    assert all(s.target for s in detailed.services.values())


async def test_no_token_remote_clients_see_no_probe_details(live: Live, target) -> None:
    # A failed probe's detail names the URL it tried: the same rule as the target.
    target.modes["aux"] = "/status/500"
    await live.wait_state("aux", "degraded")
    r = await live.asgi(NON_LOOPBACK).get("/health/service/aux")
    remote = msgspec.json.decode(r.content, type=ServiceHealth)
    assert remote.last_failure is not None and remote.last_failure.error == "http_5xx"
    assert remote.last_failure.detail == "" and remote.last_problem == ""
    r = await live.client.get("/health/service/aux")
    local = msgspec.json.decode(r.content, type=ServiceHealth)
    assert local.last_failure is not None and "/svc/aux" in local.last_failure.detail


async def test_no_token_loopback_refuses_what_a_browser_could_forge(live: Live) -> None:
    """CSRF from any web page, and DNS rebinding: loopback, but not to be trusted."""
    client = live.client  # real TCP from 127.0.0.1
    origin = live.base  # e.g. http://127.0.0.1:PORT, the request's own origin
    forged = [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://localhost:3000"},  # another local app's page
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": origin},
        {"Host": "evil.example:5000"},  # DNS rebinding: a hostile name re-pointed at us
    ]
    for headers in forged:
        err = refused(await client.post("/admin/heartbeat/stop", headers=headers), 403)
        assert "admin token" in err.error, err.error
        refused(await client.get("/admin/heartbeat/status", headers=headers), 403)
    assert live.monitor.heartbeat_running
    r = await client.get("/health/detailed", headers={"Origin": "http://evil.example"})
    assert r.status_code == 200  # public, but without the internal URLs
    assert all(
        s.target is None
        for s in msgspec.json.decode(r.content, type=DetailedHealth).services.values()
    )
    # The page's own origin, or the browser's address bar, is fine; so is "localhost".
    ok = [
        {"Origin": origin, "Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},
        {"Host": f"localhost:{live.server.port}"},
    ]
    for headers in ok:
        assert (await client.get("/admin/heartbeat/status", headers=headers)).status_code == 200
    refusals = [e for e in live.admin_events() if not e.allowed]
    assert len(refusals) == len(forged) and {e.who for e in refusals} == {"loopback"}


# --- a token set: required from everyone, loopback included -----------------------------------


@pytest.fixture
async def guarded(start_api: StartApi) -> Live:
    live = await start_api(token=TOKEN)
    await live.wait_state("web", "healthy")
    return live


async def test_token_missing_401_wrong_403_right_200_from_loopback(guarded: Live) -> None:
    client = guarded.client  # real TCP from 127.0.0.1
    r = await client.post("/admin/heartbeat/stop")
    refused(r, 401)
    assert r.headers["www-authenticate"].startswith("Bearer")
    refused(await client.post("/admin/heartbeat/stop", headers=WRONG), 403)
    refused(await client.post("/admin/heartbeat/stop", headers={"Authorization": TOKEN}), 401)
    refused(
        await client.post("/admin/heartbeat/stop", headers={"Authorization": "Basic eA=="}), 401
    )
    assert guarded.monitor.heartbeat_running
    r = await client.post("/admin/heartbeat/stop", headers=RIGHT)
    assert r.status_code == 200 and not guarded.monitor.heartbeat_running
    r = await client.post("/admin/heartbeat/start", headers={"authorization": f"bearer {TOKEN}"})
    assert r.status_code == 200 and guarded.monitor.heartbeat_running

    admin = [(e.action, e.allowed, e.who) for e in guarded.admin_events()]
    assert admin == [
        ("stop", False, "anonymous"),
        ("stop", False, "token"),
        ("stop", False, "anonymous"),
        ("stop", False, "anonymous"),
        ("stop", True, "token"),
        ("start", True, "token"),
    ]
    assert all(e.source.startswith("127.0.0.1:") for e in guarded.admin_events())


async def test_token_makes_browser_signals_irrelevant(guarded: Live) -> None:
    headers = {**RIGHT, "Origin": "http://elsewhere.example", "Sec-Fetch-Site": "cross-site"}
    assert (await guarded.client.get("/admin/heartbeat/status", headers=headers)).status_code == 200


async def test_token_from_a_remote_client(guarded: Live) -> None:
    remote = guarded.asgi(NON_LOOPBACK)
    refused(await remote.post("/admin/service/web/pause"), 401)
    refused(await remote.post("/admin/service/web/pause", headers=WRONG), 403)
    r = await remote.post("/admin/service/web/pause", headers=RIGHT)
    assert r.status_code == 200 and guarded.state("web") == "paused"
    admin = [(e.action, e.service, e.allowed, e.who, e.source) for e in guarded.admin_events()]
    assert admin == [
        ("pause", "web", False, "anonymous", "10.1.2.3:1234"),
        ("pause", "web", False, "token", "10.1.2.3:1234"),
        ("pause", "web", True, "token", "10.1.2.3:1234"),
    ]


async def test_token_guards_status_events_and_internal_urls(guarded: Live) -> None:
    client = guarded.client
    refused(await client.get("/admin/heartbeat/status"), 401)
    refused(await client.get("/events"), 401)
    refused(await client.get("/events", headers=WRONG), 403)
    r = await client.get("/admin/heartbeat/status", headers=RIGHT)
    assert r.status_code == 200
    status = msgspec.json.decode(r.content, type=HeartbeatStatus)
    assert status.config["admin_token"] == "***"
    assert TOKEN not in r.text

    r = await client.get("/health/detailed")
    assert r.status_code == 200  # health itself is public
    plain = msgspec.json.decode(r.content, type=DetailedHealth)
    assert plain.services["web"].target is None
    r = await client.get("/health/detailed", headers=RIGHT)
    shown = msgspec.json.decode(r.content, type=DetailedHealth)
    assert shown.services["web"].target and shown.services["web"].target.endswith("/svc/web")
    # Reads are not admin actions: nothing recorded.
    assert guarded.admin_events() == []


async def test_unknown_service_is_404_before_auth(guarded: Live) -> None:
    refused(await guarded.client.post("/admin/service/nope/pause"), 404)
    assert guarded.admin_events() == []


# --- the pure parts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("fe80::1%eth0", False),
        ("10.1.2.3", False),
        ("0.0.0.0", False),
        ("::", False),
        ("localhost", False),  # a client address is never a name
        ("testclient", False),
        ("", False),
        (None, False),
    ],
)
def test_is_loopback(host: str | None, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_authorize_decisions() -> None:
    assert authorize(None, None, "127.0.0.1").allowed
    assert authorize("", None, "127.0.0.1").who == "loopback"  # empty = no token set
    assert authorize(None, None, "10.0.0.1").status == 403
    assert authorize("t", None, "127.0.0.1").status == 401
    assert authorize("t", "Bearer u", "127.0.0.1").status == 403
    assert authorize("t", "Bearer t", "10.0.0.1").allowed
    assert authorize("t", "Bearer  t ", "10.0.0.1").allowed
    assert authorize("tö", "Bearer tö".encode().decode("latin-1"), "10.0.0.1").allowed
    assert bearer_token("Bearer") is None and bearer_token("Token x") is None
    assert authorize(None, None, "::1", host="[::1]:5000", origin="http://[::1]:5000").allowed
    assert authorize(None, None, "127.0.0.1", host="app.localhost").allowed
    assert not authorize(None, None, "127.0.0.1", host="127.0.0.1.evil.io").allowed
    assert client_label(("::1", 80)) == "[::1]:80" and client_label(None) == "unknown"


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("no-such-host.invalid", False),
    ],
)
def test_binds_loopback_only(host: str, ok: bool) -> None:
    assert binds_loopback_only(host) is ok
