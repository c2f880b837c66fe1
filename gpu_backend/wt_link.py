"""A WebTransport session's ``connection.Connection`` and the node (issue 16): what
``endpoint._Link`` is for a WebSocket. It runs the connection's actions (send on the
session, submit a frame to the batcher after decoding an IMAGE off the loop, close), arms
the connection's deadline, and reports answers as sent once the page acknowledges them.
The QUIC side (``wt_server``) feeds it the session's messages."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

from pyodide_client.quic_framing import rides_own_stream

from .connection import Action, Close, Send, Submit, TraceNext
from .connections import NodeConnection
from .stream_frames import StreamFrames
from .wt_session import WtSession

if TYPE_CHECKING:
    from .batcher import Outcome
    from .node import Node

__all__ = ["SessionDriver", "WtLink"]


class SessionDriver(Protocol):
    """What a link needs of the QUIC connection under it (``wt_server``)."""

    def transmit_soon(self) -> None: ...
    def transmit_now(self) -> None: ...
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
        self.frames = StreamFrames(node, self.stream, self._outcome, lambda: self.is_closed)
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
                if self.session.send_datagram_copy(action.data):
                    self.protocol.transmit_now()  # its own packet, ahead of the stream's
                self.session.send(action.data)
                if not rides_own_stream(action.data):
                    # Control messages count as sent once QUIC has them (they are few and
                    # small, and the message rate is bounded); answers when acknowledged.
                    self.conn.sent(len(action.data))
                self.node.connections.note_outbox(self.conn.queued_bytes)
                self.protocol.transmit_soon()
            elif isinstance(action, Submit):
                self.frames.submit(action)
            elif isinstance(action, TraceNext):
                self.frames.expect_trace(action)
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

    def _outcome(self, outcome: Outcome) -> None:
        if not self.is_closed:
            self.execute(self.conn.outcome(outcome, self.loop.time()))

    def lost(self) -> None:
        if self.is_closed:
            return
        self.is_closed = True
        if self._timer is not None:
            self._timer.cancel()
        self.frames.forget()
        self.node.connections.closed(self.conn, self.stream, self.loop.time())
