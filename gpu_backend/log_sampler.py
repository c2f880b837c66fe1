"""Sampled log lines: a flood of bad clients must not become a flood of logs (issue 8 saw
248 MB in 30 s). Each sampler belongs to one call site of one node (the node owns its
samplers), so two apps in one process, or a node's tests, never share a budget."""

from __future__ import annotations

import logging

__all__ = ["LogSampler"]


class LogSampler:
    """At most ``per_s`` lines a second; the rest are counted and the count is reported
    with the next line that gets through. Time comes from the caller (the event loop's
    clock), so the sampler holds no clock of its own."""

    def __init__(self, per_s: float = 5.0, logger: logging.Logger | None = None) -> None:
        if per_s <= 0:
            raise ValueError(f"per_s must be positive, got {per_s}")
        self._interval_s = 1.0 / per_s
        self._next_s = 0.0
        self._log = logger if logger is not None else logging.getLogger(__name__)
        self.suppressed = 0

    def allow(self, now_s: float) -> bool:
        if now_s < self._next_s:
            self.suppressed += 1
            return False
        self._next_s = now_s + self._interval_s
        return True

    def log(self, now_s: float, level: int, msg: str, *args: object) -> None:
        if self.allow(now_s):
            if self.suppressed:
                msg += " (%d similar lines suppressed)"
                args = (*args, self.suppressed)
                self.suppressed = 0
            self._log.log(level, msg, *args)
