"""``edgesight certs``: a local certificate authority and server certificates for a LAN or
kiosk deployment that has no public certificate (issue 8).

The CA is made once and kept (its key never leaves the directory); each run issues a new
server certificate for the given host names and IP addresses, signed by that CA. Browsers
that trust the CA then treat ``https://NAME:8000`` as a secure context (camera, service
worker, cross-origin isolation) and accept ``wss://`` nodes with a certificate from it.

Files, in a directory only its owner may enter (0700):

    ca.pem            the CA certificate: install it on every browser machine (0644)
    ca-key.pem        the CA's private key: never copy it anywhere (0600)
    server.pem        the server certificate followed by the CA certificate (0644)
    server-key.pem    the server's private key (0600)

Every file is written to a temporary name and renamed into place, so a running server's
certificate reloader never reads half a file.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gpu_backend.loopback import LOOPBACK_HOSTS

__all__ = [
    "CA_DAYS",
    "SERVER_DAYS",
    "CertsError",
    "Issued",
    "IssuedForWebTransport",
    "default_directory",
    "issue",
    "issue_webtransport",
    "spki_sha256",
    "split_hosts",
    "trust_instructions",
    "webtransport_instructions",
]

CA_DAYS = 3650
# Apple platforms refuse server certificates valid for more than 825 days; 397 is what
# public CAs may issue and what every browser accepts.
SERVER_DAYS = 397
CA_NAME = "edgesight local CA"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
CaPair = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


class CertsError(ValueError):
    """Certificates that cannot be made as asked; the message says what was expected."""


@dataclass(frozen=True)
class Issued:
    directory: Path
    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path
    dns_names: tuple[str, ...]
    ip_addresses: tuple[Address, ...]
    is_new_ca: bool


def default_directory(environ: dict[str, str] | os._Environ[str]) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "edgesight" / "tls"


def split_hosts(hosts: Iterable[str]) -> tuple[tuple[str, ...], tuple[Address, ...]]:
    """Host names and IP addresses, loopback ones added (a node on the same machine
    registers over https://127.0.0.1), duplicates removed, order kept."""
    names: list[str] = []
    addresses: list[Address] = []
    for raw in (*hosts, *LOOPBACK_HOSTS):
        host = raw.strip().strip("[]")
        if not host:
            continue
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            name = host.lower().rstrip(".")
            if not _is_dns_name(name):
                raise CertsError(
                    f"expected a host name (letters, digits, '-', '.') or an IP address, "
                    f"got {raw!r}"
                ) from None
            if name not in names:
                names.append(name)
            continue
        if address not in addresses:
            addresses.append(address)
    return tuple(names), tuple(addresses)


def _is_dns_name(name: str) -> bool:
    labels = name.split(".")
    if not name or len(name) > 253:
        return False
    for i, label in enumerate(labels):
        wildcard = i == 0 and label == "*" and len(labels) > 2
        ok = label and len(label) <= 63 and label[0] != "-" and label[-1] != "-"
        if not wildcard and not (ok and all(c.isalnum() or c == "-" for c in label)):
            return False
        if not label.isascii():
            return False
    return True


def _write(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _private_dir(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)  # an existing directory is made private too


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_ca(cert_path: Path, key_path: Path) -> CaPair:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise CertsError(
            f"expected the CA in {cert_path} and {key_path} to be readable PEM files ({exc}); "
            "move them away to make a new CA (every browser must then trust the new one)"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise CertsError(f"expected {key_path} to be the private key of {cert_path}; it is not")
    return cert, key


def _new_ca(now: datetime.datetime) -> CaPair:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "edgesight"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{CA_NAME} {now:%Y-%m-%d %H:%M}"),
        ]
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _server_cert(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    names: Sequence[str],
    addresses: Sequence[Address],
    now: datetime.datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    common_name = names[0] if names else str(addresses[0])
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans += [x509.IPAddress(a) for a in addresses]
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def issue(directory: Path, hosts: Iterable[str], name: str = "server") -> Issued:
    """Make the CA in ``directory`` unless it exists, and a new server certificate for
    ``hosts`` (plus localhost, 127.0.0.1 and ::1) signed by it."""
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise CertsError(f"expected a file name of letters, digits, '-' or '_', got {name!r}")
    names, addresses = split_hosts(hosts)
    _private_dir(directory)
    ca_cert_path, ca_key_path = directory / "ca.pem", directory / "ca-key.pem"
    now = datetime.datetime.now(datetime.UTC)
    is_new_ca = not (ca_cert_path.exists() or ca_key_path.exists())
    if is_new_ca:
        ca_cert, ca_key = _new_ca(now)
        _write(ca_key_path, _key_pem(ca_key), 0o600)  # the key first: a CA cert alone is useless
        _write(ca_cert_path, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    else:
        ca_cert, ca_key = _load_ca(ca_cert_path, ca_key_path)
        os.chmod(ca_key_path, 0o600)
    cert, key = _server_cert(ca_cert, ca_key, names, addresses, now)
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}-key.pem"
    _write(key_path, _key_pem(key), 0o600)
    chain = cert.public_bytes(serialization.Encoding.PEM)
    # The CA after the leaf: browsers told to trust the CA by its key hash (Chromium's
    # --ignore-certificate-errors-spki-list, used by the tests) find it in the chain.
    chain += ca_cert.public_bytes(serialization.Encoding.PEM)
    _write(cert_path, chain, 0o644)
    return Issued(
        directory, ca_cert_path, ca_key_path, cert_path, key_path, names, addresses, is_new_ca
    )


@dataclass(frozen=True)
class IssuedForWebTransport:
    cert: Path
    key: Path
    sha256_hex: str  # what a page pins: serverCertificateHashes
    days: float


def issue_webtransport(
    directory: Path, hosts: Iterable[str], name: str = "webtransport", days: float = 10.0
) -> IssuedForWebTransport:
    """A self-signed ECDSA P-256 certificate valid ``days`` (at most 14: browsers pin such
    a certificate by its SHA-256 with serverCertificateHashes, issue 16), for a node's
    WebTransport endpoint (EDGESIGHT_WT_CERT / EDGESIGHT_WT_KEY). No CA is involved."""
    from gpu_backend.quic_cert import make_hashed_certificate

    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise CertsError(f"expected a file name of letters, digits, '-' or '_', got {name!r}")
    if not 0 < days < 14:
        raise CertsError(
            f"expected --days above 0 and under 14 (browsers pin certificates valid at most "
            f"14 days), got {days:g}"
        )
    names, addresses = split_hosts(hosts)
    hashed = make_hashed_certificate([*names, *(str(a) for a in addresses)], days * 86400.0)
    _private_dir(directory)
    cert_pem, key_pem = hashed.pem()
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}-key.pem"
    _write(key_path, key_pem, 0o600)
    _write(cert_path, cert_pem, 0o644)
    return IssuedForWebTransport(cert_path, key_path, hashed.sha256_hex, days)


def webtransport_instructions(issued: IssuedForWebTransport) -> str:
    return f"""\
edgesight certs --webtransport: a self-signed ECDSA P-256 certificate valid {issued.days:g} days
  certificate   {issued.cert}
  key           {issued.key}
  sha-256       {issued.sha256_hex}

Serve WebTransport with it (the node announces the hash to pages, which pin it):

   EDGESIGHT_WT_CERT={issued.cert} EDGESIGHT_WT_KEY={issued.key} edgesight node ...

Make a new one before it expires (the node picks it up when restarted). A node given no
certificate for WebTransport makes its own in memory and renews it by itself.
"""


def spki_sha256(cert_pem: bytes) -> str:
    """Base64 SHA-256 of a certificate's SubjectPublicKeyInfo (Chromium's SPKI hash)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    return base64.b64encode(digest.finalize()).decode()


def trust_instructions(issued: Issued, web_port: int = 8000, node_port: int = 8001) -> str:
    """What to do next, in words and exact commands."""
    ca = issued.ca_cert
    der_b64 = base64.b64encode(
        x509.load_pem_x509_certificate(ca.read_bytes()).public_bytes(serialization.Encoding.DER)
    ).decode()
    hosts = [*issued.dns_names, *(str(a) for a in issued.ip_addresses)]
    public = next((h for h in hosts if h not in LOOPBACK_HOSTS), "localhost")
    shown = f"[{public}]" if ":" in public else public
    state = "made a new CA" if issued.is_new_ca else "kept the existing CA"
    tls = f"--tls-cert {issued.cert} --tls-key {issued.key}"
    return f"""\
edgesight certs: {state} and issued a server certificate for: {", ".join(hosts)}
  CA certificate   {ca}   (install this on every browser machine)
  CA private key   {issued.ca_key}   (keep it here; never copy it)
  server chain     {issued.cert}
  server key       {issued.key}

1. Start the web app and a node with TLS on all interfaces (open TCP ports {web_port} and
   {node_port} in the firewall):

   edgesight serve --host 0.0.0.0 --node-host 0.0.0.0 {tls}

   or as two processes, the node registering with the web app over https:

   edgesight webapp --host 0.0.0.0 --port {web_port} {tls}
   edgesight node --host 0.0.0.0 --port {node_port} {tls} \\
       --public-url wss://{shown}:{node_port}/ws \\
       --registry-url https://{shown}:{web_port} --ca-file {ca}

   (with EDGESIGHT_REGISTRY_SECRET set for both). A node on another machine needs a
   certificate with that machine's name: run this command again with that name and
   --name NODE, and copy NODE.pem, NODE-key.pem and ca.pem there.

2. Trust the CA on each browser machine or kiosk (copy {ca.name} there first):

   Chromium / Chrome on Linux, per user (package libnss3-tools):
     certutil -d sql:$HOME/.pki/nssdb -A -t "C,," -n "{CA_NAME}" -i ca.pem

   Chromium / Chrome 131+, for every user through a managed policy; write this to
   /etc/chromium/policies/managed/edgesight.json (Debian's chromium) or
   /etc/opt/chrome/policies/managed/edgesight.json (Google Chrome):
     {{"CACertificates": ["{der_b64}"]}}

   Debian / Ubuntu system store (curl, Python, nodes checking the registry):
     sudo cp ca.pem /usr/local/share/ca-certificates/edgesight-ca.crt
     sudo update-ca-certificates

   Other systems: import ca.pem as a trusted certificate authority in the system's
   certificate settings (Android: Security > Encryption & credentials; macOS: Keychain
   Access, "Always Trust"; Windows: Trusted Root Certification Authorities).

3. Open https://{shown}:{web_port}/ (or /kiosk) on that machine.

Running this command again keeps the CA and issues a new server certificate; a running
server picks up the new files within a few seconds, without a restart.
"""
