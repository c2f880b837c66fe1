"""The inference WebSocket endpoint: glue between a socket and a ``connection.Connection``.

All policy (HELLO first, AUTH, stream slots, in-flight window, error budget, deadlines,
bounded outbox) is in the sans-I/O ``Connection``; this module only checks the page's
Origin at the handshake, moves bytes in and out, runs the connection's actions (send,
submit a frame to the batcher, close) and tells it the time at its deadlines. A compressed
frame (IMAGE, issue 9) is decoded on the node's decode threads first, so neither the event
loop nor the inference thread waits on it; a connection's frames still reach the batcher
in the order they came. One sender
task writes everything, so results, drops, errors and pongs never interleave. Messages
larger than the configured limit close the connection with 1009 (the server's WebSocket
layer enforces it, see ``edgesight.serving``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections import deque
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from pyodide_client.protocol import TRACE_FEATURE, Dtype, ErrorCode, Frame, Image, ProtocolError

from .connection import CLOSE_POLICY, Action, Close, Connection, Send, Submit, TraceNext
from .decode import DecodedImage

if TYPE_CHECKING:
    from .batcher import Outcome
    from .engine import UInt8Array
    from .node import Node

__all__ = ["LogSampler", "frame_image", "inference_endpoint"]

log = logging.getLogger(__name__)

_stream_ids = itertools.count(1)
# How long a closing connection may take to write what it still has queued (its last
# ERROR) before the close frame goes out regardless.
FLUSH_BEFORE_CLOSE_S = 1.0
_SEND_ERRORS = (WebSocketDisconnect, RuntimeError, OSError)


def frame_image(frame: Frame | Image, shape: tuple[int, int, int]) -> UInt8Array | Image:
    """The model input a FRAME carries, checked against the model's shape (no copy). The
    one place that turns a frame message into pixels. An IMAGE's geometry is checked here
    and the IMAGE itself returned: its pixels are decoded later, off the event loop
    (``_Link._decode_then_submit``)."""
    if isinstance(frame, Image):
        frame.check(shape[2], shape[1])
        return frame
    frame.check(Dtype.UINT8, shape)
    return np.frombuffer(frame.payload, dtype=np.uint8).reshape(shape)


class LogSampler:
    """At most ``per_s`` lines a second from one call site; the rest are counted and the
    count is reported with the next line that gets through (a flood of bad clients must
    not become a flood of logs: issue 8 saw 248 MB in 30 s)."""

    def __init__(self, per_s: float = 5.0) -> None:
        self._interval_s = 1.0 / per_s
        self._next_s = 0.0
        self.suppressed = 0

    def allow(self, now_s: float) -> bool:
        if now_s < self._next_s:
            self.suppressed += 1
            return False
        self._next_s = now_s + self._interval_s
        return True

    def log(self, now_s: float, level: int, msg: str, *args: object) -> None:
        if self.allow(now_s):
            if self.suppressed:
                msg += " (%d similar lines suppressed)"
                args = (*args, self.suppressed)
                self.suppressed = 0
            log.log(level, msg, *args)


_refused_origins = LogSampler()
_policy_closes = LogSampler()


async def inference_endpoint(websocket: WebSocket) -> None:
    node: Node = websocket.app.state.node
    loop = asyncio.get_running_loop()
    origin = websocket.headers.get("origin")
    address = websocket.client.host if websocket.client else "unknown"
    if not node.origins.allows(origin):
        _refused_origins.log(
            loop.time(), logging.INFO, "refused a WebSocket from %s: origin %r", address, origin
        )
        await websocket.close(CLOSE_POLICY)  # before accept(): the handshake answers 403
        return
    await websocket.accept()
    connection: Connection[UInt8Array | Image] = Connection(
        hello=node.hello_bytes,
        limits=node.limits,
        admission=node.admission,
        authenticator=node.authenticator,
        decode=functools.partial(frame_image, shape=node.frame_shape),
        address=address,
        origin=origin,
        encodings=node.encodings,
        features=TRACE_FEATURE if node.tracer is not None else 0,
        observer=node.metrics,
    )
    await _Link(websocket, node, connection).run()


class _Link:
    """One accepted socket and its connection: runs until either side closes."""

    def __init__(self, websocket: WebSocket, node: Node, connection: Connection[Any]) -> None:
        self.websocket = websocket
        self.node = node
        self.conn = connection
        self.stream = next(_stream_ids)
        self.loop = asyncio.get_running_loop()
        self.outbox: deque[bytes] = deque()
        # Started when there is something to send and gone when the outbox is empty: an
        # idle socket (1000 of them in bench/attacks.py) holds no task for it.
        self.sender: asyncio.Task[None] | None = None
        self.close: Close | None = None
        self.is_stream_open = False  # known to the batcher
        self._decoding: asyncio.Task[None] | None = None  # the newest IMAGE being decoded
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
            self.conn.connection_lost()
            self.node.connections.discard(self.conn)
            if self.is_stream_open:
                self.node.batcher.close_stream(self.stream)
            if self.node.tracer is not None:
                self.node.tracer.forget(self.stream)
            if self._decoding is not None:
                self._decoding.cancel()
            await self._stop_sender()
            self._log_summary()

    # -- actions -------------------------------------------------------------------------
    def execute(self, actions: list[Action[Any]]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self.outbox.append(action.data)
                self.node.peak_outbox_bytes = max(
                    self.node.peak_outbox_bytes, self.conn.queued_bytes
                )
                if self.sender is None and self.close is None:
                    self.sender = self.loop.create_task(self._send_all())
            elif isinstance(action, Submit):
                if isinstance(action.image, Image):
                    self._decode_then_submit(action.image)
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

    def _decode_then_submit(self, image: Image) -> None:
        # Decodes of one connection may run side by side on the pool; each waits for the
        # previous one's submit before its own, so frames reach the batcher in order
        # (the batcher's latest-frame-wins needs that).
        self._decoding = self.loop.create_task(self._decode(image, self._decoding))

    async def _decode(self, image: Image, previous: asyncio.Task[None] | None) -> None:
        decoded: DecodedImage | ProtocolError
        try:
            decoded = await self.loop.run_in_executor(
                self.node.decode_pool, self.node.decoder.decode, image
            )
        except ProtocolError as exc:  # corrupt, a wrong size, a bomb: this frame only
            decoded = exc
        if previous is not None:
            await asyncio.wait([previous])
        if self.close is not None:
            return
        if isinstance(decoded, ProtocolError):
            error = decoded.to_error()
            self.node.metrics.outcome(error)
            self.execute(self.conn.outcome(error, self.loop.time()))
            return
        self._submit(image, decoded.tensor, decoded.decode_ms)

    def _deliver(self, future: asyncio.Future[Outcome]) -> None:
        if not future.cancelled():
            outcome = future.result()
            self.node.metrics.outcome(outcome)
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
        # Let the last ERROR go out first, but never wait on a client that does not read.
        sender = self.sender
        if sender is not None and close.why is not ErrorCode.SLOW_READER:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FLUSH_BEFORE_CLOSE_S):
                    await asyncio.shield(sender)
        await self._stop_sender()
        with contextlib.suppress(*_SEND_ERRORS):
            await self.websocket.close(close.code, close.reason)

    def _log_summary(self) -> None:
        close = self.conn.closed_by
        why = close.why.name if close is not None and close.why is not None else "client left"
        if close is not None:
            self.node.policy_closes[why] += 1
        if close is None and not self.conn.refused:
            return
        _policy_closes.log(
            self.loop.time(),
            logging.INFO,
            "connection %d from %s closed (%s) after %d refused messages%s",
            self.stream,
            self.conn.address,
            why,
            self.conn.refused,
            f"; the first: {self.conn.first_refusal}" if self.conn.first_refusal else "",
        )
