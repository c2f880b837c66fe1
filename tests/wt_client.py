"""A WebTransport client in Python (aioquic), for tests and benchmarks of a node's QUIC
endpoint: it opens a session like a browser (extended CONNECT with an Origin), speaks
``pyodide_client.quic_framing`` (control stream, one stream per frame, answers on their
own streams and small ones also as datagrams, taken once as the page takes them) and can
misbehave where a test needs it (reset a frame, send too much)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DatagramReceived, HeadersReceived, WebTransportStreamDataReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    QuicEvent,
    StopSendingReceived,
    StreamDataReceived,
)

from pyodide_client.quic_framing import WT_PATH, AnswerCopies, ControlReader, frame_control

__all__ = ["WtClient", "open_session"]


class WtClient(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic, enable_webtransport=True)
        self.session_id: int | None = None
        self.status: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.control_id: int | None = None
        self.controls: asyncio.Queue[bytes] = asyncio.Queue()
        self.answers: asyncio.Queue[bytes] = asyncio.Queue()
        self.terminated = asyncio.Event()
        self.session_ended = asyncio.Event()  # the node closed the session (capsule + FIN)
        self.stopped: set[int] = set()  # frame streams the node sent STOP_SENDING for
        self.stop_sending_seen = asyncio.Event()
        self._reader = ControlReader(64 * 1024 * 1024)
        self._answer_parts: dict[int, list[bytes]] = {}
        self.copies = AnswerCopies()  # an answer's datagram and stream copies, taken once
        self.datagram_answers = 0  # answers whose datagram copy came first
        self.stream_answers = 0  # answers whose stream copy came first

    def request(self, authority: str, origin: str | None, path: str = WT_PATH) -> None:
        self.session_id = self._quic.get_next_available_stream_id()
        headers = [
            (b":method", b"CONNECT"),
            (b":protocol", b"webtransport"),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
        ]
        if origin is not None:
            headers.append((b"origin", origin.encode()))
        self.h3.send_headers(self.session_id, headers)
        self.transmit()

    def open_control(self, first: bytes) -> None:
        """The page opens the control stream and speaks first on it."""
        assert self.session_id is not None
        self.control_id = self.h3.create_webtransport_stream(self.session_id)
        self.send_control(first)

    def send_control(self, message: bytes) -> None:
        assert self.control_id is not None
        self._quic.send_stream_data(self.control_id, frame_control(message))
        self.transmit()

    def send_frame(self, message: bytes, end: bool = True) -> int:
        """A frame on a stream of its own; ``end=False`` leaves it uploading."""
        assert self.session_id is not None
        stream_id = self.h3.create_webtransport_stream(self.session_id, is_unidirectional=True)
        self._quic.send_stream_data(stream_id, message, end_stream=end)
        self.transmit()
        return stream_id

    def finish_frame(self, stream_id: int, rest: bytes) -> None:
        self._quic.send_stream_data(stream_id, rest, end_stream=True)
        self.transmit()

    def reset_frame(self, stream_id: int) -> None:
        """Abandon a frame (latest frame wins): RESET_STREAM."""
        self._quic.reset_stream(stream_id, 0)
        self.transmit()

    async def control(self, timeout_s: float = 30.0) -> bytes:
        return await asyncio.wait_for(self.controls.get(), timeout_s)

    async def answer(self, timeout_s: float = 30.0) -> bytes:
        return await asyncio.wait_for(self.answers.get(), timeout_s)

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self.terminated.set()
            if not self.status.done():
                self.status.set_exception(ConnectionError(event.reason_phrase))
            return
        if isinstance(event, StopSendingReceived):
            self.stopped.add(event.stream_id)
            self.stop_sending_seen.set()
        if isinstance(event, StreamDataReceived) and event.stream_id == self.control_id:
            # aioquic's H3 layer does not know a bidirectional stream it opened for
            # WebTransport: the node's answers on it are raw bytes.
            for message in self._reader.feed(event.data):
                self.controls.put_nowait(message)
            return
        for h3_event in self.h3.handle_event(event):
            if isinstance(h3_event, HeadersReceived) and h3_event.stream_id == self.session_id:
                status = int(dict(h3_event.headers)[b":status"])
                if not self.status.done():
                    self.status.set_result(status)
                if h3_event.stream_ended:
                    self.session_ended.set()
            elif isinstance(h3_event, WebTransportStreamDataReceived):
                parts = self._answer_parts.setdefault(h3_event.stream_id, [])
                parts.append(h3_event.data)
                if h3_event.stream_ended:
                    self._answer(b"".join(self._answer_parts.pop(h3_event.stream_id)), False)
            elif isinstance(h3_event, DatagramReceived) and h3_event.stream_id == self.session_id:
                self._answer(h3_event.data, True)
            elif getattr(h3_event, "stream_id", None) == self.session_id and getattr(
                h3_event, "stream_ended", False
            ):
                self.session_ended.set()

    def _answer(self, message: bytes, is_datagram: bool) -> None:
        if not self.copies.is_first(message):
            return
        if is_datagram:
            self.datagram_answers += 1
        else:
            self.stream_answers += 1
        self.answers.put_nowait(message)


@contextlib.asynccontextmanager
async def open_session(
    host: str,
    port: int,
    origin: str | None = "http://127.0.0.1:8000",
    path: str = WT_PATH,
    cadata: bytes | None = None,
) -> AsyncIterator[WtClient]:
    """A QUIC connection with a WebTransport CONNECT sent; await ``client.status``."""
    configuration = QuicConfiguration(
        is_client=True,
        alpn_protocols=H3_ALPN,
        max_datagram_frame_size=65536,
        congestion_control_algorithm="cubic",  # as Chromium's QUIC (aioquic's default: reno)
    )
    configuration.max_stream_data = 8 * 1024 * 1024
    configuration.max_data = 16 * 1024 * 1024
    if cadata is None:
        # The node's hashed, self-signed certificate: a browser pins its hash; this
        # client is told the node is the node.
        configuration.verify_mode = ssl.CERT_NONE
    else:
        configuration.load_verify_locations(cadata=cadata)
    async with connect(
        host, port, configuration=configuration, create_protocol=WtClient, wait_connected=True
    ) as client:
        assert isinstance(client, WtClient)
        client.request(f"{host}:{port}", origin, path)
        yield client
