"""Dynamic micro-batching across connections, with latest-frame-wins per connection.

Semantics (after Ray Serve's ``@serve.batch``):
- a batch closes when it holds ``max_batch_size`` frames, when every open stream already
  has a frame waiting (nobody else can add one), or ``max_batch_wait_ms`` after its first
  frame arrived, whichever comes first;
- each frame gets its own outcome: a RESULT, or an ERROR if its batch failed;
- per stream at most one frame waits: a newer frame takes the waiting one's place and the
  older is answered DROPPED (superseded). Every submitted frame gets exactly one outcome.

Inference and post-processing run on one worker thread, off the event loop. The batcher is
owned by the app's lifespan: ``run()`` is started as a task and cancelled on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from pyodide_client.postprocess import PostprocessSettings, select
from pyodide_client.protocol import (
    Dropped,
    DropReason,
    Error,
    ErrorCode,
    Frame,
    Image,
    Result,
)

from .engine import Engine, UInt8Array

__all__ = ["Batcher", "Outcome"]

log = logging.getLogger(__name__)

Outcome = Result | Dropped | Error


@dataclass
class _Waiting:
    stream: int
    frame: Frame | Image
    image: UInt8Array
    enqueued_s: float  # when this frame arrived: its queue_ms counts from here
    place_s: float  # when its stream's place in the queue was taken: the batch deadline
    future: asyncio.Future[Outcome]
    decode_ms: float | None = None  # a compressed frame's decode time, for its RESULT


class Batcher:
    def __init__(
        self,
        engine: Engine,
        num_classes: int,
        postprocess: PostprocessSettings,
        max_batch_size: int,
        max_batch_wait_ms: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._num_classes = num_classes
        self._postprocess = postprocess
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_batch_wait_ms / 1000.0
        self._clock = clock
        self._waiting: dict[int, _Waiting] = {}  # insertion order = arrival order
        self._streams: set[int] = set()
        self._running: list[_Waiting] = []  # the batch on the worker thread, if any
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self.last_inference_ms = 0.0
        self.on_batch: Callable[[int], None] | None = None  # metrics: each batch's size
        # tracing: each batch's (stream, outcome) pairs, as they are answered
        self.on_batch_done: Callable[[list[tuple[int, Outcome]]], None] | None = None

    # -- streams -----------------------------------------------------------------------
    def open_stream(self, stream: int) -> None:
        self._streams.add(stream)

    def close_stream(self, stream: int) -> None:
        """Forget a stream; a frame of it still waiting is dropped without an answer
        (nobody is left to answer)."""
        self._streams.discard(stream)
        waiting = self._waiting.pop(stream, None)
        if waiting and not waiting.future.done():
            waiting.future.cancel()

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    @property
    def in_flight(self) -> int:
        """Frames waiting or running now."""
        return len(self._waiting) + len(self._running)

    # -- submitting --------------------------------------------------------------------
    def submit(
        self,
        stream: int,
        frame: Frame | Image,
        image: UInt8Array,
        decode_ms: float | None = None,
    ) -> asyncio.Future[Outcome]:
        """Queue a checked frame; its future resolves to the frame's one outcome. A
        compressed frame (IMAGE) comes decoded, with its ``decode_ms`` for the RESULT."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        now_s = self._clock()
        item = _Waiting(stream, frame, image, now_s, now_s, future, decode_ms)
        older = self._waiting.get(stream)
        if older is not None:
            older.future.set_result(Dropped(older.frame.frame_id, DropReason.SUPERSEDED))
            # It takes the older frame's place and deadline, not its enqueue time: its
            # queue_ms (and the router's queue estimate from it) is its own wait.
            item.place_s = older.place_s
        self._waiting[stream] = item
        self._arrived.set()
        return future

    # -- the loop ----------------------------------------------------------------------
    async def run(self) -> None:
        try:
            while True:
                batch = await self._next_batch()
                await self._run_batch(batch)
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        for item in [*self._running, *self._waiting.values()]:
            if not item.future.done():
                item.future.set_result(Dropped(item.frame.frame_id, DropReason.SHUTTING_DOWN))
        self._waiting.clear()
        self._running = []
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _is_full(self) -> bool:
        wanted = min(self._max_batch_size, max(1, len(self._streams)))
        return len(self._waiting) >= wanted

    async def _next_batch(self) -> list[_Waiting]:
        while not self._waiting:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = next(iter(self._waiting.values())).place_s + self._max_wait_s
        while not self._is_full():
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
        batch = []
        for stream in list(self._waiting)[: self._max_batch_size]:
            batch.append(self._waiting.pop(stream))
        return batch

    async def _run_batch(self, batch: list[_Waiting]) -> None:
        loop = asyncio.get_running_loop()
        started = self._clock()
        self._running = batch
        if self.on_batch is not None:
            self.on_batch(len(batch))
        try:
            outcomes = await loop.run_in_executor(self._executor, self._infer, batch, started)
        except Exception:  # a failing batch fails each of its frames, never the node
            log.exception("batch of %d frames failed", len(batch))
            outcomes = [
                Error(
                    ErrorCode.INFERENCE_FAILED,
                    f"inference failed for frame {item.frame.frame_id}; the node logged why",
                    item.frame.frame_id,
                )
                for item in batch
            ]
        # (On cancellation _running stays set, so that _shutdown answers these frames.)
        self._running = []
        if len(outcomes) != len(batch):
            raise RuntimeError(f"batch of {len(batch)} produced {len(outcomes)} outcomes")
        for item, outcome in zip(batch, outcomes, strict=True):
            if not item.future.done():
                item.future.set_result(outcome)
        if self.on_batch_done is not None:
            self.on_batch_done([(item.stream, o) for item, o in zip(batch, outcomes, strict=True)])

    def _infer(self, batch: list[_Waiting], started_s: float) -> list[Outcome]:
        """Runs on the worker thread."""
        images = batch[0].image[None] if len(batch) == 1 else np.stack([b.image for b in batch])
        t0 = self._clock()
        boxes, scores = self._engine.infer(images)
        t1 = self._clock()
        inference_ms = (t1 - t0) * 1000.0
        self.last_inference_ms = inference_ms
        outcomes: list[Outcome] = []
        for i, item in enumerate(batch):
            p0 = self._clock()
            detections = select(
                memoryview(boxes[i]).cast("B"),
                memoryview(scores[i]).cast("B"),
                self._num_classes,
                self._postprocess,
            )
            post_ms = (self._clock() - p0) * 1000.0
            outcomes.append(
                Result(
                    frame_id=item.frame.frame_id,
                    capture_ms=item.frame.capture_ms,
                    queue_ms=(started_s - item.enqueued_s) * 1000.0,
                    inference_ms=inference_ms,
                    post_ms=post_ms,
                    batch_size=len(batch),
                    detections=tuple(detections),
                    decode_ms=item.decode_ms,
                )
            )
        return outcomes
