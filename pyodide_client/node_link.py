"""The page's current node link, sans-I/O: its ``NodeStream``, who answered, and the
messages queued for its socket.

``NodeLink`` holds what belongs to the one node connection the page streams frames on:
the node's URL, name and model once its HELLO came, and the outbox of messages (AUTH,
TRACE) the page sends before its next frame. ``PageCore`` (``page_core.py``) decides
when a link opens, moves or drops; this module only keeps its state consistent.

Also here: how long a frame may wait for its result before the node counts as stalled, and
the one refusal a node sends in place of its HELLO (ERROR OVERLOADED).
"""

from __future__ import annotations

from typing import Any

from .protocol import Error, ErrorCode, ProtocolError, parse
from .stream import NodeStream, StreamState
from .transport import WEBSOCKET

__all__ = [
    "STALL_FACTOR",
    "STALL_MAX_MS",
    "STALL_MIN_MS",
    "NodeLink",
    "overload_refusal",
    "stall_deadline_ms",
]

STALL_MIN_MS = 750.0
STALL_MAX_MS = 3000.0
STALL_FACTOR = 4.0


def stall_deadline_ms(recent_round_trip_p95_ms: float | None) -> float:
    """How long a frame may wait for its result before the node counts as stalled."""
    if recent_round_trip_p95_ms is None or recent_round_trip_p95_ms <= 0:
        return STALL_MAX_MS
    return min(STALL_MAX_MS, max(STALL_MIN_MS, STALL_FACTOR * recent_round_trip_p95_ms))


def overload_refusal(data: bytes | bytearray | memoryview) -> str | None:
    """The message of an ERROR OVERLOADED, else None."""
    try:
        message = parse(data)
    except ProtocolError:
        return None
    if isinstance(message, Error) and message.code is ErrorCode.OVERLOADED:
        return message.message
    return None


class NodeLink:
    """The current node connection; ``stream`` None while the page has none."""

    def __init__(self) -> None:
        self.stream: NodeStream | None = None
        self.url: str | None = None
        self.name: str | None = None
        self.model: str | None = None  # the model name the node announced
        self.outbox: list[bytes] = []  # AUTH and TRACE messages for this link
        self.transport = WEBSOCKET  # or transport.QUIC (issue 16)
        self.opened_ms = 0.0

    @property
    def is_ready(self) -> bool:
        return self.stream is not None and self.stream.state is StreamState.READY

    def open(
        self, url: str, stream: NodeStream, transport: str = WEBSOCKET, now_ms: float = 0.0
    ) -> None:
        """A new connection to ``url`` over ``transport``; the old one, if any, is lost."""
        if self.stream is not None:
            self.stream.connection_lost()
        self.url = url
        self.transport = transport
        self.opened_ms = now_ms
        self.name = self.model = None
        self.outbox.clear()
        self.stream = stream

    def adopt(
        self, url: str, stream: NodeStream, outbox: list[bytes], transport: str = WEBSOCKET
    ) -> None:
        """A joined node becomes the link (make-before-break); the old stream is the
        caller's to drain or leave."""
        self.stream, self.url, self.outbox = stream, url, outbox
        self.transport = transport

    def drop(self) -> None:
        if self.stream is not None:
            self.stream.connection_lost()
        self.outbox.clear()
        self.stream = None
        self.url = None
        self.name = self.model = None

    def with_send(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Adds {"type": "send"} when the stream has messages for the link (AUTH): the page
        then sends what ``take_outgoing`` returns until it returns b""."""
        if self.stream is not None:
            self.outbox.extend(self.stream.data_to_send())
        return [*events, {"type": "send"}] if self.outbox else events

    def is_stalled(self, now_ms: float, deadline_ms: float) -> bool:
        """A ready link whose oldest frame has waited longer than ``deadline_ms``."""
        if self.stream is None or not self.is_ready:
            return False
        oldest = self.stream.oldest_in_flight_ms()
        if oldest is None:
            return False
        return now_ms - oldest > deadline_ms
