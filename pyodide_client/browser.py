"""The page's Python side: what JavaScript calls inside Pyodide.

JavaScript only moves bytes and pixels. It asks this object whether to grab a frame, hands
it the RGBA pixels, sends the bytes it gets back, feeds it what the node sends, and draws
what it returns. Every value crossing to JavaScript is ``bytes`` (a message to send) or a
JSON string (events, status), so no Python object leaks into the page.

Runs unchanged under CPython in tests: JS buffers are accepted through ``to_bytes()``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Protocol

from .backoff import Backoff
from .stats import RollingWindow
from .stream import (
    Detections,
    Event,
    FrameDropped,
    NodeError,
    NodeStream,
    PongReceived,
    Ready,
    StreamError,
)

__all__ = ["BrowserClient"]


class _JsBuffer(Protocol):
    def to_bytes(self) -> bytes: ...


Buffer = bytes | bytearray | memoryview | _JsBuffer


def _as_bytes(data: Buffer) -> bytes | bytearray | memoryview:
    if isinstance(data, bytes | bytearray | memoryview):
        return data
    return data.to_bytes()  # a Pyodide JsBuffer (Uint8Array, Uint8ClampedArray): one copy


class BrowserClient:
    """One page's connection logic: the current node stream, reconnect backoff and the
    numbers shown in the status line."""

    def __init__(self, config_json: str) -> None:
        config = json.loads(config_json)
        self.node_urls: list[str] = list(config.get("node_urls", []))
        self.max_in_flight = int(config.get("max_in_flight", 2))
        self.backoff = Backoff()
        self.stream: NodeStream | None = None
        self.node_url: str | None = None
        self._url_index = 0
        self._shown = RollingWindow()
        self._round_trip = RollingWindow()
        self._latency = RollingWindow()
        self.last_error = ""

    # -- connection lifecycle --------------------------------------------------------------
    def next_url(self) -> str:
        """The node URL to (re)connect to; cycles through the configured list."""
        if not self.node_urls:
            raise StreamError("no node URL is configured for this page")
        url = self.node_urls[self._url_index % len(self.node_urls)]
        self._url_index += 1
        self.node_url = url
        self.stream = NodeStream(max_in_flight=self.max_in_flight)
        return url

    def on_close(self) -> float:
        """The socket closed or failed; returns how long to wait before reconnecting (ms)."""
        if self.stream is not None:
            self.stream.connection_lost()
        self.stream = None
        return self.backoff.next_delay_ms()

    def is_ready(self) -> bool:
        return self.stream is not None and self.stream.hello is not None

    def want_frame(self) -> bool:
        return self.stream is not None and self.stream.can_send()

    # -- frames ----------------------------------------------------------------------------
    def encode_frame(
        self, rgba: Buffer, width_px: int, height_px: int, capture_ms: float, now_ms: float
    ) -> bytes:
        if self.stream is None:
            raise StreamError("no node connection: call next_url() and wait for the hello")
        return self.stream.encode_frame(_as_bytes(rgba), width_px, height_px, capture_ms, now_ms)

    def ping(self, now_ms: float) -> bytes:
        if self.stream is None:
            raise StreamError("no node connection to ping")
        return self.stream.ping(now_ms)

    def on_message(self, data: Buffer, now_ms: float) -> str:
        """Feed one message from the node; returns a JSON list of events for the page."""
        if self.stream is None:
            return "[]"
        try:
            events = self.stream.receive(_as_bytes(data), now_ms)
        except StreamError as exc:
            self.last_error = str(exc)
            return json.dumps([{"type": "fatal", "message": str(exc)}])
        return json.dumps([self._to_js(event, now_ms) for event in events])

    def _to_js(self, event: Event, now_ms: float) -> dict[str, Any]:
        if isinstance(event, Ready):
            self.backoff.reset()
            hello = event.hello
            return {
                "type": "ready",
                "node": hello.node_name,
                "model": hello.model_name,
                "model_sha256": hello.model_sha256,
            }
        if isinstance(event, Detections):
            self._shown.add(now_ms, 1.0)
            self._round_trip.add(now_ms, event.round_trip_ms)
            self._latency.add(now_ms, event.latency_ms)
            return {
                "type": "detections",
                "frame_id": event.frame_id,
                "boxes": [asdict(box) for box in event.boxes],
                "round_trip_ms": event.round_trip_ms,
                "inference_ms": event.inference_ms,
            }
        if isinstance(event, NodeError):
            self.last_error = event.message
            return {"type": "error", "code": event.code, "message": event.message}
        if isinstance(event, FrameDropped):
            return {"type": "dropped", "frame_id": event.frame_id, "reason": event.reason}
        if isinstance(event, PongReceived):
            return {"type": "pong", "round_trip_ms": event.round_trip_ms}
        raise AssertionError(f"unhandled event {event!r}")

    # -- what the status line shows --------------------------------------------------------
    def status(self, now_ms: float) -> str:
        hello = self.stream.hello if self.stream else None
        return json.dumps(
            {
                "connected": hello is not None,
                "node": hello.node_name if hello else None,
                "node_url": self.node_url,
                "model": hello.model_name if hello else None,
                "fps": round(self._shown.rate_per_s(now_ms), 1),
                "round_trip_ms": round(self._round_trip.percentile(now_ms, 50), 1),
                "latency_ms": round(self._latency.percentile(now_ms, 50), 1),
            }
        )
