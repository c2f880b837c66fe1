"""The inference WebSocket endpoint: the thin driver between a socket and a node's
sans-I/O policy objects.

Every decision is made elsewhere, without a socket: who may open a socket (the page's
Origin) and the policy each accepted socket gets are ``connections.Connections``'s; HELLO
first, AUTH, stream slots, in-flight window, error budget, deadlines and the bounded outbox
are the per-connection ``connection.Connection``'s; the frame-shape check is
``frame_input``'s; the order and fairness of IMAGE decodes are ``decode_queue``'s; metrics
are reported by the connection to its observer. This module moves bytes in and out, runs
the connection's actions (send; submit a frame to the batcher or to the decode queue,
through ``stream_frames``, which the WebTransport link shares; close) and tells it the time
at its deadlines. One sender task writes everything, so results, drops, errors and pongs
never interleave. Messages larger than the configured limit close the connection with 1009
(the server's WebSocket layer enforces it, see ``edgesight.serving``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from .connection import CLOSE_POLICY, Action, Close, Send, Submit, TraceNext
from .connections import NodeConnection
from .frame_input import frame_input
from .log_sampler import LogSampler
from .stream_frames import StreamFrames

if TYPE_CHECKING:
    from .batcher import Outcome
    from .node import Node

# frame_image and LogSampler: their old home, kept importable
__all__ = ["LogSampler", "frame_image", "inference_endpoint"]

frame_image = frame_input

# How long a closing connection may take to write what it still has queued (its last
# ERROR) before the close frame goes out regardless.
FLUSH_BEFORE_CLOSE_S = 1.0
_SEND_ERRORS = (WebSocketDisconnect, RuntimeError, OSError)


async def inference_endpoint(websocket: WebSocket) -> None:
    node: Node = websocket.app.state.node
    address = websocket.client.host if websocket.client else "unknown"
    now_s = asyncio.get_running_loop().time()
    connection = node.connections.open(websocket.headers.get("origin"), address, now_s)
    if connection is None:
        await websocket.close(CLOSE_POLICY)  # before accept(): the handshake answers 403
        return
    await websocket.accept()
    await _Link(websocket, node, connection).run()


class _Link:
    """One accepted socket and its connection: runs until either side closes."""

    def __init__(self, websocket: WebSocket, node: Node, connection: NodeConnection) -> None:
        self.websocket = websocket
        self.node = node
        self.conn = connection
        self.stream = node.connections.next_stream_id()
        self.loop = asyncio.get_running_loop()
        self.outbox: deque[bytes] = deque()
        # Started when there is something to send and gone when the outbox is empty: an
        # idle socket (1000 of them in bench/attacks.py) holds no task for it.
        self.sender: asyncio.Task[None] | None = None
        self.close: Close | None = None
        self.frames = StreamFrames(node, self.stream, self._outcome, lambda: self.close is not None)
        # The connection's clock is the loop's (time.monotonic): its deadlines are too.
        self._receive_wait: asyncio.Timeout | None = None

    async def run(self) -> None:
        self.node.connections.add(self.conn)
        self.execute(self.conn.open(self.loop.time()))
        try:
            await self._receive_until_closed()
            if self.close is not None:
                await self._close_socket(self.close)
        finally:
            self.frames.forget()
            await self._stop_sender()
            self.node.connections.closed(self.conn, self.stream, self.loop.time())

    # -- actions -------------------------------------------------------------------------
    def execute(self, actions: list[Action[Any]]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self.outbox.append(action.data)
                if self.sender is None and self.close is None:
                    self.sender = self.loop.create_task(self._send_all())
            elif isinstance(action, Submit):
                self.frames.submit(action)
            elif isinstance(action, TraceNext):
                self.frames.expect_trace(action)
            else:
                self.close = action
                wait = self._receive_wait
                if wait is not None and not wait.expired():  # stop waiting for the client
                    wait.reschedule(self.loop.time())

    def _outcome(self, outcome: Outcome) -> None:
        self.execute(self.conn.outcome(outcome, self.loop.time()))

    # -- bytes in ------------------------------------------------------------------------
    async def _receive_until_closed(self) -> None:
        while self.close is None:
            message: MutableMapping[str, Any] | None = None
            try:
                async with asyncio.timeout_at(self.conn.next_deadline_s) as wait:
                    self._receive_wait = wait
                    message = await self.websocket.receive()
            except TimeoutError:
                pass  # a deadline, or a close that cut the wait short
            finally:
                self._receive_wait = None
            if message is None:
                self.execute(self.conn.timer(self.loop.time()))
                continue
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            now_s = self.loop.time()
            if data is None:
                self.execute(self.conn.receive_text(now_s))
            else:
                self.execute(self.conn.receive(data, now_s))

    # -- bytes out -----------------------------------------------------------------------
    async def _send_all(self) -> None:
        try:
            while self.outbox:
                data = self.outbox.popleft()
                try:
                    await self.websocket.send_bytes(data)
                except _SEND_ERRORS:
                    self.outbox.clear()  # the client went away; the receive loop sees it
                    return
                self.conn.sent(len(data))
        finally:
            self.sender = None

    async def _stop_sender(self) -> None:
        sender = self.sender
        if sender is not None:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _close_socket(self, close: Close) -> None:
        sender = self.sender
        if sender is not None and close.is_flush_first:  # bounded: never wait for ever
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FLUSH_BEFORE_CLOSE_S):
                    await asyncio.shield(sender)
        await self._stop_sender()
        with contextlib.suppress(*_SEND_ERRORS):
            await self.websocket.close(close.code, close.reason)
