"""The test proxy's token bucket, on a fake clock; the proxy itself is exercised by the
cluster and bandwidth tests."""

from __future__ import annotations

import pytest

from tests.cluster.latency_proxy import TokenBucket


def test_unlimited_never_waits() -> None:
    bucket = TokenBucket(None)
    assert bucket.wait_s(10_000_000, now_s=0.0) == 0.0


def test_a_burst_passes_then_bytes_wait_for_the_rate() -> None:
    bucket = TokenBucket(8.0, burst_bytes=1000)  # 8 Mbit/s = 1,000,000 bytes/s
    bucket._last_s = 0.0
    assert bucket.wait_s(1000, now_s=0.0) == 0.0
    assert bucket.wait_s(500_000, now_s=0.0) == pytest.approx(0.5)
    # the next taker queues behind the debt
    assert bucket.wait_s(250_000, now_s=0.0) == pytest.approx(0.75)
    # a second later the debt is paid and the bucket refills only up to its burst
    assert bucket.wait_s(1000, now_s=10.0) == 0.0
    assert bucket.wait_s(1000, now_s=10.0) == pytest.approx(0.001)


def test_lifting_the_limit_forgives_the_debt() -> None:
    bucket = TokenBucket(1.0, burst_bytes=1000)
    bucket._last_s = 0.0
    assert bucket.wait_s(1_000_000, now_s=0.0) > 7
    bucket.rate_mbit = None
    assert bucket.wait_s(1_000_000, now_s=0.1) == 0.0
