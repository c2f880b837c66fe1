"""Reconnect delays: exponential backoff with a cap and random jitter (seedable for tests)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass
class Backoff:
    initial_ms: float = 250.0
    max_ms: float = 5000.0
    factor: float = 2.0
    jitter: float = 0.2  # +-20 %, so many pages do not retry in lockstep
    seed: int | None = None  # None: the system's randomness, different in every page
    attempts: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.initial_ms <= 0 or self.max_ms < self.initial_ms or self.factor < 1:
            raise ValueError(
                f"backoff needs 0 < initial_ms <= max_ms and factor >= 1, got "
                f"{self.initial_ms}, {self.max_ms}, {self.factor}"
            )
        self._rng = random.Random(self.seed)

    def next_delay_ms(self) -> float:
        try:
            grown = self.initial_ms * self.factor**self.attempts
        except OverflowError:  # e.g. 2.0**1024 after ~85 min of retries at the cap
            grown = self.max_ms
        base = min(self.max_ms, grown)
        self.attempts += 1
        spread = base * self.jitter
        return max(0.0, base + self._rng.uniform(-spread, spread))

    def reset(self) -> None:
        self.attempts = 0
