"""Rolling statistics over the last few seconds: frames per second and percentiles."""

from __future__ import annotations

from collections import deque

__all__ = ["RollingWindow", "percentile"]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100.0 * (len(ordered) - 1))))
    return ordered[rank]


class RollingWindow:
    """Timestamped samples kept for ``span_ms``."""

    def __init__(self, span_ms: float = 3000.0) -> None:
        self.span_ms = span_ms
        self._samples: deque[tuple[float, float]] = deque()

    def add(self, now_ms: float, value: float) -> None:
        self._samples.append((now_ms, value))
        self._trim(now_ms)

    def _trim(self, now_ms: float) -> None:
        while self._samples and self._samples[0][0] < now_ms - self.span_ms:
            self._samples.popleft()

    def count(self, now_ms: float) -> int:
        self._trim(now_ms)
        return len(self._samples)

    def rate_per_s(self, now_ms: float) -> float:
        self._trim(now_ms)
        if len(self._samples) < 2:
            return 0.0
        elapsed_ms = self._samples[-1][0] - self._samples[0][0]
        return (len(self._samples) - 1) * 1000.0 / elapsed_ms if elapsed_ms > 0 else 0.0

    def total(self, now_ms: float) -> float:
        """The sum of the values in the window."""
        self._trim(now_ms)
        return sum(v for _, v in self._samples)

    def mean(self, now_ms: float) -> float:
        """The mean of the values in the window; 0.0 for none."""
        self._trim(now_ms)
        return self.total(now_ms) / len(self._samples) if self._samples else 0.0

    def percentile(self, now_ms: float, q: float) -> float:
        self._trim(now_ms)
        return percentile([v for _, v in self._samples], q)
