"""The inference WebSocket endpoint: one connection = one camera stream.

The node speaks first (HELLO). Every binary message from the client is parsed with the
shared protocol core; a frame that fails parsing or does not fit the model is answered with
an ERROR naming what was expected and what came, and the connection stays open. Messages
larger than the configured limit close the connection with 1009 (the server's WebSocket
layer enforces it). Outgoing messages go through one queue and one sender task, so
results, drops, errors and pongs never interleave.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import TYPE_CHECKING

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from pyodide_client.protocol import (
    CLOSE_TRY_AGAIN_LATER,
    Dtype,
    Error,
    ErrorCode,
    Frame,
    Ping,
    ProtocolError,
    Trace,
    parse,
)

if TYPE_CHECKING:
    from .batcher import Outcome
    from .node import Node

__all__ = ["inference_endpoint"]

log = logging.getLogger(__name__)

_stream_ids = itertools.count(1)


async def inference_endpoint(websocket: WebSocket) -> None:
    node: Node = websocket.app.state.node
    await websocket.accept()
    if node.streams_open >= node.settings.max_streams:
        refusal = Error(
            ErrorCode.OVERLOADED,
            f"node {node.settings.node_name} is at capacity "
            f"({node.settings.max_streams} streams); try another node",
        )
        node.metrics.stream_refused(ErrorCode.OVERLOADED)
        await websocket.send_bytes(refusal.serialize())
        await websocket.close(CLOSE_TRY_AGAIN_LATER, "at capacity")
        return
    stream = next(_stream_ids)
    outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
    node.batcher.open_stream(stream)
    node.streams_open += 1
    node.metrics.stream_opened()
    sender = asyncio.create_task(_send_all(websocket, outbox), name=f"send-{stream}")
    outbox.put_nowait(node.hello_bytes)
    try:
        await _receive_all(websocket, node, stream, outbox)
    finally:
        node.streams_open -= 1
        node.metrics.stream_closed()
        node.batcher.close_stream(stream)
        if node.tracer is not None:
            node.tracer.forget(stream)
        outbox.put_nowait(None)
        await sender


async def _send_all(websocket: WebSocket, outbox: asyncio.Queue[bytes | None]) -> None:
    while (data := await outbox.get()) is not None:
        try:
            await websocket.send_bytes(data)
        except (WebSocketDisconnect, RuntimeError, OSError):
            return  # the client went away; the receive loop sees it too


async def _receive_all(
    websocket: WebSocket, node: Node, stream: int, outbox: asyncio.Queue[bytes | None]
) -> None:
    expected_shape = node.frame_shape
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        if data is None:
            node.metrics.refused(ErrorCode.NOT_BINARY)
            outbox.put_nowait(
                Error(
                    ErrorCode.NOT_BINARY,
                    "expected a binary protocol message, got a text message",
                ).serialize()
            )
            continue
        try:
            parsed = parse(data)
            if isinstance(parsed, Frame):
                node.metrics.frame_received()
                parsed.check(Dtype.UINT8, expected_shape)
                image = np.frombuffer(parsed.payload, dtype=np.uint8).reshape(expected_shape)
                future = node.batcher.submit(stream, parsed, image)
                future.add_done_callback(lambda f: _deliver(f, outbox, node))
            elif isinstance(parsed, Trace):  # the next frame is sampled (issue 12)
                if node.tracer is not None:
                    node.tracer.expect(stream, parsed)
            elif isinstance(parsed, Ping):
                outbox.put_nowait(parsed.answer().serialize())
            else:
                raise ProtocolError(
                    ErrorCode.UNEXPECTED_MESSAGE,
                    f"expected a FRAME or PING from a client, got {type(parsed).__name__.upper()}",
                )
        except ProtocolError as exc:
            log.info("stream %d: refused a message: %s", stream, exc.message)
            node.metrics.refused(exc.code)
            outbox.put_nowait(exc.to_error().serialize())


def _deliver(
    future: asyncio.Future[Outcome], outbox: asyncio.Queue[bytes | None], node: Node
) -> None:
    if future.cancelled():
        return
    outcome = future.result()
    node.metrics.outcome(outcome)
    outbox.put_nowait(outcome.serialize())
