"""The page's frame sampler: the share it picks, the TRACE it builds, the report it gives."""

from __future__ import annotations

import random

import pytest

from pyodide_client.protocol import parse
from pyodide_client.tracing import FrameTracer


def test_about_the_sample_rate_is_picked_and_each_pick_is_a_new_trace() -> None:
    tracer = FrameTracer(sample_rate=0.01, rng=random.Random(7))
    picked = [t for i in range(20_000) if (t := tracer.sample(i)) is not None]
    assert 150 <= len(picked) <= 250
    assert len({t.trace_id for t in picked}) == len(picked)
    assert all(t.trace_flags == 1 for t in picked)


def test_zero_samples_nothing_and_one_everything() -> None:
    assert all(FrameTracer(0.0).sample(i) is None for i in range(100))
    assert all(FrameTracer(1.0).sample(i) is not None for i in range(100))


def test_the_trace_message_names_its_frame_and_round_trips() -> None:
    trace = FrameTracer(1.0, random.Random(1)).sample(42)
    assert trace is not None
    assert parse(trace.serialize()) == trace
    assert trace.frame_id == 42


def test_a_report_only_for_sampled_frames_and_only_once() -> None:
    tracer = FrameTracer(1.0, random.Random(3))
    trace = tracer.sample(5)
    assert trace is not None
    stages = {"capture": (1.0, 2.0), "draw": (30.0, 31.0)}

    report = tracer.report(5, stages, time_origin_ms=1.7e12, node="ws://n/ws")

    assert report == {
        "traceparent": trace.traceparent,
        "time_origin_ms": 1.7e12,
        "node": "ws://n/ws",
        "stages": {"capture": [1.0, 2.0], "draw": [30.0, 31.0]},
    }
    assert tracer.report(5, stages, 1.7e12, None) is None
    assert tracer.report(6, stages, 1.7e12, None) is None


def test_a_bad_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        FrameTracer(1.5)
