"""Simulated cameras: N streams at 30 fps each against one node, in one asyncio loop.

A camera ticks every 33.3 ms. On each tick a stream sends the frame if its client may
(edgesight: ``NodeStream.can_send()``, at most K frames unanswered; seed: no request
outstanding), else the camera frame is counted as skipped at the client. Streams tick at
evenly spread phases, as unsynchronised webcams would.

Only frames captured inside the measurement window count; a warm-up before it lets the
node's queues settle, and a bounded drain after it collects the last answers.
Latency is capture (the tick that sent the frame) -> result parsed by the client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import struct
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
from harness import CpuMeter, summary
from websockets.asyncio.client import connect

from pyodide_client.protocol import MessageType
from pyodide_client.stream import Detections, FrameDropped, NodeError, NodeStream, Ready

log = logging.getLogger("bench.streams")

CAMERA_FPS = 30.0
CameraFrame = tuple[bytes, int, int]  # RGBA bytes, width, height
SeedPrep = Callable[[bytes, int, int], npt.NDArray[np.float32]]


def now_ms() -> float:
    return time.monotonic() * 1000.0


async def sleep_until(deadline_s: float) -> None:
    delay = deadline_s - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


@dataclass(frozen=True)
class Window:
    """Camera ticks run from ``start_s - warmup_s`` to ``start_s + duration_s``
    (monotonic seconds); frames captured from ``start_s`` on are measured."""

    start_s: float
    duration_s: float
    warmup_s: float
    drain_s: float = 10.0
    period_s: float = 1.0 / CAMERA_FPS

    @classmethod
    def after(
        cls, connect_s: float, warmup_s: float, duration_s: float, fps: float = CAMERA_FPS
    ) -> Window:
        """A window starting once streams had ``connect_s`` to connect and ``warmup_s``
        to settle; a high ``fps`` makes cameras that saturate the node."""
        start_s = time.monotonic() + connect_s + warmup_s
        return cls(start_s, duration_s, warmup_s, period_s=1.0 / fps)

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def ticks(self, phase_s: float, run_on_s: float = 0.0) -> Iterator[float]:
        """Camera ticks from the start of the warm-up to the end of the window, and
        ``run_on_s`` beyond it."""
        count = int((self.warmup_s + self.duration_s + run_on_s) / self.period_s)
        first = self.start_s - self.warmup_s + phase_s
        for n in range(count):
            yield first + n * self.period_s

    def counts(self, tick_s: float) -> bool:
        return self.start_s <= tick_s < self.end_s


@dataclass
class Tally:
    """One stream's counts, for frames captured inside the window."""

    captured: int = 0
    sent: int = 0
    skipped: int = 0  # camera frames the client could not send (window full or busy)
    results: int = 0
    stale: int = 0  # results older than one already shown; the client discards them
    dropped: int = 0  # DROPPED by the node (superseded while waiting)
    errors: int = 0
    unanswered: int = 0  # sent in the window, no outcome by the end of the drain
    bytes_up: int = 0
    up_frames: int = 0
    bytes_down: int = 0
    latency: list[tuple[float, float]] = field(default_factory=list)  # (capture s, ms)
    batch_sizes: list[int] = field(default_factory=list)
    server_ms: dict[str, list[float]] = field(default_factory=dict)
    settled: bool = False  # past the window, every measured frame answered
    peers: list[Tally] = field(default_factory=list, repr=False)  # the point's streams


def ws_frame_bytes(payload_bytes: int, masked: bool) -> int:
    """A binary WebSocket frame on the wire (RFC 6455): header, mask key, payload."""
    if payload_bytes < 126:
        head = 2
    elif payload_bytes < 65536:
        head = 4
    else:
        head = 10
    return head + (4 if masked else 0) + payload_bytes


async def edgesight_stream(
    url: str,
    max_in_flight: int,
    frames: Sequence[CameraFrame],
    window: Window,
    phase_s: float,
    tally: Tally,
) -> None:
    async with connect(url, compression=None, max_size=None, open_timeout=60) as ws:
        stream = NodeStream(max_in_flight=max_in_flight)
        events = stream.receive(await ws.recv(decode=False), now_ms())  # HELLO
        for message in stream.data_to_send():  # AUTH (anonymous)
            await ws.send(message)
        while not events:
            events = stream.receive(await ws.recv(decode=False), now_ms())
        if not isinstance(events[0], Ready):
            raise RuntimeError(f"expected HELLO and WELCOME from the node, got {events!r}")
        measured: dict[int, float] = {}  # frame id -> capture offset in the window (s)

        async def receive() -> None:
            async for data in ws:
                assert isinstance(data, bytes)
                events = stream.receive(data, now_ms())
                if len(data) >= 8 and data[3] in (MessageType.RESULT, MessageType.DROPPED):
                    frame_id: int | None = struct.unpack_from("<I", data, 4)[0]
                else:
                    errors = (e.frame_id for e in events if isinstance(e, NodeError))
                    frame_id = next(errors, None)
                offset = measured.pop(frame_id, None) if frame_id is not None else None
                if offset is not None:
                    tally.bytes_down += ws_frame_bytes(len(data), masked=False)
                    if not events:
                        tally.stale += 1
                    for event in events:
                        if isinstance(event, Detections):
                            tally.results += 1
                            latency_ms = now_ms() - event.capture_ms  # capture -> result
                            tally.latency.append((offset, latency_ms))
                            tally.batch_sizes.append(event.batch_size)
                            for key in ("queue_ms", "inference_ms", "post_ms"):
                                tally.server_ms.setdefault(key, []).append(getattr(event, key))
                        elif isinstance(event, FrameDropped):
                            tally.dropped += 1
                        elif isinstance(event, NodeError):
                            tally.errors += 1

        receiver = asyncio.create_task(receive())
        try:
            # Cameras run on after the window until every stream's measured frames are
            # answered: a camera that stopped would leave its last frame waiting, never
            # replaced, which latest-frame-wins does not do in steady state.
            for n, tick_s in enumerate(window.ticks(phase_s, run_on_s=window.drain_s)):
                if tick_s >= window.end_s:
                    tally.settled = not measured
                    if all(peer.settled for peer in tally.peers or [tally]):
                        break
                await sleep_until(tick_s)
                counted = window.counts(tick_s)
                tally.captured += counted
                if not stream.can_send():
                    tally.skipped += counted
                    continue
                rgba, w, h = frames[n % len(frames)]
                capture = now_ms()
                message = stream.encode_frame(rgba, w, h, capture, capture)
                if counted:
                    measured[struct.unpack_from("<I", message, 4)[0]] = tick_s - window.start_s
                    tally.sent += 1
                    tally.bytes_up += ws_frame_bytes(len(message), masked=True)
                    tally.up_frames += 1
                await ws.send(message)
            if measured:
                log.warning("%d measured frames unanswered after the drain", len(measured))
        finally:
            receiver.cancel()
            (outcome,) = await asyncio.gather(receiver, return_exceptions=True)
        tally.unanswered += len(measured)
        if isinstance(outcome, Exception):
            raise outcome


def http_request_bytes(request: httpx.Request) -> int:
    line = f"{request.method} {request.url.raw_path.decode()} HTTP/1.1\r\n"
    headers = sum(len(k) + len(v) + 4 for k, v in request.headers.raw)
    return len(line) + headers + 2 + len(request.content)


def http_response_bytes(response: httpx.Response) -> int:
    line = f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n"
    headers = sum(len(k) + len(v) + 4 for k, v in response.headers.raw)
    return len(line) + headers + 2 + len(response.content)


def parse_server_timing(header: str) -> dict[str, float]:
    """The seed node's ``Server-Timing`` header (a bench addition, see seed_node.py)."""
    timings = {}
    for part in header.split(","):
        name, _, value = part.strip().partition(";dur=")
        if value:
            timings[f"{name}_ms"] = float(value)
    return timings


async def seed_stream(
    url: str,
    prep: SeedPrep,
    frames: Sequence[CameraFrame],
    window: Window,
    phase_s: float,
    tally: Tally,
) -> None:
    """The seed's client: normalise to float32 in numpy, POST it on a keep-alive
    connection, ``json.loads`` the reply. One request at a time per camera."""
    async with httpx.AsyncClient(timeout=120) as client:
        busy: asyncio.Task[None] | None = None

        async def one(rgba: bytes, w: int, h: int, offset: float, counted: bool) -> None:
            capture = now_ms()
            body = prep(rgba, w, h).tobytes()
            response = await client.post(
                url, content=body, headers={"content-type": "application/octet-stream"}
            )
            response.raise_for_status()
            outputs = json.loads(response.content)
            latency_ms = now_ms() - capture
            if not counted:
                return
            if not isinstance(outputs, list | dict):
                tally.errors += 1
                return
            tally.results += 1
            tally.latency.append((offset, latency_ms))
            tally.batch_sizes.append(1)
            tally.bytes_up += http_request_bytes(response.request)
            tally.up_frames += 1
            tally.bytes_down += http_response_bytes(response)
            for key, value in parse_server_timing(
                response.headers.get("server-timing", "")
            ).items():
                tally.server_ms.setdefault(key, []).append(value)

        for n, tick_s in enumerate(window.ticks(phase_s)):
            await sleep_until(tick_s)
            counted = window.counts(tick_s)
            tally.captured += counted
            if busy is not None and not busy.done():
                tally.skipped += counted
                continue
            if busy is not None:
                busy.result()  # surface a failed request
            rgba, w, h = frames[n % len(frames)]
            tally.sent += counted
            busy = asyncio.create_task(one(rgba, w, h, tick_s - window.start_s, counted))
        if busy is not None:
            await asyncio.wait_for(busy, window.drain_s)


@dataclass
class PointRun:
    """One window's streams, and the CPU the node and this process used during it."""

    window: Window
    tallies: list[Tally]
    node_cpu: CpuMeter
    client_cpu: CpuMeter


async def run_point(
    streams: Sequence[Callable[[Window, float, Tally], Awaitable[None]]],
    node_pid: int,
    window: Window,
) -> PointRun:
    """Run the streams over one window; measure the node's and this process's CPU."""
    run = PointRun(window, [Tally() for _ in streams], CpuMeter(node_pid), CpuMeter(os.getpid()))
    for tally in run.tallies:
        tally.peers = run.tallies

    async def meter() -> None:
        await sleep_until(window.start_s)
        run.node_cpu.start()
        run.client_cpu.start()
        await sleep_until(window.end_s)
        run.node_cpu.stop()
        run.client_cpu.stop()

    phases = [i * window.period_s / len(streams) for i in range(len(streams))]
    await asyncio.gather(
        meter(),
        *(
            go(window, phase, tally)
            for go, phase, tally in zip(streams, phases, run.tallies, strict=True)
        ),
    )
    return run


COUNTS = ("captured", "sent", "skipped", "results", "stale", "dropped", "errors", "unanswered")


def summarise(runs: Sequence[PointRun]) -> dict[str, Any]:
    """Totals over one or more windows with the same number of streams."""
    total = Tally()
    per_stream = [0] * len(runs[0].tallies)
    first: list[float] = []
    last: list[float] = []
    for run in runs:
        third = run.window.duration_s / 3
        for i, t in enumerate(run.tallies):
            for name in COUNTS:
                setattr(total, name, getattr(total, name) + getattr(t, name))
            per_stream[i] += t.results
            total.bytes_up += t.bytes_up
            total.up_frames += t.up_frames
            total.bytes_down += t.bytes_down
            total.latency += t.latency
            first += [ms for at, ms in t.latency if at < third]
            last += [ms for at, ms in t.latency if at >= 2 * third]
            total.batch_sizes += t.batch_sizes
            for key, values in t.server_ms.items():
                total.server_ms.setdefault(key, []).extend(values)
    duration_s = sum(run.window.duration_s for run in runs)
    node_cpu_s = sum(run.node_cpu.cpu_s for run in runs)
    node_wall_s = sum(run.node_cpu.wall_s for run in runs)
    client_cpu_s = sum(run.client_cpu.cpu_s for run in runs)
    results = total.results
    return {
        "streams": len(per_stream),
        "duration_s": round(duration_s, 2),
        **{name: getattr(total, name) for name in COUNTS},
        "fps_total": round(results / duration_s, 2),
        "fps_per_stream_mean": round(results / duration_s / len(per_stream), 2),
        "fps_per_stream_min": round(min(per_stream) / duration_s, 2),
        "latency": summary([ms for _, ms in total.latency]),
        "p95_first_third_ms": summary(first).get("p95_ms"),
        "p95_last_third_ms": summary(last).get("p95_ms"),
        "batch_size_mean": round(float(np.mean(total.batch_sizes)), 2)
        if total.batch_sizes
        else None,
        "server_ms": {k: summary(v) for k, v in sorted(total.server_ms.items())},
        "bytes_up_per_frame": round(total.bytes_up / total.up_frames) if total.up_frames else None,
        "bytes_down_per_frame": round(total.bytes_down / results) if results else None,
        "node_cpu_percent": round(100 * node_cpu_s / node_wall_s, 1) if node_wall_s else None,
        "node_cpu_ms_per_result": round(1000 * node_cpu_s / results, 2) if results else None,
        "client_cpu_percent": round(100 * client_cpu_s / node_wall_s, 1) if node_wall_s else None,
    }
