"""Dashboard: the numbers a page shows, computed by hand from samples at fake times.

Percentiles are nearest-rank (``stats.percentile``): rank ``round(q / 100 * (n - 1))`` of
the sorted values, so for five values p50 is the 3rd and p95 the 5th.
"""

from __future__ import annotations

import pytest

from pyodide_client import dashboard as dashboard_module
from pyodide_client.dashboard import STAGES, Dashboard


def test_all_names_exported_exist() -> None:
    for name in dashboard_module.__all__:
        assert hasattr(dashboard_module, name), name


def test_stages_are_listed_in_pipeline_order() -> None:
    assert STAGES == (
        "preprocess",
        "network",
        "decode",
        "queue",
        "inference",
        "post",
        "draw",
        "grab_to_drawn",
    )


def test_an_empty_dashboard_shows_no_numbers() -> None:
    board = Dashboard()

    assert board.summary(0.0) == {"fps": None, "round_trip_ms": None, "latency_ms": None}
    assert board.stage_table(0.0) == {name: {"p50": None, "p95": None} for name in STAGES}
    assert board.recent_round_trip_p95_ms(0.0) is None


def test_a_node_result_fills_round_trip_queue_inference_post_and_network() -> None:
    board = Dashboard()

    board.node_result(1000.0, round_trip_ms=40.0, queue_ms=2.0, inference_ms=8.0, post_ms=1.0)

    table = board.stage_table(1000.0)
    assert table["queue"] == {"p50": 2.0, "p95": 2.0}
    assert table["inference"] == {"p50": 8.0, "p95": 8.0}
    assert table["post"] == {"p50": 1.0, "p95": 1.0}
    assert table["network"] == {"p50": 29.0, "p95": 29.0}  # 40 - (2 + 8 + 1)
    for untouched in ("preprocess", "draw", "grab_to_drawn"):
        assert table[untouched] == {"p50": None, "p95": None}
    assert board.summary(1000.0)["round_trip_ms"] == 40.0
    assert board.recent_round_trip_p95_ms(1000.0) == 40.0


def test_network_time_is_never_negative() -> None:
    # A node's clock can claim more time than the round trip took (timer granularity).
    board = Dashboard()

    board.node_result(0.0, round_trip_ms=10.0, queue_ms=4.0, inference_ms=6.0, post_ms=1.0)

    assert board.stage_table(0.0)["network"] == {"p50": 0.0, "p95": 0.0}


def test_a_local_result_counts_as_inference_only() -> None:
    board = Dashboard()

    board.local_result(500.0, inference_ms=55.0)

    table = board.stage_table(500.0)
    assert table["inference"] == {"p50": 55.0, "p95": 55.0}
    assert table["network"] == {"p50": None, "p95": None}
    assert board.summary(500.0)["round_trip_ms"] is None
    assert board.recent_round_trip_p95_ms(500.0) is None


def test_stage_table_p50_and_p95_by_hand() -> None:
    board = Dashboard()
    # Given five preprocess times out of order and ten draw times 1..10 ms
    for i, duration_ms in enumerate([9.0, 3.0, 7.0, 1.0, 5.0]):
        board.preprocessed(100.0 + i, duration_ms)
    for i in range(10):
        board.drawn_frame(200.0 + 10 * i, capture_ms=150.0 + 10 * i, draw_ms=float(i + 1))

    table = board.stage_table(300.0)

    # sorted [1, 3, 5, 7, 9]: p50 rank round(2.0) = 2 -> 5; p95 rank round(3.8) = 4 -> 9
    assert table["preprocess"] == {"p50": 5.0, "p95": 9.0}
    # sorted [1..10]: p50 rank round(4.5) = 4 (half to even) -> 5; p95 rank round(8.55) = 9 -> 10
    assert table["draw"] == {"p50": 5.0, "p95": 10.0}
    # every frame was drawn 50 ms after its capture
    assert table["grab_to_drawn"] == {"p50": 50.0, "p95": 50.0}


def test_values_are_rounded_to_a_tenth() -> None:
    board = Dashboard()

    board.preprocessed(0.0, 1.26)
    board.drawn_frame(0.0, capture_ms=-33.333, draw_ms=0.04)

    assert board.stage_table(0.0)["preprocess"] == {"p50": 1.3, "p95": 1.3}
    assert board.stage_table(0.0)["draw"] == {"p50": 0.0, "p95": 0.0}
    assert board.summary(0.0)["latency_ms"] == 33.3


def test_fps_counts_drawn_frames_over_the_time_they_span() -> None:
    board = Dashboard()
    for i in range(4):  # four frames 100 ms apart: three intervals in 300 ms
        board.drawn_frame(1000.0 + 100 * i, capture_ms=960.0 + 100 * i, draw_ms=2.0)

    summary = board.summary(1300.0)

    assert summary["fps"] == 10.0
    assert summary["latency_ms"] == 40.0


def test_a_single_drawn_frame_is_no_rate() -> None:
    board = Dashboard()
    board.drawn_frame(1000.0, capture_ms=990.0, draw_ms=1.0)

    assert board.summary(1000.0)["fps"] is None


def test_samples_leave_the_window_after_its_span() -> None:
    board = Dashboard(span_ms=3000.0)
    board.node_result(1000.0, round_trip_ms=100.0, queue_ms=0.0, inference_ms=50.0, post_ms=0.0)
    board.node_result(2000.0, round_trip_ms=300.0, queue_ms=0.0, inference_ms=70.0, post_ms=0.0)

    # Both still inside [now - 3000, now] at 4000 ms (two values: p50 rank round(0.5) = 0) ...
    assert board.stage_table(4000.0)["inference"] == {"p50": 50.0, "p95": 70.0}
    assert board.recent_round_trip_p95_ms(4000.0) == 300.0
    # ... the first one gone at 4001 ms, both gone after 5000 ms.
    assert board.stage_table(4001.0)["inference"] == {"p50": 70.0, "p95": 70.0}
    assert board.summary(4001.0)["round_trip_ms"] == 300.0
    assert board.recent_round_trip_p95_ms(5001.0) is None
    assert board.stage_table(5001.0)["inference"] == {"p50": None, "p95": None}


def test_round_trip_p95_follows_the_slow_tail() -> None:
    board = Dashboard()
    for i, round_trip_ms in enumerate([20.0] * 19 + [400.0]):
        board.node_result(float(i), round_trip_ms, queue_ms=0.0, inference_ms=0.0, post_ms=0.0)

    # 20 values: p95 rank round(18.05) = 18 -> 20 ms; the one outlier is rank 19
    assert board.recent_round_trip_p95_ms(20.0) == 20.0
    board.node_result(21.0, 400.0, queue_ms=0.0, inference_ms=0.0, post_ms=0.0)
    # 21 values: p95 rank round(19.0) = 19 -> 400 ms
    assert board.recent_round_trip_p95_ms(21.0) == 400.0
    assert board.summary(21.0)["round_trip_ms"] == 20.0


@pytest.mark.parametrize("span_ms", [500.0, 3000.0])
def test_every_window_uses_the_span(span_ms: float) -> None:
    board = Dashboard(span_ms=span_ms)

    windows = [board.drawn, board.round_trip, *board.stages.values()]

    assert {window.span_ms for window in windows} == {span_ms}
    assert set(board.stages) == set(STAGES)


def test_report_summarises_what_the_user_saw_since_the_last_report() -> None:
    board = Dashboard()
    for i in range(10):
        board.drawn_frame(now_ms=1000.0 + 100 * i, capture_ms=1000.0 + 100 * i - 50, draw_ms=1.0)
    board.dropped_frame()

    first = board.report(1900.0, "node", "ws://gpu-1:8001/ws")
    second = board.report(1950.0, "local", "ws://gpu-1:8001/ws")

    assert first["mode"] == "node"
    assert first["node_url"] == "ws://gpu-1:8001/ws"
    assert first["frames"] == 10
    assert first["dropped"] == 1
    assert first["latency_p50_ms"] == 50.0
    assert first["fps"] == 10.0
    assert second["frames"] == 0
    assert second["dropped"] == 0
    assert second["node_url"] is None  # only a page on a node names one


def test_a_compressed_frame_s_decode_time_is_its_own_stage_not_network() -> None:
    board = Dashboard()

    board.node_result(
        1000.0, round_trip_ms=40.0, queue_ms=2.0, inference_ms=8.0, post_ms=1.0, decode_ms=0.5
    )

    table = board.stage_table(1000.0)
    assert table["decode"] == {"p50": 0.5, "p95": 0.5}
    assert table["network"] == {"p50": 28.5, "p95": 28.5}


def test_wire_shows_encoding_bytes_per_frame_and_mbit_per_second() -> None:
    board = Dashboard(span_ms=1000.0)
    assert board.wire(0.0) == {"encoding": "raw", "frame_bytes": 0, "mbit_s": 0.0}

    board.frame_sent(100.0, "jpeg", 10_000)
    board.frame_sent(200.0, "jpeg", 20_000)

    # 30,000 bytes in a 1 s window: 0.24 Mbit/s
    assert board.wire(500.0) == {"encoding": "jpeg", "frame_bytes": 15000, "mbit_s": 0.24}
    assert board.wire(1150.0)["frame_bytes"] == 20000


def test_a_frames_size_is_told_for_the_encoding_frames_go_in_now() -> None:
    # Seen in Firefox just after the link went raw: "raw, 154.6 KB a frame", the mean of
    # JPEG frames and raw ones (a raw 416x312 frame is 389 KB).
    board = Dashboard(span_ms=1000.0)
    for i in range(6):
        board.frame_sent(100.0 * i, "jpeg", 16_000)
    board.frame_sent(700.0, "raw", 389_376)
    board.frame_sent(800.0, "raw", 389_376)
    wire = board.wire(850.0)
    assert (wire["encoding"], wire["frame_bytes"]) == ("raw", 389_376)
    # the rate is what went out in the last second, whatever the encoding: 6 JPEG and 2 raw
    assert wire["mbit_s"] == round((6 * 16_000 + 2 * 389_376) * 8 / 1000 / 1000, 2)
