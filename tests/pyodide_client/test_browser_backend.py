"""BrowserClient's in-browser engine steps (backend_choice.py) driven as static/app.js
drives them: WebGPU or Wasm by a timed warm-up, a lost device -> the Wasm standby at once,
a worker that never answers -> retried, then a message (issues 18 and 20)."""

from __future__ import annotations

import json
from typing import Any

from pyodide_client.browser import BrowserClient
from pyodide_client.page_events import WorkerResult

from .test_browser import CARD, HEIGHT, RGBA, WIDTH, local_outputs, make_client, status


def step(reply: str) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(reply)
    return shown


def start(client: BrowserClient, times_ms: dict[str, float], webgpu_problem: str = "") -> float:
    """Load every step's worker with its warm-up from ``times_ms``, until "done"."""
    now = 0.0
    current = step(client.local_steps.begin(True, 2, webgpu_problem, now))
    while current["do"] != "done":
        if current["do"] == "load":
            assert client.local_steps.check_model(CARD.sha256) == ""
            now += 1000.0
            current = step(
                client.local_steps.step_loaded(current["key"], times_ms[current["key"]], now)
            )
        else:
            assert current["do"] in ("use", "drop")
            current = step(client.local_steps.next_step(now))
    return now


def run_frame(client: BrowserClient, now: float) -> list[dict[str, Any]]:
    """A camera frame through the local engine, drawn (the badge says "Detecting" only
    while boxes are drawn)."""
    client.source_update("live", "camera")
    assert client.next_action(now) == "local"
    frame_id = client.local_steps.encode(RGBA, WIDTH, HEIGHT, now, now)
    boxes, scores = local_outputs()
    events: list[dict[str, Any]] = client.dispatch(
        WorkerResult(frame_id, boxes, scores, 5.0), now + 10.0
    )
    client.note_drawn(now, 1.0, now + 11.0)
    return events


def test_a_faster_webgpu_runs_and_the_page_says_gpu() -> None:
    client = make_client()
    now = start(client, {"wasm-2": 80.0, "webgpu-2": 8.0})
    shown = status(client, now)
    assert (shown["mode"], shown["local_backend"], shown["threads"]) == ("local", "webgpu", 2)
    assert (
        "WebGPU, the fastest measured here (WebAssembly, 2 threads: 80 ms; WebGPU: 8 ms)"
        in (shown["local_backend_note"])
    )
    assert client.router.local_ms == 8.0  # its warm-up is the browser's estimate
    assert run_frame(client, now)[0]["source"] == "local"
    view = json.loads(client.view(now + 12.0))
    assert view["badge"] == {"kind": "local", "text": "Detecting in this browser, GPU"}
    assert "In this browser, GPU: onnxruntime-web (WebGPU)" in view["details"]


def test_a_slower_webgpu_leaves_wasm_running() -> None:
    client = make_client()
    now = 0.0
    first = step(client.local_steps.begin(True, 2, "", now))
    assert client.local_steps.check_model(CARD.sha256) == ""
    # Wasm runs as soon as it is measured, before WebGPU is tried
    assert step(client.local_steps.step_loaded(first["key"], 80.0, 1000.0))["do"] == "use"
    assert client.next_action(1000.0) == "local"
    trial = step(client.local_steps.next_step(1000.0))
    assert (trial["do"], trial["key"]) == ("load", "webgpu-2")
    frame_id = client.local_steps.encode(RGBA, WIDTH, HEIGHT, 1000.0, 1000.0)  # on Wasm meanwhile
    # WebGPU measured slower: ended; the frame on Wasm is still answered
    reply = step(client.local_steps.step_loaded("webgpu-2", 13_000.0, 15_000.0))
    assert reply == {"do": "drop", "keys": ["webgpu-2"]}
    boxes, scores = local_outputs()
    assert client.dispatch(WorkerResult(frame_id, boxes, scores, 5.0), 15_001.0)
    assert step(client.local_steps.next_step(15_001.0)) == {"do": "done"}
    shown = status(client, 15_001.0)
    assert shown["local_backend"] == "wasm"
    run_frame(client, 15_002.0)
    assert json.loads(client.view(15_020.0))["badge"]["text"] == "Detecting in this browser"


def test_a_lost_device_sends_the_next_frame_to_the_wasm_standby() -> None:
    client = make_client()
    now = start(client, {"wasm-2": 80.0, "webgpu-2": 8.0})
    # a frame is on the GPU when the device goes
    client.local_steps.encode(RGBA, WIDTH, HEIGHT, now, now)
    assert client.next_action(now) == "wait"
    reply = step(
        client.local_steps.lost("webgpu-2", "the GPU device was lost (destroyed)", now + 5.0)
    )
    # then the standby runs at once: no load, the lost frame forgotten, the estimate its own
    assert reply == {"do": "use", "key": "wasm-2", "warmup_ms": 80.0, "drop": ["webgpu-2"]}
    assert client.next_action(now + 5.0) == "local"
    assert client.router.local_ms == 80.0
    shown = status(client, now + 5.0)
    assert (shown["local_backend"], shown["local_state"]) == ("wasm", "ready")
    assert shown["local_backend_note"] == (
        "WebAssembly: WebGPU stopped working (the GPU device was lost (destroyed))"
    )
    assert step(client.local_steps.next_step(now + 5.0)) == {"do": "done"}
    assert run_frame(client, now + 6.0)[0]["source"] == "local"


def test_a_failed_frame_on_webgpu_counts_as_a_lost_device() -> None:
    client = make_client()
    now = start(client, {"wasm-2": 80.0, "webgpu-2": 8.0})
    frame_id = client.local_steps.encode(RGBA, WIDTH, HEIGHT, now, now)
    reply = step(
        client.local_steps.run_failed(
            "webgpu-2", frame_id, "/src/buffer_manager.cc:643 failed", now
        )
    )
    assert (reply["do"], reply["key"]) == ("use", "wasm-2")
    # onnxruntime's internals stay in the console, not in what the page shows
    assert status(client, now)["local_backend_note"] == (
        "WebAssembly: WebGPU stopped working (a frame failed on the GPU)"
    )
    # on Wasm a failed frame is only that frame
    frame_id = client.local_steps.encode(RGBA, WIDTH, HEIGHT, now, now)
    assert step(client.local_steps.run_failed("wasm-2", frame_id, "oops", now)) == {"do": "none"}
    assert client.next_action(now) == "local"


def test_a_worker_that_never_answers_is_retried_then_the_page_says_so() -> None:
    client = make_client(local_load_deadline_ms=3000.0, browser_backend="wasm")
    first = step(client.local_steps.begin(True, 2, "", 0.0))
    assert (first["do"], first["budget_ms"]) == ("load", 3000.0)
    assert status(client, 0.0)["local_state"] == "loading"
    again = step(client.local_steps.step_failed("wasm-2", "not ready within 3 s", True, 3000.0))
    assert (again["do"], again["key"]) == ("load", "wasm-2")
    last = step(client.local_steps.step_failed("wasm-2", "not ready within 3 s", True, 6000.0))
    assert last == {
        "do": "fail",
        "message": "Local detection could not start: WebAssembly, 2 threads not ready "
        "after 3 s, 2 tries. Reload the page to try again.",
    }
    shown = status(client, 6000.0)
    assert (shown["local_state"], shown["local_problem"]) == ("failed", last["message"])
    assert client.next_action(6000.0) == "wait"


def test_the_warm_up_sample_is_the_letterboxed_frame() -> None:
    client = make_client()
    step(client.local_steps.begin(True, 2, "no GPU adapter", 0.0))
    sample = client.local_steps.sample(RGBA, WIDTH, HEIGHT)
    assert len(sample) == 3 * CARD.input_width_px * CARD.input_height_px
    assert client.local.can_run() is False  # not a frame in flight
