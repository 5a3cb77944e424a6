"""A test certificate authority and the certificates it signs, made in the test (cryptography):
real PEM files on disk, for real TLS servers on 127.0.0.1 and the probes that trust the CA.

    ca = TestCA(tmp_path)
    cert = ca.issue(days=3)                # valid from an hour ago until 3 days from now
    target = HttpTarget(tls=cert.server_context()).start()
    probed(target.url("/ok"), ca_file=str(ca.pem))
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["IssuedCert", "TestCA"]

_counter = itertools.count(1)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


@dataclass(frozen=True)
class IssuedCert:
    cert: Path  # PEM
    key: Path  # PEM
    not_after: float  # seconds since the epoch
    serial: int
    fingerprint: str  # SHA-256 of the DER, hex: what hbsm records

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


class TestCA:
    """A CA in `folder` (ca.pem): trusted by whoever is given `pem`, by nobody else."""

    __test__ = False  # not a test class, whatever pytest thinks of its name

    def __init__(self, folder: Path, name: str = "hbsm test CA") -> None:
        self.folder = folder
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = _name(name)
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        self.pem = folder / "ca.pem"
        self.pem.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        *,
        days: float,
        valid_since_days: float = 1 / 24,
        host: str = "127.0.0.1",
    ) -> IssuedCert:
        """A server certificate for `host` (an IP address or a DNS name), valid from
        `valid_since_days` ago until `days` from now (negative: it has ended)."""
        import ipaddress

        now = dt.datetime.now(dt.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        try:
            alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            alt = x509.DNSName(host)
        serial = x509.random_serial_number()
        not_before = now - dt.timedelta(days=valid_since_days)
        not_after = (now + dt.timedelta(days=days)).replace(microsecond=0)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(host))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(min(not_before, not_after - dt.timedelta(seconds=1)))
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        n = next(_counter)
        cert_path = self.folder / f"server-{n}.pem"
        key_path = self.folder / f"server-{n}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        der = cert.public_bytes(serialization.Encoding.DER)
        return IssuedCert(
            cert=cert_path,
            key=key_path,
            not_after=not_after.timestamp(),
            serial=serial,
            fingerprint=hashlib.sha256(der).hexdigest(),
        )
