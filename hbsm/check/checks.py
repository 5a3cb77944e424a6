"""The checks of `hbsm check`, against a running instance (standalone API or Flask blueprint).

Each check is one request (or two: an admin action, then the status that must reflect it) and
ends as a `Check`: passed, failed or skipped, with the HTTP status and a reason a person can act
on. The admin actions leave monitoring as they found it: stopped then started when it ran,
started then stopped when it did not.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from hbsm import __version__
from hbsm.api.answer import HEALTH_JSON, JSON
from hbsm.api.bodies import (
    AdminResult,
    DetailedHealth,
    ErrorBody,
    Health,
    HealthJson,
    HeartbeatStatus,
    ServiceHealth,
)
from hbsm.errors import HbsmError
from hbsm.vocabulary import STATES

__all__ = ["Check", "Unreachable", "normalize_url", "run_checks"]

Verdict = Literal["pass", "fail", "skip"]
B = TypeVar("B", bound=msgspec.Struct)


class Unreachable(HbsmError):
    """Nothing answers at the URL: no check can run."""


@dataclass
class Check:
    verdict: Verdict
    method: str
    path: str
    status: int | None
    reason: str

    @property
    def ok(self) -> bool:
        return self.verdict != "fail"

    def line(self) -> str:
        code = f"{self.status} " if self.status is not None else ""
        return f"{self.verdict.upper():<4}  {self.method} {self.path}  {code}{self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "reason": self.reason,
        }


class _Failed(Exception):
    """A check's failure, with its reason."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def normalize_url(url: str) -> str:
    """The base URL with a scheme (http:// if none) and without a trailing slash; ValueError
    if it is not an http(s) URL."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, ValueError) as exc:
        raise ValueError(f"not a URL: {url!r} ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return text.rstrip("/")


@dataclass
class _Run:
    client: httpx.Client
    base: str
    token: str | None
    service: str | None
    login: str | None
    checks: list[Check] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    detailed: DetailedHealth | None = None

    # --- requests -----------------------------------------------------------------------

    def request(self, method: str, path: str, *, admin: bool = False,
                headers: dict[str, str] | None = None) -> httpx.Response:  # fmt: skip
        sent = dict(headers or {})
        if admin and self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        try:
            return self.client.request(method, self.base + path, headers=sent)
        except httpx.TimeoutException:
            raise _Failed(f"no answer within {self.client.timeout.read:g} s") from None
        except httpx.TransportError as exc:
            raise _Failed(f"request failed: {_describe(exc)}") from None

    def check(self, method: str, path: str, run: Callable[[], tuple[int | None, str]]) -> bool:
        """Run one check; record its verdict. True if it passed."""
        try:
            status, reason = run()
        except _Failed as failed:
            self.checks.append(Check("fail", method, path, failed.status, failed.reason))
            return False
        self.checks.append(Check("pass", method, path, status, reason))
        return True

    def skip(self, method: str, path: str, reason: str) -> None:
        self.checks.append(Check("skip", method, path, None, reason))

    # --- the checks ---------------------------------------------------------------------

    def health(self) -> tuple[int, str]:
        response = self.request("GET", "/health")
        body = _decode(response, Health, (200, 503))
        _consistent_status(response.status_code, body.status)
        self.names = list(body.services)
        return response.status_code, f"{body.status} ({_count(len(body.services), 'service')})"

    def health_json(self) -> tuple[int, str]:
        response = self.request("GET", "/health", headers={"Accept": HEALTH_JSON})
        body = _decode(response, HealthJson, (200, 503), media_type=HEALTH_JSON)
        if (response.status_code == 503) != (body.status == "fail"):
            raise _Failed(f"status {body.status!r} with HTTP {response.status_code}",
                          response.status_code)  # fmt: skip
        return (
            response.status_code,
            f"health+json {body.status} ({_count(len(body.checks), 'check')})",
        )

    def detailed_health(self) -> tuple[int, str]:
        response = self.request("GET", "/health/detailed", admin=True)
        body = _decode(response, DetailedHealth, (200, 503))
        _consistent_status(response.status_code, body.status)
        for name, svc in body.services.items():
            if svc.name != name:
                raise _Failed(f"service {name!r} calls itself {svc.name!r}", response.status_code)
            if svc.state not in STATES:
                raise _Failed(f"service {name!r} has no known state ({svc.state!r})",
                              response.status_code)  # fmt: skip
            if svc.threshold < 1:
                raise _Failed(f"service {name!r} has threshold {svc.threshold}",
                              response.status_code)  # fmt: skip
        self.detailed = body
        self.names = self.names or list(body.services)
        states: dict[str, int] = {}
        for svc in body.services.values():
            states[svc.state] = states.get(svc.state, 0) + 1
        summary = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        shown = any(s.target is not None for s in body.services.values())
        targets = "targets shown" if shown else "targets hidden"
        return response.status_code, (
            f"{body.status}: {_count(len(body.services), 'service')}"
            f"{' (' + summary + ')' if summary else ''}, {targets}"
        )

    def one_service(self, name: str) -> tuple[int, str]:
        response = self.request("GET", f"/health/service/{quote(name, safe='')}", admin=True)
        body = _decode(response, ServiceHealth, (200,))
        if body.name != name:
            raise _Failed(f"asked for {name!r}, got {body.name!r}", response.status_code)
        failures = f"{body.failures}/{body.threshold} failures"
        return response.status_code, f"{name} {body.state}, {failures}, next: {body.next_action}"

    def no_such_service(self, name: str) -> tuple[int, str]:
        response = self.request("GET", f"/health/service/{quote(name, safe='')}")
        body = _decode(response, ErrorBody, (404,))
        return response.status_code, f"JSON error: {body.error}"

    def status(self, *, expect_running: bool | None = True) -> HeartbeatStatus:
        response = self.request("GET", "/admin/heartbeat/status", admin=True)
        _admin_refusal(response, self.token)
        body = _decode(response, HeartbeatStatus, (200,))
        if expect_running is not None and body.running != expect_running:
            want = "true" if expect_running else "false"
            raise _Failed(f"status says running {str(body.running).lower()}, expected {want}",
                          response.status_code)  # fmt: skip
        return body

    def first_status(self) -> tuple[int, str]:
        body = self.status(expect_running=None)
        if not body.running:
            raise _Failed("monitoring is stopped (running false)", 200)
        log = body.log
        return 200, (
            f"running, {_count(body.services, 'service')}, log {log.path} at seq {log.last_seq}"
        )

    def admin(self, action: str) -> tuple[int, str]:
        response = self.request("POST", f"/admin/heartbeat/{action}", admin=True)
        _admin_refusal(response, self.token)
        result = _decode(response, AdminResult, (200,))
        running = action == "start"
        if not result.ok or result.running != running:
            raise _Failed(f"answered ok={result.ok} running={result.running}: {result.message}",
                          response.status_code)  # fmt: skip
        self.status(expect_running=running)
        changed = "changed" if result.changed else "no change"
        return response.status_code, (
            f"{result.message} ({changed}); status says running {str(running).lower()}"
        )

    def login_page(self, url: str) -> tuple[int, str]:
        try:
            response = self.client.get(url)
        except httpx.TimeoutException:
            raise _Failed(f"no answer within {self.client.timeout.read:g} s") from None
        except httpx.TransportError as exc:
            raise _Failed(f"request failed: {_describe(exc)}") from None
        if response.status_code != 200:
            where = response.headers.get("Location")
            extra = f" (to {where})" if where else ""
            raise _Failed(f"expected 200{extra}", response.status_code)
        return 200, f"login page answers ({len(response.content)} bytes)"

    def wrong_method(self) -> tuple[int, str]:
        response = self.request("POST", "/health")
        body = _decode(response, ErrorBody, (405,))
        allow = response.headers.get("Allow")
        return response.status_code, f"JSON error: {body.error}" + (
            f" (Allow: {allow})" if allow and allow not in body.error else ""
        )

    # --- the run ------------------------------------------------------------------------

    def all(self) -> list[Check]:
        # The first request tells whether anything answers at all.
        try:
            self.client.get(self.base + "/health")
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach {self.base}: {_describe(exc)}") from None
        self.check("GET", "/health", self.health)
        self.check("GET", "/health (Accept: application/health+json)", self.health_json)
        self.check("GET", "/health/detailed", self.detailed_health)
        name = self.service or (self.names[0] if self.names else None)
        if name is None:
            self.skip("GET", "/health/service/<name>", "no service to ask about")
        else:
            self.check("GET", f"/health/service/{name}", lambda: self.one_service(name))
        missing = f"no-such-service-{secrets.token_hex(3)}"
        self.check("GET", f"/health/service/{missing}", lambda: self.no_such_service(missing))
        self.admin_checks()
        self.login_check()
        self.check("POST", "/health", self.wrong_method)
        return self.checks

    def admin_checks(self) -> None:
        status_ok = self.check("GET", "/admin/heartbeat/status", self.first_status)
        # Leave monitoring as it was found: stop then start if it ran (or is unknown).
        was_stopped = not status_ok and self._running_now() is False
        order = ("start", "stop") if was_stopped else ("stop", "start")
        for action in order:
            self.check("POST", f"/admin/heartbeat/{action}", partial(self.admin, action))

    def _running_now(self) -> bool | None:
        try:
            return self.status(expect_running=None).running
        except _Failed:
            return None

    def login_check(self) -> None:
        url = self.login or self._login_from_detailed()
        if url is None:
            why = "no login page configured (--login URL, or a login_page service"
            if self.detailed is not None and "login_page" in self.detailed.services:
                why += " whose target is hidden: pass --token"
            self.skip("GET", "<login page>", why + ")")
            return
        if "://" not in url:
            url = self.base + "/" + url.lstrip("/")
        self.check("GET", url, lambda: self.login_page(url))

    def _login_from_detailed(self) -> str | None:
        if self.detailed is None:
            return None
        svc = self.detailed.services.get("login_page")
        return svc.target if svc is not None and svc.target else None


def run_checks(
    url: str,
    *,
    token: str | None = None,
    service: str | None = None,
    login: str | None = None,
    timeout: float = 5.0,
    transport: httpx.BaseTransport | None = None,
) -> list[Check]:
    """Every check against the instance at `url`, in order. Raises Unreachable when nothing
    answers there, ValueError for a URL that is not http(s)."""
    base = normalize_url(url)
    headers = {"User-Agent": f"hbsm-check/{__version__}"}
    with httpx.Client(timeout=timeout, headers=headers, transport=transport) as client:
        return _Run(client, base, token or None, service, login).all()


# --- helpers --------------------------------------------------------------------------------


def _decode(
    response: httpx.Response,
    kind: type[B],
    statuses: tuple[int, ...],
    *,
    media_type: str = JSON,
) -> B:
    code = response.status_code
    if code not in statuses:
        expected = " or ".join(str(s) for s in statuses)
        raise _Failed(f"expected {expected}{_error_text(response)}", code)
    got = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if got != media_type:
        raise _Failed(f"Content-Type {got or 'missing'}, expected {media_type}", code)
    try:
        return msgspec.json.decode(response.content, type=kind)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        # msgspec raises UnicodeDecodeError for invalid UTF-8 inside a JSON string.
        raise _Failed(f"not a valid {kind.__name__} body: {exc}", code) from None


def _error_text(response: httpx.Response) -> str:
    """': <message>' of an ErrorBody answer, if it is one."""
    try:
        body = msgspec.json.decode(response.content, type=ErrorBody)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return ""
    return f": {body.error}"


def _admin_refusal(response: httpx.Response, token: str | None) -> None:
    code = response.status_code
    if code == 401:
        raise _Failed("admin routes need a token: pass --token", code)
    if code == 403:
        message = _error_text(response).removeprefix(": ") or "forbidden"
        if token:
            raise _Failed(f"the token was refused: {message}", code)
        raise _Failed(f"refused: {message}", code)


def _consistent_status(code: int, status: str) -> None:
    if (code == 503) != (status == "unhealthy"):
        raise _Failed(f"status {status!r} with HTTP {code}", code)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    # httpx wraps the OS error: its text is the part worth showing.
    for marker in ("] ", "Errno "):
        if marker in text:
            text = text.rsplit(marker, 1)[-1]
    return text or type(exc).__name__
