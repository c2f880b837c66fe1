"""TLS for edgesight's servers: HTTPS and WSS with certificates reloaded on change (issue 8).

``server_context(cert, key)`` builds the ``ssl.SSLContext`` a web app or node serves
HTTPS/WSS with: TLS 1.2 or newer, AEAD cipher suites only (no CBC), HTTP/1.1.
``CertificateReloader`` watches the two files and, when they change, loads them into a
*new* context; only when that succeeds (the certificate and key match) does it become the
one new handshakes use, switched in from the served context's ``sni_callback`` (called at
every ClientHello, with or without SNI). Open connections keep their certificate; no
restart, no code change (an ACME client renewing a certificate just replaces the files).
A half-written pair (the certificate written before its key) is logged once and retried
at the next check, while the old pair keeps serving whole (issue 17: loading into the
served context itself left it holding the new certificate with the old key, and every
handshake failed until the key arrived).

A key file other users can read is warned about at start-up and at each reload.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import stat
from collections.abc import Callable
from pathlib import Path

from gpu_backend.loopback import is_loopback_host

__all__ = [
    "RELOAD_INTERVAL_S",
    "CertificateReloader",
    "TlsError",
    "insecure_bind_warning",
    "key_exposure_warning",
    "server_context",
]

log = logging.getLogger(__name__)

RELOAD_INTERVAL_S = 5.0
# TLS 1.2 suites: ECDHE key exchange with an AEAD cipher only. OpenSSL's defaults also
# offered two CBC suites (ECDHE-*-AES*-SHA384/256), which are padding-oracle prone (issue
# 17). TLS 1.3 suites are AEAD by definition and are configured apart from this string.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


class TlsError(ValueError):
    """A certificate, key or CA file that cannot be used; the message names the file."""


def _load_chain(context: ssl.SSLContext, cert: Path, key: Path) -> None:
    for path in (cert, key):
        if not path.is_file():
            raise TlsError(f"TLS file not found: {path}")
    try:
        context.load_cert_chain(certfile=cert, keyfile=key)
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(
            f"cannot use certificate {cert} with key {key}: expected a PEM certificate "
            f"(chain) and its matching PEM private key ({exc})"
        ) from None


def key_exposure_warning(key: Path) -> str | None:
    """The warning for a private key file that users other than its owner can read."""
    try:
        mode = key.stat().st_mode
    except OSError:
        return None  # _load_chain names a missing file
    if not mode & (stat.S_IRWXG | stat.S_IRWXO):
        return None
    return (
        f"the TLS private key {key} can be read by other users (mode "
        f"{stat.S_IMODE(mode):o}): anyone who reads it can impersonate this server; "
        "chmod 600 it"
    )


def _new_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    # HTTP/1.1 only: WebSockets need it, and uvicorn speaks nothing else.
    context.set_alpn_protocols(["http/1.1"])
    _load_chain(context, cert, key)
    return context


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context holding ``cert`` (a PEM chain, leaf first) and ``key``;
    a warning is logged when other users can read ``key``."""
    context = _new_context(cert, key)
    warning = key_exposure_warning(key)
    if warning is not None:
        log.warning("%s", warning)
    return context


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()  # follows symlinks: certbot's live/ links move to new archive files
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class CertificateReloader:
    """Serves ``cert``/``key`` anew through ``context`` when either file changes.

    ``context`` is the one the server was given (``server_context``); the reloader sets its
    ``sni_callback`` to hand each new handshake the newest whole pair's context.
    ``check()`` is one look (tests call it directly); ``run()`` looks every
    ``interval_s`` until cancelled. ``on_reload`` is called after each successful reload."""

    def __init__(
        self,
        context: ssl.SSLContext,
        cert: Path,
        key: Path,
        interval_s: float = RELOAD_INTERVAL_S,
        on_reload: Callable[[], None] | None = None,
    ) -> None:
        self.context = context
        self.cert = cert
        self.key = key
        self.interval_s = interval_s
        self.on_reload = on_reload
        self.reloads = 0
        self._stamps = (_stamp(cert), _stamp(key))
        self._failure: str | None = None
        self._current = context  # the context new handshakes get
        context.sni_callback = self._hand_over

    def _hand_over(
        self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: object
    ) -> None:
        # Called by OpenSSL at each ClientHello, before the certificate is chosen.
        if self._current is not self.context:
            connection.context = self._current

    def check(self) -> bool:
        """Reload if the files changed since the last successful load; True if it did."""
        stamps = (_stamp(self.cert), _stamp(self.key))
        if stamps == self._stamps or None in stamps:
            return False
        try:
            # A new context: the served one keeps its whole pair until this one is whole.
            fresh = _new_context(self.cert, self.key)
        except TlsError as exc:
            # Often a renewal caught between writing the certificate and the key: the old
            # pair keeps serving and the next look tries again. Logged once per failure.
            if str(exc) != self._failure:
                log.warning("%s; still serving the previous certificate", exc)
            self._failure = str(exc)
            return False
        self._current = fresh
        self._stamps = stamps
        self._failure = None
        self.reloads += 1
        log.info("TLS certificate reloaded from %s", self.cert)
        warning = key_exposure_warning(self.key)
        if warning is not None:
            log.warning("%s", warning)
        if self.on_reload is not None:
            self.on_reload()
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.check()


def insecure_bind_warning(what: str, host: str, port: int) -> str | None:
    """The warning for a plain-http server reachable from other machines, else None."""
    if is_loopback_host(host):
        return None
    return (
        f"{what} serves plain http on {host}:{port}: browsers on other machines will get "
        "no camera, no service worker (offline kiosk) and no cross-origin isolation there, "
        "and an https page cannot use a ws:// node. Give it --tls-cert and --tls-key "
        "(see 'Use it from other machines' in README.md)"
    )
