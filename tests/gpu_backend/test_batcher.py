"""Batcher semantics with a fake engine: when batches close, latest frame wins, failures
stay per frame, and every frame gets exactly one outcome."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Awaitable, Callable

import numpy as np

from gpu_backend.batcher import Batcher, Outcome
from pyodide_client.postprocess import PostprocessSettings
from pyodide_client.protocol import (
    Dropped,
    DropReason,
    Dtype,
    Error,
    ErrorCode,
    Frame,
    FrameEncoding,
    Image,
    Result,
)
from tests.gpu_backend.fake_engine import CLASSES, FakeEngine

SHAPE = (3, 4, 4)


def _frame(frame_id: int, marker: int) -> tuple[Frame, np.ndarray]:
    image = np.full(SHAPE, marker, np.uint8)
    frame = Frame(frame_id, float(frame_id), Dtype.UINT8, SHAPE, image.tobytes())
    return frame, image


def _batcher(engine: FakeEngine, max_batch_size: int = 8, max_wait_ms: float = 1.0) -> Batcher:
    return Batcher(engine, CLASSES, PostprocessSettings(), max_batch_size, max_wait_ms)


def _run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout=20))


async def _with_loop(batcher: Batcher, body: Callable[[], Awaitable[None]]) -> None:
    loop_task = asyncio.create_task(batcher.run())
    try:
        await body()
    finally:
        loop_task.cancel()
        await asyncio.gather(loop_task, return_exceptions=True)


def test_each_frame_gets_its_own_result() -> None:
    engine = FakeEngine()
    batcher = _batcher(engine, max_batch_size=4, max_wait_ms=1000)

    async def body() -> None:
        futures = []
        for stream in range(1, 5):
            batcher.open_stream(stream)
            futures.append(batcher.submit(stream, *_frame(stream * 10, marker=stream * 10)))
        outcomes = await asyncio.gather(*futures)
        for stream, outcome in zip(range(1, 5), outcomes, strict=True):
            assert isinstance(outcome, Result)
            assert outcome.frame_id == stream * 10
            assert outcome.batch_size == 4
            (detection,) = outcome.detections
            assert detection.x1 == stream * 10  # the box computed from this frame's image
            assert detection.class_id == 1

    _run(lambda: _with_loop(batcher, body))
    assert engine.batch_sizes == [4]


def test_batch_closes_at_max_batch_size() -> None:
    engine = FakeEngine()
    batcher = _batcher(engine, max_batch_size=2, max_wait_ms=10_000)

    async def body() -> None:
        futures = []
        for stream in range(1, 6):
            batcher.open_stream(stream)
            futures.append(batcher.submit(stream, *_frame(stream, stream)))
        outcomes = await asyncio.gather(*futures[:4])
        assert [o.batch_size for o in outcomes if isinstance(o, Result)] == [2, 2, 2, 2]

    _run(lambda: _with_loop(batcher, body))
    assert engine.batch_sizes[:2] == [2, 2]


def test_batch_closes_after_max_wait_when_other_streams_are_idle() -> None:
    engine = FakeEngine()
    batcher = _batcher(engine, max_batch_size=8, max_wait_ms=50)

    async def body() -> None:
        for stream in (1, 2, 3):
            batcher.open_stream(stream)
        outcome = await batcher.submit(1, *_frame(1, 1))
        assert isinstance(outcome, Result)
        assert outcome.batch_size == 1
        assert outcome.queue_ms >= 45  # it waited for the others, up to the deadline

    _run(lambda: _with_loop(batcher, body))


def test_batch_closes_early_when_every_open_stream_is_waiting() -> None:
    engine = FakeEngine()
    batcher = _batcher(engine, max_batch_size=8, max_wait_ms=60_000)

    async def body() -> None:
        batcher.open_stream(1)
        batcher.open_stream(2)
        outcomes = await asyncio.gather(
            batcher.submit(1, *_frame(1, 1)), batcher.submit(2, *_frame(2, 2))
        )
        assert [o.batch_size for o in outcomes if isinstance(o, Result)] == [2, 2]

    _run(lambda: _with_loop(batcher, body))  # would time out if it waited 60 s


def test_newer_frame_replaces_a_waiting_one_which_is_reported_dropped() -> None:
    engine = FakeEngine()
    engine.gate = threading.Event()
    batcher = _batcher(engine, max_batch_size=1)

    async def body() -> None:
        batcher.open_stream(1)
        first = batcher.submit(1, *_frame(1, 1))
        await asyncio.to_thread(engine.entered.wait, 10)  # frame 1 is being inferred
        second = batcher.submit(1, *_frame(2, 2))
        third = batcher.submit(1, *_frame(3, 3))
        assert await second == Dropped(2, DropReason.SUPERSEDED)
        assert engine.gate is not None
        engine.gate.set()
        done = await asyncio.gather(first, third)
        assert [o.frame_id for o in done] == [1, 3]
        assert all(isinstance(o, Result) for o in done)

    _run(lambda: _with_loop(batcher, body))
    assert engine.batch_sizes == [1, 1]


def test_a_replacing_frame_reports_its_own_queue_time() -> None:
    # given frame 1 on the engine, frame 2 waiting since t=0 s, replaced by frame 3 at 0.3 s
    engine = FakeEngine()
    engine.gate = threading.Event()
    now_s = [0.0]
    batcher = Batcher(engine, CLASSES, PostprocessSettings(), 1, 1.0, clock=lambda: now_s[0])

    async def body() -> None:
        batcher.open_stream(1)
        first = batcher.submit(1, *_frame(1, 1))
        await asyncio.to_thread(engine.entered.wait, 10)
        second = batcher.submit(1, *_frame(2, 2))
        now_s[0] = 0.3
        third = batcher.submit(1, *_frame(3, 3))
        assert await second == Dropped(2, DropReason.SUPERSEDED)
        # when the engine frees up 10 ms later
        now_s[0] = 0.31
        assert engine.gate is not None
        engine.gate.set()
        await first
        outcome = await third
        # then frame 3 waited 10 ms, not the 310 ms since frame 2 arrived
        assert isinstance(outcome, Result)
        assert abs(outcome.queue_ms - 10.0) < 1e-6

    _run(lambda: _with_loop(batcher, body))


def test_a_replacing_frame_keeps_the_waiting_frame_s_place_and_deadline() -> None:
    now_s = [0.0]
    batcher = Batcher(FakeEngine(), CLASSES, PostprocessSettings(), 8, 50.0, clock=lambda: now_s[0])

    async def body() -> None:
        for stream in (1, 2):
            batcher.open_stream(stream)
        batcher.submit(1, *_frame(1, 1))
        now_s[0] = 0.01
        batcher.submit(2, *_frame(2, 2))
        now_s[0] = 0.04
        batcher.submit(1, *_frame(3, 3))  # replaces frame 1
        waiting = list(batcher._waiting.values())
        assert [(w.frame.frame_id, w.place_s, w.enqueued_s) for w in waiting] == [
            (3, 0.0, 0.04),  # first in line still, deadline from 0 s; its own arrival time
            (2, 0.01, 0.01),
        ]

    _run(body)


def test_a_failing_batch_fails_each_frame_and_the_node_goes_on() -> None:
    engine = FakeEngine()
    engine.fail_next = True
    batcher = _batcher(engine, max_batch_size=2, max_wait_ms=10_000)

    async def body() -> None:
        batcher.open_stream(1)
        batcher.open_stream(2)
        failed = await asyncio.gather(
            batcher.submit(1, *_frame(11, 1)), batcher.submit(2, *_frame(12, 2))
        )
        for outcome, frame_id in zip(failed, (11, 12), strict=True):
            assert isinstance(outcome, Error)
            assert outcome.code is ErrorCode.INFERENCE_FAILED
            assert outcome.frame_id == frame_id
            assert "simulated" not in outcome.message  # internal text stays in the log
        again = await asyncio.gather(
            batcher.submit(1, *_frame(13, 1)), batcher.submit(2, *_frame(14, 2))
        )
        assert all(isinstance(o, Result) for o in again)

    _run(lambda: _with_loop(batcher, body))


def test_under_load_every_frame_is_answered_or_reported_dropped() -> None:
    engine = FakeEngine()
    batcher = _batcher(engine, max_batch_size=4, max_wait_ms=2)
    rng = random.Random(7)
    outcomes: dict[int, list[Outcome]] = {}

    async def camera(stream: int) -> None:
        batcher.open_stream(stream)
        pending = []
        for n in range(60):
            frame_id = stream * 1000 + n
            future = batcher.submit(stream, *_frame(frame_id, n % 250))
            future.add_done_callback(
                lambda f, i=frame_id: outcomes.setdefault(i, []).append(f.result())
            )
            pending.append(future)
            if rng.random() < 0.3:
                await asyncio.sleep(0)  # let the batch loop run between some frames
        await asyncio.gather(*pending)

    async def body() -> None:
        await asyncio.gather(*(camera(stream) for stream in range(1, 9)))

    _run(lambda: _with_loop(batcher, body))
    assert len(outcomes) == 8 * 60
    assert all(len(results) == 1 for results in outcomes.values())
    answered = [o for (o,) in outcomes.values() if isinstance(o, Result)]
    dropped = [o for (o,) in outcomes.values() if isinstance(o, Dropped)]
    assert len(answered) + len(dropped) == 8 * 60
    assert answered, "some frames must be answered"
    assert dropped, "with 8 streams racing one engine some frames must be superseded"
    assert max(engine.batch_sizes) <= 4


def test_shutdown_reports_waiting_frames_dropped() -> None:
    engine = FakeEngine()
    engine.gate = threading.Event()
    batcher = _batcher(engine, max_batch_size=1)

    async def scenario() -> None:
        batcher.open_stream(1)
        batcher.open_stream(2)
        loop_task = asyncio.create_task(batcher.run())
        running = batcher.submit(1, *_frame(1, 1))
        await asyncio.to_thread(engine.entered.wait, 10)
        waiting = batcher.submit(2, *_frame(2, 2))
        loop_task.cancel()
        assert await waiting == Dropped(2, DropReason.SHUTTING_DOWN)
        assert engine.gate is not None
        engine.gate.set()
        await asyncio.gather(loop_task, running, return_exceptions=True)

    _run(scenario)


def test_closing_a_stream_forgets_its_waiting_frame() -> None:
    engine = FakeEngine()
    batcher = _batcher(engine)

    async def scenario() -> None:
        batcher.open_stream(1)
        future = batcher.submit(1, *_frame(1, 1))
        batcher.close_stream(1)
        assert future.cancelled()
        assert batcher.queue_depth == 0

    _run(scenario)


def test_a_decoded_image_s_decode_time_goes_into_its_result() -> None:
    engine = FakeEngine()
    batcher = _batcher(engine, max_batch_size=2, max_wait_ms=1000)

    async def body() -> None:
        batcher.open_stream(1)
        batcher.open_stream(2)
        image = Image(5, 5.0, FrameEncoding.JPEG, 4, 2, 0, 1, b"\xff\xd8")
        compressed = batcher.submit(1, image, np.full(SHAPE, 5, np.uint8), decode_ms=0.75)
        raw = batcher.submit(2, *_frame(6, marker=6))
        first, second = await asyncio.gather(compressed, raw)
        assert isinstance(first, Result)
        assert (first.frame_id, first.capture_ms, first.decode_ms) == (5, 5.0, 0.75)
        assert isinstance(second, Result)
        assert second.decode_ms is None  # a raw FRAME's RESULT has no decode tail

    _run(lambda: _with_loop(batcher, body))
