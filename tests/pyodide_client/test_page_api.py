"""The page API's two public shapes, version 1 (docs/page-api.md): golden dictionaries, so
any change to what Playwright users rely on shows up here and needs a new version."""

from __future__ import annotations

import json
from dataclasses import replace

from pyodide_client.overlay import Overlay
from pyodide_client.page_api import API_VERSION, page_state, public_detections
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
)
CAT = FrameBox("cat", 15, 0.6123456, 10.04, 20.0, 300.55, 400.0)


def test_the_state_on_a_server() -> None:
    assert page_state(NODE) == {
        "version": 1,
        "detecting": True,
        "where": "server",
        "badge": "Detecting on server gpu0",
        "server": {"name": "gpu0", "url": "wss://edge.example:8001/ws"},
        "model": "nanodet-g-416",
        "fps": 9.8,
        "latency_ms": 52.4,
        "problem": "",
        "browser_engine": "ready",
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
        "objects": [{"label": "cat", "score": 0.6123, "box": [10.0, 20.0, 300.6, 400.0]}],
    }
    json.dumps(event["api"])  # plain JSON, as the window event carries it


def test_a_browser_result_names_no_server() -> None:
    shown = public_detections("local", "gpu0", 1, 2.0, [])
    assert (shown["where"], shown["server"], shown["objects"]) == ("browser", None, [])
    assert shown["version"] == API_VERSION
