"""Bad HTTP requests against both servers of the API, each on a real port of 127.0.0.1 with a
real monitor behind it: the standalone app (Starlette on uvicorn, `hbsm run`'s) and the Flask
blueprint (embedded, on werkzeug). Requests go out as raw bytes (tests/reliability/raw_http.py),
so nothing normalizes a path or checks a header on the way.

Each is answered with a clear JSON error (never a traceback, never a 5xx), and nothing is lost
or done by mistake: wrong methods (405 with Allow), bodies that are not JSON (400, nothing done),
huge bodies (413 before the body is read), odd service names and path traversal (404 naming the
service, no file read), admin requests without the right token (401/403, nothing done, the token
compared in constant time), and a client hammering the admin routes with a wrong token, whose
refusals are recorded at most BURST times a window while the count of them all stays known.

tests/api (test_auth, test_routes, test_fuzz) and tests/flask cover the routes' normal answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import heartbeat_support as flask_support
import httpx
import msgspec
import pytest
from api.conftest import Live, StartApi, start_api  # noqa: F401 - fixtures
from probes.servers import SwitchableTarget
from support.clock import ManualClock
from support.configs import service
from support.waiting import wait_for, wait_for_sync

import hbsm.api.security
from hbsm.api.bodies import ErrorBody
from hbsm.api.refusals import RefusalLimiter
from hbsm.api.security import authorize
from hbsm.events import Admin, Event, OpaqueEvent
from hbsm.flask import init_heartbeat
from hbsm.log import read_history

from .raw_http import RawAnswer, raw_request

TOKEN = "s3cret-token"
RIGHT = {"Authorization": f"Bearer {TOKEN}"}
WRONG = {"Authorization": "Bearer not-the-token"}
BURST = 5  # refusals recorded one by one per client host and window, in these tests
WINDOW = 60.0
MB = 2**20


@dataclass
class Server:
    """One server under test, whichever kind: its port, its log, how to see its state."""

    kind: str  # "asgi" | "flask"
    port: int
    log: Path
    limiter: RefusalLimiter
    clock: ManualClock
    running: Callable[[], bool]  # the scheduler's state, as the monitor has it
    state: Callable[[str], str]  # a service's state
    history: Callable[[], list[Event | OpaqueEvent]]  # the log as written so far


def refused_events(history: list[Event | OpaqueEvent]) -> list[Admin]:
    return [e for e in history if isinstance(e, Admin) and not e.allowed]


def admin_events(history: list[Event | OpaqueEvent]) -> list[Admin]:
    return [e for e in history if isinstance(e, Admin)]


# --- the two servers ----------------------------------------------------------------------------


@pytest.fixture
async def asgi(start_api: StartApi, target: Any) -> Server:  # noqa: F811 - fixture
    clock = ManualClock()
    limiter = RefusalLimiter(burst=BURST, window=WINDOW, clock=clock)
    live: Live = await start_api(
        token=TOKEN, services=[service("web", target.svc_url("web"))], refusals=limiter
    )
    await live.wait_state("web", "healthy")
    return Server(
        kind="asgi",
        port=live.server.port,
        log=live.store.path,
        limiter=limiter,
        clock=clock,
        running=lambda: live.monitor.heartbeat_running,
        state=live.state,
        history=live.history,
    )


@pytest.fixture
def flask(tmp_path: Path) -> Iterator[Server]:
    target_server = SwitchableTarget().start()
    log = tmp_path / "flask-events" / "heartbeat.jsonl"
    config = flask_support.flask_config(
        log, [service("web", target_server.svc_url("web"))], admin_token=TOKEN
    )
    clock = ManualClock()
    limiter = RefusalLimiter(burst=BURST, window=WINDOW, clock=clock)
    app = flask_support.flask_app()
    handle = init_heartbeat(app, config, refusals=limiter)
    served = flask_support.ServedApp(app).serve()

    def state(name: str) -> str:
        return str(handle.read(lambda p: p.services[name].fsm.state))

    def history() -> list[Event | OpaqueEvent]:
        monitor = handle.monitor
        if monitor is not None and handle.running:
            # Flushed in the monitor's own loop, as everything that touches its store.
            asyncio.run_coroutine_threadsafe(_flush(monitor), handle.loop).result(10)
        return list(read_history(log))

    try:
        wait_for_sync(lambda: state("web") == "healthy", "web healthy")
        yield Server(
            kind="flask",
            port=served.port,
            log=log,
            limiter=limiter,
            clock=clock,
            running=lambda: bool(handle.monitor and handle.monitor.heartbeat_running),
            state=state,
            history=history,
        )
    finally:
        served.stop()
        handle.stop()
        target_server.stop()


async def _flush(monitor: Any) -> None:
    monitor.store.flush()


async def off_loop(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking check in a thread: the standalone server shares this test's loop."""
    return await asyncio.to_thread(fn, *args)


def error_of(answer: RawAnswer, status: int) -> ErrorBody:
    """The answer as the JSON error every route gives, with `status`."""
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.headers.get("content-type") == "application/json", answer.headers
    err = msgspec.json.decode(answer.body, type=ErrorBody)
    assert err.status == status and err.error
    return err


# --- wrong methods ------------------------------------------------------------------------------

WRONG_METHODS = [
    ("PUT", "/health", "GET"),
    ("DELETE", "/health/detailed", "GET"),
    ("PATCH", "/health/service/web", "GET"),
    ("TRACE", "/health", "GET"),
    ("POST", "/health", "GET"),
    ("POST", "/admin/heartbeat/status", "GET"),
    ("GET", "/admin/heartbeat/stop", "POST"),
    ("OPTIONS", "/admin/heartbeat/start", "POST"),
    ("DELETE", "/admin/heartbeat/stop", "POST"),
]


def check_wrong_methods(server: Server) -> None:
    for method, path, allow in WRONG_METHODS:
        answer = raw_request(server.port, method, path, headers=RIGHT)
        err = error_of(answer, 405)
        assert allow in [m.strip() for m in answer.headers["allow"].split(",")], answer.headers
        assert method in err.error and path in err.error
    # A method no server knows: uvicorn's parser refuses the request line itself (400, text),
    # werkzeug passes it on (405 JSON). Either way a 4xx, and the server goes on.
    answer = raw_request(server.port, "BREW", "/health")
    assert answer.status in (400, 405)
    assert server.running()
    assert raw_request(server.port, "GET", "/health").status == 200


async def test_wrong_methods_are_405_json_with_allow_asgi(asgi: Server) -> None:
    await off_loop(check_wrong_methods, asgi)


def test_wrong_methods_are_405_json_with_allow_flask(flask: Server) -> None:
    check_wrong_methods(flask)


# --- bodies -------------------------------------------------------------------------------------

NOT_JSON = [b"{not json", b"stop please", b'{"reason": "test"', b"\xff\xfe\xfd", b"\x00" * 16]


def check_bodies_that_are_not_json(server: Server) -> None:
    json_type = {"Content-Type": "application/json"}
    for body in NOT_JSON:
        answer = raw_request(
            server.port, "POST", "/admin/heartbeat/stop", headers={**RIGHT, **json_type}, body=body
        )
        assert "request body is not JSON" in error_of(answer, 400).error
    if server.kind == "asgi":
        answer = raw_request(
            server.port, "POST", "/admin/service/web/pause", headers=RIGHT, body=b"{oops"
        )
        error_of(answer, 400)
        assert server.state("web") != "paused"
    # Nothing was done, nor recorded: the requests were not understood.
    assert server.running()
    assert admin_events(server.history()) == []


async def test_a_body_that_is_not_json_is_400_and_nothing_is_done_asgi(asgi: Server) -> None:
    await off_loop(check_bodies_that_are_not_json, asgi)


def test_a_body_that_is_not_json_is_400_and_nothing_is_done_flask(flask: Server) -> None:
    check_bodies_that_are_not_json(flask)


def check_huge_bodies(server: Server) -> None:
    # 20 MiB announced, 1 MiB sent: answered at once, so the rest was never waited for.
    answer = raw_request(
        server.port, "POST", "/admin/heartbeat/stop", headers=RIGHT, body=b"x" * MB,
        declared=20 * MB,
    )  # fmt: skip
    assert "larger than 65536 bytes" in error_of(answer, 413).error
    # 20 MiB sent in chunks, without a length: refused before the client got far.
    answer = raw_request(
        server.port, "POST", "/admin/heartbeat/stop", headers=RIGHT, chunked_total=20 * MB
    )
    error_of(answer, 413)
    assert answer.sent < 20 * MB
    assert server.running()  # the action was not carried out
    assert raw_request(server.port, "GET", "/health").status == 200


async def test_a_huge_body_is_413_without_being_read_asgi(asgi: Server) -> None:
    await off_loop(check_huge_bodies, asgi)


def test_a_huge_body_is_413_without_being_read_flask(flask: Server) -> None:
    check_huge_bodies(flask)


# --- odd names ----------------------------------------------------------------------------------

# (raw request target, what the 404 error names)
ODD_NAMES = [
    ("/health/service/../../etc/passwd", "/health/service/../../etc/passwd"),
    ("/health/service/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "../../etc/passwd"),
    ("/health/service/..%2F..%2F..%2Fetc%2Fpasswd", "../../../etc/passwd"),
    ("/health/service/%2e%2e", "'..'"),
    ("/health/service/.", "no "),
    ("/health/service/a%00b", "a\\x00b"),
    ("/health/service/web%00", "web\\x00"),
    ("/health/service/%FF%FE", "no service named"),
    ("/health/service/caf%C3%A9", "no service named 'caf\u00e9'"),
    ("/health/service/%E2%80%AEweb", "no service named"),
    ("/health/service/" + "x" * 5000, "'" + "x" * 128 + "'"),
    ("/health/service/WEB", "no service named 'WEB'"),
]


def check_odd_names(server: Server) -> None:
    for target_path, named in ODD_NAMES:
        answer = raw_request(server.port, "GET", target_path)
        err = error_of(answer, 404)
        assert named in err.error, (target_path, err.error)
        assert b"root:" not in answer.body  # /etc/passwd was not read, nor anything else
        assert len(answer.body) < 1000
    assert raw_request(server.port, "GET", "/health/service/web").status == 200


async def test_odd_service_names_are_404_json_naming_them_asgi(asgi: Server) -> None:
    await off_loop(check_odd_names, asgi)


def test_odd_service_names_are_404_json_naming_them_flask(flask: Server) -> None:
    check_odd_names(flask)


# --- admin without the right token --------------------------------------------------------------

# (what the request carries, its headers, the target, the status it gets)
STOP = "/admin/heartbeat/stop"
NO_ENTRY: list[tuple[str, dict[str, str | bytes], str, int]] = [
    ("no Authorization", {}, STOP, 401),
    ("a wrong token", WRONG, STOP, 403),
    ("Bearer without a token", {"Authorization": "Bearer"}, STOP, 401),
    ("Bearer and blanks", {"Authorization": "Bearer    "}, STOP, 401),
    ("Basic credentials", {"Authorization": "Basic czNjcmV0LXRva2Vu"}, STOP, 401),
    ("the token without Bearer", {"Authorization": TOKEN}, STOP, 401),
    ("the token and more", {"Authorization": f"Bearer {TOKEN}x"}, STOP, 403),
    ("a prefix of the token", {"Authorization": f"Bearer {TOKEN[:-1]}"}, STOP, 403),
    ("bytes that are not text", {"Authorization": b"Bearer \xff\xfe\x80"}, STOP, 403),
    ("the token in the query", {}, f"{STOP}?token={TOKEN}", 401),
    ("access_token in the query", {}, f"{STOP}?access_token={TOKEN}", 401),
    ("the token in a cookie", {"Cookie": f"token={TOKEN}"}, STOP, 401),
    ("the token in another header", {"X-Admin-Token": TOKEN}, STOP, 401),
    ("status with a wrong token", WRONG, "/admin/heartbeat/status", 403),
]


def check_no_entry(server: Server) -> None:
    attempts = 0
    for what, headers, target_path, status in NO_ENTRY:
        method = "GET" if target_path.endswith("/status") else "POST"
        answer = raw_request(server.port, method, target_path, headers=headers)
        err = error_of(answer, status)
        if status == 401:
            assert answer.headers["www-authenticate"].startswith("Bearer"), what
        assert TOKEN not in err.error, what
        attempts += method == "POST"
    assert server.running()  # no stop went through
    # Each refused action is recorded (within the rate limit), none as allowed.
    events = admin_events(server.history())
    assert events and all(not e.allowed for e in events)
    assert len(events) == min(attempts, BURST)
    assert server.limiter.pending == attempts - len(events)
    answer = raw_request(server.port, "GET", "/admin/heartbeat/status", headers=RIGHT)
    assert answer.status == 200


async def test_admin_routes_refuse_missing_wrong_and_misplaced_tokens_asgi(asgi: Server) -> None:
    await off_loop(check_no_entry, asgi)


def test_admin_routes_refuse_missing_wrong_and_misplaced_tokens_flask(flask: Server) -> None:
    check_no_entry(flask)


def test_the_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hbsm.api.security.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hbsm.api.security.hmac, "compare_digest", spy)
    assert not authorize(TOKEN, "Bearer guess", "127.0.0.1").allowed
    assert authorize(TOKEN, f"Bearer {TOKEN}", "10.1.2.3").allowed
    assert compared == [(b"guess", TOKEN.encode()), (TOKEN.encode(), TOKEN.encode())]


# --- a client hammering the admin routes ---------------------------------------------------------

HAMMER = 1000


def hammer(server: Server) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as client:
        for i in range(HAMMER):
            path = "/admin/heartbeat/stop" if i % 2 else "/admin/heartbeat/start"
            response = client.post(path, headers=WRONG)
            assert response.status_code == 403


def check_refusal_accounting(events: list[Admin]) -> None:
    """Every refused attempt is accounted for: one record stands for 1 + suppressed."""
    assert sum(1 + e.suppressed for e in events) == HAMMER
    assert all(e.source.startswith("127.0.0.1:") and e.who == "token" for e in events)


async def test_a_client_hammering_admin_routes_cannot_grow_the_log_asgi(asgi: Server) -> None:
    before = len(asgi.history())
    await off_loop(hammer, asgi)
    history = asgi.history()
    # 1,000 refusals, BURST lines: the rest only counted.
    assert len(refused_events(history)) == BURST
    assert asgi.limiter.pending == HAMMER - BURST
    assert asgi.running()
    # The window ends: the API's sweeper records the count within a second or so.
    asgi.clock.advance(WINDOW)
    await wait_for(
        lambda: len(refused_events(asgi.history())) != BURST, "the count of refusals recorded"
    )
    events = refused_events(asgi.history())
    assert len(events) == BURST + 1
    check_refusal_accounting(events)
    assert events[-1].suppressed == HAMMER - BURST - 1
    # The log grew by those lines for 1,000 refused requests (and by the monitor's probes).
    assert len(admin_events(asgi.history()[before:])) == BURST + 1


def test_a_client_hammering_admin_routes_cannot_grow_the_log_flask(flask: Server) -> None:
    hammer(flask)
    assert len(refused_events(flask.history())) == BURST
    assert flask.limiter.pending == HAMMER - BURST
    # The window ends; the next request to the blueprint (any) records the count.
    flask.clock.advance(WINDOW)
    assert raw_request(flask.port, "GET", "/health").status == 200
    events = refused_events(flask.history())
    assert len(events) == BURST + 1
    check_refusal_accounting(events)
    assert flask.running()


async def test_counted_refusals_are_recorded_when_the_api_stops(
    start_api: StartApi,  # noqa: F811 - fixture
    target: Any,
) -> None:
    limiter = RefusalLimiter(burst=2, window=WINDOW, clock=ManualClock())
    live = await start_api(
        token=TOKEN, services=[service("web", target.svc_url("web"))], refusals=limiter
    )
    for _ in range(7):
        assert (await live.client.post("/admin/heartbeat/stop", headers=WRONG)).status_code == 403
    assert len(refused_events(live.history())) == 2
    await live.server.stop()  # the window has not ended: recorded all the same
    events = refused_events(live.history())
    assert [e.suppressed for e in events] == [0, 0, 4]
    assert sum(1 + e.suppressed for e in events) == 7
    assert limiter.pending == 0


def test_the_limiter_budget_is_per_host_and_bounded_in_memory() -> None:
    from hbsm.api.refusals import Attempt

    clock = ManualClock()
    limiter = RefusalLimiter(burst=2, window=10, max_hosts=3, clock=clock)

    def attempt(host: str) -> Attempt:
        return Attempt(host, "stop", None, "token", f"{host}:1")

    # Two hosts: each its own budget.
    assert [limiter.admit(attempt("a")) for _ in range(4)] == [0, 0, None, None]
    assert [limiter.admit(attempt("b")) for _ in range(3)] == [0, 0, None]
    # More hosts than tracked: they share one budget (memory stays bounded).
    shared = [limiter.admit(attempt(f"h{i}")) for i in range(10)]
    assert shared == [0, 0, 0] + [None] * 7  # h0 has a window of its own, h1.. share one
    assert limiter.pending == 2 + 1 + 7
    assert limiter.due() == []  # no window has ended
    clock.advance(10)
    summaries = limiter.due()
    # Each summary: the last attempt counted, and how many before it.
    assert sorted((a.host, n) for a, n in summaries) == [("a", 1), ("b", 0), ("h9", 6)]
    assert sum(1 + n for _, n in summaries) == 10 and limiter.pending == 0
    # A host's next refusal after its window carries what was counted in it.
    assert limiter.admit(attempt("c")) == 0
    for _ in range(3):
        limiter.admit(attempt("c"))
    clock.advance(10)
    assert limiter.admit(attempt("c")) == 2
