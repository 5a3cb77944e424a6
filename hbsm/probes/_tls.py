"""TLS for HTTPS probes: the context that verifies a target, and what its certificate says.

One context per CA file (None: the public trust stores only), made once: building one reads
the whole trust store. The certificate is read once per connection,
not per probe: a kept-alive connection keeps the certificate it was opened with.
"""

from __future__ import annotations

import functools
import hashlib
import ssl
from typing import Any, NamedTuple

__all__ = ["PeerCert", "peer_cert", "tls_context"]


class PeerCert(NamedTuple):
    """The certificate a target presented (verified: a probe only gets one that passed)."""

    not_after: float  # seconds since the epoch, UTC
    not_before: float | None
    fingerprint: str  # SHA-256 of the DER bytes, hex
    serial: str
    subject: str
    issuer: str


@functools.cache
def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """The context HTTPS probes verify with: the system's trust store (SSL_CERT_FILE and
    SSL_CERT_DIR honoured), certifi's bundle when it is installed, and the CAs in `ca_file` (a
    PEM file; a private CA that signs internal services)."""
    context = ssl.create_default_context()
    try:
        import certifi  # httpx's own trust: a slim image without a system store still verifies
    except ImportError:
        pass
    else:
        context.load_verify_locations(cafile=certifi.where())
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def _name(parts: Any) -> str:
    """An X.509 name as getpeercert() gives it, in one line: "CN=api.internal, O=Example"."""
    try:
        return ", ".join(f"{key}={value}" for rdn in parts for key, value in rdn)
    except (TypeError, ValueError):
        return ""


def peer_cert(ssl_object: Any) -> PeerCert | None:
    """What the peer's certificate says, from a connection's SSLObject (None: no TLS, or no
    certificate to read)."""
    if ssl_object is None:
        return None
    try:
        der = ssl_object.getpeercert(binary_form=True)
        info = ssl_object.getpeercert()
    except (ValueError, ssl.SSLError):
        return None
    if not der or not info or "notAfter" not in info:
        return None
    not_before = info.get("notBefore")
    return PeerCert(
        not_after=float(ssl.cert_time_to_seconds(info["notAfter"])),
        not_before=float(ssl.cert_time_to_seconds(not_before)) if not_before else None,
        fingerprint=hashlib.sha256(der).hexdigest(),
        serial=str(info.get("serialNumber", "")),
        subject=_name(info.get("subject", ())),
        issuer=_name(info.get("issuer", ())),
    )
