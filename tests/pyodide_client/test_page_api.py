"""The page API's two public shapes, version 1 (docs/page-api.md): golden dictionaries, so
any change to what Playwright users rely on shows up here and needs a new version."""

from __future__ import annotations

import json
from dataclasses import replace

from pyodide_client.overlay import Overlay
from pyodide_client.page_api import API_VERSION, page_state, public_detections, public_server
from pyodide_client.page_source import SourceState
from pyodide_client.postprocess import FrameBox
from pyodide_client.view import Snapshot

NODE = Snapshot(
    mode="node",
    node="gpu0",
    node_url="wss://edge.example:8001/ws",
    model="nanodet-g-416",
    threads=2,
    local_state="ready",
    route="",
    fps=9.8,
    latency_ms=52.4,
    round_trip_ms=41.0,
    transport="WebSocket",
    backend_note="WebAssembly, 2 threads, the fastest measured here",
    identity="alice",
    local_frame_ms=74.25,
)
CAT = FrameBox("cat", 15, 0.6123456, 10.04, 20.0, 300.55, 400.0)


def test_the_state_on_a_server() -> None:
    assert page_state(NODE) == {
        "version": 1,
        "detecting": True,
        "where": "server",
        "badge": "Detecting on server gpu0",
        "server": {
            "name": "gpu0",
            "url": "wss://edge.example:8001/ws",
            "transport": "WebSocket",
            "identity": "alice",
        },
        "model": "nanodet-g-416",
        "fps": 9.8,
        "latency_ms": 52.4,
        "problem": "",
        "browser_engine": "ready",
        "browser_backend": "wasm",
        "browser_threads": 2,
        "browser_frame_ms": 74.2,
        "browser_standby": False,
        "browser_note": "WebAssembly, 2 threads, the fastest measured here",
        "browser_problem": "",
        "token_problem": "",
    }


def test_the_state_in_the_browser() -> None:
    shown = replace(NODE, mode="local", node=None, node_url=None, model="nanodet-g-416-int8")
    state = page_state(shown)
    assert (state["detecting"], state["where"], state["server"]) == (True, "browser", None)
    assert state["badge"] == "Detecting in this browser"
    assert state["model"] == "nanodet-g-416-int8"


def test_not_detecting_says_why_and_names_no_place() -> None:
    denied = page_state(replace(NODE, source=SourceState.DENIED.value))
    assert (denied["detecting"], denied["where"]) == (False, None)
    assert denied["badge"].startswith("Not detecting")
    assert denied["problem"]  # what to do about it, in words
    starting = page_state(replace(NODE, frames_flow=False))
    assert (starting["detecting"], starting["where"], starting["badge"]) == (
        False,
        None,
        "Starting…",
    )


def test_a_refusal_is_the_problem() -> None:
    refused = replace(NODE, mode="local", refusal="server gpu0 serves another model")
    assert page_state(refused)["problem"] == "server gpu0 serves another model"


def test_a_drawn_result_in_public_words() -> None:
    event = Overlay().detections("node", 7, (CAT,), 1234.5, server="gpu0", round_trip_ms=40.0)
    assert event is not None
    assert event["api"] == {
        "version": 1,
        "where": "server",
        "server": "gpu0",
        "frame_id": 7,
        "capture_ms": 1234.5,
        "round_trip_ms": 40.0,
        "drawn_ms": None,  # stamped by the page when it has drawn them (page-api.js)
        "objects": [{"label": "cat", "score": 0.6123, "box": [10.0, 20.0, 300.6, 400.0]}],
    }
    json.dumps(event["api"])  # plain JSON, as the window event carries it


def test_a_browser_result_names_no_server() -> None:
    shown = public_detections("local", "gpu0", 1, 2.0, [])
    assert (shown["where"], shown["server"], shown["objects"]) == ("browser", None, [])
    assert shown["version"] == API_VERSION


def test_a_browser_engine_on_webgpu_with_its_standby_and_a_problem() -> None:
    shown = replace(
        NODE,
        mode="local",
        backend="webgpu",
        has_local_standby=True,
        local_frame_ms=None,
        local_problem="Local detection could not start: WebGPU failed",
    )
    state = page_state(shown)
    assert (state["browser_backend"], state["browser_standby"]) == ("webgpu", True)
    assert state["browser_frame_ms"] is None  # nothing measured yet
    assert state["browser_problem"] == "Local detection could not start: WebGPU failed"
    assert state["badge"] == "Detecting in this browser, GPU"


def test_a_token_problem_is_said_in_the_state() -> None:
    shown = replace(NODE, token_problem="the web app could not be reached for a stream token")
    assert page_state(shown)["token_problem"] == (
        "the web app could not be reached for a stream token"
    )


def test_a_server_accepting_the_page() -> None:
    assert public_server("gpu0", "wss://edge.example:8001/ws", "QUIC", "alice", 812.5) == {
        "version": 1,
        "name": "gpu0",
        "url": "wss://edge.example:8001/ws",
        "transport": "QUIC",
        "identity": "alice",
        "at_ms": 812.5,
    }


def test_every_shape_is_plain_json() -> None:
    shapes = (
        page_state(NODE),
        public_detections("node", "gpu0", 1, 2.0, [], round_trip_ms=3.0),
        public_server("gpu0", "ws://127.0.0.1:8001/ws", "WebSocket", None, 1.0),
    )
    for shape in shapes:
        assert json.loads(json.dumps(shape)) == shape
