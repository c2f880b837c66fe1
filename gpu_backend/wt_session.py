"""One WebTransport session on a QUIC connection, sans-I/O (issue 16): QUIC events in,
protocol messages out; protocol messages in, stream writes out.

aioquic's ``QuicConnection`` and ``H3Connection`` do no I/O either; this object sits on
them and speaks ``pyodide_client.quic_framing``: it answers the extended CONNECT (after
the driver checked its ``:path`` and ``Origin``), cuts the control stream into messages,
assembles each frame stream until its FIN, forgets a frame stream the page resets (or
that a newer frame makes one too many), and writes messages back on the control stream
or on a stream of their own. What the messages mean is ``connection.Connection``'s
business, exactly as for a WebSocket; the driver (``wt_server``) joins the two.

    AWAITING_CONNECT --CONNECT accepted--> OPEN --either side closes--> CLOSED

Bounds: one session per QUIC connection (another CONNECT gets 429), one control stream,
control messages and frames of at most ``max_message_bytes``, at most
``max_frame_streams`` frames uploading at once (a newer one makes the node stop the
oldest: latest frame wins, also across the wire). QUIC's own flow control (``max_data``,
``max_stream_data``, 128 streams of each kind at a time) bounds what a peer may send
ahead; datagrams are refused by size at the QUIC layer and ignored here.

Answers small enough also go as a datagram (``send_datagram_copy``, when the page's QUIC
stack takes datagrams that large and ``WtLimits.answer_datagrams``): see quic_framing.
"""

from __future__ import annotations

import enum
import logging
from collections import OrderedDict
from dataclasses import dataclass

from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import H3Connection
from aioquic.h3.events import (
    DatagramReceived,
    DataReceived,
    H3Event,
    HeadersReceived,
    WebTransportStreamDataReceived,
)
from aioquic.quic.connection import QuicConnection, stream_is_unidirectional
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamReset

from pyodide_client.quic_framing import (
    ControlReader,
    FrameAssembler,
    FramingError,
    frame_control,
    has_datagram_copy,
    rides_own_stream,
)

__all__ = [
    "CLOSE_SESSION_CAPSULE",
    "ControlMessage",
    "FrameAbandoned",
    "FrameMessage",
    "Input",
    "SessionClosed",
    "SessionRequest",
    "SessionState",
    "WtLimits",
    "WtSession",
]

log = logging.getLogger(__name__)

# draft-ietf-webtrans-http3: CLOSE_WEBTRANSPORT_SESSION capsule type, and the application
# error code a node uses to stop or reset a stream it no longer wants (a superseded frame).
CLOSE_SESSION_CAPSULE = 0x2843
STREAM_SUPERSEDED = 0x10
STREAM_TOO_BIG = 0x11
_MAX_REASON_BYTES = 1024  # the draft's limit on a close reason
_QUARTER_ID_BYTES = 8  # an HTTP/3 datagram's quarter stream id, at most (a QUIC varint)


class SessionState(enum.Enum):
    AWAITING_CONNECT = "awaiting connect"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True)
class WtLimits:
    max_message_bytes: int = 4 * 1024 * 1024
    max_frame_streams: int = 4  # frames uploading at once; more stop the oldest
    answer_datagrams: bool = True  # small answers also as a datagram (quic_framing)


@dataclass(frozen=True)
class SessionRequest:
    """An extended CONNECT for WebTransport: the driver checks it, then ``accept`` or
    ``refuse``."""

    path: str
    origin: str | None
    authority: str


@dataclass(frozen=True)
class ControlMessage:
    data: bytes


@dataclass(frozen=True)
class FrameMessage:
    """A frame stream's whole message (its FIN arrived)."""

    stream_id: int
    data: bytes


@dataclass(frozen=True)
class FrameAbandoned:
    """A frame stream that ended without its FIN: reset by the page, or stopped by the node
    because newer frames came. What arrived of it is gone; it never reaches the policy."""

    stream_id: int
    by_peer: bool


@dataclass(frozen=True)
class SessionClosed:
    reason: str
    is_violation: bool = False  # the peer broke the framing or the bounds


Input = SessionRequest | ControlMessage | FrameMessage | FrameAbandoned | SessionClosed


class WtSession:
    def __init__(self, quic: QuicConnection, limits: WtLimits) -> None:
        self.quic = quic
        self.h3 = H3Connection(quic, enable_webtransport=True)
        self.limits = limits
        self.state = SessionState.AWAITING_CONNECT
        self.session_id: int | None = None  # the CONNECT stream
        self.control_stream_id: int | None = None
        self.frames_abandoned = 0
        self.datagram_copies = 0  # answers also sent as a datagram
        self._control = ControlReader(limits.max_message_bytes)
        self._pending_control: list[bytes] = []  # written once the page opens its stream
        self._frames: OrderedDict[int, FrameAssembler] = OrderedDict()  # oldest first
        self._ignored: set[int] = set()  # frame streams already abandoned
        self._answers: dict[int, int] = {}  # answer stream -> message bytes, until acked

    @property
    def is_closed(self) -> bool:
        return self.state is SessionState.CLOSED

    # -- QUIC events in ------------------------------------------------------------------
    def receive(self, event: QuicEvent) -> list[Input]:
        if isinstance(event, ConnectionTerminated):
            return [self._closed(f"QUIC connection closed ({event.reason_phrase or 'no reason'})")]
        if self.state is SessionState.CLOSED:
            return []
        inputs: list[Input] = []
        if isinstance(event, StreamReset):
            inputs.extend(self._on_reset(event.stream_id))
        try:
            for h3_event in self.h3.handle_event(event):
                inputs.extend(self._on_h3(h3_event))
                if self.is_closed:
                    break
        except FramingError as exc:
            self.close(1008, "framing")
            self.quic.close(error_code=0x101, reason_phrase="framing")  # H3_GENERAL_PROTOCOL_ERROR
            return [*inputs, SessionClosed(str(exc), is_violation=True)]
        return inputs

    def _on_h3(self, event: H3Event) -> list[Input]:
        if isinstance(event, HeadersReceived):
            return self._on_headers(event)
        if isinstance(event, WebTransportStreamDataReceived):
            if event.session_id != self.session_id or self.state is not SessionState.OPEN:
                self._stop(event.stream_id, STREAM_SUPERSEDED)
                return []
            if stream_is_unidirectional(event.stream_id):
                return self._on_frame_data(event.stream_id, event.data, event.stream_ended)
            return self._on_control_data(event.stream_id, event.data, event.stream_ended)
        if isinstance(event, DataReceived) and event.stream_id == self.session_id:
            # Capsules on the CONNECT stream: only CLOSE_WEBTRANSPORT_SESSION matters, and
            # the stream's end closes the session whatever came before it.
            if event.stream_ended:
                return [self._closed("the page closed the session")]
            return []
        if isinstance(event, DatagramReceived):
            return []  # the protocol sends nothing unreliable to a node
        return []

    def _on_headers(self, event: HeadersReceived) -> list[Input]:
        headers = dict(event.headers)
        method = headers.get(b":method")
        protocol = headers.get(b":protocol")
        if method != b"CONNECT" or protocol != b"webtransport":
            self._respond(event.stream_id, 404, end=True)
            return []
        if self.session_id is not None:
            self._respond(event.stream_id, 429, end=True)  # one session per connection
            return []
        self.session_id = event.stream_id
        origin = headers.get(b"origin")
        return [
            SessionRequest(
                path=headers.get(b":path", b"").decode("utf-8", "replace"),
                origin=None if origin is None else origin.decode("utf-8", "replace"),
                authority=headers.get(b":authority", b"").decode("utf-8", "replace"),
            )
        ]

    def _on_control_data(self, stream_id: int, data: bytes, is_end: bool) -> list[Input]:
        if self.control_stream_id is None:
            self.control_stream_id = stream_id
            for message in self._pending_control:
                self.quic.send_stream_data(stream_id, frame_control(message))
            self._pending_control = []
        elif stream_id != self.control_stream_id:
            raise FramingError(
                f"expected one bidirectional (control) stream per session, got a second: "
                f"{stream_id}"
            )
        inputs: list[Input] = [ControlMessage(m) for m in self._control.feed(data)]
        if is_end:
            self._control.finish()
            inputs.append(self._closed("the page ended its control stream"))
        return inputs

    def _on_frame_data(self, stream_id: int, data: bytes, is_end: bool) -> list[Input]:
        if stream_id in self._ignored:
            if is_end:
                self._ignored.discard(stream_id)
            return []
        assembler = self._frames.get(stream_id)
        inputs: list[Input] = []
        if assembler is None:
            assembler = FrameAssembler(self.limits.max_message_bytes)
            self._frames[stream_id] = assembler
            while len(self._frames) > self.limits.max_frame_streams:
                oldest = next(iter(self._frames))
                inputs.append(self._abandon(oldest, by_peer=False))
                self._stop(oldest, STREAM_SUPERSEDED)
        try:
            message = assembler.feed(data, is_end)
        except FramingError:
            del self._frames[stream_id]
            self._stop(stream_id, STREAM_TOO_BIG)
            raise
        if message is not None:
            del self._frames[stream_id]
            inputs.append(FrameMessage(stream_id, message))
        return inputs

    def _on_reset(self, stream_id: int) -> list[Input]:
        if stream_id in self._frames:
            return [self._abandon(stream_id, by_peer=True)]
        self._ignored.discard(stream_id)
        if stream_id == self.control_stream_id:
            return [self._closed("the page reset its control stream")]
        return []

    def _abandon(self, stream_id: int, by_peer: bool) -> FrameAbandoned:
        del self._frames[stream_id]
        if not by_peer:
            self._ignored.add(stream_id)
        self.frames_abandoned += 1
        return FrameAbandoned(stream_id, by_peer)

    # -- decisions from the driver -------------------------------------------------------
    def accept(self) -> None:
        assert self.session_id is not None, "accept() before a CONNECT"
        self.state = SessionState.OPEN
        self._respond(self.session_id, 200, end=False)

    def refuse(self, status: int) -> None:
        assert self.session_id is not None, "refuse() before a CONNECT"
        self._respond(self.session_id, status, end=True)
        self.state = SessionState.CLOSED

    # -- messages out --------------------------------------------------------------------
    def send(self, message: bytes) -> None:
        """A frame's answer on a stream of its own, anything else on the control stream
        (held until the page opens it: the page speaks first on QUIC, see quic_framing)."""
        if self.state is not SessionState.OPEN or self.session_id is None:
            return
        if rides_own_stream(message):
            stream_id = self.h3.create_webtransport_stream(self.session_id, is_unidirectional=True)
            self.quic.send_stream_data(stream_id, message, end_stream=True)
            self._answers[stream_id] = len(message)
        elif self.control_stream_id is None:
            self._pending_control.append(message)
        else:
            self.quic.send_stream_data(self.control_stream_id, frame_control(message))

    def send_datagram_copy(self, message: bytes) -> bool:
        """An answer's unreliable copy, as an HTTP/3 datagram, when it fits and the page's
        QUIC stack takes datagrams that large: True when it was queued. The caller flushes
        it into a packet of its own before ``send`` (one lost packet then takes only one
        of the two copies)."""
        if (
            not self.limits.answer_datagrams
            or self.state is not SessionState.OPEN
            or self.session_id is None
            or not has_datagram_copy(message)
        ):
            return False
        remote_max = self.quic._remote_max_datagram_frame_size  # no public view of it
        if remote_max is None or remote_max < len(message) + _QUARTER_ID_BYTES:
            return False
        self.h3.send_datagram(self.session_id, message)
        self.datagram_copies += 1
        return True

    def acked_answer_bytes(self) -> int:
        """Bytes of answers the page has acknowledged since the last call: an answer
        counts as unsent (the connection's outbox) until then, so a page that stops
        reading is a slow reader here too."""
        done = 0
        for stream_id, size in list(self._answers.items()):
            # aioquic keeps a stream until both of its halves are finished, and a sending
            # half finishes when its FIN is acknowledged (or it was reset).
            stream = self.quic._streams.get(stream_id)  # no public view of it
            if stream is None or stream.sender.is_finished:
                done += size
                del self._answers[stream_id]
        return done

    @property
    def unacked_answers(self) -> int:
        return len(self._answers)

    def close(self, code: int, reason: str) -> None:
        """Close the session with a code (the WebSocket close code the same policy would
        use) and a reason. The QUIC connection stays up for the capsule (and a last ERROR)
        to arrive: the driver ends it (``quic.close``) when the page does not."""
        if self.state is SessionState.CLOSED:
            return
        self.state = SessionState.CLOSED
        if self.session_id is not None:
            why = reason.encode()[:_MAX_REASON_BYTES]
            body = code.to_bytes(4, "big") + why
            capsule = encode_uint_var(CLOSE_SESSION_CAPSULE) + encode_uint_var(len(body)) + body
            self.quic.send_stream_data(self.session_id, capsule, end_stream=True)

    # -- internals -----------------------------------------------------------------------
    def _respond(self, stream_id: int, status: int, end: bool) -> None:
        headers = [(b":status", str(status).encode())]
        if status == 200:
            headers.append((b"sec-webtransport-http3-draft", b"draft02"))
        self.h3.send_headers(stream_id, headers, end_stream=end)

    def _stop(self, stream_id: int, code: int) -> None:
        # STOP_SENDING: the page's stack answers with RESET_STREAM and stops retransmitting.
        # The QUIC layer refuses streams it no longer knows; those need nothing.
        if stream_id in self.quic._streams:
            self.quic.stop_stream(stream_id, code)

    def _closed(self, reason: str) -> SessionClosed:
        self.state = SessionState.CLOSED
        self._frames.clear()
        return SessionClosed(reason)
