"""Decode time shared fairly between connections (issue 17).

The node decodes compressed frames (IMAGE) on a few threads of its own. A first-in,
first-out pool let one client's expensive frames delay everyone: one address with 4
streams x 2 frames in flight pushed a normal client from 25 ms to a 15 s median. Here
every connection has its own queue, connections are served round-robin, and a connection
has at most one decode running at a time; so a frame waits at most for one decode of each
other connection, and a connection's costly frames delay only itself. One decode at a time
per connection also keeps its frames in order: each reaches the batcher in the order it
came (its latest-frame-wins needs that).

``FairQueue`` is the policy, sans-I/O (keys, jobs, no threads, no clock); ``DecodeQueue``
runs it on the node's decode pool from the event loop, with a callback per frame. Both are
bounded by the connections' own windows: a connection has at most ``max_in_flight``
frames unanswered (``connection.py``), so at most that many wait here for it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pyodide_client.protocol import ErrorCode, Image, ProtocolError

from .decode import DecodedImage, Decoder

__all__ = ["DecodeQueue", "FairQueue"]

log = logging.getLogger(__name__)

KeyT = TypeVar("KeyT", bound=Hashable)
JobT = TypeVar("JobT")

Decoded = DecodedImage | ProtocolError


class FairQueue(Generic[KeyT, JobT]):
    """Jobs queued per key, taken round-robin over the keys, at most ``workers`` running
    at once and at most one per key. ``take`` a job when it may start, ``done`` it when
    it has finished; ``forget`` a key whose owner went away."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        self._waiting: OrderedDict[KeyT, deque[JobT]] = OrderedDict()  # the round-robin ring
        self._running: set[KeyT] = set()

    @property
    def running(self) -> int:
        return len(self._running)

    def waiting(self, key: KeyT | None = None) -> int:
        """Jobs waiting for ``key``, or for every key."""
        if key is None:
            return sum(len(jobs) for jobs in self._waiting.values())
        jobs = self._waiting.get(key)
        return len(jobs) if jobs is not None else 0

    def push(self, key: KeyT, job: JobT) -> None:
        jobs = self._waiting.get(key)
        if jobs is None:
            self._waiting[key] = jobs = deque()  # a new key joins at the end of the round
        jobs.append(job)

    def take(self) -> tuple[KeyT, JobT] | None:
        """The next job that may start now, or None (all workers busy, or every key
        with work has its job running)."""
        if len(self._running) >= self.workers:
            return None
        for key, jobs in self._waiting.items():
            if key in self._running:
                continue
            job = jobs.popleft()
            if jobs:
                self._waiting.move_to_end(key)  # served: to the end of the round
            else:
                del self._waiting[key]
            self._running.add(key)
            return key, job
        return None

    def done(self, key: KeyT) -> None:
        self._running.discard(key)
        if key in self._waiting:  # what it queued while running waits for the others
            self._waiting.move_to_end(key)

    def forget(self, key: KeyT) -> list[JobT]:
        """Drop ``key``'s waiting jobs (returned); a running one still ends with ``done``."""
        return list(self._waiting.pop(key, ()))


@dataclass
class _Job:
    image: Image
    on_done: Callable[[Decoded], None]
    is_cancelled: bool = field(default=False)


class DecodeQueue:
    """Decodes IMAGE frames on ``pool`` through a ``FairQueue`` keyed by connection. Each
    frame's outcome (the decoded image, or the ProtocolError that refused it) goes to its
    callback on the event loop, in the order the connection submitted them; a forgotten
    connection's callbacks are never called."""

    def __init__(self, decoder: Decoder, pool: Executor, workers: int) -> None:
        self.decoder = decoder
        self._pool = pool
        self._queue: FairQueue[Hashable, _Job] = FairQueue(workers)
        self._running: dict[Hashable, _Job] = {}

    @property
    def running(self) -> int:
        return self._queue.running

    @property
    def waiting(self) -> int:
        return self._queue.waiting()

    def submit(self, key: Hashable, image: Image, on_done: Callable[[Decoded], None]) -> None:
        self._queue.push(key, _Job(image, on_done))
        self._start()

    def forget(self, key: Hashable) -> None:
        """``key``'s connection is gone: its waiting frames are dropped, a running one's
        outcome is discarded."""
        for job in self._queue.forget(key):
            job.is_cancelled = True
        running = self._running.get(key)
        if running is not None:
            running.is_cancelled = True

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        while (taken := self._queue.take()) is not None:
            key, job = taken
            try:
                future = loop.run_in_executor(self._pool, self._decode, job.image)
            except RuntimeError:  # the pool is shut down: the node is stopping
                self._queue.done(key)
                return
            self._running[key] = job
            future.add_done_callback(functools.partial(self._finished, key, job))

    def _decode(self, image: Image) -> Decoded:
        try:
            return self.decoder.decode(image)
        except ProtocolError as exc:  # corrupt, a wrong size, a bomb: this frame only
            return exc

    def _finished(self, key: Hashable, job: _Job, future: asyncio.Future[Decoded]) -> None:
        self._queue.done(key)
        if self._running.get(key) is job:
            del self._running[key]
        try:
            if future.cancelled() or job.is_cancelled:
                return
            failure = future.exception()
            if failure is None:
                job.on_done(future.result())
                return
            # A decoder bug, not the frame's fault: logged here, and the frame answered
            # (its connection's in-flight window must not shrink for good).
            log.error("decoding frame %d failed", job.image.frame_id, exc_info=failure)
            job.on_done(
                ProtocolError(
                    ErrorCode.IMAGE_INVALID,
                    f"frame {job.image.frame_id}: the node could not decode it",
                    job.image.frame_id,
                )
            )
        finally:
            self._start()
