"""What the page reports to its Python core, as typed events, and what it gets back.

JavaScript stays the hands: it owns the sockets, the camera, the local worker and the
timer, and reports what happens as one of these events; ``browser.BrowserClient.handle``
is the one event-driven entry point that answers each with commands and the time at which
it next wants a ``TimerFired``. The per-event methods JavaScript calls today
(``on_message``, ``on_close``, ``tick``, ...) build these events and go through the same
dispatcher, so both ways in share one core.

A command is a dict: ``{"do": ...}`` is an action (as ``tick`` returns: connect, join,
leave, abandon, probe, ping, fetch_token; and here also ``probe_send``/``probe_close``
for a probe socket and ``frame`` for where a grabbed frame goes), ``{"type": ...}`` an
event for the page to show (as ``on_message`` returns: ready, detections, refused, send,
...). Payload bytes stay bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "Buffer",
    "FrameGrabbed",
    "NodeList",
    "PageEvent",
    "ProbeFailed",
    "ProbeMessage",
    "Reply",
    "SocketClosed",
    "SocketMessage",
    "SocketOpened",
    "TimerFired",
    "TokenFetched",
    "WorkerResult",
    "as_bytes",
]


class _JsBuffer(Protocol):
    def to_bytes(self) -> bytes: ...


Buffer = bytes | bytearray | memoryview | _JsBuffer


def as_bytes(data: Buffer) -> bytes | bytearray | memoryview:
    if isinstance(data, bytes | bytearray | memoryview):
        return data
    return data.to_bytes()  # a Pyodide JsBuffer (Uint8Array, ...): one copy


@dataclass(frozen=True)
class SocketOpened:
    """The node socket for ``url`` opened (the node speaks first: its HELLO)."""

    url: str


@dataclass(frozen=True)
class SocketClosed:
    """The node socket for ``url`` closed or failed to open, with its close code."""

    url: str
    code: int


@dataclass(frozen=True)
class SocketMessage:
    """One message from the node at ``url``."""

    url: str
    data: Buffer


@dataclass(frozen=True)
class ProbeMessage:
    """One message on the probe socket for ``url``."""

    url: str
    data: Buffer


@dataclass(frozen=True)
class ProbeFailed:
    """The probe socket for ``url`` failed or closed before its PONG."""

    url: str


@dataclass(frozen=True)
class FrameGrabbed:
    """The camera (or file) has a new frame: where does it go?"""

    width_px: int
    height_px: int
    capture_ms: float


@dataclass(frozen=True)
class WorkerResult:
    """The local worker's output for ``frame_id``."""

    frame_id: int
    boxes: Buffer
    scores: Buffer
    inference_ms: float


@dataclass(frozen=True)
class TimerFired:
    """The time the last reply asked for (``Reply.next_tick_ms``) has come."""


@dataclass(frozen=True)
class TokenFetched:
    """The answer to a ``fetch_token`` action; status 0: the request failed."""

    status: int
    body: str


@dataclass(frozen=True)
class NodeList:
    """The registry's list (``GET /api/nodes``), as its JSON text."""

    nodes_json: str


PageEvent = (
    SocketOpened
    | SocketClosed
    | SocketMessage
    | ProbeMessage
    | ProbeFailed
    | FrameGrabbed
    | WorkerResult
    | TimerFired
    | TokenFetched
    | NodeList
)


@dataclass(frozen=True)
class Reply:
    """What the page does about an event, in order, and when to fire the timer next."""

    commands: tuple[dict[str, Any], ...]
    next_tick_ms: float
