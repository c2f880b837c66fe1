"""Which frames a page traces, and what it tells about them (issue 12). Sans-I/O, stdlib.

With tracing on (the web app's config has a ``trace`` entry, i.e. a collector is set up),
``FrameTracer.sample`` picks about ``sample_rate`` of the frames. For a picked frame it
returns the TRACE message to send to the node right before the frame (only to a node whose
WELCOME says it takes traces); the node's spans then hang under the page's ``frame`` span.
Once the frame is drawn, ``report`` gives the JSON body for the web app's ``/api/trace``
with the page's own stages (capture, preprocess, send, draw), in ``performance.now()`` ms.
"""

from __future__ import annotations

import random
from typing import Any

from .protocol import Trace

__all__ = ["FrameTracer"]


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
        if len(self._sampled) >= 64:  # frames that never came back are forgotten
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
