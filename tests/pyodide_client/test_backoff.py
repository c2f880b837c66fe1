"""Reconnect backoff: exponential growth, a cap, seeded jitter."""

from __future__ import annotations

import pytest

from pyodide_client import backoff as backoff_module
from pyodide_client.backoff import Backoff


def delays(backoff: Backoff, count: int) -> list[float]:
    return [backoff.next_delay_ms() for _ in range(count)]


def test_without_jitter_delays_double_up_to_the_cap() -> None:
    assert delays(Backoff(jitter=0.0), 8) == [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]


def test_custom_growth() -> None:
    backoff = Backoff(initial_ms=100, max_ms=1000, factor=3, jitter=0.0)
    assert delays(backoff, 5) == [100, 300, 900, 1000, 1000]


def test_factor_one_is_a_constant_delay() -> None:
    assert delays(Backoff(initial_ms=40, max_ms=40, factor=1, jitter=0.0), 3) == [40, 40, 40]


def test_attempts_count_and_reset_starts_over() -> None:
    # given a backoff that has grown
    backoff = Backoff(jitter=0.0)
    delays(backoff, 4)
    assert backoff.attempts == 4
    # when it is reset (a connection succeeded)
    backoff.reset()
    # then the next delay is the initial one again
    assert backoff.attempts == 0
    assert delays(backoff, 2) == [250, 500]


def test_jitter_stays_within_its_band_around_each_step() -> None:
    backoff = Backoff(jitter=0.2, seed=7)
    bases = [250, 500, 1000, 2000, 4000] + [5000] * 15
    got = delays(backoff, len(bases))
    for base, delay in zip(bases, got, strict=True):
        assert base * 0.8 <= delay <= base * 1.2
    assert any(delay != base for base, delay in zip(bases, got, strict=True))


def test_the_same_seed_gives_the_same_delays() -> None:
    assert delays(Backoff(seed=3), 10) == delays(Backoff(seed=3), 10)
    assert delays(Backoff(seed=3), 10) != delays(Backoff(seed=4), 10)


def test_large_jitter_never_gives_a_negative_delay() -> None:
    assert all(delay >= 0.0 for delay in delays(Backoff(jitter=3.0, seed=1), 200))


def test_a_long_outage_keeps_the_delay_at_the_cap() -> None:
    # given a page that has been retrying for hours: factor**attempts is past float range
    backoff = Backoff(jitter=0.0, attempts=5000)
    # then the delay is still the cap, not an OverflowError
    assert backoff.next_delay_ms() == 5000
    assert backoff.attempts == 5001


def test_many_attempts_in_a_row_stay_capped() -> None:
    backoff = Backoff(seed=0)
    assert max(delays(backoff, 1500)) <= 5000 * 1.2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_ms": 0.0},
        {"initial_ms": -5.0},
        {"initial_ms": 300.0, "max_ms": 200.0},
        {"factor": 0.5},
    ],
)
def test_invalid_settings_raise(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="0 < initial_ms <= max_ms and factor >= 1, got"):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_all_names_exist() -> None:
    for name in backoff_module.__all__:
        assert hasattr(backoff_module, name), name
