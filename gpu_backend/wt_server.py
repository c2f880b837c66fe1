"""The node's WebTransport endpoint (issue 16): a thin asyncio UDP driver that joins
aioquic's QUIC server, one ``wt_session.WtSession`` per QUIC connection and the same
sans-I/O ``connection.Connection`` that serves ``/ws`` (joined to the node by
``wt_link.WtLink``).

Only the framing differs from the WebSocket (``pyodide_client.quic_framing``): the same
messages, the same policy (HELLO, AUTH, stream slots, in-flight window, error budget,
deadlines, outbox), the same batcher. The extended CONNECT is checked like the
WebSocket's handshake: its ``:path`` must be ``/wt`` (else 404) and its ``Origin`` on the
node's allow-list (else 403).

Bounds: ``wt_max_sessions`` QUIC connections at once (more are closed at once), at most
``max_connections_per_address`` QUIC connections and sessions per client address (more
are closed, or get 429), a connection
that opens no session within ``handshake_timeout_s`` is closed, and everything
``WtSession`` bounds per session (messages, frames uploading, datagrams).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer, serve
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent

from pyodide_client.quic_framing import WT_PATH

from .log_sampler import LogSampler
from .quic_ack_delay import NODE_MAX_ACK_DELAY_MS, announce_max_ack_delay
from .quic_cert import HashedCertificate, make_hashed_certificate, pinnable_sha256
from .wt_link import WtLink
from .wt_session import (
    ControlMessage,
    FrameAbandoned,
    FrameMessage,
    Input,
    SessionClosed,
    SessionRequest,
    WtLimits,
    WtSession,
)

if TYPE_CHECKING:
    from .node import Node

__all__ = ["WtServer", "start_webtransport"]

log = logging.getLogger(__name__)

FLUSH_BEFORE_CLOSE_S = 1.0  # the close capsule's (and last ERROR's) time to arrive
MAX_DATAGRAM_FRAME_BYTES = 1200  # the node takes no datagrams (it sends answers' copies)
_refused = LogSampler(logger=log)


class WtServer:
    """The UDP listener, its certificate and its live sessions."""

    def __init__(self, node: Node, configuration: QuicConfiguration) -> None:
        self.node = node
        self.configuration = configuration
        self.limits = WtLimits(
            max_message_bytes=node.settings.max_message_bytes,
            max_frame_streams=node.settings.wt_max_frame_streams,
            answer_datagrams=node.settings.wt_answer_datagrams,
        )
        self.hashed: HashedCertificate | None = None  # made and rotated here
        self.file_sha256: bytes | None = None  # a certificate file's, when pinnable
        self.port = 0
        self.protocols: set[_NodeQuicProtocol] = set()
        self.sessions_per_address: Counter[str] = Counter()
        self.connections_per_address: Counter[str] = Counter()  # QUIC, with or without a session
        self.frames_abandoned = 0
        self._server: QuicServer | None = None
        self._rotation: asyncio.Task[None] | None = None
        self.on_rotated: Callable[[HashedCertificate], None] | None = None  # tests, logs

    @property
    def cert_sha256_hex(self) -> str | None:
        """What a page pins (serverCertificateHashes); None: a CA-signed certificate."""
        if self.hashed is not None:
            return self.hashed.sha256_hex
        return None if self.file_sha256 is None else self.file_sha256.hex()

    def use_hashed(self, hashed: HashedCertificate) -> None:
        """New sessions get this certificate (aioquic reads the configuration per
        connection); sessions open now keep theirs."""
        self.hashed = hashed
        self.configuration.certificate = hashed.certificate
        self.configuration.private_key = hashed.private_key

    async def start(self, host: str, port: int) -> None:
        self._server = await serve(
            host,
            port,
            configuration=self.configuration,
            create_protocol=functools.partial(_NodeQuicProtocol, server=self),
        )
        transport = self._server._transport  # serve() hides the socket
        assert transport is not None
        self.port = transport.get_extra_info("sockname")[1]

    def start_rotation(self, validity_s: float, hosts: tuple[str, ...]) -> None:
        self._rotation = asyncio.get_running_loop().create_task(
            self._rotate(validity_s, hosts), name="wt-certificate"
        )

    async def _rotate(self, validity_s: float, hosts: tuple[str, ...]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # Halfway through: a page that learnt the hash just before still has days.
            await asyncio.sleep(validity_s / 2)
            hashed = await loop.run_in_executor(None, make_hashed_certificate, hosts, validity_s)
            self.use_hashed(hashed)
            log.info("WebTransport certificate renewed, sha-256 %s", hashed.sha256_hex)
            if self.on_rotated is not None:
                self.on_rotated(hashed)

    async def stop(self) -> None:
        if self._rotation is not None:
            self._rotation.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rotation
        for protocol in list(self.protocols):
            protocol.lost()
        if self._server is not None:
            self._server.close()


def _certificate_hosts(node: Node) -> tuple[str, ...]:
    host = node.settings.host
    if host in ("0.0.0.0", "::", ""):
        return ("localhost", "127.0.0.1")
    return (host, "localhost") if host != "localhost" else ("localhost",)


async def start_webtransport(node: Node) -> WtServer | None:
    """The node's WebTransport listener, or None when it is off or its UDP port cannot
    be bound (the node then serves WebSocket only, and announces no WebTransport)."""
    s = node.settings
    if not s.is_webtransport_enabled:
        return None
    configuration = QuicConfiguration(
        is_client=False,
        alpn_protocols=H3_ALPN,
        max_datagram_frame_size=MAX_DATAGRAM_FRAME_BYTES,
        # CUBIC, as the kernel's TCP and Chromium's QUIC: aioquic's NewReno halves the
        # window per loss and grows it back by one segment a round trip
        congestion_control_algorithm="cubic",
        idle_timeout=s.idle_timeout_s,
        # One frame must never wait for stream credit; the session bounds the rest.
        max_stream_data=s.max_message_bytes,
        max_data=2 * s.max_message_bytes,
    )
    server = WtServer(node, configuration)
    cert, key = (s.wt_cert, s.wt_key) if s.wt_cert is not None else (s.tls_cert, s.tls_key)
    if cert is not None and key is not None:
        configuration.load_cert_chain(cert, key)
        # A short-lived self-signed one (edgesight certs --webtransport) is pinned by hash.
        server.file_sha256 = pinnable_sha256(configuration.certificate)
    else:
        validity_s = s.wt_cert_validity_days * 86400.0
        hosts = _certificate_hosts(node)
        server.use_hashed(await asyncio.to_thread(make_hashed_certificate, hosts, validity_s))
        server.start_rotation(validity_s, hosts)
    port = s.wt_port or s.port
    try:
        await server.start(s.host, port)
    except OSError as exc:
        log.warning(
            "WebTransport off: cannot bind UDP %s:%d (%s); set EDGESIGHT_WT_PORT",
            s.host,
            port,
            exc.strerror,
        )
        await server.stop()
        return None
    log.info(
        "WebTransport on udp %s:%d%s",
        s.host,
        server.port,
        f", certificate sha-256 {server.cert_sha256_hex}" if server.cert_sha256_hex else "",
    )
    return server


class _NodeQuicProtocol(QuicConnectionProtocol):
    """One QUIC connection: its WebTransport session and, once accepted, its link."""

    def __init__(self, quic: QuicConnection, stream_handler: Any = None, *, server: WtServer):
        announce_max_ack_delay(quic, NODE_MAX_ACK_DELAY_MS)  # before its handshake
        super().__init__(quic, stream_handler)
        self.server = server
        self.session = WtSession(quic, server.limits)
        self.link: WtLink | None = None
        self.address: str | None = None
        self.is_lost = False  # what the session held is given back
        self.is_quic_closed = False  # the QUIC connection is closing or closed
        server.protocols.add(self)
        loop = asyncio.get_running_loop()
        self._handshake_deadline = loop.call_later(
            server.node.settings.handshake_timeout_s, self._no_session
        )
        if len(server.protocols) > server.node.settings.wt_max_sessions:
            _refused.log(loop.time(), logging.INFO, "refused a QUIC connection: at capacity")
            self._close_quic(0x10B, "at capacity")  # H3_EXCESSIVE_LOAD

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        if self.address is None:
            self.address = str(addr[0])
            counted = self.server.connections_per_address
            counted[self.address] += 1
            if counted[self.address] > self.server.node.settings.max_connections_per_address:
                # One address must not hold every QUIC slot with handshakes of its own.
                _refused.log(
                    self._loop.time(),
                    logging.INFO,
                    "refused a QUIC connection from %s: too many from that address",
                    self.address,
                )
                self._close_quic(0x10B, "too many connections")
                self.lost()
                return
        super().datagram_received(data, addr)
        if self.link is not None:
            self.link.account_acks()

    def quic_event_received(self, event: QuicEvent) -> None:
        for item in self.session.receive(event):
            self._on_input(item)
        if isinstance(event, ConnectionTerminated):
            self.is_quic_closed = True
            self.lost()

    def _on_input(self, item: Input) -> None:
        if isinstance(item, SessionRequest):
            self._on_request(item)
        elif isinstance(item, ControlMessage | FrameMessage):
            if self.link is not None:
                self.link.receive(item.data)
        elif isinstance(item, FrameAbandoned):
            self.server.frames_abandoned += 1
        elif isinstance(item, SessionClosed):
            if item.is_violation:
                _refused.log(
                    self._loop.time(),
                    logging.INFO,
                    "closed a WebTransport session from %s: %s",
                    self.address,
                    item.reason,
                )
            self.lost()

    def _on_request(self, request: SessionRequest) -> None:
        node = self.server.node
        now_s = self._loop.time()
        address = self.address or "unknown"
        path = request.path.partition("?")[0]
        status = 200
        connection = None
        if path != WT_PATH:
            status = 404
        elif self.server.sessions_per_address[address] >= node.settings.max_connections_per_address:
            status = 429
        else:
            # The same allow-list and policy object as /ws (connections.py); None: refused.
            connection = node.connections.open(request.origin, address, now_s)
            if connection is None:
                status = 403
        if connection is None:
            _refused.log(
                now_s,
                logging.INFO,
                "refused a WebTransport session from %s: %d (origin %r, path %r)",
                address,
                status,
                request.origin,
                request.path,
            )
            self.session.refuse(status)
            self._close_later()
            return
        self._handshake_deadline.cancel()
        self.session.accept()
        self.server.sessions_per_address[address] += 1
        self.link = WtLink(self, self.session, node, connection)
        self.link.open()

    def _no_session(self) -> None:
        if self.link is None:
            self._close_quic(0x100, "no session")  # H3_NO_ERROR
            self.lost()

    def transmit_soon(self) -> None:
        self._transmit_soon()  # one transmit per loop turn, however many messages

    def transmit_now(self) -> None:
        self.transmit()  # what is queued leaves now, in packets of its own

    def _close_later(self) -> None:
        self._transmit_soon()
        self._loop.call_later(FLUSH_BEFORE_CLOSE_S, self._close_now)

    def _close_now(self) -> None:
        self._close_quic(0x100, "closed")

    def _close_quic(self, code: int, reason: str) -> None:
        if not self.is_quic_closed:
            self.is_quic_closed = True
            self._quic.close(error_code=code, reason_phrase=reason)
            self._transmit_soon()

    def lost(self) -> None:
        """The session or the connection is over: give back what it held, once."""
        if self.is_lost:
            return
        self.is_lost = True
        self._handshake_deadline.cancel()
        self.server.protocols.discard(self)
        if self.address is not None:
            self.server.connections_per_address[self.address] -= 1
            if self.server.connections_per_address[self.address] <= 0:
                del self.server.connections_per_address[self.address]
        if self.link is not None:
            self.link.lost()
            address = self.address or "unknown"
            self.server.sessions_per_address[address] -= 1
            if self.server.sessions_per_address[address] <= 0:
                del self.server.sessions_per_address[address]
        self._close_later()
