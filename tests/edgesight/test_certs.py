"""``edgesight certs``: a local CA and server certificates that Python's ``ssl`` accepts
for every name asked for, private keys, and a CA that survives running it again."""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest

from edgesight.certs import CertsError, issue, spki_sha256, split_hosts, trust_instructions
from edgesight.cli import main


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _handshake(ca: Path, cert: Path, key: Path, server_hostname: str) -> dict[str, object]:
    """A real TLS handshake over a socket pair: the server serves cert/key, the client
    trusts only ca and checks server_hostname (a name or an IP address)."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=ca)
    left, right = socket.socketpair()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(left, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError) as exc:  # the client's refusal ends the handshake
            errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_ctx.wrap_socket(right, server_hostname=server_hostname) as tls:
            peer = tls.getpeercert()
            tls.sendall(b"x")
    finally:
        thread.join(timeout=10)
    assert peer is not None
    return dict(peer)


def test_the_server_certificate_is_valid_for_every_name_and_address(tmp_path: Path) -> None:
    issued = issue(tmp_path / "tls", ["kiosk.lan", "192.168.7.20", "fd00::7"])

    for host in ("kiosk.lan", "192.168.7.20", "fd00::7", "localhost", "127.0.0.1", "::1"):
        peer = _handshake(issued.ca_cert, issued.cert, issued.key, host)
        assert peer["subject"] == ((("commonName", "kiosk.lan"),),)
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        _handshake(issued.ca_cert, issued.cert, issued.key, "other.lan")


def test_keys_are_private_and_the_directory_is_closed(tmp_path: Path) -> None:
    directory = tmp_path / "tls"
    issued = issue(directory, ["kiosk.lan"])
    assert _mode(directory) == 0o700
    assert _mode(issued.ca_key) == 0o600
    assert _mode(issued.key) == 0o600
    assert _mode(issued.ca_cert) == 0o644
    assert _mode(issued.cert) == 0o644
    assert sorted(p.name for p in directory.iterdir()) == [
        "ca-key.pem",
        "ca.pem",
        "server-key.pem",
        "server.pem",
    ]


def test_running_again_keeps_the_ca_and_still_validates(tmp_path: Path) -> None:
    directory = tmp_path / "tls"
    first = issue(directory, ["kiosk.lan"])
    ca_before = first.ca_cert.read_bytes()
    old_chain, old_key = first.cert.read_bytes(), first.key.read_bytes()
    os.chmod(directory, 0o755)  # loosened by hand: made private again
    os.chmod(first.ca_key, 0o644)

    second = issue(directory, ["kiosk.lan", "10.0.0.9"])

    assert first.is_new_ca
    assert not second.is_new_ca
    assert second.ca_cert.read_bytes() == ca_before
    assert second.cert.read_bytes() != old_chain
    assert _mode(directory) == 0o700
    assert _mode(second.ca_key) == 0o600
    _handshake(second.ca_cert, second.cert, second.key, "10.0.0.9")
    # the certificate issued first is still signed by the same CA
    (tmp_path / "old.pem").write_bytes(old_chain)
    (tmp_path / "old-key.pem").write_bytes(old_key)
    _handshake(second.ca_cert, tmp_path / "old.pem", tmp_path / "old-key.pem", "kiosk.lan")


def test_a_ca_whose_key_does_not_match_is_refused(tmp_path: Path) -> None:
    one, two = issue(tmp_path / "one", []), issue(tmp_path / "two", [])
    two.ca_key.write_bytes(one.ca_key.read_bytes())
    with pytest.raises(CertsError, match="private key of"):
        issue(tmp_path / "two", [])


def test_the_chain_carries_the_ca_for_spki_pinning(tmp_path: Path) -> None:
    issued = issue(tmp_path / "tls", ["kiosk.lan"])
    chain = issued.cert.read_text()
    assert chain.count("BEGIN CERTIFICATE") == 2
    assert chain.endswith(issued.ca_cert.read_text())
    assert len(spki_sha256(issued.ca_cert.read_bytes())) == 44  # base64 of 32 bytes


def test_hosts_are_checked_and_loopback_is_always_included() -> None:
    names, addresses = split_hosts(["Kiosk.LAN.", "[fd00::1]", "10.1.2.3", "kiosk.lan"])
    assert names == ("kiosk.lan", "localhost")
    assert addresses == tuple(
        ipaddress.ip_address(a) for a in ("fd00::1", "10.1.2.3", "127.0.0.1", "::1")
    )
    for bad in ("https://kiosk.lan", "kiosk lan", "-x.lan", "ünï.lan"):
        with pytest.raises(CertsError, match="expected a host name"):
            split_hosts([bad])


def test_instructions_name_the_files_and_the_commands(tmp_path: Path) -> None:
    issued = issue(tmp_path / "tls", ["kiosk.lan"])
    text = trust_instructions(issued)
    assert f"--tls-cert {issued.cert} --tls-key {issued.key}" in text
    assert f"--ca-file {issued.ca_cert}" in text
    assert "certutil -d sql:$HOME/.pki/nssdb" in text
    assert "update-ca-certificates" in text
    assert "/etc/chromium/policies/managed/" in text
    assert "https://kiosk.lan:8000/" in text
    assert str(issued.ca_key) in text
    assert "never copy" in text


def test_the_command_writes_the_files_and_prints_the_instructions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["certs", "--dir", str(tmp_path / "tls"), "kiosk.lan"], environ={}) == 0
    out = capsys.readouterr().out
    assert "made a new CA" in out
    assert main(["certs", "--dir", str(tmp_path / "tls"), "kiosk.lan"], environ={}) == 0
    assert "kept the existing CA" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["certs", "--dir", str(tmp_path / "tls"), "bad name"], environ={})
    assert exit_info.value.code == 2
    assert "expected a host name" in capsys.readouterr().err


# -- certificates browsers pin by hash, for WebTransport (issue 16) ----------------------------


def test_a_webtransport_certificate_is_short_lived_p256_and_pinnable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from gpu_backend.quic_cert import pinnable_sha256

    directory = tmp_path / "tls"
    argv = ["certs", "--webtransport", "--days", "7", "--dir", str(directory), "node.lan"]
    assert main(argv, environ={}) == 0
    out = capsys.readouterr().out
    cert = x509.load_pem_x509_certificate((directory / "webtransport.pem").read_bytes())
    der = cert.public_bytes(serialization.Encoding.DER)
    assert hashlib.sha256(der).hexdigest() in out  # the hash pages pin
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    validity_days = (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() / 86400
    assert validity_days == pytest.approx(7.0, abs=0.01)
    assert pinnable_sha256(cert) == hashlib.sha256(der).digest()
    assert stat.S_IMODE(os.stat(directory / "webtransport-key.pem").st_mode) == 0o600
    assert not (directory / "ca.pem").exists()  # no CA involved


@pytest.mark.parametrize("days", ["14", "0", "30"])
def test_a_webtransport_certificate_over_14_days_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], days: str
) -> None:
    argv = ["certs", "--webtransport", "--days", days, "--dir", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        main(argv, environ={})
    assert exit_info.value.code == 2
    assert "under 14" in capsys.readouterr().err


def test_ca_signed_certificates_are_not_pinnable(tmp_path: Path) -> None:
    from cryptography import x509

    from gpu_backend.quic_cert import pinnable_sha256

    issued = issue(tmp_path, ["kiosk.lan"])
    server = x509.load_pem_x509_certificate(issued.cert.read_bytes())
    assert pinnable_sha256(server) is None  # signed by the CA, and valid for 397 days
