"""HTTPS/WSS servers and certificate reloading without a restart (edgesight/tls.py,
edgesight/serving.py), against a real uvicorn server and a client that trusts only a
test CA."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect

from edgesight.serving import ServerThread
from edgesight.tls import (
    CertificateReloader,
    TlsError,
    insecure_bind_warning,
    key_exposure_warning,
    server_context,
)
from gpu_backend.loopback import is_loopback_host


async def _hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"hello over {request.url.scheme}")


async def _echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for data in websocket.iter_bytes():
        await websocket.send_bytes(data)


APP = Starlette(routes=[Route("/", _hello), WebSocketRoute("/ws", _echo)])


def _write_pair(cert: trustme.LeafCert, directory: Path) -> tuple[Path, Path]:
    """Write a certificate chain and key as an ACME client does: new files renamed
    into place."""
    cert_path, key_path = directory / "server.pem", directory / "server-key.pem"
    for path, pem in ((key_path, cert.private_key_pem), (cert_path, cert.cert_chain_pems[0])):
        tmp = path.with_suffix(".tmp")
        pem.write_to_path(str(tmp))
        tmp.chmod(0o600)  # as an ACME client writes a key (a readable one is warned about)
        os.replace(tmp, path)
    return cert_path, key_path


def _peer_der(port: int, ca: trustme.CA) -> bytes:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def pair(ca: trustme.CA, tmp_path: Path) -> tuple[Path, Path]:
    return _write_pair(ca.issue_cert("127.0.0.1", "localhost"), tmp_path)


@pytest.fixture
def tls_server(pair: tuple[Path, Path]) -> Iterator[ServerThread]:
    context = server_context(*pair)
    with ServerThread(APP, ssl_context=context) as server:
        yield server


def test_https_and_wss_with_a_certificate(
    tls_server: ServerThread, client_context: ssl.SSLContext
) -> None:
    assert tls_server.http_url.startswith("https://")
    assert tls_server.ws_url.startswith("wss://")
    response = httpx.get(tls_server.http_url, verify=client_context, timeout=60)
    assert response.text == "hello over https"
    assert asyncio.run(_echo_once(tls_server.ws_url, client_context, b"frame")) == b"frame"


async def _echo_once(url: str, context: ssl.SSLContext, data: bytes) -> bytes:
    # The asyncio client: websockets' sync client reads and writes one TLS socket from two
    # threads, which now and then lost its upgrade request right after a TLS 1.3 handshake
    # (the server then answered 408 after its header timeout).
    async with connect(url, ssl=context, compression=None, open_timeout=60) as ws:
        await ws.send(data)
        reply = await asyncio.wait_for(ws.recv(), 30)
    assert isinstance(reply, bytes)
    return reply


def test_a_client_without_the_ca_is_refused(tls_server: ServerThread) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(tls_server.http_url, verify=ssl.create_default_context())


def test_new_certificate_files_are_served_without_a_restart(
    ca: trustme.CA, pair: tuple[Path, Path], client_context: ssl.SSLContext
) -> None:
    """Given a server running with certificate A, when the files are replaced by B, then
    new connections get B, and a WebSocket opened under A keeps working."""
    context = server_context(*pair)
    reloaded = threading.Event()
    reloader = CertificateReloader(context, *pair, interval_s=0.02, on_reload=reloaded.set)

    async def across_the_reload(url: str) -> tuple[bytes, bytes]:
        async with connect(url, ssl=client_context, compression=None, open_timeout=60) as ws:
            first = await asyncio.to_thread(_peer_der, server.port, ca)
            _write_pair(ca.issue_cert("127.0.0.1"), pair[0].parent)
            assert await asyncio.to_thread(reloaded.wait, 30)
            second = await asyncio.to_thread(_peer_der, server.port, ca)
            await ws.send(b"still here")  # opened under the old certificate
            assert await asyncio.wait_for(ws.recv(), 30) == b"still here"
        return first, second

    with ServerThread(APP, ssl_context=context, reloader=reloader) as server:
        first, second = asyncio.run(across_the_reload(server.ws_url))
    assert first != second
    assert second == ssl.PEM_cert_to_DER_cert(pair[0].read_text())


def test_a_half_written_pair_keeps_the_old_certificate(
    ca: trustme.CA, pair: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    context = server_context(*pair)
    reloader = CertificateReloader(context, *pair)
    assert reloader.check() is False  # nothing changed
    new = ca.issue_cert("127.0.0.1")
    new.cert_chain_pems[0].write_to_path(str(pair[0]))  # the certificate, not yet its key
    with caplog.at_level(logging.WARNING, logger="edgesight.tls"):
        assert reloader.check() is False
        assert reloader.check() is False
    assert [r.message.count("still serving the previous certificate") for r in caplog.records] == [
        1
    ]
    new.private_key_pem.write_to_path(str(pair[1]))
    assert reloader.check() is True
    assert reloader.reloads == 1


def test_while_only_the_certificate_is_new_handshakes_get_the_old_pair_whole(
    ca: trustme.CA, pair: tuple[Path, Path], client_context: ssl.SSLContext
) -> None:
    """Issue 17: the certificate written before its key made every new handshake fail
    (SSLEOFError) until the key came. Given a serving pair A, when B's certificate is
    written, then handshakes still succeed with A; when B's key follows, they get B."""
    old_der = ssl.PEM_cert_to_DER_cert(pair[0].read_text())
    context = server_context(*pair)
    reloader = CertificateReloader(context, *pair)
    new = ca.issue_cert("127.0.0.1")
    with ServerThread(APP, ssl_context=context, reloader=None) as server:
        new.cert_chain_pems[0].write_to_path(str(pair[0]))  # the certificate, not its key
        assert reloader.check() is False
        assert _peer_der(server.port, ca) == old_der
        response = httpx.get(server.http_url, verify=client_context, timeout=60)
        assert response.text == "hello over https"

        new.private_key_pem.write_to_path(str(pair[1]))
        assert reloader.check() is True
        new_der = _peer_der(server.port, ca)
        assert asyncio.run(_echo_once(server.ws_url, client_context, b"frame")) == b"frame"
    assert new_der == ssl.PEM_cert_to_DER_cert(pair[0].read_text()) != old_der


def test_tls_12_offers_aead_suites_only(pair: tuple[Path, Path], ca: trustme.CA) -> None:
    """Issue 17: TLS 1.2 offered two CBC suites. A TLS 1.2 client that offers only CBC
    suites is refused; every TLS 1.2 suite the server may pick is an AEAD one."""
    context = server_context(*pair)
    tls12 = [c for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12
    assert all(c["aead"] for c in tls12), [c["name"] for c in tls12 if not c["aead"]]

    cbc_only = ssl.create_default_context()
    ca.configure_trust(cbc_only)
    cbc_only.maximum_version = ssl.TLSVersion.TLSv1_2
    cbc_only.set_ciphers("ECDHE+AES+SHA256:ECDHE+AES+SHA384:ECDHE+AES+SHA1")
    aead = ssl.create_default_context()
    ca.configure_trust(aead)
    aead.maximum_version = ssl.TLSVersion.TLSv1_2
    with ServerThread(APP, ssl_context=context) as server:
        with (
            pytest.raises(ssl.SSLError),
            socket.create_connection(("127.0.0.1", server.port)) as raw,
        ):
            cbc_only.wrap_socket(raw, server_hostname="127.0.0.1")
        with (
            socket.create_connection(("127.0.0.1", server.port)) as raw,
            aead.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            chosen = tls.cipher()
    assert chosen is not None
    assert chosen[1] == "TLSv1.2"
    assert "GCM" in chosen[0] or "CHACHA20" in chosen[0]


def test_a_key_other_users_can_read_is_warned_about_at_start_and_reload(
    ca: trustme.CA, pair: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    pair[1].chmod(0o600)
    assert key_exposure_warning(pair[1]) is None
    pair[1].chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="edgesight.tls"):
        context = server_context(*pair)
    assert "can be read by other users (mode 644)" in caplog.text
    assert "chmod 600" in caplog.text
    caplog.clear()
    reloader = CertificateReloader(context, *pair)
    _write_pair(ca.issue_cert("127.0.0.1"), pair[0].parent)
    pair[1].chmod(0o640)
    with caplog.at_level(logging.WARNING, logger="edgesight.tls"):
        assert reloader.check() is True
    assert "can be read by other users (mode 640)" in caplog.text


def test_bad_files_are_named_at_start(pair: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(TlsError, match=r"not found: .*nowhere\.pem"):
        server_context(tmp_path / "nowhere.pem", pair[1])
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(TlsError, match=r"junk.pem .*expected a PEM certificate"):
        server_context(tmp_path / "junk.pem", pair[1])


@pytest.mark.parametrize(
    ("host", "is_loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.4", False),
        ("kiosk.lan", False),
    ],
)
def test_plain_http_off_loopback_is_warned_about(host: str, is_loopback: bool) -> None:
    assert is_loopback_host(host) is is_loopback
    warning = insecure_bind_warning("the web app", host, 8000)
    if is_loopback:
        assert warning is None
    else:
        assert warning is not None
        assert "no camera, no service worker" in warning
        assert "--tls-cert" in warning
