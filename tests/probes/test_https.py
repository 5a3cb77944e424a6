"""HTTPS probes against a real TLS server on 127.0.0.1 whose certificate a test CA signed: on
every transport the same verdicts (trusted through `probe.ca_file`; expired, untrusted or for
another name: class `tls`); on the lean path, the certificate the target presented."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from support.configs import probed
from support.tls import IssuedCert, TestCA

from hbsm.probes import TRANSPORTS, Prober
from hbsm.probes._lean import LeanClient, lean_request

from .servers import HttpTarget


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path)


@pytest.fixture
def cert(ca: TestCA) -> IssuedCert:
    return ca.issue(days=3)


@pytest.fixture
def https(cert: IssuedCert) -> Iterator[HttpTarget]:
    target = HttpTarget(tls=cert.server_context()).start()
    yield target
    target.stop()


@pytest.fixture(params=TRANSPORTS)
async def prober(request: pytest.FixtureRequest) -> AsyncIterator[Prober]:
    async with Prober(transport=request.param) as prober:
        yield prober


async def test_a_target_signed_by_the_ca_file_passes_and_its_checks_apply(
    prober: Prober, https: HttpTarget, ca: TestCA
) -> None:
    trusted = str(ca.pem)
    ok = await prober.probe(probed(https.url("/ok"), ca_file=trusted, body_contains="ok"))
    assert (ok.ok, ok.status, ok.error) == (True, 200, None)
    failing = await prober.probe(probed(https.url("/status/503"), ca_file=trusted))
    assert (failing.ok, failing.error, failing.status) == (False, "http_5xx", 503)
    hung = await prober.probe(probed(https.url("/hang"), ca_file=trusted, timeout=0.3))
    assert (hung.ok, hung.error) == (False, "timeout")


async def test_without_the_ca_the_certificate_is_not_trusted(
    prober: Prober, https: HttpTarget
) -> None:
    result = await prober.probe(probed(https.url("/ok")))
    assert (result.ok, result.error) == (False, "tls")
    assert "CERTIFICATE_VERIFY_FAILED" in result.detail


async def test_an_expired_certificate_is_a_tls_failure(
    prober: Prober, ca: TestCA, tmp_path: Path
) -> None:
    ended = ca.issue(days=-1, valid_since_days=30)
    target = HttpTarget(tls=ended.server_context()).start()
    try:
        result = await prober.probe(probed(target.url("/ok"), ca_file=str(ca.pem)))
    finally:
        target.stop()
    assert (result.ok, result.error) == (False, "tls")
    if prober.transport == "lean":  # OpenSSL's own words, kept by the lean path
        assert "certificate has expired" in result.detail


async def test_a_certificate_for_another_name_is_a_tls_failure(prober: Prober, ca: TestCA) -> None:
    other = ca.issue(days=30, host="elsewhere.internal")
    target = HttpTarget(tls=other.server_context()).start()
    try:
        result = await prober.probe(probed(target.url("/ok"), ca_file=str(ca.pem)))
    finally:
        target.stop()
    assert (result.ok, result.error) == (False, "tls")


async def test_the_lean_path_reports_the_certificate_it_verified(
    https: HttpTarget, ca: TestCA, cert: IssuedCert
) -> None:
    async with Prober(transport="lean") as prober:
        service = probed(https.url("/status/500"), ca_file=str(ca.pem))
        result, seen = await prober.probe_with_cert(service)
        plain = HttpTarget().start()
        try:
            _, none = await prober.probe_with_cert(probed(plain.url("/ok")))
        finally:
            plain.stop()
    # A failing answer still comes with its certificate: it is watched all the same.
    assert (result.ok, result.error) == (False, "http_5xx")
    assert seen is not None and none is None
    assert seen.fingerprint == cert.fingerprint
    assert seen.not_after == cert.not_after
    assert int(seen.serial, 16) == cert.serial  # hex, padded to whole bytes
    assert seen.subject == "commonName=127.0.0.1" and seen.issuer == "commonName=hbsm test CA"


async def test_a_kept_alive_connection_is_renewed_so_a_new_certificate_is_seen(
    https: HttpTarget, ca: TestCA, cert: IssuedCert
) -> None:
    request = lean_request("GET", https.url("/ok"), {}, str(ca.pem))
    assert request is not None
    renewed = ca.issue(days=90)
    kept, renewing = LeanClient(max_idle=4), LeanClient(max_idle=4, tls_max_age=0.0)
    try:
        for client in (kept, renewing):
            first = await client.fetch(request, 5.0)
            assert first.cert is not None and first.cert.fingerprint == cert.fingerprint
        https.use_cert(str(renewed.cert), str(renewed.key))
        old = await kept.fetch(request, 5.0)  # the same connection: the certificate it had
        new = await renewing.fetch(request, 5.0)  # past its age: a new handshake
    finally:
        kept.close()
        renewing.close()
    assert old.cert is not None and old.cert.fingerprint == cert.fingerprint
    assert new.cert is not None and new.cert.fingerprint == renewed.fingerprint
