"""pyodide_client.overlay: a result is drawn only over its own frame or a newer one."""

from __future__ import annotations

from pyodide_client.overlay import BOXES_EXPIRE_MS, Overlay


def test_a_late_result_is_not_drawn_over_a_newer_frame() -> None:
    overlay = Overlay()
    newer = overlay.detections("node", 2, (), capture_ms=200.0, round_trip_ms=5.0)
    assert newer is not None
    assert newer["expires_ms"] == BOXES_EXPIRE_MS
    assert newer["round_trip_ms"] == 5.0
    assert overlay.detections("local", 1, (), capture_ms=100.0) is None
    assert overlay.detections("local", 3, (), capture_ms=200.0) is not None  # same frame


def test_results_for_frames_of_the_old_source_are_not_drawn() -> None:
    overlay = Overlay()
    overlay.source_changed(500.0)
    assert overlay.detections("node", 1, (), capture_ms=499.0) is None
    assert overlay.detections("node", 2, (), capture_ms=500.0) is not None
