"""The page core's typed events, and what it gets back.

These are the page's reports as the page core (``page_core.PageCore``) takes them: a
socket's message or close (by the core's key for the node), a probe's message or
failure, the timer, a token answer, the node list, the local worker's output.
``PageCore.dispatch`` answers each with commands; ``PageCore.handle_event`` also runs the
routing decision again when the event calls for it, and says when it next wants a
``TimerFired``. The JSON edge JavaScript calls (``page_edge.py``) builds these events from
its own (docs/page-core.md), which name sockets by id.

A command is a dict: ``{"do": ...}`` is an action (connect, switch, join, leave, abandon,
probe, ping, fetch_token, upgrade, leave_upgrade; and ``probe_send``/``probe_close`` for a
probe socket, ``frame`` for where a grabbed frame goes), ``{"type": ...}`` a node event
(ready, detections, refused, send, promote, leave, ...). Payload bytes stay bytes.
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
