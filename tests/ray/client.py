"""A minimal real client for the Ray tests and bench: one frame of a photo to a node URL,
through the shared sans-I/O NodeStream, over a websockets connection."""

from __future__ import annotations

import time

from websockets.sync.client import connect

from pyodide_client.stream import Detections, NodeStream
from tests.handshake import handshake

__all__ = ["detect_once"]


def _now_ms() -> float:
    return time.perf_counter() * 1000.0


def detect_once(
    url: str, rgba: bytes, width_px: int, height_px: int, timeout_s: float = 20.0
) -> tuple[list[str], float]:
    """Labels detected in one frame, and the frame's round trip in ms."""
    stream = NodeStream()
    with connect(url, compression=None, max_size=None, open_timeout=timeout_s) as socket:
        handshake(socket, stream, timeout_s)
        now = _now_ms()
        socket.send(stream.encode_frame(rgba, width_px, height_px, now, now))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            data = socket.recv(timeout=max(0.01, deadline - time.monotonic()))
            assert isinstance(data, bytes), f"expected a binary message, got {data!r}"
            for event in stream.receive(data, _now_ms()):
                if isinstance(event, Detections):
                    return [box.label for box in event.boxes], event.round_trip_ms
        raise TimeoutError(f"no result from {url} within {timeout_s} s")
