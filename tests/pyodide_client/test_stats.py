"""Rolling frame rate and percentiles for the status line."""

from __future__ import annotations

import numpy as np
import pytest

from pyodide_client import stats
from pyodide_client.stats import RollingWindow, percentile


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0, 10.0), (25, 20.0), (50, 30.0), (60, 30.0), (62.5, 30.0), (90, 50.0), (100, 50.0)],
)
def test_percentile_of_five_values(q: float, expected: float) -> None:
    # rank round(q / 100 * 4): 62.5 -> 2.5 rounds to 2 (half to even), 90 -> 3.6 -> 4
    assert percentile([50.0, 10.0, 40.0, 20.0, 30.0], q) == expected


def test_percentile_of_nothing_is_zero() -> None:
    assert percentile([], 50) == 0.0


def test_percentile_clamps_q_outside_0_to_100() -> None:
    assert percentile([1.0, 2.0, 3.0], -10) == 1.0
    assert percentile([1.0, 2.0, 3.0], 250) == 3.0


def test_percentile_does_not_reorder_its_input() -> None:
    values = [3.0, 1.0, 2.0]
    percentile(values, 50)
    assert values == [3.0, 1.0, 2.0]


@pytest.mark.parametrize("count", [1, 2, 3, 10, 37, 100])
def test_percentile_matches_numpy_nearest(count: int) -> None:
    values = np.random.default_rng(count).normal(size=count).tolist()
    for q in [0, 1, 5, 10, 25, 33.3, 50, 66, 75, 90, 95, 99, 100]:
        assert percentile(values, q) == float(np.percentile(values, q, method="nearest"))


def test_rate_of_evenly_spaced_samples() -> None:
    # given a sample every 40 ms (25 per second) for one second
    window = RollingWindow(span_ms=3000.0)
    for i in range(26):
        window.add(i * 40.0, 1.0)
    # then 25 intervals over 1000 ms
    assert window.rate_per_s(1000.0) == pytest.approx(25.0)


def test_rate_needs_two_samples() -> None:
    window = RollingWindow()
    assert window.rate_per_s(0.0) == 0.0
    window.add(0.0, 1.0)
    assert window.rate_per_s(0.0) == 0.0


def test_rate_of_samples_at_one_instant_is_zero() -> None:
    window = RollingWindow()
    window.add(5.0, 1.0)
    window.add(5.0, 1.0)
    assert window.rate_per_s(5.0) == 0.0


def test_old_samples_leave_the_window() -> None:
    # given samples at 0, 1000 and 2000 ms in a 1500 ms window
    window = RollingWindow(span_ms=1500.0)
    for t, value in [(0.0, 100.0), (1000.0, 1.0), (2000.0, 2.0)]:
        window.add(t, value)
    # then the one at 0 ms has gone (it is 2000 ms old), the others remain
    assert window.percentile(2000.0, 100) == 2.0
    assert window.percentile(2000.0, 0) == 1.0
    assert window.rate_per_s(2000.0) == pytest.approx(1.0)


def test_a_sample_exactly_span_old_is_kept() -> None:
    window = RollingWindow(span_ms=1000.0)
    window.add(0.0, 7.0)
    assert window.percentile(1000.0, 50) == 7.0
    assert window.percentile(1000.5, 50) == 0.0


def test_reading_later_trims_without_new_samples() -> None:
    window = RollingWindow(span_ms=100.0)
    window.add(0.0, 1.0)
    window.add(50.0, 3.0)
    assert window.percentile(50.0, 0) == 1.0
    assert window.percentile(120.0, 0) == 3.0  # the sample at 0 ms left at 100 ms
    assert window.rate_per_s(500.0) == 0.0


def test_all_names_exist() -> None:
    for name in stats.__all__:
        assert hasattr(stats, name), name
