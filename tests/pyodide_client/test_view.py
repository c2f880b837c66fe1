"""What the page says: plain words, where detection runs, no numbers before measurements,
details for the raw facts, timings per mode, and detections grouped by class."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pyodide_client import view as view_module
from pyodide_client.postprocess import FrameBox
from pyodide_client.view import (
    DASH,
    STAGES_BY_MODE,
    TIMES,
    Snapshot,
    badge,
    details,
    in_view,
    refusal_text,
    source_problem,
    status_line,
    timing_rows,
    timings_note,
    token_problem_text,
)

NODE = Snapshot(
    mode="node",
    node="gpu0",
    node_url="ws://10.0.0.5:8001/ws",
    model="nanodet-g-416",
    threads=2,
    local_state="ready",
    route="",
    fps=9.8,
    latency_ms=52.4,
    round_trip_ms=41.0,
)
LOCAL = replace(NODE, mode="local", node=None, node_url=None, route="no node answers")
NONE = replace(NODE, mode="none", node=None, node_url=None, fps=None, latency_ms=None)


def test_all_names_exported_exist() -> None:
    for name in view_module.__all__:
        assert hasattr(view_module, name), name


def test_the_badge_says_where_detection_runs_with_its_own_kind() -> None:
    assert badge(NODE) == {"kind": "node", "text": "Detecting on server gpu0"}
    assert badge(LOCAL) == {"kind": "local", "text": "Detecting in this browser"}
    assert badge(NONE) == {"kind": "starting", "text": "Starting…"}
    assert badge(replace(NONE, local_state="loading"))["text"] == "Starting…"


@pytest.mark.parametrize(
    ("source", "text"),
    [
        ("denied", "Not detecting: camera access denied"),
        ("no camera", "Not detecting: no camera"),
        ("needs https", "Not detecting: the camera needs https"),
        ("bad file", "Not detecting: that file cannot be played"),
        ("ended", "Not detecting: the camera stopped"),
        ("camera failed", "Not detecting: the camera could not start"),
    ],
)
def test_the_badge_never_says_detecting_without_a_picture(source: str, text: str) -> None:
    # given a node connected and ready, but no picture (issue 18)
    for snapshot in (NODE, LOCAL):
        assert badge(replace(snapshot, source=source)) == {"kind": "none", "text": text}
        assert "Detecting" not in status_line(replace(snapshot, source=source))


def test_a_normal_start_says_starting_in_a_neutral_colour_not_red() -> None:
    for snapshot in (
        replace(NONE, source="starting"),
        replace(NONE, local_state="loading"),
        replace(NODE, frames_flow=False),  # connected, no boxes yet
        replace(LOCAL, source="starting"),
    ):
        assert badge(snapshot) == {"kind": "starting", "text": "Starting…"}


def test_not_detecting_is_said_with_its_reason_when_nothing_can_detect() -> None:
    shown = badge(replace(NONE, local_state="failed"))
    assert shown["kind"] == "none"
    assert shown["text"] == "Not detecting: no server answers, and this browser cannot"


def test_source_problems_are_said_once_plainly_and_for_kiosks_their_way() -> None:
    bad_file = source_problem(replace(NODE, source="bad file"))
    assert bad_file == "That file cannot be played here. Choose a video or image file."
    assert source_problem(NODE) == ""
    assert source_problem(replace(NODE, source="needs https")) == ""  # the security line says it
    kiosk = source_problem(replace(NODE, source="denied", is_kiosk=True))
    assert "kiosk" in kiosk
    assert "retrying" in kiosk
    assert "reload" in source_problem(replace(NODE, source="denied"))


def test_token_problems_show_no_http_codes_and_nothing_offline() -> None:
    assert token_problem_text(0, needs_sign_in=False) == ""
    for status in (500, 503, 404):
        text = token_problem_text(status, needs_sign_in=False)
        assert str(status) not in text
        assert "detecting in this browser" in text
    assert "Sign in again" in token_problem_text(401, needs_sign_in=True)


def test_refusals_say_who_refused_and_why() -> None:
    origin = refusal_text("gpu0", "origin", origin="https://x:8443", url="wss://g:1/ws")
    assert origin.startswith("Server gpu0 ")
    assert "does not accept pages from https://x:8443" in origin
    assert "EDGESIGHT_ALLOWED_ORIGINS" in origin
    model = refusal_text("gpu1", "model", model="yolo", page_model="nanodet-g-416")
    assert model.startswith("Server gpu1 runs another model (yolo) than this page")
    assert "at capacity" in refusal_text("gpu2", "overloaded")
    assert "stream token (expired)" in refusal_text("gpu3", "token", detail="expired")


def test_the_timings_note_shows_what_was_measured_not_a_constant() -> None:
    assert timings_note(replace(LOCAL, fps=21.4, threads=2, model="nanodet-g-416-int8")) == (
        "This browser detects 21.4 frames a second here (2 threads, nanodet-g-416-int8)."
    )
    assert timings_note(NODE) == "Server gpu0 answers 9.8 frames a second to this page."
    assert timings_note(replace(LOCAL, fps=None)) == ""


@pytest.mark.parametrize("fps", [0.4, 1.3, 9.8, 20.8])
def test_the_timings_note_gives_the_status_lines_rate(fps: float) -> None:
    # Seen in WebKit: "Server gpu0 answers 1 frames a second" under "1.3 frames a second";
    # at 0.4 fps it read "answers 0 frames a second" while boxes came.
    for snapshot in (replace(NODE, fps=fps), replace(LOCAL, fps=fps)):
        rate = status_line(snapshot).split(" · ")[0]
        assert rate == f"{fps:.1f} frames a second"
        assert rate in timings_note(snapshot)


def test_the_status_line_has_no_zeros_before_measurements() -> None:
    fresh = replace(NODE, fps=None, latency_ms=None)
    assert (
        status_line(fresh)
        == f"{DASH} frames a second · boxes {DASH} ms after the frame was grabbed"
    )
    assert status_line(NODE) == "9.8 frames a second · boxes 52 ms after the frame was grabbed"
    assert "0.0" not in status_line(fresh)


def test_the_status_line_keeps_urls_and_countdowns_out() -> None:
    waiting = replace(
        NONE, node_url="ws://10.0.0.5:8001/ws", route="no node answers (next try in 1.2 s)"
    )
    line = status_line(waiting)
    assert "ws://" not in line
    assert "next try" not in line
    shown = details(waiting)
    assert "Connecting to: ws://10.0.0.5:8001/ws" in shown
    assert "Routing: no node answers (next try in 1.2 s)" in shown


def test_details_say_how_frames_travel() -> None:
    wire = {"encoding": "jpeg", "frame_bytes": 14200, "mbit_s": 3.42, "note": ""}
    assert "Frames sent as jpeg: 14.2 KB each, 3.4 Mbit/s" in details(replace(NODE, wire=wire))
    assert status_line(replace(NODE, wire=wire)).endswith(" · jpeg, 14.2 KB a frame, 3.4 Mbit/s")
    assert not any(line.startswith("Frames") for line in details(NODE))


def test_details_carry_the_raw_facts() -> None:
    assert details(NODE)[:2] == [
        "Server: gpu0 at ws://10.0.0.5:8001/ws",
        "Round trip to the server: 41 ms",
    ]
    assert "In this browser: onnxruntime-web (WebAssembly, 2 threads)" in details(LOCAL)
    assert "Model: nanodet-g-416" in details(LOCAL)


@pytest.mark.parametrize("mode", ["node", "local", "none"])
def test_timings_list_only_the_stages_of_the_mode(mode: str) -> None:
    table = {name: {"p50": 1.0, "p95": 2.0} for name in STAGES_BY_MODE["node"]}
    rows = timing_rows(mode, table)
    assert [row["stage"] for row in rows] == list(STAGES_BY_MODE[mode])


def test_local_timings_have_no_network_or_node_queue() -> None:
    stages = STAGES_BY_MODE["local"]
    assert "network" not in stages
    assert "queue" not in stages


def test_timings_show_a_dash_where_nothing_was_measured() -> None:
    rows = timing_rows("local", {"inference": {"p50": 74.04, "p95": None}})
    assert rows[1] == {"stage": "inference", "label": "detect", "p50": "74.0", "p95": DASH}
    assert rows[0]["p50"] == DASH  # preprocess: not in the table at all


def box(label: str, score: float) -> FrameBox:
    return FrameBox(label, 0, score, 0.0, 0.0, 1.0, 1.0)


def test_in_view_groups_by_class_most_frequent_first() -> None:
    boxes = [box("person", 0.76), box("dog", 0.9), box("person", 0.73), box("person", 0.5)]
    assert [group["text"] for group in in_view(boxes)] == [f"person {TIMES}3", "dog"]
    assert in_view(boxes)[0] == {
        "label": "person",
        "count": 3,
        "best": 0.76,
        "text": f"person {TIMES}3",
    }


def test_in_view_breaks_ties_by_best_score() -> None:
    boxes = [box("cat", 0.4), box("dog", 0.9)]
    assert [group["label"] for group in in_view(boxes)] == ["dog", "cat"]
    assert in_view([]) == []


def test_details_say_how_many_frames_may_be_in_flight() -> None:
    wire = {"encoding": "jpeg", "frame_bytes": 14200, "mbit_s": 3.42, "note": "", "in_flight": 3}
    shown = "Frames sent as jpeg: 14.2 KB each, 3.4 Mbit/s, up to 3 in flight"
    assert shown in details(replace(NODE, wire=wire))


def test_a_kiosk_loop_says_why_not_the_camera_and_that_it_retries() -> None:
    shown = replace(NODE, is_kiosk=True, camera_failure="denied")
    assert badge(shown) == {"kind": "node", "text": "Detecting on server gpu0"}
    text = source_problem(shown)
    assert "retrying" in text
    assert text.endswith("Showing the configured loop meanwhile.")


def test_webgpu_says_gpu_in_the_badge_and_details() -> None:
    gpu = replace(LOCAL, backend="webgpu", backend_note="WebGPU, the fastest measured here")
    assert badge(gpu) == {"kind": "local", "text": "Detecting in this browser, GPU"}
    shown = details(gpu)
    assert "In this browser, GPU: onnxruntime-web (WebGPU)" in shown
    assert "In-browser engine: WebGPU, the fastest measured here" in shown
    assert not any("WebAssembly" in line for line in shown)
    # Wasm keeps its words (other tests and pages match them exactly)
    assert badge(replace(LOCAL, backend="wasm"))["text"] == "Detecting in this browser"
