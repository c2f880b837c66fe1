"""Decode time shared fairly between connections (``gpu_backend/decode_queue.py``): the
round-robin policy sans-I/O, then the queue on a real thread pool with a decoder whose
pictures wait on events (no clock, no sleep)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from gpu_backend.decode import DecodedImage, Decoder
from gpu_backend.decode_queue import DecodeQueue, FairQueue
from pyodide_client.protocol import ErrorCode, FrameEncoding, Image, ProtocolError


def drain(queue: FairQueue[str, str]) -> list[str]:
    """Run every job to completion, one worker's order."""
    order = []
    while (taken := queue.take()) is not None:
        key, job = taken
        order.append(job)
        queue.done(key)
    return order


def test_connections_are_served_round_robin_not_first_come() -> None:
    queue: FairQueue[str, str] = FairQueue(workers=1)
    for job in ("a1", "a2", "a3", "a4"):  # one connection's burst first
        queue.push("a", job)
    queue.push("b", "b1")
    queue.push("c", "c1")
    # first in, first out would make b and c wait for all of a's frames
    assert drain(queue) == ["a1", "b1", "c1", "a2", "a3", "a4"]


def test_a_connection_has_one_decode_running_at_a_time() -> None:
    queue: FairQueue[str, str] = FairQueue(workers=4)
    queue.push("a", "a1")
    queue.push("a", "a2")
    queue.push("b", "b1")
    assert queue.take() == ("a", "a1")
    assert queue.take() == ("b", "b1")
    assert queue.take() is None  # a2 waits for a1, though workers are free
    queue.done("a")
    assert queue.take() == ("a", "a2")


def test_workers_bound_what_runs() -> None:
    queue: FairQueue[str, str] = FairQueue(workers=2)
    for key in "abc":
        queue.push(key, f"{key}1")
    assert queue.take() == ("a", "a1")
    assert queue.take() == ("b", "b1")
    assert queue.take() is None
    assert queue.running == 2
    assert queue.waiting() == 1


def test_a_forgotten_connection_s_frames_are_dropped() -> None:
    queue: FairQueue[str, str] = FairQueue(workers=1)
    for job in ("a1", "a2", "a3"):
        queue.push("a", job)
    queue.push("b", "b1")
    assert queue.take() == ("a", "a1")
    assert queue.forget("a") == ["a2", "a3"]
    queue.done("a")
    assert drain(queue) == ["b1"]


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="workers must be at least 1, got 0"):
        FairQueue(workers=0)


class GatedDecoder(Decoder):
    """Decodes nothing: records the order of frames and holds each on its gate."""

    def __init__(self) -> None:
        super().__init__(4)
        self.gates: dict[int, threading.Event] = {}
        self.order: list[int] = []
        self.started = threading.Event()

    def decode(self, image: Image) -> DecodedImage:
        self.order.append(image.frame_id)
        self.started.set()
        gate = self.gates.get(image.frame_id)
        if gate is not None:
            assert gate.wait(timeout=30)
        if image.frame_id < 0:
            raise ProtocolError(ErrorCode.IMAGE_INVALID, "bad", image.frame_id)
        return DecodedImage(None, 0.0)  # type: ignore[arg-type]


def picture(frame_id: int) -> Image:
    return Image(frame_id, 0.0, FrameEncoding.JPEG, 4, 4, 0, 0, b"")


def test_an_expensive_connection_delays_only_itself_on_a_real_pool() -> None:
    decoder = GatedDecoder()
    decoder.gates[1] = threading.Event()  # the attacker's first frame holds the one worker
    answered: list[tuple[str, int]] = []

    async def scenario() -> None:
        with ThreadPoolExecutor(1) as pool:
            queue = DecodeQueue(decoder, pool, workers=1)
            done = asyncio.Event()

            def on_done(key: str, frame_id: int, decoded: DecodedImage | ProtocolError) -> None:
                answered.append((key, frame_id))
                if len(answered) == 6:
                    done.set()

            for frame_id in (1, 2, 3, 4):
                queue.submit(
                    "attacker", picture(frame_id), lambda d, i=frame_id: on_done("attacker", i, d)
                )
            await asyncio.get_running_loop().run_in_executor(None, decoder.started.wait)
            queue.submit("victim", picture(100), lambda d: on_done("victim", 100, d))
            queue.submit("victim", picture(-101), lambda d: on_done("victim", -101, d))
            assert queue.running == 1
            assert queue.waiting == 5
            decoder.gates[1].set()
            await asyncio.wait_for(done.wait(), timeout=30)

    asyncio.run(scenario())
    # the victim waits for one of the attacker's frames, not all four
    assert decoder.order == [1, 100, 2, -101, 3, 4]
    # each connection hears back in its own order; a refusal is an outcome too
    assert [f for k, f in answered if k == "attacker"] == [1, 2, 3, 4]
    assert [f for k, f in answered if k == "victim"] == [100, -101]


def test_a_forgotten_connection_hears_nothing_more() -> None:
    decoder = GatedDecoder()
    decoder.gates[1] = threading.Event()
    answered: list[int] = []

    async def scenario() -> None:
        with ThreadPoolExecutor(1) as pool:
            queue = DecodeQueue(decoder, pool, workers=1)
            finished = asyncio.Event()
            queue.submit("gone", picture(1), lambda d: answered.append(1))
            queue.submit("gone", picture(2), lambda d: answered.append(2))
            queue.submit("stays", picture(3), lambda d: finished.set())
            await asyncio.get_running_loop().run_in_executor(None, decoder.started.wait)
            queue.forget("gone")
            decoder.gates[1].set()
            await asyncio.wait_for(finished.wait(), timeout=30)

    asyncio.run(scenario())
    assert answered == []
    assert decoder.order == [1, 3]


def test_a_node_that_is_stopping_takes_frames_without_raising() -> None:
    answered: list[int] = []

    async def scenario() -> None:
        pool = ThreadPoolExecutor(1)
        pool.shutdown()
        queue = DecodeQueue(GatedDecoder(), pool, workers=1)
        queue.submit("late", picture(1), lambda d: answered.append(1))
        assert queue.running == 0

    asyncio.run(scenario())
    assert answered == []
