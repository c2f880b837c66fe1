"""One link's frames on their way through the node, whatever carries them (a WebSocket:
``endpoint._Link``; a WebTransport session: ``wt_link.WtLink``): a picture goes to the
decode queue and, decoded, to the batcher; a tensor goes to the batcher at once; each
frame's one outcome (RESULT, DROPPED, ERROR, or the ERROR of a picture that did not decode)
goes back to the link. The link's stream is opened in the batcher with its first frame and
forgotten by the decode queue, the batcher and the tracer when the link ends."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pyodide_client.protocol import Frame, Image, ProtocolError

from .connection import Outcome, Submit, TraceNext

if TYPE_CHECKING:
    import asyncio

    from .decode import DecodedImage
    from .engine import UInt8Array
    from .node import Node

__all__ = ["StreamFrames"]


class StreamFrames:
    """``on_outcome``: the link hands the outcome to its connection; ``is_closed``: whether
    the link has ended, so that a picture decoded after that goes no further."""

    def __init__(
        self,
        node: Node,
        stream: int,
        on_outcome: Callable[[Outcome], None],
        is_closed: Callable[[], bool],
    ) -> None:
        self.node = node
        self.stream = stream
        self._on_outcome = on_outcome
        self._is_closed = is_closed
        self.is_stream_open = False  # known to the batcher

    def submit(self, action: Submit[Any]) -> None:
        if isinstance(action.image, Image):
            decoded = functools.partial(self._decoded, action.image)
            self.node.decode_queue.submit(self.stream, action.image, decoded)
        else:
            self._submit(action.frame, action.image)

    def expect_trace(self, action: TraceNext) -> None:
        if self.node.tracer is not None:  # without a collector, TRACE costs nothing
            self.node.tracer.expect(self.stream, action.trace)

    def forget(self) -> None:
        """The link has ended: nothing of its stream is kept."""
        self.node.decode_queue.forget(self.stream)
        if self.is_stream_open:
            self.node.batcher.close_stream(self.stream)
        if self.node.tracer is not None:
            self.node.tracer.forget(self.stream)

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
        if self._is_closed():
            return
        if isinstance(decoded, ProtocolError):  # corrupt, a wrong size, a bomb: this frame
            self._on_outcome(decoded.to_error())
            return
        self._submit(image, decoded.tensor, decoded.decode_ms)

    def _deliver(self, future: asyncio.Future[Outcome]) -> None:
        if not future.cancelled():
            self._on_outcome(future.result())
