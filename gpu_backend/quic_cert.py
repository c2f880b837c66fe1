"""Short-lived certificates a browser accepts for WebTransport by hash (issue 16).

A page may open ``new WebTransport(url, {serverCertificateHashes: [{algorithm: "sha-256",
value}]})`` to a server whose certificate no CA vouches for, if that certificate is
ECDSA P-256 (or another allowed key), self-signed and valid for at most 14 days
(W3C WebTransport, "custom certificate requirements"). A LAN node without a trusted
certificate makes one in memory, announces its SHA-256 (in HELLO's extension and its
registry entry) and makes a new one before it expires (``CertificateRotation``).
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = [
    "MAX_HASHED_VALIDITY_S",
    "HashedCertificate",
    "make_hashed_certificate",
    "pinnable_sha256",
]

# The browser's limit is 14 days; a certificate claiming exactly that is refused by some
# clocks' rounding, so the longest we make is a little less.
MAX_HASHED_VALIDITY_S = 14 * 24 * 3600.0
_BACKDATE_S = 60.0  # a page whose clock is a little behind still accepts it


@dataclass(frozen=True)
class HashedCertificate:
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey
    sha256: bytes  # of the DER certificate: what serverCertificateHashes carries
    not_after_s: float  # UNIX time

    @property
    def sha256_hex(self) -> str:
        return self.sha256.hex()

    def pem(self) -> tuple[bytes, bytes]:
        """(certificate, private key) in PEM, for ``edgesight certs --webtransport``."""
        key = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return self.certificate.public_bytes(serialization.Encoding.PEM), key


def make_hashed_certificate(
    hosts: Iterable[str], validity_s: float, now_s: Callable[[], float] | None = None
) -> HashedCertificate:
    """A self-signed ECDSA P-256 certificate for ``hosts`` (names or IP addresses), valid
    ``validity_s`` from now (at most ``MAX_HASHED_VALIDITY_S``)."""
    if not 0 < validity_s <= MAX_HASHED_VALIDITY_S:
        raise ValueError(
            f"expected a validity of at most {MAX_HASHED_VALIDITY_S:g} s (14 days, the "
            f"browser's limit for serverCertificateHashes), got {validity_s:g} s"
        )
    hosts = tuple(hosts) or ("localhost",)
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            names.append(x509.DNSName(host))
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.fromtimestamp(
        now_s() if now_s is not None else datetime.datetime.now(datetime.UTC).timestamp(),
        datetime.UTC,
    )
    not_before = now - datetime.timedelta(seconds=_BACKDATE_S)
    # Validity counts from notBefore: the backdating comes out of the 14 days.
    not_after = not_before + datetime.timedelta(seconds=validity_s)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"edgesight node {hosts[0]}")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    der = certificate.public_bytes(serialization.Encoding.DER)
    return HashedCertificate(certificate, key, hashlib.sha256(der).digest(), not_after.timestamp())


def pinnable_sha256(certificate: x509.Certificate) -> bytes | None:
    """The SHA-256 a page may pin for ``certificate`` (one ``edgesight certs
    --webtransport`` made, say), or None when browsers would refuse it by hash: not
    self-signed, not ECDSA P-256, or valid for more than 14 days."""
    key = certificate.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        return None
    if certificate.issuer != certificate.subject:
        return None
    validity = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    if validity.total_seconds() > MAX_HASHED_VALIDITY_S:
        return None
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest()
