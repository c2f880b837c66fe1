"""A WebTransport session's ``connection.Connection`` and the node (issue 16): what
``endpoint._Link`` is for a WebSocket. It runs the connection's actions (send on the
session, submit a frame to the batcher after decoding an IMAGE off the loop, close), arms
the connection's deadline, and reports answers as sent once the page acknowledges them.
The QUIC side (``wt_server``) feeds it the session's messages."""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any, Protocol

from pyodide_client.protocol import Frame, Image, ProtocolError
from pyodide_client.quic_framing import rides_own_stream

from .connection import Action, Close, Send, Submit, TraceNext
from .connections import NodeConnection
from .wt_session import WtSession

if TYPE_CHECKING:
    from .batcher import Outcome
    from .decode import DecodedImage
    from .engine import UInt8Array
    from .node import Node

__all__ = ["SessionDriver", "WtLink"]


class SessionDriver(Protocol):
    """What a link needs of the QUIC connection under it (``wt_server``)."""

    def transmit_soon(self) -> None: ...
    def lost(self) -> None: ...


class WtLink:
    """A session's ``Connection`` and the node: what ``endpoint._Link`` is for a socket."""

    def __init__(
        self, driver: SessionDriver, session: WtSession, node: Node, connection: NodeConnection
    ) -> None:
        self.protocol = driver
        self.session = session
        self.node = node
        self.conn = connection
        self.stream = node.connections.next_stream_id()
        self.loop = asyncio.get_running_loop()
        self.is_stream_open = False
        self.is_closed = False
        self._timer: asyncio.TimerHandle | None = None

    def open(self) -> None:
        self.node.connections.add(self.conn)
        self.execute(self.conn.open(self.loop.time()))

    def receive(self, data: bytes) -> None:
        self.execute(self.conn.receive(data, self.loop.time()))

    def account_acks(self) -> None:
        acked = self.session.acked_answer_bytes()
        if acked:
            self.conn.sent(acked)

    # -- actions -------------------------------------------------------------------------
    def execute(self, actions: list[Action[Any]]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self.session.send(action.data)
                if not rides_own_stream(action.data):
                    # Control messages count as sent once QUIC has them (they are few and
                    # small, and the message rate is bounded); answers when acknowledged.
                    self.conn.sent(len(action.data))
                self.node.connections.note_outbox(self.conn.queued_bytes)
                self.protocol.transmit_soon()
            elif isinstance(action, Submit):
                if isinstance(action.image, Image):
                    decoded = functools.partial(self._decoded, action.image)
                    self.node.decode_queue.submit(self.stream, action.image, decoded)
                else:
                    self._submit(action.frame, action.image)
            elif isinstance(action, TraceNext):
                if self.node.tracer is not None:
                    self.node.tracer.expect(self.stream, action.trace)
            else:
                self._close(action)
        self._arm_timer()

    def _close(self, close: Close) -> None:
        self.session.close(close.code, close.reason)
        self.protocol.lost()

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline_s = self.conn.next_deadline_s
        if deadline_s is not None and not self.is_closed:
            self._timer = self.loop.call_at(deadline_s, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.execute(self.conn.timer(self.loop.time()))

    def _submit(
        self, frame: Frame | Image, image: UInt8Array, decode_ms: float | None = None
    ) -> None:
        if not self.is_stream_open:
            self.node.batcher.open_stream(self.stream)
            self.is_stream_open = True
        future = self.node.batcher.submit(self.stream, frame, image, decode_ms)
        future.add_done_callback(self._deliver)

    def _decoded(self, image: Image, decoded: DecodedImage | ProtocolError) -> None:
        """An IMAGE's decode is done (the queue calls back in the connection's order)."""
        if self.is_closed:
            return
        if isinstance(decoded, ProtocolError):  # corrupt, a wrong size, a bomb: this frame
            self.execute(self.conn.outcome(decoded.to_error(), self.loop.time()))
            return
        self._submit(image, decoded.tensor, decoded.decode_ms)

    def _deliver(self, future: asyncio.Future[Outcome]) -> None:
        if not future.cancelled() and not self.is_closed:
            self.execute(self.conn.outcome(future.result(), self.loop.time()))

    def lost(self) -> None:
        if self.is_closed:
            return
        self.is_closed = True
        if self._timer is not None:
            self._timer.cancel()
        self.node.decode_queue.forget(self.stream)
        if self.is_stream_open:
            self.node.batcher.close_stream(self.stream)
        if self.node.tracer is not None:
            self.node.tracer.forget(self.stream)
        self.node.connections.closed(self.conn, self.stream, self.loop.time())
