"""The certificate watch, as an operator runs it: `hbsm run` probing a real TLS server on
127.0.0.1 whose certificates a test CA signs (trusted through `probe.ca_file`), a real webhook
receiver, and the API's /metrics and /health/service/<name> read over HTTP.

A certificate 3 days from its end is reported once (`cert.expiring`, class `cert`), notified
once, restarts nothing, and survives a restart of hbsm without a second report; a renewed
certificate is a new `cert.seen` and clears the report; an expired one fails the probes (`tls`).
"""

from __future__ import annotations

import json
import re
import signal
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from notify.servers import WebhookReceiver
from probes.servers import HttpTarget
from support.configs import TIGHT
from support.tls import TestCA

from hbsm.events import (
    CertExpiring,
    CertSeen,
    Event,
    OpaqueEvent,
    Probe,
    RepairStarted,
    RestartStarted,
    Transition,
)

from .conftest import HbsmRun
from .support import events, http_get, verify_log, write_toml_config

History = list[Event | OpaqueEvent]
DAY = 86400.0


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hooks = WebhookReceiver().start()
    yield hooks
    hooks.stop()


def logged(log: Path) -> History:
    return events(log) if log.exists() else []


def of(history: History, kind: type) -> list:  # type: ignore[type-arg]
    return [e for e in history if isinstance(e, kind)]


def cert_hooks(receiver: WebhookReceiver) -> list[dict]:  # type: ignore[type-arg]
    bodies = [r.json() for r in receiver.requests]
    return [b for b in bodies if b["kind"] == "cert_expiring"]


def metric(base: str, name: str, service: str) -> float | None:
    status, text = http_get(f"{base}/metrics")
    assert status == 200, text
    found = re.search(rf'^{name}{{service="{service}"}} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else None


def service_cert(base: str, name: str) -> dict:  # type: ignore[type-arg]
    status, text = http_get(f"{base}/health/service/{name}")
    assert status == 200, text
    return json.loads(text)["cert"]


def test_a_certificate_near_its_end_is_reported_once_and_restarts_nothing(
    tmp_path: Path, hbsm_run: Callable[..., HbsmRun], receiver: WebhookReceiver
) -> None:
    ca = TestCA(tmp_path)
    soon = ca.issue(days=3)
    # /until-close: the server closes each connection, so every probe is a new handshake.
    target = HttpTarget(tls=soon.server_context()).start()
    try:
        web = {
            "name": "web",
            "url": target.url("/until-close"),
            "probe": {"timeout": 1.0, "ca_file": str(ca.pem)},
        }
        config = write_toml_config(
            tmp_path / "hbsm.toml", [web], notify={"webhooks": [{"url": receiver.url()}]},
            **TIGHT,
        )  # fmt: skip
        base = f"http://127.0.0.1:{tomllib.loads(config.read_text())['port']}"
        log = tmp_path / "events" / "heartbeat.jsonl"

        run = hbsm_run(config, log)
        # Many probes after the report: it is not repeated.
        run.until(lambda: len(of(logged(log), Probe)) >= 15 and cert_hooks(receiver), "15 probes")
        history = logged(log)
        [seen] = of(history, CertSeen)
        [expiring] = of(history, CertExpiring)
        assert seen.fingerprint == expiring.fingerprint == soon.fingerprint
        assert seen.not_after == expiring.not_after == soon.not_after
        assert expiring.error == "cert" and expiring.warn_days == 14.0
        assert 2.9 < expiring.days_left <= 3.0
        # The service answers: healthy, no repair, no restart.
        assert not of(history, RepairStarted) and not of(history, RestartStarted)
        assert [t.dst for t in of(history, Transition)] == ["healthy"]
        assert all(p.ok for p in of(history, Probe))

        [hook] = cert_hooks(receiver)
        assert hook["service"] == "web" and hook["level"] == "warning"
        assert hook["details"]["fingerprint"] == soon.fingerprint
        assert "expires in 3.0 days" in hook["message"]

        days = metric(base, "hbsm_cert_expiry_days", "web")
        assert days is not None and 2.9 < days <= 3.0
        assert metric(base, "hbsm_cert_expiring", "web") == 1.0
        shown = service_cert(base, "web")
        assert shown["expiring"] is True and 2.9 < shown["days_left"] <= 3.0
        assert shown["fingerprint"] == soon.fingerprint

        # hbsm restarted on the same log: the certificate is known, not reported again.
        run.signal(signal.SIGTERM)
        assert run.wait() == 0, run.err()
        before = len(of(logged(log), Probe))
        run = hbsm_run(config, log)
        run.until(lambda: len(of(logged(log), Probe)) >= before + 10, "10 more probes")
        assert len(of(logged(log), CertSeen)) == 1
        assert len(of(logged(log), CertExpiring)) == 1
        assert len(cert_hooks(receiver)) == 1

        # Renewed: a new cert.seen, and the report is cleared.
        renewed = ca.issue(days=90)
        target.use_cert(str(renewed.cert), str(renewed.key))
        run.until(lambda: len(of(logged(log), CertSeen)) == 2, "the renewed certificate seen")
        assert of(logged(log), CertSeen)[-1].fingerprint == renewed.fingerprint
        run.until(lambda: metric(base, "hbsm_cert_expiring", "web") == 0.0, "report cleared")
        days = metric(base, "hbsm_cert_expiry_days", "web")
        assert days is not None and 89.9 < days <= 90.0
        assert service_cert(base, "web")["expiring"] is False
        assert len(of(logged(log), CertExpiring)) == 1 and len(cert_hooks(receiver)) == 1

        # Expired: verification fails, a `tls` failure like any other TLS failure.
        ended = ca.issue(days=-1, valid_since_days=30)
        target.use_cert(str(ended.cert), str(ended.key))

        def expired() -> list[Probe]:
            return [p for p in of(logged(log), Probe) if "certificate has expired" in p.detail]

        run.until(expired, "a probe failing on the expired certificate")
        assert {(p.ok, p.error) for p in expired()} == {(False, "tls")}

        run.signal(signal.SIGTERM)
        assert run.wait() == 0, run.err()
    finally:
        target.stop()
    verified = verify_log(log)
    assert verified.returncode == 0, verified.stdout + verified.stderr
