"""One link's frames through the node (gpu_backend/stream_frames.py), shared by the
WebSocket endpoint and the WebTransport link (issue 19): pictures through the decode
queue, tensors to the batcher, one outcome each back to the link, nothing kept after."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from gpu_backend.connection import Outcome, Submit
from gpu_backend.decode import DecodedImage
from gpu_backend.node import Node
from gpu_backend.stream_frames import StreamFrames
from pyodide_client.protocol import (
    Dropped,
    DropReason,
    Dtype,
    ErrorCode,
    Frame,
    FrameEncoding,
    Image,
    ProtocolError,
)

TENSOR = np.zeros((3, 4, 4), np.uint8)
FRAME = Frame(1, 0.0, Dtype.UINT8, (1, 3, 4, 4), TENSOR.tobytes())
IMAGE = Image(2, 0.0, FrameEncoding.JPEG, 4, 4, 0, 0, b"jpeg")


@dataclass
class FakeBatcher:
    submitted: list[tuple[int, Any]] = field(default_factory=list)
    opened: list[int] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)
    futures: list[asyncio.Future[Outcome]] = field(default_factory=list)

    def open_stream(self, stream: int) -> None:
        self.opened.append(stream)

    def close_stream(self, stream: int) -> None:
        self.closed.append(stream)

    def submit(self, stream: int, frame: Any, image: Any, decode_ms: float | None) -> Any:
        self.submitted.append((stream, frame))
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future


@dataclass
class FakeDecodeQueue:
    waiting: list[Callable[[Any], None]] = field(default_factory=list)
    forgotten: list[int] = field(default_factory=list)

    def submit(self, key: int, image: Image, on_done: Callable[[Any], None]) -> None:
        self.waiting.append(on_done)

    def forget(self, key: int) -> None:
        self.forgotten.append(key)


@dataclass
class FakeNode:
    batcher: FakeBatcher = field(default_factory=FakeBatcher)
    decode_queue: FakeDecodeQueue = field(default_factory=FakeDecodeQueue)
    tracer: None = None


def _frames(
    is_closed: Callable[[], bool] = lambda: False,
) -> tuple[StreamFrames, FakeNode, list[Outcome]]:
    node = FakeNode()
    outcomes: list[Outcome] = []
    return StreamFrames(cast(Node, node), 7, outcomes.append, is_closed), node, outcomes


def test_a_tensor_goes_to_the_batcher_and_its_outcome_comes_back() -> None:
    async def scenario() -> None:
        node = FakeNode()
        outcomes: list[Outcome] = []
        answered = asyncio.Event()

        def on_outcome(outcome: Outcome) -> None:
            outcomes.append(outcome)
            answered.set()

        frames = StreamFrames(cast(Node, node), 7, on_outcome, lambda: False)
        frames.submit(Submit(FRAME, TENSOR))
        assert node.batcher.opened == [7]
        assert node.batcher.submitted == [(7, FRAME)]
        dropped = Dropped(frame_id=1, reason=DropReason.SUPERSEDED)
        node.batcher.futures[0].set_result(dropped)
        await asyncio.wait_for(answered.wait(), timeout=5)
        assert outcomes == [dropped]

    asyncio.run(scenario())


def test_a_picture_is_decoded_first_and_a_bad_one_is_its_frames_error() -> None:
    async def scenario() -> None:
        frames, node, outcomes = _frames()
        frames.submit(Submit(IMAGE, IMAGE))
        frames.submit(Submit(IMAGE, IMAGE))
        assert node.batcher.submitted == []  # not before its decode
        node.decode_queue.waiting[0](DecodedImage(TENSOR, 0.5))
        node.decode_queue.waiting[1](ProtocolError(ErrorCode.IMAGE_INVALID, "not a JPEG", 2))
        assert node.batcher.submitted == [(7, IMAGE)]
        assert [o.frame_id for o in outcomes] == [2]

    asyncio.run(scenario())


def test_a_picture_decoded_after_the_link_closed_goes_no_further() -> None:
    async def scenario() -> None:
        is_closed = False
        frames, node, outcomes = _frames(lambda: is_closed)
        frames.submit(Submit(IMAGE, IMAGE))
        is_closed = True
        node.decode_queue.waiting[0](DecodedImage(TENSOR, 0.5))
        assert (node.batcher.submitted, outcomes) == ([], [])

    asyncio.run(scenario())


def test_forget_leaves_nothing_and_closes_only_an_opened_stream() -> None:
    async def scenario() -> None:
        unused, node, _ = _frames()
        unused.forget()
        assert (node.decode_queue.forgotten, node.batcher.closed) == ([7], [])
        used, node, _ = _frames()
        used.submit(Submit(FRAME, TENSOR))
        used.forget()
        assert (node.decode_queue.forgotten, node.batcher.closed) == ([7], [7])

    asyncio.run(scenario())
