"""What a client without admin rights sees: every field of every body walked, no internal left.

The bodies are built from a projection of a real history (the state machine decides it) in
which one marker stands in everything internal: the probed URL (the target), a failed probe's
detail, a later passing probe's detail, a failed repair step's output. With the token, the
marker is in exactly the admin-only fields; without it, it is nowhere in any body. Pure: no
server (tests/api/test_auth.py holds the same over real HTTP for the failure's detail).
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest

from hbsm.api import bodies
from hbsm.events import (
    CertSeen,
    Event,
    MonitorStarted,
    Probe,
    RepairFinished,
    ServiceRegistered,
)
from hbsm.fsm import decide
from hbsm.projection import Projection
from hbsm.state import Policy, ServiceState

SECRET = "db-7.internal:6432"
URL = f"http://{SECRET}/health"
T0 = 1_700_000_000.0
POLICY = Policy(check_interval=5, max_retries=1)
# The fields hide_internals empties; every other field is for anyone.
ADMIN_ONLY = {
    "target",
    "last_probe.detail",
    "last_failure.detail",
    "last_reason",  # a transition's reason can quote a restart's output
    "last_problem",
}


def _history() -> list[Event]:
    state = ServiceState(name="web")
    log: list[Event] = [
        MonitorStarted(ts=T0, pid=1, version="test", rules=2),
        ServiceRegistered(ts=T0, service="web", policy=POLICY, target=URL, critical=True),
    ]
    facts: list[Event] = [
        Probe(ts=T0 + 5, service="web", ok=False, error="refused", detail=f"GET {URL}: refused"),
        RepairFinished(
            ts=T0 + 6, service="web", run=1, step="diagnose", index=0, ok=False,
            output=f"psql -h {SECRET}: connection refused",
        ),
        Probe(ts=T0 + 10, service="web", ok=True, latency_ms=900.0, error="slow",
              detail=f"GET {URL}: 200 in 900 ms"),
    ]  # fmt: skip
    for fact in facts:
        log.append(fact)
        log.extend(decide(state, fact, POLICY))
    return [msgspec.structs.replace(e, seq=i) for i, e in enumerate(log, start=1)]


@pytest.fixture
def projection() -> Projection:
    projection = Projection()
    projection.apply_all(_history())
    view = projection.services["web"]
    # The history is what the test needs: two different probes, both with a detail.
    assert view.last_probe is not None and view.last_probe.ok
    assert view.last_failure is not None and view.last_failure is not view.last_probe
    return projection


def _fields(value: object, path: str = "") -> Iterator[tuple[str, object]]:
    """(path, value) of every leaf of a body: Struct fields, dict entries, list items."""
    if isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            yield from _fields(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _fields(key, f"{path}[key]")
            yield from _fields(item, f"{path}[{key}]")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _fields(item, f"{path}[{i}]")
    else:
        yield path, value


def _leaks(body: msgspec.Struct) -> set[str]:
    return {path for path, value in _fields(body) if isinstance(value, str) and SECRET in value}


def test_with_admin_rights_the_marker_is_in_exactly_the_admin_only_fields(projection) -> None:
    view = projection.services["web"]
    # The history ends on a repair that fixed it: its last reason quotes nothing.
    assert view.last_reason == "repair step diagnose fixed it"
    shown = _leaks(bodies.service_health(view, now=T0 + 11, show_target=True))
    assert shown == ADMIN_ONLY - {"last_reason"}


@pytest.mark.parametrize("monitoring", [True, False], ids=["running", "stopped"])
def test_without_admin_rights_no_body_holds_an_internal(projection, monitoring: bool) -> None:
    view = projection.services["web"]
    projection.monitor.running = monitoring
    now = T0 + 11
    shown = [
        bodies.service_health(view, now=now, show_target=False, monitoring=monitoring),
        bodies.detailed_health(projection, now=now, show_targets=False)[0],
        bodies.health(projection, now=now)[0],
        bodies.health_json(projection, now=now, version="test")[0],
        bodies.health_json(projection, now=now, version="test", names=["web"])[0],
    ]
    for body in shown:
        assert _leaks(body) == set(), type(body).__name__
        assert SECRET.encode() not in bodies.encode(body)


def test_hide_internals_keeps_everything_else(projection) -> None:
    full = bodies.service_health(projection.services["web"], now=T0 + 11, show_target=True)
    hidden = bodies.hide_internals(full)
    differ = {
        path for (path, a), (_, b) in zip(_fields(full), _fields(hidden), strict=True) if a != b
    }
    assert differ == ADMIN_ONLY
    # Emptied, not replaced: the values a client gets for "nothing to show", of the declared
    # types (a strict decode of the body refuses a null where a string is declared).
    assert hidden.target is None and hidden.last_problem == ""
    assert hidden.last_probe is not None and hidden.last_probe.detail == ""
    assert hidden.last_failure is not None and hidden.last_failure.detail == ""
    assert msgspec.json.decode(bodies.encode(hidden), type=bodies.ServiceHealth) == hidden
    assert hidden.last_probe.latency_ms == 900.0
    assert hidden.last_failure.error == "refused"


def test_a_service_never_probed_is_hidden_too() -> None:
    projection = Projection()
    projection.apply_all(_history()[:2])  # registered, not probed yet
    view = projection.services["web"]
    hidden = bodies.service_health(view, now=T0 + 1, show_target=False)
    assert (hidden.target, hidden.last_probe, hidden.last_failure) == (None, None, None)


def test_hiding_reaches_into_maps_and_lists() -> None:
    # /health/detailed holds a map of bodies; health+json a map of lists of checks.
    events = _history()
    cut = max(i for i, e in enumerate(events) if isinstance(e, Probe) and e.ok)
    projection = Projection()
    projection.apply_all(events[:cut])  # before the good probe: web is being repaired
    detailed, _ = bodies.detailed_health(projection, now=T0 + 9, show_targets=True)
    web = detailed.services["web"]
    assert web.state != "healthy" and SECRET in web.last_problem
    hidden = bodies.hide_internals(detailed)
    assert hidden.services == {"web": bodies.hide_internals(web)}
    assert hidden.services["web"].state == web.state and not _leaks(hidden)
    checks, _ = bodies.health_json(projection, now=T0 + 9, version="test")
    (check,) = checks.checks["web:responseTime"]
    assert check.output == web.last_reason != ""
    assert bodies.hide_internals(checks).checks == {
        "web:responseTime": [msgspec.structs.replace(check, output="")]
    }


def test_the_certificate_is_shown_with_its_days_left_and_its_names_to_admins_only() -> None:
    state = ServiceState(name="web")
    policy = Policy(cert_warn_days=14)
    seen = CertSeen(
        ts=T0, service="web", not_after=T0 + 3 * 86400, fingerprint="ab" * 32, serial="1F",
        subject=f"commonName={SECRET}", issuer="commonName=Ops CA",
    )  # fmt: skip
    log: list[Event] = [ServiceRegistered(ts=T0, service="web", policy=policy, target=URL), seen]
    log += decide(state, seen, policy)
    projection = Projection()
    projection.apply_all([msgspec.structs.replace(e, seq=i) for i, e in enumerate(log, 1)])
    view = projection.services["web"]
    full = bodies.service_health(view, now=T0 + 86400, show_target=True)
    assert isinstance(full.cert, bodies.CertHealth)
    assert (full.cert.days_left, full.cert.expiring, full.cert.warn_days) == (2.0, True, 14.0)
    assert full.cert.not_after == "2023-11-17T22:13:20.000Z" and full.cert.serial == "1F"
    assert full.cert.subject == f"commonName={SECRET}"
    detailed, _ = bodies.detailed_health(projection, now=T0 + 86400, show_targets=False)
    hidden = detailed.services["web"].cert
    assert isinstance(hidden, bodies.CertHealth)
    assert (hidden.days_left, hidden.expiring, hidden.subject) == (2.0, True, "")
    assert _leaks(detailed) == set()
    # A service with no certificate (http, tcp) has no `cert` in its body at all.
    plain = Projection()
    plain.apply_all(_history())
    assert b'"cert"' not in bodies.encode(bodies.service_health(plain.services["web"], now=T0,
                                                                 show_target=True))  # fmt: skip
