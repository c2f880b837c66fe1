"""Limits on guesses: sign-in passwords and kiosk keys (issue 17, item 4 and 6).

An attempt is *reserved* before its secret is checked: every counter it touches goes up
at once, in one synchronous step (no ``await`` between the check and the increment), so
60 parallel guesses against a limit of 5 get 5 checks and 55 refusals, however slow the
check (scrypt) is. A successful attempt gives its reservation back.

Sign-in counts failures on three keys, so that an attacker on one address cannot lock the
real user out from another:

    (user, address)  ``per_user_address`` (5): the tight limit on guessing one account
                     from one place; it never stops the same user elsewhere
    address          ``per_address`` (20): one address guessing many accounts
    user             ``per_user`` (100, much looser): guesses at one account from many
                     addresses (a botnet); reaching it takes at least 5 addresses

Each key counts in a fixed window that starts at its first attempt. At most
``max_entries`` keys are kept (least recently touched dropped first), so a flood of
made-up names or addresses cannot grow memory; a dropped key only forgets its count.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import WebappError

__all__ = ["AttemptLimiter", "KioskKeyLimiter", "Limited", "LoginLimiter", "Reservation"]


MAX_KEY_NAME_CHARS = 128


class Limited(WebappError):
    """Too many attempts: ``retry_after_s`` until one may be tried again."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many failed attempts; try again in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Reservation:
    """The counters one attempt raised, and how many attempts each key now holds."""

    keys: tuple[str, ...]
    counts: tuple[int, ...]


class AttemptLimiter:
    """Counters per key in fixed windows, with reserve-before-check semantics."""

    def __init__(
        self,
        *,
        window_s: float = 300.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s, self.max_entries = window_s, max_entries
        self._clock = clock
        self._counts: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def _current(self, key: str, now_s: float) -> tuple[int, float]:
        count, since_s = self._counts.get(key, (0, now_s))
        if now_s - since_s >= self.window_s:
            self._counts.pop(key, None)
            return 0, now_s
        return count, since_s

    def reserve(self, limits: Sequence[tuple[str, int]]) -> Reservation:
        """Counts one attempt on every key, or raises ``Limited`` (counting nothing) when
        any key is at its limit."""
        now_s = self._clock()
        current = [self._current(key, now_s) for key, _ in limits]
        wait_s = max(
            (
                since_s + self.window_s - now_s
                for (count, since_s), (_, limit) in zip(current, limits, strict=True)
                if count >= limit
            ),
            default=0.0,
        )
        if wait_s > 0:
            raise Limited(wait_s)
        counts = []
        for (key, _), (count, since_s) in zip(limits, current, strict=True):
            self._counts[key] = (count + 1, since_s)
            self._counts.move_to_end(key)
            counts.append(count + 1)
        while len(self._counts) > self.max_entries:
            self._counts.popitem(last=False)
        return Reservation(tuple(key for key, _ in limits), tuple(counts))

    def give_back(self, reservation: Reservation, forget: Sequence[str] = ()) -> None:
        """The attempt succeeded: it no longer counts; keys in ``forget`` start afresh."""
        for key in reservation.keys:
            if key in forget:
                self._counts.pop(key, None)
                continue
            held = self._counts.get(key)
            if held is not None:
                self._counts[key] = (max(0, held[0] - 1), held[1])

    def __len__(self) -> int:
        return len(self._counts)


class LoginLimiter(AttemptLimiter):
    def __init__(
        self,
        *,
        per_user_address: int = 5,
        per_address: int = 20,
        per_user: int = 100,
        window_s: float = 300.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(window_s=window_s, max_entries=max_entries, clock=clock)
        self.per_user_address, self.per_address, self.per_user = (
            per_user_address,
            per_address,
            per_user,
        )

    def reserve_sign_in(self, address: str, user: str) -> Reservation:
        user = user[:MAX_KEY_NAME_CHARS]  # made-up names cost bounded memory per key
        return self.reserve(
            (
                (f"ua:{user}\0{address}", self.per_user_address),
                (f"a:{address}", self.per_address),
                (f"u:{user}", self.per_user),
            )
        )

    def signed_in(self, reservation: Reservation) -> None:
        # The user's own failures from this address are forgiven; the address's and the
        # account's other counts lose only this attempt.
        self.give_back(reservation, forget=reservation.keys[:1])


class KioskKeyLimiter(AttemptLimiter):
    """Wrong kiosk keys per client address (a key is 32 random bytes: this is about the
    log and the CPU a flood costs, not about guessing)."""

    def __init__(
        self,
        *,
        per_address: int = 10,
        window_s: float = 300.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(window_s=window_s, max_entries=max_entries, clock=clock)
        self.per_address = per_address

    def reserve_key(self, address: str) -> Reservation:
        return self.reserve(((f"a:{address}", self.per_address),))
