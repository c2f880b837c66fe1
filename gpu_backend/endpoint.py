"""The inference WebSocket endpoint: the thin driver between a socket and a node's
sans-I/O policy objects.

Every decision is made elsewhere, without a socket: who may open a socket (the page's
Origin) and the policy each accepted socket gets are ``connections.Connections``'s; HELLO
first, AUTH, stream slots, in-flight window, error budget, deadlines and the bounded outbox
are the per-connection ``connection.Connection``'s; the frame-shape check is
``frame_input``'s; the order and fairness of IMAGE decodes are ``decode_queue``'s; metrics
are reported by the connection to its observer. This module moves bytes in and out, runs
the connection's actions (send, submit a frame to the batcher or to the decode queue,
close) and tells it the time at its deadlines. One sender task writes everything, so
results, drops, errors and pongs never interleave. Messages larger than the configured
limit close the connection with 1009 (the server's WebSocket layer enforces it, see
``edgesight.serving``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import deque
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from pyodide_client.protocol import Frame, Image, ProtocolError

from .connection import CLOSE_POLICY, Action, Close, Send, Submit, TraceNext
from .connections import NodeConnection
from .decode import DecodedImage
from .frame_input import frame_input
from .log_sampler import LogSampler

if TYPE_CHECKING:
    from .batcher import Outcome
    from .engine import UInt8Array
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
        self.is_stream_open = False  # known to the batcher
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
            self.node.decode_queue.forget(self.stream)
            if self.is_stream_open:
                self.node.batcher.close_stream(self.stream)
            if self.node.tracer is not None:
                self.node.tracer.forget(self.stream)
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
                if isinstance(action.image, Image):
                    decoded = functools.partial(self._decoded, action.image)
                    self.node.decode_queue.submit(self.stream, action.image, decoded)
                else:
                    self._submit(action.frame, action.image)
            elif isinstance(action, TraceNext):
                if self.node.tracer is not None:  # without a collector, TRACE costs nothing
                    self.node.tracer.expect(self.stream, action.trace)
            else:
                self.close = action
                wait = self._receive_wait
                if wait is not None and not wait.expired():  # stop waiting for the client
                    wait.reschedule(self.loop.time())

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
        if self.close is not None:
            return
        if isinstance(decoded, ProtocolError):  # corrupt, a wrong size, a bomb: this frame
            self.execute(self.conn.outcome(decoded.to_error(), self.loop.time()))
            return
        self._submit(image, decoded.tensor, decoded.decode_ms)

    def _deliver(self, future: asyncio.Future[Outcome]) -> None:
        if not future.cancelled():
            self.execute(self.conn.outcome(future.result(), self.loop.time()))

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
