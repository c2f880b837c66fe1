"""Planned moves between nodes, make before break, sans-I/O (issue 10).

When the router decides to move, the page keeps streaming to its node while the new one
connects (the *joining* stream); the new node's HELLO makes it current, and the old one,
now *draining*, answers the frames it still holds before the page leaves it. A joining
node that refuses, breaks the protocol, closes or stays silent costs nothing: the page
never left its node. ``Handover`` keeps these streams; ``PageCore`` tells the router
and the page what happened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .protocol import Error, ErrorCode, ProtocolError, parse
from .stream import AccessRefused, Detections, Event, NodeStream, StreamError, StreamState

__all__ = ["Failed", "Handover", "Joined", "Joining", "Waiting"]


@dataclass
class Joining:
    """The node a planned move goes to, connecting while the current one streams on."""

    url: str
    stream: NodeStream
    outbox: list[bytes] = field(default_factory=list)  # its AUTH, for its own link
    transport: str = "WebSocket"  # transport.QUIC or WEBSOCKET (issue 16)


@dataclass(frozen=True)
class Failed:
    """The joining node cannot be used: leave its socket, count a failure."""

    is_overloaded: bool


@dataclass(frozen=True)
class Waiting:
    """Not ready yet; ``has_outgoing``: messages wait in its outbox (its AUTH)."""

    has_outgoing: bool


@dataclass(frozen=True)
class Joined:
    """The HELLO came: ``joining`` is the page's node now; ``events`` are its stream's."""

    joining: Joining
    events: list[Event]


def _is_overload_refusal(data: bytes | bytearray | memoryview) -> bool:
    """A node at capacity sends ERROR OVERLOADED in place of its HELLO."""
    try:
        message = parse(data)
    except ProtocolError:
        return False
    return isinstance(message, Error) and message.code is ErrorCode.OVERLOADED


class Handover:
    def __init__(self) -> None:
        self.joining: Joining | None = None
        self.draining: dict[str, NodeStream] = {}  # old nodes answering their last frames

    def begin(self, url: str, stream: NodeStream, transport: str = "WebSocket") -> None:
        self.joining = Joining(url, stream, transport=transport)

    def is_joining(self, url: str) -> bool:
        return self.joining is not None and self.joining.url == url

    def streams(self) -> list[NodeStream]:
        return list(self.draining.values())

    def outbox(self, url: str) -> list[bytes] | None:
        return self.joining.outbox if self.joining and self.joining.url == url else None

    def expire(self, pending_url: str | None, now_ms: float, stall_ms: float) -> list[str]:
        """URLs to leave now: a joining node the router gave up on (no HELLO in time),
        and draining nodes whose last frames are answered or overdue."""
        leave = []
        if self.joining is not None and self.joining.url != pending_url:
            leave.append(self.joining.url)
            self.joining = None
        for url, stream in list(self.draining.items()):
            oldest = stream.oldest_in_flight_ms()
            if oldest is None or now_ms - oldest > stall_ms:
                del self.draining[url]
                stream.connection_lost()
                leave.append(url)
        return leave

    def on_joining_data(
        self, data: bytes | bytearray | memoryview, now_ms: float
    ) -> Failed | Waiting | Joined:
        joining = self.joining
        assert joining is not None, "on_joining_data without a joining node"
        refused = joining.stream.state is not StreamState.READY and _is_overload_refusal(data)
        try:
            if refused:
                raise StreamError("the node is at capacity")
            events = joining.stream.receive(data, now_ms)
        except StreamError:
            self.joining = None
            return Failed(is_overloaded=refused)
        joining.outbox.extend(joining.stream.data_to_send())
        if joining.stream.state is StreamState.READY:
            self.joining = None
            return Joined(joining, events)
        if any(isinstance(event, AccessRefused) for event in events):
            self.joining = None
            return Failed(is_overloaded=False)
        return Waiting(has_outgoing=bool(joining.outbox))

    def drain(self, url: str, stream: NodeStream) -> bool:
        """The page moved off ``stream``: keep it while it holds frames. False: it holds
        none, leave it now."""
        if stream.in_flight:
            self.draining[url] = stream
            return True
        stream.connection_lost()
        return False

    def on_draining_data(
        self,
        url: str,
        data: bytes | bytearray | memoryview,
        now_ms: float,
        on_result: Callable[[Detections], None],
    ) -> bool:
        """A message from a draining node: its results go to ``on_result``. True when
        it has answered everything (leave it now)."""
        stream = self.draining[url]
        try:
            events = stream.receive(data, now_ms)
        except StreamError:
            events = []
            stream.connection_lost()
        for event in events:
            if isinstance(event, Detections):
                on_result(event)
        if stream.in_flight and stream.state is not StreamState.CLOSED:
            return False
        del self.draining[url]
        stream.connection_lost()
        return True

    def closed(self, url: str) -> str | None:
        """A socket closed: "joining" (the move failed), "draining", or None (not ours)."""
        if self.is_joining(url):
            self.joining = None
            return "joining"
        stream = self.draining.pop(url, None)
        if stream is not None:
            stream.connection_lost()
            return "draining"
        return None
