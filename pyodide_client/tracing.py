"""Which frames a page traces, and what it tells about them (issue 12). Sans-I/O, stdlib.

With tracing on (the web app's config has a ``trace`` entry, i.e. a collector is set up),
``FrameTracer.sample`` picks about ``sample_rate`` of the frames. For a picked frame it
returns the TRACE message to send to the node right before the frame (only to a node whose
WELCOME says it takes traces); the node's spans then hang under the page's ``frame`` span.
Once the frame is drawn, ``report`` gives the JSON body for the web app's ``/api/trace``
with the page's own stages (capture, preprocess, send, draw), in ``performance.now()`` ms.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from .page_config import TraceConfig
from .protocol import Trace

__all__ = ["FrameTracer", "PageTraces"]

MAX_TRACKED = 64  # sampled frames the page waits on; older ones are forgotten


class FrameTracer:
    def __init__(self, sample_rate: float, rng: random.Random | None = None) -> None:
        if not 0 <= sample_rate <= 1:
            raise ValueError(f"sample_rate: expected 0..1, got {sample_rate!r}")
        self.sample_rate = sample_rate
        self._rng = rng if rng is not None else random.Random()  # seeded from the OS
        self._sampled: dict[int, Trace] = {}

    def sample(self, frame_id: int) -> Trace | None:
        """A TRACE for this frame when it is picked, else None (most frames)."""
        if self.sample_rate <= 0 or self._rng.random() >= self.sample_rate:
            return None
        trace_id = self._rng.getrandbits(128).to_bytes(16, "big")
        span_id = self._rng.getrandbits(64).to_bytes(8, "big")
        if not any(trace_id) or not any(span_id):  # all zero is invalid: one chance in 2**64
            return None
        trace = Trace(
            trace_id=trace_id,
            span_id=span_id,
            trace_flags=1,
            frame_id=frame_id,
        )
        if len(self._sampled) >= MAX_TRACKED:  # frames that never came back are forgotten
            self._sampled.pop(next(iter(self._sampled)))
        self._sampled[frame_id] = trace
        return trace

    def report(
        self,
        frame_id: int,
        stages: dict[str, tuple[float, float]],
        time_origin_ms: float,
        node: str | None,
    ) -> dict[str, Any] | None:
        """The /api/trace body for a sampled frame once drawn; None for any other."""
        trace = self._sampled.pop(frame_id, None)
        if trace is None:
            return None
        return {
            "traceparent": trace.traceparent,
            "time_origin_ms": time_origin_ms,
            "node": node,
            "stages": {name: [start, end] for name, (start, end) in stages.items()},
        }


@dataclass
class _Timed:
    frame_id: int
    capture_ms: float
    encode_start_ms: float
    preprocess_end_ms: float | None = None
    sent_ms: float | None = None


class PageTraces:
    """The page's side, as ``BrowserClient`` drives it: a frame leaves (``frame_sent``:
    the TRACE to send before it, or None), its preprocessing is timed, it is drawn; then
    ``take_report`` gives the JSON for the web app's trace URL."""

    def __init__(self, url: str, sample_rate: float, rng: random.Random | None = None) -> None:
        self.url = url
        self.sampler = FrameTracer(sample_rate, rng)
        self._timed: dict[float, _Timed] = {}  # by capture_ms, as drawing reports it
        self._last: _Timed | None = None
        self._ready: list[tuple[int, dict[str, tuple[float, float]], str | None]] = []

    @classmethod
    def from_config(cls, trace: TraceConfig | None) -> PageTraces | None:
        """The page config's ``trace`` entry; None: off."""
        if trace is None:
            return None
        return cls(trace.url, trace.sample_rate)

    def frame_sent(self, frame_id: int, capture_ms: float, encode_start_ms: float) -> bytes | None:
        trace = self.sampler.sample(frame_id)
        if trace is None:
            self._last = None
            return None
        self._last = self._timed[capture_ms] = _Timed(frame_id, capture_ms, encode_start_ms)
        while len(self._timed) > MAX_TRACKED:
            self._timed.pop(next(iter(self._timed)))
        return trace.serialize()

    def preprocessed(self, duration_ms: float, now_ms: float) -> None:
        """The frame just sent took ``duration_ms`` to preprocess; it left at ``now_ms``."""
        if self._last is not None and self._last.sent_ms is None:
            self._last.preprocess_end_ms = self._last.encode_start_ms + duration_ms
            self._last.sent_ms = now_ms

    def drawn(self, capture_ms: float, draw_ms: float, now_ms: float, node: str | None) -> None:
        timed = self._timed.pop(capture_ms, None)
        if timed is None:
            return
        end_ms = timed.preprocess_end_ms or timed.encode_start_ms
        stages = {
            "capture": (timed.capture_ms, timed.encode_start_ms),
            "preprocess": (timed.encode_start_ms, end_ms),
            "send": (end_ms, max(end_ms, timed.sent_ms or end_ms)),
            "draw": (now_ms - draw_ms, now_ms),
        }
        self._ready.append((timed.frame_id, stages, node))
        del self._ready[:-MAX_TRACKED]

    def take_report(self, time_origin_ms: float) -> str:
        """The next report as JSON, "" when none is ready."""
        while self._ready:
            frame_id, stages, node = self._ready.pop(0)
            report = self.sampler.report(frame_id, stages, time_origin_ms, node)
            if report is not None:
                return json.dumps(report)
        return ""
