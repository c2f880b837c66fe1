"""How edgesight runs an ASGI app under uvicorn: one place for the WebSocket settings the
frame path depends on, used by the CLI, the tests and the benchmarks alike.

``ServerThread`` runs a real uvicorn server on a background thread (tests, benchmarks):
it binds the socket itself, so port 0 works and the chosen port is known before start,
and it waits for uvicorn's own ``started`` flag rather than sleeping.

uvicorn's own protocols are extended (``guard.py``, configured by ``ServerLimits``): HTTP
request headers must arrive within a deadline (slowloris), each client address may hold
only so many connections, a WebSocket close frame goes out even to a client that does not
read, and a too-large message's 1009 close frame reaches the client instead of being lost
to a TCP reset.

Client addresses: uvicorn's ``proxy_headers`` is off. It believed ``X-Forwarded-For`` and
``X-Forwarded-Proto`` from 127.0.0.1 by default, so any local process could claim another
address (issue 17, item 7). The web app reads forwarding headers itself, from its
configured proxies only (``webapp/forwarded.py``); the node counts real peers.

Access log: query parameters that carry secrets (``key``, ``token``) are written as
``[redacted]`` (``RedactSecrets``), so a kiosk link's key never reaches a log file.

TLS: given an ``ssl.SSLContext`` (``edgesight.tls.server_context``), a server speaks HTTPS
and WSS. ``serve()`` runs a server together with its ``CertificateReloader``, so renewed
certificate files are picked up by new connections without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import ssl
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from .guard import ServerLimits, protocol_classes
from .lifecycle import QuietStartup, Server
from .startup import bind_listener
from .tls import CertificateReloader

__all__ = ["RedactSecrets", "ServerLimits", "ServerThread", "make_server", "serve"]

SECRET_QUERY_PARAMS = ("key", "token")
_SECRET_IN_QUERY = re.compile(rf"([?&](?:{'|'.join(SECRET_QUERY_PARAMS)})=)[^&#\s]*", re.I)


class RedactSecrets(logging.Filter):
    """Rewrites uvicorn access-log records: ``/kiosk?key=abc`` -> ``/kiosk?key=[redacted]``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                _SECRET_IN_QUERY.sub(r"\1[redacted]", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


def _redact_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactSecrets) for f in access.filters):
        access.addFilter(RedactSecrets())


def make_server(
    app: Any,
    host: str,
    port: int,
    max_message_bytes: int,
    ssl_context: ssl.SSLContext | None = None,
    limits: ServerLimits | None = None,
) -> Server:
    http, ws = protocol_classes(limits or ServerLimits())
    _redact_access_log()
    quiet = QuietStartup(app)
    config = uvicorn.Config(
        quiet,
        host=host,
        port=port,
        http=http,
        ws=ws,  # websockets' sans-I/O protocol, guarded
        # Tensors are incompressible to deflate and cost tens of ms to compress.
        ws_per_message_deflate=False,
        ws_max_size=max_message_bytes,  # larger messages close the connection with 1009
        log_config=None,
        lifespan="on",
        proxy_headers=False,  # see the module docstring: never believed from anyone here
    )
    if ssl_context is not None:
        # uvicorn builds its own context from file names at load(); load now and put ours
        # in its place, so that the reloader and the listening socket share one context.
        config.load()
        config.ssl = ssl_context
    return Server(config, quiet)


async def serve(
    server: uvicorn.Server,
    reloader: CertificateReloader | None = None,
    sockets: list[socket.socket] | None = None,
) -> None:
    """Run ``server`` until it exits, reloading its certificate meanwhile if given one."""
    if reloader is None:
        await server.serve(sockets=sockets)
        return
    watcher = asyncio.create_task(reloader.run(), name="tls-reload")
    try:
        await server.serve(sockets=sockets)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


class ServerThread:
    """``with ServerThread(app) as server: server.port ...``"""

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        max_message_bytes: int = 4 * 1024 * 1024,
        startup_timeout_s: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
        reloader: CertificateReloader | None = None,
        limits: ServerLimits | None = None,
    ) -> None:
        # the CLI's listener: IPPROTO_TCP, so that connections get TCP_NODELAY (issue 16)
        self.sock = bind_listener(host, port, "the server", "ServerThread(port=...)")
        self.host, self.port = self.sock.getsockname()[:2]
        self.server = make_server(app, self.host, self.port, max_message_bytes, ssl_context, limits)
        self.is_tls = ssl_context is not None
        self.reloader = reloader
        self.startup_timeout_s = startup_timeout_s
        self._thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}", daemon=True)
        self._error: BaseException | None = None

    @property
    def http_url(self) -> str:
        """The base URL: https:// when serving TLS (the name is the bind address)."""
        return f"{'https' if self.is_tls else 'http'}://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.is_tls else 'ws'}://{self.host}:{self.port}/ws"

    def _run(self) -> None:
        try:
            asyncio.run(serve(self.server, self.reloader, sockets=[self.sock]))
        except BaseException as exc:  # noqa: BLE001 - a thread cannot raise to its owner;
            # start() surfaces it
            self._error = exc

    def start(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout_s
        poll = threading.Event()  # never set: a wait that cannot be cut short by signals
        # uvicorn exposes readiness as a flag, not an event: poll it, bounded by a deadline.
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"server on port {self.port} failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"server on port {self.port} did not start in time")
            poll.wait(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)
        self.sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
