"""The node's side of the latency objective (issue 12, "SLAs that act"): node times of the
last ``window_s`` seconds and their p95, which the node publishes in every heartbeat and on
``/metrics``. The registry judges them (``webapp/sla.py``); the node only measures.

Sans-I/O: the clock is injectable, nothing here sleeps or locks (one event loop adds and
reads).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

__all__ = ["LatencyWindow"]

MAX_SAMPLES = 20_000  # a window's worth even at a few hundred frames per second


class LatencyWindow:
    def __init__(
        self,
        objective_ms: float,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.objective_ms = objective_ms
        self.window_s = window_s
        self._clock = clock
        self._samples: deque[tuple[float, float]] = deque(maxlen=MAX_SAMPLES)

    def add(self, node_ms: float) -> None:
        self._samples.append((self._clock(), node_ms))

    def p95_ms(self) -> float | None:
        """Nearest-rank p95 of the window; None when no frame came in it."""
        horizon_s = self._clock() - self.window_s
        while self._samples and self._samples[0][0] < horizon_s:
            self._samples.popleft()
        if not self._samples:
            return None
        ordered = sorted(ms for _, ms in self._samples)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
