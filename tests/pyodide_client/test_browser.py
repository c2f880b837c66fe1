"""The page core (``page_core.PageCore``, under ``BrowserClient``) driven event by event
with a fake clock.

Each event goes to ``dispatch`` (the typed events of ``page_events.py``: the timer, node
sockets' messages and closes, probe sockets, the node list, tokens, the local worker's
output), which answers with the commands it calls for, without the routing decision
``handle_event`` adds after some (test_page_events.py and test_page_edge.py drive those);
frames go through ``next_action`` / ``encode_frame``. Node messages here are real
protocol bytes; the model card is the repository's ``models/nanodet-g-416/model.json``.

Routing runs with its default settings: probes every 2 s, a ping unanswered for 2 s is a
failure, 500 ms at start for the first pings, a first backoff of 500 ms +-20 %, a 10 s
cool-down after OVERLOADED, and a switch needs 20 % and 15 ms of gain for 3 s on end,
10 s after the last move.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pyodide_client import page_core
from pyodide_client.browser import BrowserClient
from pyodide_client.model_card import ModelCard
from pyodide_client.node_link import (
    STALL_FACTOR,
    STALL_MAX_MS,
    STALL_MIN_MS,
    stall_deadline_ms,
)
from pyodide_client.page_events import (
    NodeList,
    ProbeFailed,
    ProbeMessage,
    SocketClosed,
    SocketMessage,
    TimerFired,
    TokenFetched,
    WorkerResult,
)
from pyodide_client.postprocess import PostprocessSettings
from pyodide_client.preprocess import Letterbox
from pyodide_client.protocol import (
    CLOSE_TRY_AGAIN_LATER,
    Auth,
    Detection,
    Dropped,
    DropReason,
    Dtype,
    Error,
    ErrorCode,
    Frame,
    Hello,
    Image,
    Ping,
    Pong,
    Result,
    Trace,
    Welcome,
    parse,
)
from pyodide_client.stream import StreamError

MODEL_JSON = Path(__file__).resolve().parents[2] / "models" / "nanodet-g-416" / "model.json"
CARD_JSON = MODEL_JSON.read_text(encoding="utf-8")
CARD = ModelCard.from_json(CARD_JSON)
ANCHORS = int(json.loads(CARD_JSON)["anchors"])
CAT = 15
OTHER_SHA = "0123456789ab" + "cd" * 26

A, B, S = "ws://a:8001/ws", "ws://b:8001/ws", "ws://{hostname}:8001/ws"

# A 64x48 frame into the 416x416 input: scale 6.5, scaled 416x312, left 0, top 52. So an
# input box (65, 117, 130, 182) is the frame box (10, 10, 20, 20).
WIDTH, HEIGHT = 64, 48
RGBA = bytes(range(256)) * (WIDTH * HEIGHT * 4 // 256)
CAT_INPUT = Detection(CAT, 0.875, 65.0, 117.0, 130.0, 182.0)
CAT_FRAME = {"x1": 10.0, "y1": 10.0, "x2": 20.0, "y2": 20.0}

Actions = list[dict[str, str]]
Events = list[dict[str, Any]]


class JsBuffer:
    """What Pyodide hands Python for a Uint8Array: not bytes, but has ``to_bytes()``."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.copies = 0

    def to_bytes(self) -> bytes:
        self.copies += 1
        return self._data


# -- driving the page core event by event ---------------------------------------------------


def make_client(*urls: str, **config: Any) -> BrowserClient:
    return BrowserClient(json.dumps({"node_urls": list(urls), **config}), CARD_JSON)


def hello(name: str = "node-a", sha256: str = CARD.sha256, max_in_flight: int = 4) -> bytes:
    return Hello(
        node_name=name,
        model_name=CARD.name,
        model_sha256=sha256,
        dtype=Dtype.UINT8,
        frame_shape=CARD.frame_shape,
        class_names=CARD.class_names,
        max_in_flight=max_in_flight,
    ).serialize()


WELCOME = Welcome(0b001, 0, "anonymous")


def handshake(
    client: BrowserClient,
    url: str,
    now_ms: float,
    node_hello: bytes | JsBuffer | None = None,
    welcome: Welcome = WELCOME,
) -> Events:
    """The node's HELLO, the page's AUTH (taken from ``take_outgoing``), the node's WELCOME;
    returns the events of the WELCOME."""
    assert receive(client, url, node_hello or hello(), now_ms) == [{"type": "send"}]
    auth = parse(client.take_outgoing())
    assert isinstance(auth, Auth)
    assert client.take_outgoing() == b""
    return receive(client, url, welcome.serialize(), now_ms)


def join_handshake(client: BrowserClient, url: str, now_ms: float, node_hello: bytes) -> Events:
    """As ``handshake``, for the node a planned move connects to while the current one
    streams on: its AUTH goes out on its own link (``take_outgoing(url)``)."""
    assert receive(client, url, node_hello, now_ms) == [{"type": "send", "url": url}]
    auth = parse(client.take_outgoing(url))
    assert isinstance(auth, Auth)
    assert client.take_outgoing(url) == b""
    return receive(client, url, WELCOME.serialize(), now_ms)


def probe_reply(client: BrowserClient, url: str, data: bytes | JsBuffer, now_ms: float) -> bytes:
    """What the page sends on the probe socket for ``url`` after ``data``: its PING after
    the HELLO, b"" (close the probe) after the PONG or anything else."""
    (command,) = client.dispatch(ProbeMessage(url, data), now_ms)
    reply: bytes = command.get("data", b"")
    return reply


def tick(client: BrowserClient, now_ms: float) -> Actions:
    actions: Actions = client.dispatch(TimerFired(), now_ms)
    return actions


def receive(client: BrowserClient, url: str, data: bytes | JsBuffer, now_ms: float) -> Events:
    events: Events = client.dispatch(SocketMessage(url, data), now_ms)
    return events


def answer_probe(client: BrowserClient, url: str, now_ms: float, rtt_ms: float) -> None:
    """A probe socket to ``url`` opens: the node says HELLO, the page PINGs, the node PONGs."""
    ping = parse(probe_reply(client, url, hello(), now_ms))
    assert isinstance(ping, Ping)
    assert ping.sent_ms == now_ms
    pong = Pong(ping.nonce, ping.sent_ms).serialize()
    assert probe_reply(client, url, pong, now_ms + rtt_ms) == b""


def answer_ping_on_link(client: BrowserClient, now_ms: float, rtt_ms: float) -> None:
    assert client.node_url is not None
    ping = parse(client.ping(now_ms))
    assert isinstance(ping, Ping)
    pong = Pong(ping.nonce, ping.sent_ms).serialize()
    assert receive(client, client.node_url, pong, now_ms + rtt_ms) == []


def serve(
    client: BrowserClient, actions: Actions, now_ms: float, rtts_ms: dict[str, float]
) -> None:
    """Nodes in ``rtts_ms`` answer probes and pings after that many ms; others stay silent."""
    for action in actions:
        if action["do"] == "probe" and action["url"] in rtts_ms:
            answer_probe(client, action["url"], now_ms, rtts_ms[action["url"]])
        elif action["do"] == "ping" and client.node_url in rtts_ms:
            answer_ping_on_link(client, now_ms, rtts_ms[client.node_url])


def connected(
    client: BrowserClient, rtts_ms: dict[str, float], url: str, welcome: Welcome = WELCOME
) -> float:
    """Start the page, answer the first probes, connect to ``url``; returns the time."""
    actions = tick(client, 0.0)
    assert {a["url"] for a in actions if a["do"] == "probe"} == set(client.nodes.static_urls)
    serve(client, actions, 0.0, rtts_ms)
    assert tick(client, 100.0) == [{"do": "connect", "url": url}]
    events = handshake(client, url, 120.0, welcome=welcome)
    assert events == [
        {
            "type": "ready",
            "node": "node-a",
            "model": CARD.name,
            "identity": welcome.identity,
            "api": {  # the page API's edgesight:server event (docs/page-api.md)
                "version": 1,
                "name": "node-a",
                "url": url,
                "transport": "WebSocket",
                "identity": welcome.identity,
                "at_ms": 120.0,
            },
        },
    ]
    return 120.0


def send_frame(client: BrowserClient, capture_ms: float, now_ms: float) -> int:
    assert client.next_action() == "node"
    frame = parse(client.encode_frame(RGBA, WIDTH, HEIGHT, capture_ms, now_ms))
    assert isinstance(frame, Frame)
    return frame.frame_id


def result(
    frame_id: int,
    capture_ms: float,
    *detections: Detection,
    queue_ms: float = 2.0,
    inference_ms: float = 8.0,
    post_ms: float = 1.0,
) -> bytes:
    return Result(frame_id, capture_ms, queue_ms, inference_ms, post_ms, 1, detections).serialize()


def make_local_ready(client: BrowserClient) -> None:
    client.local_steps.start(is_cross_origin_isolated=False, hardware_concurrency=4)
    assert client.local_steps.check_model(CARD.sha256) == ""
    client.local_steps.loaded()


def local_outputs(score: float = 0.9) -> tuple[bytes, bytes]:
    boxes = np.zeros((ANCHORS, 4), dtype="<f4")
    scores = np.zeros((ANCHORS, len(CARD.class_names)), dtype="<f4")
    boxes[2000] = (CAT_INPUT.x1, CAT_INPUT.y1, CAT_INPUT.x2, CAT_INPUT.y2)
    scores[2000, CAT] = score
    return boxes.tobytes(), scores.tobytes()


def status(client: BrowserClient, now_ms: float) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(client.status(now_ms))
    return shown


def test_all_names_exported_exist() -> None:
    for name in page_core.__all__:
        assert hasattr(page_core, name), name


# -- start-up ----------------------------------------------------------------------------------
def test_a_new_page_shows_nothing_running() -> None:
    client = make_client(A)

    assert client.mode == "none"
    assert client.next_action() == "wait"
    assert status(client, 0.0) == {
        "mode": "none",
        "node": None,
        "node_url": None,
        "model": "nanodet-g-416",
        "threads": 1,
        "local_backend": "wasm",
        "local_backend_note": "",
        "local_standby": None,
        "local_state": "not loaded",
        "local_problem": "",
        "route": "",
        "source": "starting",
        "refusal": "",
        "security": "",
        "identity": None,
        "token_problem": None,
        "fps": None,
        "round_trip_ms": None,
        "latency_ms": None,
        "wire": {"encoding": "raw", "frame_bytes": 0, "mbit_s": 0.0, "note": ""},
    }
    assert receive(client, A, hello(), 0.0) == []  # no socket was asked for yet


def test_start_probes_first_and_connects_once_the_probe_answers() -> None:
    client = make_client(A)

    first = tick(client, 0.0)
    assert first == [{"do": "probe", "url": A}]
    answer_probe(client, A, 0.0, rtt_ms=12.0)
    actions = tick(client, 100.0)

    assert actions == [{"do": "connect", "url": A}]
    assert client.node_url == A
    assert client.mode == "none"  # connecting: no HELLO yet
    assert client.next_action() == "wait"
    assert status(client, 100.0)["route"] == f"connecting to {A} (12 ms expected)"


def test_start_connects_blind_after_the_first_probe_wait() -> None:
    client = make_client(A)
    assert tick(client, 0.0) == [{"do": "probe", "url": A}]

    for now_ms in (100.0, 200.0, 300.0, 400.0):
        assert tick(client, now_ms) == []  # the probe is still out

    assert tick(client, 500.0) == [{"do": "connect", "url": A}]
    assert status(client, 500.0)["route"] == f"connecting to {A} (not measured yet)"


def test_no_configured_node_is_a_fallback() -> None:
    client = make_client()

    assert tick(client, 0.0) == []
    assert tick(client, 100.0) == []

    assert status(client, 100.0)["route"] == "no inference node is listed; running in the browser"


def test_hello_makes_the_node_ready_and_frames_go_there_within_the_window() -> None:
    client = make_client(A, max_in_flight=2)  # a fixed window of 2
    connected(client, {A: 10.0}, A)

    assert client.mode == "node"
    assert client.is_node_ready()
    assert status(client, 120.0)["node"] == "node-a"
    assert status(client, 120.0)["route"] == ""
    send_frame(client, capture_ms=200.0, now_ms=201.0)
    send_frame(client, capture_ms=233.0, now_ms=234.0)

    assert client.next_action() == "wait"  # two frames in flight


def test_a_camera_frame_waiting_for_a_slot_tells_the_encoding_policy() -> None:
    """What lets the quality step down for the link's rate (encoding.py): a camera frame
    that waited because the window was full; asked without a clock, nothing is told."""
    client = make_client(A, max_in_flight=1)
    connected(client, {A: 10.0}, A)
    send_frame(client, capture_ms=200.0, now_ms=201.0)
    assert client.stream is not None
    assert client.next_action() == "wait"
    assert not client.stream.encoding.is_link_bound(240.0)
    assert client.next_action(240.0) == "wait"
    assert client.stream.encoding.is_link_bound(240.0)


def test_the_page_api_names_the_server_its_transport_and_who_it_accepted() -> None:
    client = make_client(A)
    connected(client, {A: 10.0}, A, welcome=replace(WELCOME, identity="alice"))
    make_local_ready(client)
    client.local_steps.loaded(warmup_ms=75.0)  # the engine's timed warm-up run

    state = json.loads(client.api_state(130.0))

    assert state["server"] == {
        "name": "node-a",
        "url": A,
        "transport": "WebSocket",
        "identity": "alice",
    }
    assert (state["browser_engine"], state["browser_frame_ms"]) == ("ready", 75.0)
    assert state["browser_standby"] is False


@pytest.mark.parametrize(("page_max", "node_max", "window"), [(2, 4, 2), (4, 1, 1), (3, 3, 3)])
def test_the_in_flight_window_is_the_smaller_of_page_and_node(
    page_max: int, node_max: int, window: int
) -> None:
    client = make_client(A, max_in_flight=page_max)
    tick(client, 0.0)
    answer_probe(client, A, 0.0, rtt_ms=5.0)
    tick(client, 100.0)
    handshake(client, A, 110.0, hello(max_in_flight=node_max))

    for i in range(window):
        send_frame(client, capture_ms=200.0 + i, now_ms=200.0 + i)

    assert client.next_action() == "wait"


def test_encode_and_ping_without_a_connection_raise() -> None:
    client = make_client(A)

    with pytest.raises(StreamError, match="no node connection"):
        client.encode_frame(RGBA, WIDTH, HEIGHT, 0.0, 0.0)
    with pytest.raises(StreamError, match="no node connection to ping"):
        client.ping(0.0)


# -- results -----------------------------------------------------------------------------------
def test_a_result_is_drawn_in_frame_pixels_with_labels_and_timings() -> None:
    client = make_client(A)
    connected(client, {A: 10.0}, A)
    frame_id = send_frame(client, capture_ms=1000.0, now_ms=1005.0)

    events = receive(client, A, result(frame_id, 1000.0, CAT_INPUT), 1045.0)

    assert events == [
        {
            "type": "detections",
            "source": "node",
            "expires_ms": page_core.BOXES_EXPIRE_MS,
            "in_view": [{"label": "cat", "count": 1, "best": 0.875, "text": "cat"}],
            "frame_id": frame_id,
            "capture_ms": 1000.0,
            "boxes": [
                {"label": "cat", "class_id": CAT, "score": 0.875, **CAT_FRAME},
            ],
            "api": {  # the public shape (docs/page-api.md), named by the node's HELLO
                "version": 1,
                "where": "server",
                "server": "node-a",
                "frame_id": frame_id,
                "capture_ms": 1000.0,
                "round_trip_ms": 40.0,
                "drawn_ms": None,  # stamped by the page when drawn (static/page-api.js)
                "objects": [{"label": "cat", "score": 0.875, "box": [10.0, 10.0, 20.0, 20.0]}],
            },
            "round_trip_ms": 40.0,
            "queue_ms": 2.0,
            "inference_ms": 8.0,
            "post_ms": 1.0,
            "batch_size": 1,
            "decode_ms": 0.0,
            "encoding": "raw",
            "frame_bytes": 3 * 416 * 416 + 30,  # the FRAME header, then the tensor
        }
    ]
    assert client.next_action() == "node"  # the slot is free again


def test_results_of_frames_from_before_a_source_change_are_not_drawn() -> None:
    client = make_client(A)
    connected(client, {A: 10.0}, A)
    frame_id = send_frame(client, capture_ms=1000.0, now_ms=1005.0)
    # when the user picks a file while that frame is on its way
    client.source_changed(1010.0)
    # then its result is not drawn over the new source
    assert receive(client, A, result(frame_id, 1000.0, CAT_INPUT), 1045.0) == []
    later = send_frame(client, capture_ms=1050.0, now_ms=1051.0)
    assert [e["type"] for e in receive(client, A, result(later, 1050.0, CAT_INPUT), 1090.0)] == [
        "detections"
    ]


def test_the_view_speaks_plainly_per_mode() -> None:
    client = make_client(A)
    shown = json.loads(client.view(0.0))
    assert shown["badge"] == {"kind": "starting", "text": "Starting…"}  # not a red "Not"
    assert shown["timings"] == []
    client.source_update("live", "camera")
    connected(client, {A: 10.0}, A)
    shown = json.loads(client.view(600.0))
    assert shown["mode"] == "node"
    # connected, but no box drawn yet: detection does not run yet
    assert shown["badge"] == {"kind": "starting", "text": "Starting…"}
    client.note_drawn(590.0, draw_ms=1.0, now_ms=600.0)
    shown = json.loads(client.view(600.0))
    assert shown["badge"] == {"kind": "node", "text": "Detecting on server node-a"}
    assert shown["line"].startswith("— frames a second")
    assert [row["stage"] for row in shown["timings"]][:4] == [
        "preprocess",
        "network",
        "decode",
        "queue",
    ]
    assert any(line.startswith("Server: node-a at ws://a:8001/ws") for line in shown["details"])


def test_results_update_the_status_and_stats() -> None:
    client = make_client(A)
    connected(client, {A: 10.0}, A)
    for i in range(3):  # frames every 100 ms, each back after 40 ms and drawn 5 ms later
        capture_ms = 1000.0 + 100 * i
        client.note_preprocess(3.0, capture_ms + 4)
        frame_id = send_frame(client, capture_ms, capture_ms + 5)
        receive(client, A, result(frame_id, capture_ms), capture_ms + 45)
        client.note_drawn(capture_ms, draw_ms=2.0, now_ms=capture_ms + 50)

    shown = status(client, 1300.0)
    stats = json.loads(client.stats(1300.0))

    assert shown["mode"] == "node"
    assert shown["fps"] == 10.0  # three frames drawn over 200 ms
    assert shown["round_trip_ms"] == 40.0
    assert shown["latency_ms"] == 50.0
    assert stats["preprocess"] == {"p50": 3.0, "p95": 3.0}
    assert stats["network"] == {"p50": 29.0, "p95": 29.0}  # 40 - (2 + 8 + 1)
    assert stats["queue"] == {"p50": 2.0, "p95": 2.0}
    assert stats["inference"] == {"p50": 8.0, "p95": 8.0}
    assert stats["post"] == {"p50": 1.0, "p95": 1.0}
    assert stats["draw"] == {"p50": 2.0, "p95": 2.0}
    assert stats["grab_to_drawn"] == {"p50": 50.0, "p95": 50.0}


def test_dropped_and_per_frame_errors_are_reported_and_the_node_stays() -> None:
    client = make_client(A, max_in_flight=2)
    connected(client, {A: 10.0}, A)
    first = send_frame(client, 200.0, 200.0)
    second = send_frame(client, 233.0, 233.0)

    dropped = receive(client, A, Dropped(first, DropReason.SUPERSEDED).serialize(), 250.0)
    refused = Error(ErrorCode.WRONG_SHAPE, "frame 2: expected shape ...", second).serialize()
    error = receive(client, A, refused, 260.0)

    assert dropped == [{"type": "dropped", "frame_id": first, "reason": "superseded"}]
    assert error == [
        {"type": "error", "code": ErrorCode.WRONG_SHAPE, "message": "frame 2: expected shape ..."}
    ]
    assert client.mode == "node"
    assert client.next_action() == "node"  # both slots freed


def test_a_pong_on_the_link_is_no_event() -> None:
    client = make_client(A)
    connected(client, {A: 10.0}, A)

    answer_ping_on_link(client, 300.0, rtt_ms=7.0)

    assert client.mode == "node"


def test_a_node_breaking_the_protocol_is_fatal_and_failed_over() -> None:
    client = make_client(A, B)
    connected(client, {A: 10.0, B: 20.0}, A)

    events = receive(client, A, b"ES\x01\x63", 300.0)

    assert [e["type"] for e in events] == ["fatal"]
    assert events[0]["message"].startswith("node sent an invalid message: unknown message type 99")
    assert client.mode == "none"
    assert tick(client, 400.0) == [{"do": "connect", "url": B}]


def test_a_hello_for_frames_this_page_cannot_make_is_fatal() -> None:
    client = make_client(A)
    tick(client, 0.0)
    tick(client, 500.0)
    wrong = Hello("n", "m", CARD.sha256, Dtype.FLOAT32, (3, 416, 416), ("cat",), 1)

    events = receive(client, A, wrong.serialize(), 600.0)

    assert [e["type"] for e in events] == ["fatal"]
    assert "this client sends uint8 [3, H, W]" in events[0]["message"]
    assert client.node_url is None


# -- one overlay for both paths ----------------------------------------------------------------
def test_a_late_local_result_is_not_drawn_over_a_newer_node_result() -> None:
    client = make_client(A)
    make_local_ready(client)
    tick(client, 0.0)  # the probe to A stays unanswered: run locally meanwhile
    assert client.mode == "local"
    assert client.next_action() == "local"
    local_id = client.local_steps.encode(RGBA, WIDTH, HEIGHT, capture_ms=300.0, now_ms=301.0)
    assert tick(client, 500.0) == [{"do": "connect", "url": A}]
    handshake(client, A, 550.0)
    assert client.mode == "node"
    frame_id = send_frame(client, capture_ms=600.0, now_ms=601.0)

    node_events = receive(client, A, result(frame_id, 600.0, CAT_INPUT), 640.0)
    boxes, scores = local_outputs()
    local_events = client.dispatch(WorkerResult(local_id, boxes, scores, 300.0), 650.0)

    assert [(e["source"], e["capture_ms"]) for e in node_events] == [("node", 600.0)]
    assert local_events == []  # frame captured at 300 ms: older than the one on screen


def test_a_node_result_older_than_the_drawn_local_one_is_not_drawn() -> None:
    client = make_client(A)
    make_local_ready(client)
    tick(client, 0.0)
    local_id = client.local_steps.encode(RGBA, WIDTH, HEIGHT, capture_ms=300.0, now_ms=300.0)
    boxes, scores = local_outputs()
    drawn = client.dispatch(WorkerResult(local_id, boxes, scores, 40.0), 340.0)
    assert [(e["source"], e["capture_ms"]) for e in drawn] == [("local", 300.0)]
    tick(client, 500.0)
    handshake(client, A, 520.0)
    # A frame whose capture time is before the one on screen (a video file's own clock,
    # say): its answer is counted but not drawn.
    frame_id = send_frame(client, capture_ms=250.0, now_ms=530.0)

    assert receive(client, A, result(frame_id, 250.0, CAT_INPUT), 570.0) == []

    assert status(client, 570.0)["round_trip_ms"] == 40.0
    assert client.next_action() == "node"
    newer = send_frame(client, capture_ms=600.0, now_ms=600.0)
    events = receive(client, A, result(newer, 600.0, CAT_INPUT), 640.0)
    assert [(e["source"], e["capture_ms"]) for e in events] == [("node", 600.0)]


def test_a_result_from_a_node_the_page_left_is_not_drawn() -> None:
    client = make_client(A, B)
    make_local_ready(client)
    connected(client, {A: 10.0, B: 30.0}, A)
    frame_id = send_frame(client, capture_ms=200.0, now_ms=200.0)
    client.dispatch(SocketClosed(A, 1006), 210.0)
    local_id = client.local_steps.encode(RGBA, WIDTH, HEIGHT, capture_ms=300.0, now_ms=300.0)
    boxes, scores = local_outputs()
    client.dispatch(WorkerResult(local_id, boxes, scores, 40.0), 340.0)

    assert receive(client, A, result(frame_id, 200.0, CAT_INPUT), 350.0) == []


# -- losing a node -----------------------------------------------------------------------------
def test_a_closed_node_falls_back_to_local_and_the_next_node_takes_over_at_once() -> None:
    client = make_client(A, B)
    make_local_ready(client)
    connected(client, {A: 10.0, B: 30.0}, A)
    send_frame(client, 200.0, 200.0)

    client.dispatch(SocketClosed(A, 1006), 300.0)

    assert client.mode == "local"
    assert client.next_action() == "local"
    assert client.node_url is None
    assert tick(client, 400.0) == [{"do": "connect", "url": B}]
    assert status(client, 400.0)["route"] == f"{A} failed; connecting to {B} (30 ms expected)"
    assert client.mode == "local"  # until B's HELLO
    handshake(client, B, 420.0, hello(name="node-b"))
    assert client.mode == "node"
    assert status(client, 420.0)["node"] == "node-b"


def test_a_closed_node_without_local_means_none() -> None:
    client = make_client(A)
    connected(client, {A: 10.0}, A)

    client.dispatch(SocketClosed(A, 1006), 300.0)

    assert client.mode == "none"
    assert client.next_action() == "wait"


def test_a_single_node_is_probed_after_backoff_and_reconnected_when_it_answers() -> None:
    client = make_client(A)
    make_local_ready(client)
    connected(client, {A: 10.0}, A)

    client.dispatch(SocketClosed(A, 1006), 1000.0)

    # The first backoff is 500 ms +-20 %: nothing to do before 1400 ms.
    for now_ms in (1100.0, 1200.0, 1300.0, 1400.0):
        assert tick(client, now_ms) == []
        assert client.mode == "local"
    assert status(client, 1400.0)["route"].startswith(f"{A} failed; no node answers")
    assert status(client, 1400.0)["route"].endswith("running in the browser")
    # By 1600 ms it is due for a probe, and it may not be used before it answers.
    probe_at = next(t for t in (1500.0, 1600.0) if tick(client, t))
    assert client.node_url is None
    assert tick(client, probe_at + 100.0) == []
    answer_probe(client, A, probe_at + 150.0, rtt_ms=8.0)

    actions = tick(client, probe_at + 200.0)

    assert actions == [{"do": "connect", "url": A}]
    assert status(client, probe_at + 200.0)["route"].startswith(
        f"leaving the in-browser fallback for {A}"
    )
    handshake(client, A, probe_at + 250.0)
    assert client.mode == "node"


def test_the_probe_action_after_backoff() -> None:
    client = make_client(A)
    connected(client, {A: 10.0}, A)
    client.dispatch(SocketClosed(A, 1006), 1000.0)

    actions = [tick(client, 1000.0 + 100.0 * i) for i in range(1, 8)]

    assert [a for a in actions if a] == [[{"do": "probe", "url": A}]]


def test_a_failed_probe_backs_off_longer() -> None:
    client = make_client(A)
    connected(client, {A: 10.0}, A)
    client.dispatch(SocketClosed(A, 1006), 1000.0)
    probe_at = next(t for t in (1500.0, 1600.0) if tick(client, t))

    client.dispatch(ProbeFailed(A), probe_at + 50.0)

    # The second backoff is 1000 ms +-20 %: no probe for at least 800 ms.
    quiet = [tick(client, probe_at + 100.0 * i) for i in range(1, 9)]
    assert quiet == [[]] * 8
    later = [tick(client, probe_at + 100.0 * i) for i in range(9, 14)]
    assert [a for a in later if a] == [[{"do": "probe", "url": A}]]
    assert client.node_url is None


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(b"not a message", id="garbage"),
        pytest.param(Pong(12345, 0.0).serialize(), id="pong-without-ping"),
        pytest.param(Error(ErrorCode.INTERNAL, "boom").serialize(), id="error"),
    ],
)
def test_a_bad_probe_answer_counts_as_a_failure(reply: bytes) -> None:
    client = make_client(A)

    tick(client, 0.0)
    assert probe_reply(client, A, reply, 10.0) == b""

    # A failed node needs a probe before it is used: no blind connect (the backoff, 500 ms
    # +-20 %, has not passed yet).
    assert tick(client, 390.0) == []
    assert client.node_url is None


def test_a_close_of_a_socket_the_page_left_is_ignored() -> None:
    client = make_client(A, B)
    connected(client, {A: 10.0, B: 30.0}, A)

    client.dispatch(SocketClosed(B, 1006), 300.0)

    assert client.mode == "node"
    assert client.node_url == A


# -- overloaded nodes --------------------------------------------------------------------------
def test_an_overloaded_error_is_refused_and_the_next_node_taken() -> None:
    client = make_client(A, B)
    connected(client, {A: 10.0, B: 30.0}, A)
    busy = Error(ErrorCode.OVERLOADED, "node-a is at capacity (4 streams)").serialize()

    events = receive(client, A, busy, 300.0)

    assert events == [{"type": "refused", "message": "node-a is at capacity (4 streams)"}]
    assert client.mode == "none"
    client.dispatch(
        SocketClosed(A, CLOSE_TRY_AGAIN_LATER), 310.0
    )  # the node closes after its ERROR
    assert tick(client, 400.0) == [{"do": "connect", "url": B}]
    assert status(client, 400.0)["route"].startswith(f"{A} is at capacity; connecting to {B}")


def test_an_overloaded_error_in_place_of_the_hello_is_a_refusal() -> None:
    # A node at capacity accepts the socket, sends ERROR OVERLOADED instead of its HELLO,
    # and closes with 1013 (gpu_backend/endpoint.py).
    client = make_client(A, B)
    tick(client, 0.0)
    answer_probe(client, A, 0.0, rtt_ms=10.0)
    answer_probe(client, B, 0.0, rtt_ms=30.0)
    assert tick(client, 100.0) == [{"do": "connect", "url": A}]
    busy = Error(ErrorCode.OVERLOADED, "node node-a is at capacity (32 streams); try another")

    events = receive(client, A, busy.serialize(), 150.0)
    client.dispatch(SocketClosed(A, CLOSE_TRY_AGAIN_LATER), 151.0)

    assert events == [{"type": "refused", "message": busy.message}]
    assert tick(client, 200.0) == [{"do": "connect", "url": B}]
    assert status(client, 200.0)["route"].startswith(f"{A} is at capacity; connecting to {B}")


def test_close_1013_cools_the_node_down_instead_of_retrying() -> None:
    client = make_client(A)
    make_local_ready(client)
    connected(client, {A: 10.0}, A)

    client.dispatch(SocketClosed(A, CLOSE_TRY_AGAIN_LATER), 1000.0)

    for now_ms in np.arange(1100.0, 11000.0, 100.0):
        assert tick(client, float(now_ms)) == [], now_ms
    assert client.mode == "local"
    assert status(client, 10900.0)["route"] == (
        f"{A} is at capacity; every node is at capacity; running in the browser"
    )
    # 10 s later it is tried again, without a probe first: it did not fail, it was full.
    actions = tick(client, 11000.0)
    assert {"do": "connect", "url": A} in actions


def test_an_overloaded_probe_cools_the_candidate_down() -> None:
    client = make_client(A)
    tick(client, 0.0)
    probe_reply(client, A, hello(), 10.0)

    busy = Error(ErrorCode.OVERLOADED, "full").serialize()
    assert probe_reply(client, A, busy, 20.0) == b""

    assert all(tick(client, t) == [] for t in (500.0, 5000.0, 9900.0))
    assert {"do": "connect", "url": A} in tick(client, 10020.0)


# -- stalls ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("p95_ms", "deadline_ms"),
    [
        (None, STALL_MAX_MS),  # nothing to go by: the longest wait
        (0.0, STALL_MAX_MS),
        (-5.0, STALL_MAX_MS),
        (10.0, STALL_MIN_MS),  # 40 ms would abandon a node for one slow frame
        (187.5, STALL_MIN_MS),
        (200.0, 800.0),
        (500.0, 2000.0),
        (750.0, STALL_MAX_MS),
        (5000.0, STALL_MAX_MS),
    ],
)
def test_stall_deadline_bounds(p95_ms: float | None, deadline_ms: float) -> None:
    assert stall_deadline_ms(p95_ms) == deadline_ms


def test_stall_constants() -> None:
    assert (STALL_MIN_MS, STALL_MAX_MS, STALL_FACTOR) == (750.0, 3000.0, 4.0)


def test_a_stalled_node_is_abandoned_and_the_next_one_connected_in_the_same_tick() -> None:
    client = make_client(A, B)
    connected(client, {A: 10.0, B: 30.0}, A)
    frame_id = send_frame(client, 200.0, 200.0)
    receive(client, A, result(frame_id, 200.0), 300.0)  # round trips of 100 ms: 750 ms deadline
    send_frame(client, 400.0, 400.0)

    assert tick(client, 1100.0) == []
    assert tick(client, 1150.0) == []  # exactly 750 ms: not yet

    actions = tick(client, 1151.0)

    assert actions == [{"do": "abandon", "reason": "stalled"}, {"do": "connect", "url": B}]
    assert status(client, 1151.0)["route"].startswith(f"{A} failed; connecting to {B}")
    # What the abandoned socket still says is no longer heard.
    assert receive(client, A, result(2, 400.0), 1160.0) == []
    client.dispatch(SocketClosed(A, 1006), 1170.0)
    assert client.node_url == B


def test_with_no_recent_round_trips_a_node_gets_the_longest_deadline() -> None:
    client = make_client(A)
    make_local_ready(client)
    connected(client, {A: 10.0}, A)
    send_frame(client, 500.0, 500.0)
    actions = tick(client, 2000.0)
    assert actions == [{"do": "ping"}]
    serve(client, actions, 2000.0, {A: 5.0})  # a live socket, a stuck model

    assert tick(client, 3500.0) == []

    assert tick(client, 3501.0) == [{"do": "abandon", "reason": "stalled"}]
    assert client.mode == "local"


def test_an_idle_node_never_stalls() -> None:
    client = make_client(A)
    connected(client, {A: 10.0}, A)

    for now_ms in np.arange(200.0, 10000.0, 100.0):
        actions = tick(client, float(now_ms))
        assert {"do": "abandon", "reason": "stalled"} not in actions
        serve(client, actions, float(now_ms), {A: 10.0})

    assert client.mode == "node"


# -- switching to a faster node ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("fast_from_ms", "switch_ms"),
    [
        # B is probed every 2 s; the median of its last five pings is 5 ms once the third
        # fast one is in (at 14 s), so B is better from the tick at 14.1 s, and it must
        # stay better for 3 s on end.
        pytest.param(10000.0, 17100.0, id="after-dwell"),
        # Better from 4.1 s, settled at 7.1 s, but 10 s must pass since connecting (120 ms).
        pytest.param(2000.0, 10200.0, id="after-min-switch-interval"),
    ],
)
def test_a_much_faster_node_is_switched_to_and_the_old_result_ignored(
    fast_from_ms: float, switch_ms: float
) -> None:
    client = make_client(A, B)
    # A: 60 ms pings, 100 ms round trips of which 40 ms inference, so no transfer time.
    # B runs the same model: 90 ms pings (130 ms expected: not better), then 5 ms (45 ms).
    connected(client, {A: 60.0, B: 90.0}, A)
    in_flight: tuple[int, float] | None = None
    switched_at = None
    for step in range(2, 200):
        now_ms = 100.0 * step
        actions = tick(client, now_ms)
        if {"do": "join", "url": B} in actions:
            switched_at = now_ms
            break
        assert all(a["do"] in ("probe", "ping") for a in actions), (now_ms, actions)
        if in_flight is not None:  # the frame sent on the last tick, back after 100 ms
            slow = result(*in_flight, queue_ms=0.0, inference_ms=40.0, post_ms=0.0)
            assert receive(client, A, slow, now_ms)[0]["type"] == "detections"
        serve(client, actions, now_ms, {A: 60.0, B: 90.0 if now_ms < fast_from_ms else 5.0})
        in_flight = (send_frame(client, now_ms - 50.0, now_ms), now_ms - 50.0)

    assert switched_at == switch_ms
    assert actions == [{"do": "join", "url": B}]  # make before break: A streams on
    assert client.node_url == A
    assert status(client, switch_ms)["route"] == f"{B} (45 ms) beats {A} (100 ms)"
    # A answers the frame it holds and is still drawn; the next frame goes to A too.
    assert in_flight is not None
    assert receive(client, A, result(*in_flight), switch_ms + 50)[0]["type"] == "detections"
    held = (send_frame(client, switch_ms + 55.0, switch_ms + 60.0), switch_ms + 55.0)
    # B's HELLO: B becomes current; A keeps its socket until it answered its last frame.
    events = join_handshake(client, B, switch_ms + 80, hello(name="node-b"))
    assert [e["type"] for e in events] == ["promote", "ready"]
    assert events[0] == {"type": "promote", "url": B}
    assert client.node_url == B
    assert client.mode == "node"
    assert client.router.current == B
    last = receive(client, A, result(*held), switch_ms + 120)
    assert [e["type"] for e in last] == ["detections", "leave"]
    assert last[-1] == {"type": "leave", "url": A}
    client.dispatch(SocketClosed(A, 1000), switch_ms + 130)  # leaving A is no failure
    assert client.node_url == B


def test_a_slightly_faster_node_is_not_switched_to() -> None:
    client = make_client(A, B)
    connected(client, {A: 20.0, B: 30.0}, A)
    for step in range(2, 250):
        now_ms = 100.0 * step
        actions = tick(client, now_ms)
        assert all(a["do"] in ("probe", "ping") for a in actions), (now_ms, actions)
        # B gets faster, but 18 ms vs 20 ms is inside the hysteresis
        serve(client, actions, now_ms, {A: 20.0, B: 18.0})

    assert client.node_url == A


def switched_to_b(client: BrowserClient) -> float:
    """Connected to A; B becomes much faster; returns the time of the switch to B."""
    connected(client, {A: 60.0, B: 90.0}, A)
    for step in range(2, 200):
        now_ms = 100.0 * step
        actions = tick(client, now_ms)
        if {"do": "join", "url": B} in actions:
            return now_ms
        serve(client, actions, now_ms, {A: 60.0, B: 90.0 if now_ms < 2000 else 5.0})
        frame_id = send_frame(client, now_ms - 50.0, now_ms)
        slow = result(frame_id, now_ms - 50.0, queue_ms=0.0, inference_ms=40.0, post_ms=0.0)
        receive(client, A, slow, now_ms + 100.0)
    raise AssertionError("no switch")


def test_a_move_whose_new_node_fails_stays_on_the_old_one() -> None:
    # Make before break: the page never left A, so a failed move costs nothing.
    client = make_client(A, B)
    switch_ms = switched_to_b(client)

    client.dispatch(SocketClosed(B, 1006), switch_ms + 50.0)

    assert client.mode == "node"
    assert client.node_url == A
    assert client.router.current == A
    actions = tick(client, switch_ms + 100.0)
    assert not [a for a in actions if a["do"] in ("connect", "switch", "abandon", "join")]


def test_a_move_whose_new_node_breaks_the_protocol_stays_on_the_old_one() -> None:
    client = make_client(A, B)
    switch_ms = switched_to_b(client)

    events = receive(client, B, b"nonsense", switch_ms + 50.0)

    assert events == [{"type": "leave", "url": B}]
    assert client.mode == "node"
    assert client.node_url == A


def test_a_move_whose_new_node_never_says_hello_is_left_after_the_connect_timeout() -> None:
    client = make_client(A, B)
    switch_ms = switched_to_b(client)
    timeout_ms = client.router.settings.connect_timeout_ms

    actions = tick(client, switch_ms + timeout_ms + 1.0)

    assert {"do": "leave", "url": B} in actions
    assert client.node_url == A


def test_an_unanswered_ping_on_the_link_drops_the_node() -> None:
    client = make_client(A, B)
    make_local_ready(client)
    connected(client, {A: 10.0, B: 30.0}, A)
    assert tick(client, 2000.0) == [{"do": "ping"}, {"do": "probe", "url": B}]
    answer_probe(client, B, 2000.0, rtt_ms=30.0)  # A's ping gets no PONG

    assert tick(client, 3900.0) == []
    actions = tick(client, 4000.0)

    # The router counts A as failed: the page must not stream to it any more.
    assert [a for a in actions if a["do"] != "probe"] == [
        {"do": "abandon", "reason": "timed out"},
        {"do": "connect", "url": B},
    ]
    assert client.node_url == B
    assert client.mode == "local"


def test_a_slow_hello_is_not_failed_by_a_ping_the_page_never_sent() -> None:
    client = make_client(A)
    actions = tick(client, 0.0)
    serve(client, actions, 0.0, {A: 10.0})
    assert tick(client, 100.0) == [{"do": "connect", "url": A}]

    # A is due for its next ping while still connecting: its link cannot carry one yet.
    actions = tick(client, 2000.0)
    serve(client, actions, 2000.0, {A: 10.0})
    assert handshake(client, A, 2500.0)[0]["type"] == "ready"
    for now_ms in np.arange(2600.0, 12000.0, 100.0):
        actions = tick(client, float(now_ms))
        assert all(a["do"] in ("probe", "ping") for a in actions), (now_ms, actions)
        serve(client, actions, float(now_ms), {A: 10.0})

    assert client.mode == "node"
    assert client.router.current == A


def test_a_connection_that_never_says_hello_is_given_up() -> None:
    client = make_client(A)
    make_local_ready(client)
    actions = tick(client, 0.0)
    serve(client, actions, 0.0, {A: 10.0})
    assert tick(client, 100.0) == [{"do": "connect", "url": A}]

    seen = []
    for now_ms in np.arange(200.0, 5200.0, 100.0):
        seen += tick(client, float(now_ms))  # probes to A are never answered either

    assert {"do": "abandon", "reason": "timed out"} in seen
    assert client.node_url is None
    assert client.mode == "local"


# -- the registry ------------------------------------------------------------------------------
def registry_entry(
    node_id: str, url: str, streams: int, max_streams: int, **more: Any
) -> dict[str, Any]:
    return {
        "id": node_id,
        "url": url,
        "name": node_id,
        "site": "lab-2",
        "provider": "CUDAExecutionProvider",
        "device": "cuda:0",
        "device_memory_bytes": 80 * 2**30,
        "model": CARD.name,
        "model_sha256": CARD.sha256,
        "streams": streams,
        "max_streams": max_streams,
        "queue_depth": 0,
        "inference_ms": 8.0,
        "static": False,
        "age_s": 0.4,
        **more,
    }


def static_entry(url: str) -> dict[str, Any]:
    """A configured URL as ``GET /api/nodes`` lists it (webapp.registry._static)."""
    unknown = [
        "site",
        "provider",
        "device",
        "device_memory_bytes",
        "model",
        "model_sha256",
        "streams",
        "max_streams",
        "queue_depth",
        "inference_ms",
    ]
    return {
        "id": f"static:{url}",
        "url": url,
        "name": url,
        **dict.fromkeys(unknown),
        "static": True,
        "age_s": None,
    }


def test_registry_nodes_and_static_urls_are_candidates_but_not_a_full_node() -> None:
    client = make_client(S)
    listing = {
        "nodes": [
            registry_entry("gpu-a", A, streams=4, max_streams=4),  # full
            registry_entry("gpu-b", B, streams=1, max_streams=4),
            static_entry(S),
        ],
        "heartbeat_interval_s": 2,
    }

    client.dispatch(NodeList(json.dumps(listing)), 0.0)
    actions = tick(client, 0.0)

    assert sorted(a["url"] for a in actions if a["do"] == "probe") == sorted([B, S])
    serve(client, actions, 0.0, {A: 1.0, B: 20.0, S: 25.0})
    # B: 20 ms ping + 8 ms inference = 28 ms; S: 25 ms (static, nothing known)
    assert tick(client, 100.0) == [{"do": "connect", "url": S}]


def test_a_full_node_is_never_chosen_even_when_fastest() -> None:
    client = make_client()
    listing = {
        "nodes": [
            registry_entry("gpu-a", A, streams=2, max_streams=2),
            registry_entry("gpu-b", B, streams=0, max_streams=2),
        ],
        "heartbeat_interval_s": 2,
    }
    client.dispatch(NodeList(json.dumps(listing)), 0.0)

    actions = tick(client, 0.0)
    serve(client, actions, 0.0, {A: 1.0, B: 40.0})

    assert actions == [{"do": "probe", "url": B}]
    assert tick(client, 100.0) == [{"do": "connect", "url": B}]


def test_a_static_url_the_registry_omits_stays_a_candidate() -> None:
    client = make_client(S)
    listing = {"nodes": [registry_entry("gpu-b", B, 0, 4)], "heartbeat_interval_s": 2}

    client.dispatch(NodeList(json.dumps(listing)), 0.0)
    actions = tick(client, 0.0)

    assert sorted(a["url"] for a in actions) == sorted([B, S])
    serve(client, actions, 0.0, {S: 5.0})
    assert tick(client, 100.0) == [{"do": "connect", "url": S}]


def test_the_registry_list_may_be_a_bare_list() -> None:
    client = make_client()

    client.dispatch(NodeList(json.dumps([{"url": A}, {"name": "no url"}])), 0.0)

    assert tick(client, 0.0) == [{"do": "probe", "url": A}]


def test_a_registry_update_keeps_the_current_node() -> None:
    client = make_client(A)
    connected(client, {A: 10.0}, A)
    listing = {"nodes": [registry_entry("gpu-a", A, 1, 4), static_entry(A)]}

    client.dispatch(NodeList(json.dumps(listing)), 200.0)

    assert tick(client, 300.0) == []
    assert client.mode == "node"


# -- probes ------------------------------------------------------------------------------------
def test_probe_pings_carry_fresh_nonces() -> None:
    client = make_client(A, B)
    tick(client, 0.0)

    ping_a = parse(probe_reply(client, A, hello(), 5.0))
    ping_b = parse(probe_reply(client, B, JsBuffer(hello()), 6.0))

    assert isinstance(ping_a, Ping)
    assert isinstance(ping_b, Ping)
    assert ping_a.nonce != ping_b.nonce
    # B answering with A's nonce is not B's pong: a failure
    assert probe_reply(client, B, Pong(ping_a.nonce, 5.0).serialize(), 9.0) == b""
    assert probe_reply(client, A, Pong(ping_a.nonce, 5.0).serialize(), 9.0) == b""
    assert tick(client, 100.0) == [{"do": "connect", "url": A}]


def test_the_current_node_is_pinged_on_its_own_link() -> None:
    client = make_client(A)
    connected(client, {A: 10.0}, A)

    pings = {now: tick(client, now) for now in (1900.0, 2000.0, 2100.0)}

    assert pings == {1900.0: [], 2000.0: [{"do": "ping"}], 2100.0: []}


# -- the local path ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("config", "is_isolated", "cores", "threads"),
    [
        ({}, False, 8, 1),
        ({}, True, 8, 4),
        ({}, True, 2, 2),
        ({"local_threads": 0}, True, 3, 3),
        ({"local_threads": 8}, True, 2, 8),  # the operator knows the machine
        ({"local_threads": 2}, False, 8, 1),  # threads need cross-origin isolation
        ({"local_threads": 1}, True, 8, 1),
        ({"local_threads": 1}, False, 8, 1),
    ],
)
def test_local_start_thread_choice(
    config: dict[str, int], is_isolated: bool, cores: int, threads: int
) -> None:
    client = make_client(A, **config)

    assert client.local_steps.start(is_isolated, cores) == threads

    assert status(client, 0.0)["threads"] == threads
    assert status(client, 0.0)["local_state"] == "loading"


def test_local_check_model_refuses_a_wrong_file_naming_both_hashes() -> None:
    client = make_client(A)
    client.local_steps.start(False, 4)

    message = client.local_steps.check_model(OTHER_SHA)
    client.local_steps.loaded()

    assert OTHER_SHA[:12] in message
    assert CARD.sha256[:12] in message
    assert client.mode == "none"
    assert client.next_action() == "wait"
    shown = status(client, 0.0)
    assert shown["local_state"] == "refused"
    assert shown["local_problem"] == message


def test_local_check_model_accepts_the_card_s_file() -> None:
    client = make_client(A)
    client.local_steps.start(False, 4)

    assert client.local_steps.check_model(CARD.sha256) == ""
    assert client.mode == "none"  # not before the worker says it loaded
    client.local_steps.loaded()

    assert client.mode == "local"
    assert client.next_action() == "local"
    assert status(client, 0.0)["local_state"] == "ready"


def test_a_node_serving_another_model_is_refused_at_its_hello() -> None:
    # given a page whose web app serves CARD, connecting to a node that announces another model
    client = make_client(A)
    tick(client, 0.0)
    tick(client, 500.0)
    # when its HELLO arrives
    events = receive(client, A, hello(sha256=OTHER_SHA), 550.0)
    # then the page refuses it, says why, and does not stream to it
    assert [event["type"] for event in events] == ["fatal"]
    assert f"sha256 {OTHER_SHA}" in events[0]["message"]
    assert client.mode == "none"
    assert client.node_url is None


def test_the_local_model_must_be_the_web_app_s() -> None:
    client = make_client(A)
    client.local_steps.start(False, 4)
    refusal = client.local_steps.check_model(OTHER_SHA)
    assert f"sha256 {OTHER_SHA[:12]}…" in refusal
    assert f"expected {CARD.sha256[:12]}…" in refusal
    fresh = make_client(A)
    fresh.local_steps.start(False, 4)
    assert fresh.local_steps.check_model(CARD.sha256.upper()) == ""


def test_status_shows_the_node_s_model_name() -> None:
    client = make_client(A)
    tick(client, 0.0)
    tick(client, 500.0)
    node_hello = Hello(
        node_name="gpu0",
        model_name="nanodet-g-416-int8",
        model_sha256=CARD.sha256,
        dtype=Dtype.UINT8,
        frame_shape=CARD.frame_shape,
        class_names=CARD.class_names,
        max_in_flight=4,
    ).serialize()
    handshake(client, A, 550.0, node_hello)
    assert status(client, 600.0)["model"] == "nanodet-g-416-int8"


def test_local_detection_uses_the_operator_s_thresholds() -> None:
    client = make_client(A, postprocess={"score_threshold": 0.8, "iou_threshold": 0.3})
    assert client.local.postprocess.score_threshold == 0.8
    assert client.local.postprocess.iou_threshold == 0.3
    assert make_client(A).local.postprocess == PostprocessSettings()


def test_local_failure_is_shown() -> None:
    client = make_client(A)
    client.local_steps.start(True, 4)

    client.local_steps.failed("WebAssembly.Memory could not be allocated")

    shown = status(client, 0.0)
    assert shown["local_state"] == "failed"
    assert shown["local_problem"] == (
        "Local detection could not start: WebAssembly.Memory could not be allocated"
    )
    assert client.mode == "none"


def test_local_encode_gives_an_id_and_the_letterboxed_tensor() -> None:
    client = make_client()
    make_local_ready(client)

    frame_id = client.local_steps.encode(RGBA, WIDTH, HEIGHT, capture_ms=100.0, now_ms=101.0)

    assert frame_id == 1
    assert bytes(client.local_steps.tensor()) == bytes(
        Letterbox.for_frame(WIDTH, HEIGHT, 416).fill(RGBA)
    )
    assert client.next_action() == "wait"  # one local frame at a time


def test_local_output_is_drawn_in_frame_pixels() -> None:
    client = make_client()
    make_local_ready(client)
    frame_id = client.local_steps.encode(RGBA, WIDTH, HEIGHT, capture_ms=100.0, now_ms=104.0)
    boxes, scores = local_outputs(score=0.9)

    events = client.dispatch(WorkerResult(frame_id, boxes, scores, 60.0), 170.0)

    (event,) = events
    (box,) = event.pop("boxes")
    assert [group["text"] for group in event.pop("in_view")] == ["cat"]
    public = event.pop("api")
    assert (public["where"], public["server"], public["frame_id"]) == ("browser", None, frame_id)
    assert [o["label"] for o in public["objects"]] == ["cat"]
    assert event == {
        "type": "detections",
        "source": "local",
        "expires_ms": page_core.BOXES_EXPIRE_MS,
        "frame_id": frame_id,
        "capture_ms": 100.0,
        "round_trip_ms": 66.0,
        "queue_ms": 0.0,
        "inference_ms": 60.0,
        "post_ms": 0.0,
        "batch_size": 1,
    }
    assert (box["label"], box["class_id"]) == ("cat", CAT)
    assert box["score"] == pytest.approx(0.9, rel=1e-6)
    assert {k: box[k] for k in CAT_FRAME} == pytest.approx(CAT_FRAME)
    assert client.next_action() == "local"
    assert json.loads(client.stats(170.0))["inference"] == {"p50": 60.0, "p95": 60.0}
    assert status(client, 170.0)["mode"] == "local"


def test_local_forget_frees_the_slot_and_a_later_output_is_no_event() -> None:
    client = make_client()
    make_local_ready(client)
    frame_id = client.local_steps.encode(RGBA, WIDTH, HEIGHT, capture_ms=100.0, now_ms=100.0)

    client.local_steps.forget(frame_id)

    assert client.next_action() == "local"
    boxes, scores = local_outputs()
    assert client.dispatch(WorkerResult(frame_id, boxes, scores, 10.0), 150.0) == []
    assert client.dispatch(WorkerResult(404, boxes, scores, 10.0), 150.0) == []


def test_a_ready_node_takes_frames_over_from_local() -> None:
    client = make_client(A)
    make_local_ready(client)
    tick(client, 0.0)
    assert client.next_action() == "local"
    tick(client, 500.0)
    assert client.next_action() == "local"  # connecting

    handshake(client, A, 520.0)

    assert client.next_action() == "node"
    assert status(client, 520.0)["mode"] == "node"


# -- JS buffers --------------------------------------------------------------------------------
def test_js_buffers_are_accepted_wherever_bytes_are() -> None:
    client = make_client(A)
    make_local_ready(client)
    tick(client, 0.0)
    ping = parse(probe_reply(client, A, JsBuffer(hello()), 5.0))
    assert isinstance(ping, Ping)
    pong = JsBuffer(Pong(ping.nonce, ping.sent_ms).serialize())
    assert probe_reply(client, A, pong, 15.0) == b""
    assert tick(client, 100.0) == [{"do": "connect", "url": A}]
    assert handshake(client, A, 120.0, JsBuffer(hello()))[0]["type"] == "ready"

    frame = parse(client.encode_frame(JsBuffer(RGBA), WIDTH, HEIGHT, 200.0, 200.0))
    assert isinstance(frame, Frame)
    assert bytes(frame.payload) == bytes(Letterbox.for_frame(WIDTH, HEIGHT, 416).fill(RGBA))
    events = receive(client, A, JsBuffer(result(frame.frame_id, 200.0, CAT_INPUT)), 240.0)
    assert events[0]["boxes"][0]["label"] == "cat"

    client.dispatch(SocketClosed(A, 1006), 300.0)
    pixels = JsBuffer(RGBA)
    local_id = client.local_steps.encode(pixels, WIDTH, HEIGHT, 400.0, 400.0)
    assert pixels.copies == 1
    boxes, scores = local_outputs()
    local = client.dispatch(WorkerResult(local_id, JsBuffer(boxes), JsBuffer(scores), 50.0), 460.0)
    assert [(e["source"], e["boxes"][0]["label"]) for e in local] == [("local", "cat")]


def test_a_bad_registry_entry_is_skipped_with_one_warning_and_the_good_ones_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # issue 8: a URL the browser refuses made the page throw at every tick
    good = "ws://good:8001/ws"
    listing = json.dumps({"nodes": [{"url": "ws://0:99999/ws"}, {"url": good, "name": "good"}]})
    client = make_client("ws://[::1/ws")
    with caplog.at_level("WARNING", logger="pyodide_client.node_intake"):
        client.dispatch(NodeList(listing), 0.0)
        client.dispatch(NodeList(listing), 2000.0)  # the next refresh: no second warning

    assert client.nodes.static_urls == []
    assert {"do": "probe", "url": good} in tick(client, 2000.0)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert "ws://[::1/ws" in warnings[0]
    assert "ws://0:99999/ws" in warnings[1]


# -- the page's origin (issue 8): https pages use wss:// nodes only; http needs https -------
HTTPS_PAGE = {"protocol": "https:", "hostname": "k.lan", "port": "", "is_secure_context": True}
LAN_HTTP_PAGE = {
    "protocol": "http:",
    "hostname": "k.lan",
    "port": "8000",
    "is_secure_context": False,
}
WSS_A = "wss://a:8001/ws"


def test_an_https_page_never_opens_a_ws_node_and_says_why() -> None:
    client = make_client(A, WSS_A, page=HTTPS_PAGE)

    actions = tick(client, 0.0)

    assert [a["url"] for a in actions] == [WSS_A]
    shown = status(client, 0.0)["security"]
    assert f"node {A} is not used: this page is https" in shown
    assert WSS_A not in shown


def test_ws_nodes_from_the_registry_are_refused_on_https_and_the_message_follows_the_list() -> None:
    client = make_client(page=HTTPS_PAGE)
    listing = {"nodes": [registry_entry("gpu-a", A, 0, 4), registry_entry("gpu-b", WSS_A, 0, 4)]}
    client.dispatch(NodeList(json.dumps(listing)), 0.0)

    assert tick(client, 0.0) == [{"do": "probe", "url": WSS_A}]
    assert A in status(client, 0.0)["security"]

    client.dispatch(NodeList(json.dumps({"nodes": [registry_entry("gpu-b", WSS_A, 0, 4)]})), 10.0)
    assert status(client, 10.0)["security"] == ""


def test_many_refused_nodes_are_summed_up() -> None:
    urls = [f"ws://n{i}:8001/ws" for i in range(10)]
    client = make_client(*urls, page=HTTPS_PAGE)
    shown = status(client, 0.0)["security"]
    assert shown.count("is not used") == 3
    assert "(7 more ws:// nodes not used.)" in shown


def test_an_insecure_page_says_it_needs_https_and_still_uses_ws_nodes() -> None:
    client = make_client(A, page=LAN_HTTP_PAGE)
    assert status(client, 0.0)["security"].startswith("This page needs https.")
    assert tick(client, 0.0) == [{"do": "probe", "url": A}]


def test_a_page_on_a_secure_context_shows_no_security_problem() -> None:
    assert status(make_client(A), 0.0)["security"] == ""


def test_the_model_hash_for_pages_without_webcrypto() -> None:
    client = make_client()
    model = CARD_JSON.encode()
    assert client.sha256_hex(JsBuffer(model)) == hashlib.sha256(model).hexdigest()


# --- compressed frames (issue 9) ----------------------------------------------------------


def welcomed(client: BrowserClient, url: str, encodings: int = 0b111) -> float:
    return connected(client, {url: 10.0}, url, welcome=Welcome(encodings, 0, "anonymous"))


def test_the_page_offers_what_its_canvas_encodes_and_sends_jpeg_pictures() -> None:
    client = make_client(A)
    client.set_encoders("jpeg,webp,png")
    tick(client, 0.0)
    answer_probe(client, A, 0.0, rtt_ms=10.0)
    tick(client, 100.0)
    assert receive(client, A, hello(), 120.0) == [{"type": "send"}]
    assert parse(client.take_outgoing()) == Auth("", 0b111)
    now = 120.0
    receive(client, A, Welcome(0b111, 0, "anonymous").serialize(), now)

    plan = json.loads(client.plan_frame(WIDTH, HEIGHT, now))
    g = Letterbox.for_frame(WIDTH, HEIGHT, 416).geometry
    assert plan == {
        "encoding": "jpeg",
        "quality": 0.6,
        "width": g.scaled_width_px,
        "height": g.scaled_height_px,
    }
    message = client.encode_image(b"\xff\xd8picture", WIDTH, HEIGHT, 100.0, now)
    image = parse(message)
    assert isinstance(image, Image)
    assert (image.width_px, image.height_px, image.left_px, image.top_px) == (
        g.scaled_width_px,
        g.scaled_height_px,
        g.left_px,
        g.top_px,
    )
    assert status(client, now)["wire"]["encoding"] == "jpeg"
    assert status(client, now)["wire"]["frame_bytes"] == len(message)

    result = Result(image.frame_id, 100.0, 1.0, 8.0, 1.0, 1, (), decode_ms=0.5)
    (event,) = receive(client, A, result.serialize(), now + 30)
    assert (event["decode_ms"], event["encoding"], event["frame_bytes"]) == (
        0.5,
        "jpeg",
        len(message),
    )
    assert json.loads(client.stats(now + 30))["decode"] == {"p50": 0.5, "p95": 0.5}


def test_the_page_plans_its_links_for_the_operator_s_frame_rate() -> None:
    client = make_client(A, target_fps=12.5)
    welcomed(client, A)
    assert client.stream is not None
    assert client.stream.encoding.settings.target_fps == 12.5


def test_a_pinned_raw_page_sends_raw_frames_to_a_node_that_takes_jpeg() -> None:
    client = make_client(A, frame_encoding="raw")
    now = welcomed(client, A)
    assert json.loads(client.plan_frame(WIDTH, HEIGHT, now))["encoding"] == "raw"


def test_a_node_that_takes_only_raw_gets_raw_frames() -> None:
    client = make_client(A)
    now = connected(client, {A: 10.0}, A)  # its WELCOME names raw only
    assert json.loads(client.plan_frame(WIDTH, HEIGHT, now))["encoding"] == "raw"


def test_tick_pings_the_node_for_the_encoding_policy() -> None:
    client = make_client(A)
    now = welcomed(client, A)
    assert {"do": "ping"} in tick(client, now + 1)


def test_a_link_at_the_quality_floor_paces_frames() -> None:
    client = make_client(A)
    now = welcomed(client, A)
    assert client.stream is not None
    client.stream.encoding.min_interval_ms = 200.0
    json.loads(client.plan_frame(WIDTH, HEIGHT, now))
    client.encode_image(b"x", WIDTH, HEIGHT, now, now)
    client.stream._in_flight.clear()  # as if answered
    assert client.next_action(now + 100) == "wait"
    assert client.next_action(now + 200) == "node"
    assert client.next_action() == "node"  # without a clock: no pacing


def test_frame_sent_moves_the_round_trip_start_past_the_page_s_letterbox() -> None:
    client = make_client(A)
    now = connected(client, {A: 10.0}, A)
    frame = parse(client.encode_frame(RGBA, WIDTH, HEIGHT, now, now))
    assert isinstance(frame, Frame)
    client.frame_sent(now + 20)
    result = Result(frame.frame_id, now, 1.0, 8.0, 1.0, 1, ())
    (event,) = receive(client, A, result.serialize(), now + 50)
    assert event["round_trip_ms"] == 30.0


# -- stream tokens (issue 8) -------------------------------------------------------------------
TOKEN_URL = "/api/token"


def token_answer(token: str, expires_in_s: float = 3.0, identity: str = "alice") -> str:
    return json.dumps(
        {"token": token, "identity": identity, "audience": "lab", "expires_in_s": expires_in_s}
    )


def fetches(actions: Actions) -> list[str]:
    return [a["url"] for a in actions if a["do"] == "fetch_token"]


def sent(client: BrowserClient) -> list[Any]:
    out = []
    while message := client.take_outgoing():
        out.append(parse(message))
    return out


def test_the_page_fetches_a_token_first_and_presents_it_in_auth() -> None:
    client = make_client(A, token_url=TOKEN_URL)
    first = tick(client, 0.0)
    assert fetches(first) == [TOKEN_URL]
    assert fetches(tick(client, 50.0)) == []  # one fetch at a time
    answer_probe(client, A, 0.0, rtt_ms=10.0)
    assert tick(client, 100.0)[-1] == {"do": "connect", "url": A}
    # the HELLO comes before the token: the AUTH waits for it
    assert receive(client, A, hello(), 120.0) == []
    assert client.dispatch(TokenFetched(200, token_answer("t1")), 130.0) == [{"type": "send"}]
    assert sent(client) == [Auth("t1", 0b011)]
    events = receive(client, A, Welcome(0b001, 3000, "alice").serialize(), 140.0)
    assert events[0]["identity"] == "alice"
    assert client.next_action() == "node"
    assert status(client, 150.0)["identity"] == "alice"


def test_a_refresh_at_two_thirds_of_the_lifetime_keeps_frames_flowing() -> None:
    # given a page streaming with a 3 s token received at t=130 ms
    client = make_client(A, token_url=TOKEN_URL)
    tick(client, 0.0)
    client.dispatch(TokenFetched(200, token_answer("t1", expires_in_s=3.0)), 10.0)
    answer_probe(client, A, 0.0, rtt_ms=10.0)
    tick(client, 100.0)
    assert receive(client, A, hello(), 120.0) == [{"type": "send"}]
    assert sent(client) == [Auth("t1", 0b011)]
    receive(client, A, Welcome(0b001, 3000, "alice").serialize(), 130.0)
    frame_id = send_frame(client, 1000.0, 1000.0)
    # when 2/3 of the lifetime has passed, the page is told to fetch a new token
    assert fetches(tick(client, 1900.0)) == []
    assert fetches(tick(client, 2020.0)) == [TOKEN_URL]
    events = client.dispatch(TokenFetched(200, token_answer("t2", expires_in_s=3.0)), 2050.0)
    # then the new AUTH goes on the open link, and frames keep going meanwhile
    assert events == [{"type": "send"}]
    assert sent(client) == [Auth("t2", 0b011)]
    assert receive(client, A, result(frame_id, 1000.0), 2060.0)[0]["type"] == "detections"
    assert receive(client, A, Welcome(0b001, 3000, "alice").serialize(), 2070.0) == [
        {"type": "welcome", "encodings": 1}
    ]
    assert client.next_action() == "node"
    # and past the first token's expiry the stream is still up, on the second token
    send_frame(client, 3500.0, 3500.0)
    assert client.is_node_ready()


def test_an_expired_token_drops_the_stream_without_blame_and_fetches_anew() -> None:
    client = make_client(A, token_url=TOKEN_URL)
    tick(client, 0.0)
    client.dispatch(TokenFetched(200, token_answer("t1")), 10.0)
    now_ms = connected_with_token(client)
    expired = Error(ErrorCode.TOKEN_EXPIRED, "token expired 2 s ago").serialize()
    events = receive(client, A, expired, now_ms)
    assert events == [
        {"type": "access_refused", "code": 104, "message": "token expired 2 s ago"},
    ]
    assert not client.is_node_ready()
    actions = tick(client, now_ms + 100.0)
    assert fetches(actions) == [TOKEN_URL]
    assert {"do": "connect", "url": A} in actions  # straight back, no backoff


def connected_with_token(client: BrowserClient) -> float:
    answer_probe(client, A, 0.0, rtt_ms=10.0)
    tick(client, 100.0)
    receive(client, A, hello(), 120.0)
    sent(client)
    receive(client, A, Welcome(0b001, 3000, "alice").serialize(), 130.0)
    return 140.0


def test_a_refused_token_is_shown_and_the_node_backed_off() -> None:
    client = make_client(A, token_url=TOKEN_URL)
    tick(client, 0.0)
    client.dispatch(TokenFetched(200, token_answer("forged")), 10.0)
    answer_probe(client, A, 0.0, rtt_ms=10.0)
    tick(client, 100.0)
    receive(client, A, hello(), 120.0)
    sent(client)
    refusal = Error(ErrorCode.AUTH_FAILED, "token signature does not verify").serialize()
    events = receive(client, A, refusal, 130.0)
    assert events == [
        {"type": "access_refused", "code": 103, "message": "token signature does not verify"},
    ]
    assert client.node_url is None
    assert {"do": "connect", "url": A} not in tick(client, 200.0)  # backoff first


def test_without_sign_in_the_page_says_so_and_tries_anonymously() -> None:
    client = make_client(A, token_url=TOKEN_URL)
    tick(client, 0.0)
    answer_probe(client, A, 0.0, rtt_ms=10.0)
    tick(client, 100.0)
    assert receive(client, A, hello(), 120.0) == []  # waiting for the token
    events = client.dispatch(TokenFetched(401, '{"error": "sign in first"}'), 130.0)
    assert events[0]["type"] == "token_problem"
    assert events[0]["needs_sign_in"]
    assert events[-1:] == [{"type": "send"}]
    assert sent(client) == [Auth("", 0b011)]  # an anonymous node may still take it
    assert "sign in" in status(client, 140.0)["token_problem"]


def test_without_a_token_url_streams_are_anonymous_and_nothing_is_fetched() -> None:
    client = make_client(A)
    assert fetches(tick(client, 0.0)) == []
    answer_probe(client, A, 0.0, rtt_ms=10.0)
    tick(client, 100.0)
    assert receive(client, A, hello(), 120.0) == [{"type": "send"}]
    assert sent(client) == [Auth("", 0b011)]


def test_a_node_from_before_auth_still_streams() -> None:
    client = make_client(A)
    tick(client, 0.0)
    answer_probe(client, A, 0.0, rtt_ms=10.0)
    tick(client, 100.0)
    receive(client, A, hello(), 120.0)
    sent(client)
    old = Error(ErrorCode.UNEXPECTED_MESSAGE, "expected a FRAME or PING, got AUTH").serialize()
    assert receive(client, A, old, 130.0)[0]["type"] == "ready"
    assert client.next_action() == "node"


def test_local_check_model_accepts_the_int8_variant_the_web_app_offers() -> None:
    variant = "ab" * 32
    local = {"sha256": variant, "variant_of": CARD.sha256}
    client = make_client(A, model={"local": local})
    client.local_steps.start(False, 4)

    assert client.local_steps.check_model(variant) == ""
    assert client.local_steps.check_model(CARD.sha256) == ""  # the model itself still may


def test_local_check_model_refuses_a_variant_the_web_app_did_not_offer() -> None:
    client = make_client(A, model={"local": {"sha256": CARD.sha256, "variant_of": None}})
    client.local_steps.start(False, 4)

    assert "not the expected one" in client.local_steps.check_model("ab" * 32)


def test_the_report_for_the_web_app_says_what_the_page_shows() -> None:
    # issue 12: static/app.js POSTs this to config.report_url every 10 s
    client = make_client("ws://a:8001/ws")
    report = json.loads(client.report(1000.0))
    assert report["mode"] == "none"
    assert report["node_url"] is None
    assert report["frames"] == 0
    assert report["dropped"] == 0
    assert set(report) == {
        "mode", "node_url", "fps", "latency_p50_ms", "latency_p95_ms", "frames", "dropped",
    }  # fmt: skip


# -- traces (issue 12) ---------------------------------------------------------------------------
TRACING = {"url": "/api/trace", "sample_rate": 1.0}


def test_a_sampled_frame_is_preceded_by_its_trace_and_reported_once_drawn() -> None:
    client = make_client(A, trace=TRACING)
    now = connected(client, {A: 10.0}, A, welcome=Welcome(0b001, 0, "anonymous", features=1))
    frame_id = send_frame(client, capture_ms=now, now_ms=now + 2.0)
    trace = parse(client.take_outgoing())  # the page flushes this before sending the frame
    assert isinstance(trace, Trace)
    assert trace.frame_id == frame_id
    client.note_preprocess(3.0, now + 5.5)
    receive(client, A, result(frame_id, now), now + 30.0)
    client.note_drawn(now, 1.5, now + 32.0)

    report = json.loads(client.take_trace_report(1.7e12))

    assert report["traceparent"] == trace.traceparent
    assert report["node"] == A
    assert report["stages"] == {
        "capture": [now, now + 2.0],
        "preprocess": [now + 2.0, now + 5.0],
        "send": [now + 5.0, now + 5.5],
        "draw": [now + 30.5, now + 32.0],
    }
    assert client.take_trace_report(1.7e12) == ""


def test_no_trace_to_a_node_that_does_not_take_them_nor_without_a_collector() -> None:
    for client, welcome in (
        (make_client(A, trace=TRACING), WELCOME),  # features 0: an older node
        (make_client(A), Welcome(0b001, 0, "anonymous", features=1)),  # tracing off
    ):
        now = connected(client, {A: 10.0}, A, welcome=welcome)
        send_frame(client, capture_ms=now, now_ms=now + 1.0)
        assert client.take_outgoing() == b""
        assert client.take_trace_report(1.7e12) == ""


def test_the_page_ticks_when_python_says_not_every_100_ms() -> None:
    client = make_client(A)
    tick(client, 0.0)  # probes A
    # the probe is out: next, the end of the 500 ms start-up wait for answers
    assert client.next_tick_ms(10.0) == 500.0
    client = make_client(A)
    connected(client, {A: 10.0}, A)
    send_frame(client, capture_ms=1000.0, now_ms=1000.0)
    due = client.next_tick_ms(1001.0)
    assert 1001.0 <= due <= 1001.0 + page_core.MAX_TICK_GAP_MS


def test_a_frame_in_flight_brings_the_next_tick_to_its_stall_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(page_core, "MAX_TICK_GAP_MS", 1e9)
    client = make_client(A)
    connected(client, {A: 10.0}, A)
    client.router.settings = replace(client.router.settings, probe_interval_ms=1e9)
    send_frame(client, capture_ms=1000.0, now_ms=1000.0)
    # no round trip measured yet: the longest stall deadline
    assert client.next_tick_ms(1001.0) == 1000.0 + page_core.STALL_MAX_MS + 1.0


# -- every node misses its objective: the browser only when faster (issue 12) -------------------
def test_every_node_degraded_and_a_faster_browser_leave_the_node_for_the_browser() -> None:
    client = make_client()
    entry = registry_entry("gpu-a", A, streams=0, max_streams=4)
    client.dispatch(NodeList(json.dumps({"nodes": [entry]})), 0.0)
    serve(client, tick(client, 0.0), 0.0, {A: 10.0})
    assert tick(client, 100.0) == [{"do": "connect", "url": A}]
    handshake(client, A, 120.0)
    make_local_ready(client)
    client.local_steps.loaded(warmup_ms=40.0)  # the worker's timed warm-up run
    client.dispatch(NodeList(json.dumps({"nodes": [{**entry, "degraded": True}]})), 150.0)
    now, actions = 200.0, []
    while now < 20_000 and not any(a["do"] == "abandon" for a in actions):
        frame_id = send_frame(client, now, now)
        receive(client, A, result(frame_id, now), now + 200.0)  # 200 ms round trips
        now += 2000.0  # every tick has the link's ping due
        actions = tick(client, now)
        serve(client, actions, now, {A: 10.0})

    # No ping on the link the same tick leaves (app.js would ask for one with no link).
    assert actions == [{"do": "abandon", "reason": "the browser is faster"}]
    assert now >= 3000.0  # after the dwell
    assert client.mode == "local"
    assert client.next_action(now) == "local"
    assert (
        "this browser is faster (40 ms a frame; best node gpu-a, 200 ms)"
        in (status(client, now)["route"])
    )


def test_a_degraded_node_stays_while_the_browser_never_ran() -> None:
    client = make_client()
    entry = registry_entry("gpu-a", A, streams=0, max_streams=4, degraded=True)
    client.dispatch(NodeList(json.dumps({"nodes": [entry]})), 0.0)
    serve(client, tick(client, 0.0), 0.0, {A: 10.0})
    assert tick(client, 100.0) == [{"do": "connect", "url": A}]
    handshake(client, A, 120.0)
    make_local_ready(client)  # loaded, but no timed run and no frame: nothing to compare
    now = 200.0
    while now < 20_000:
        frame_id = send_frame(client, now, now)
        receive(client, A, result(frame_id, now), now + 200.0)
        now += 250.0
        actions = tick(client, now)
        serve(client, actions, now, {A: 10.0})
        assert all(a["do"] != "abandon" for a in actions)
    assert client.mode == "node"


# -- what the page shows is true (issue 18) ------------------------------------------------------
def refusal(client: BrowserClient, now_ms: float) -> str:
    shown: dict[str, Any] = json.loads(client.view(now_ms))
    return str(shown["refusal"])


def test_a_node_with_another_model_is_named_with_both_models() -> None:
    client = make_client(A)
    tick(client, 0.0)
    tick(client, 500.0)
    receive(client, A, hello(sha256=OTHER_SHA), 550.0)
    assert refusal(client, 560.0) == (
        f"Server {A} runs another model ({CARD.name}) than this page ({CARD.name}), so it is "
        "not used (see EDGESIGHT_MODEL on the server)."
    )


def test_a_refused_token_says_which_server_refused_it_and_why() -> None:
    client = make_client(A, token_url=TOKEN_URL)
    tick(client, 0.0)
    client.dispatch(TokenFetched(200, token_answer("forged")), 10.0)
    answer_probe(client, A, 0.0, rtt_ms=10.0)
    tick(client, 100.0)
    receive(client, A, hello(), 120.0)
    sent(client)
    receive(
        client,
        A,
        Error(ErrorCode.AUTH_FAILED, "token signature does not verify").serialize(),
        130.0,
    )
    text = refusal(client, 140.0)
    assert text.startswith("Server node-a refused this page's stream token")
    assert "(token signature does not verify)" in text


def test_an_overloaded_node_is_named_and_the_refusal_clears_on_the_next_hello() -> None:
    client = make_client(A, B)
    tick(client, 0.0)
    answer_probe(client, A, 0.0, rtt_ms=10.0)
    answer_probe(client, B, 0.0, rtt_ms=30.0)
    tick(client, 100.0)
    busy = Error(ErrorCode.OVERLOADED, "node node-a is at capacity (32 streams); try another")
    receive(client, A, busy.serialize(), 150.0)
    client.dispatch(SocketClosed(A, CLOSE_TRY_AGAIN_LATER), 151.0)
    assert refusal(client, 160.0).startswith(f"Server {A} is at capacity")
    assert tick(client, 200.0) == [{"do": "connect", "url": B}]
    handshake(client, B, 220.0)
    assert refusal(client, 230.0) == ""


def test_a_listed_running_node_that_closes_before_its_hello_is_said_to_refuse_the_origin() -> None:
    # given an https page, and a node the registry lists with a fresh heartbeat
    wss = "wss://gpu0.example:8444/ws"
    page = {"protocol": "https:", "hostname": "x", "port": "8443", "is_secure_context": True}
    client = make_client(page=page)
    client.dispatch(NodeList(json.dumps([{"url": wss, "name": "gpu0", "age_s": 0.5}])), 0.0)
    tick(client, 0.0)
    answer_probe(client, wss, 0.0, rtt_ms=10.0)
    assert tick(client, 600.0) == [{"do": "connect", "url": wss}]
    # when its socket fails before any HELLO (a browser hides the handshake's 403)
    client.dispatch(SocketClosed(wss, 1006), 620.0)
    # then the page says who and the likely why, and where to fix it
    assert refusal(client, 630.0) == (
        "Server gpu0 did not let this page connect, although the web app lists it as "
        "running: it most likely does not accept pages from https://x:8443 (see "
        "EDGESIGHT_ALLOWED_ORIGINS on the server), or this browser cannot reach "
        "wss://gpu0.example:8444/ws."
    )


def test_a_listed_running_node_whose_probes_fail_is_said_to_refuse_the_origin() -> None:
    wss = "wss://gpu0.example:8444/ws"
    page = {"protocol": "https:", "hostname": "x", "port": "8443", "is_secure_context": True}
    client = make_client(page=page)
    client.dispatch(NodeList(json.dumps([{"url": wss, "name": "gpu0", "age_s": 0.5}])), 0.0)
    assert {"do": "probe", "url": wss} in tick(client, 0.0)
    client.dispatch(ProbeFailed(wss), 50.0)
    assert refusal(client, 60.0).startswith("Server gpu0 did not let this page connect")
    # a node that stopped heartbeating is not running: nothing to say about refusals
    client = make_client(page=page)
    client.dispatch(NodeList(json.dumps([{"url": wss, "name": "gpu0", "age_s": 30.0}])), 0.0)
    tick(client, 0.0)
    client.dispatch(ProbeFailed(wss), 50.0)
    assert refusal(client, 60.0) == ""


def test_a_static_node_that_cannot_be_reached_is_not_called_a_refusal() -> None:
    client = make_client(A)
    tick(client, 0.0)
    answer_probe(client, A, 0.0, rtt_ms=10.0)
    tick(client, 600.0)
    client.dispatch(SocketClosed(A, 1006), 620.0)
    assert refusal(client, 630.0) == ""


def test_details_fill_the_hostname_and_name_the_model_running_in_the_browser() -> None:
    page = {"protocol": "https:", "hostname": "box.lan", "port": "8443"}
    local = {"name": "nanodet-g-416-int8", "sha256": OTHER_SHA, "variant_of": CARD.sha256}
    client = make_client("wss://{hostname}:28444/ws", page=page, model={"local": local})
    tick(client, 0.0)
    tick(client, 600.0)
    details = json.loads(client.view(600.0))["details"]
    assert "Connecting to: wss://box.lan:28444/ws" in details
    assert not any("{hostname}" in line for line in details)
    make_local_ready(client)
    client.dispatch(SocketClosed("wss://{hostname}:28444/ws", 1006), 700.0)
    shown = json.loads(client.view(800.0))
    assert shown["mode"] == "local"
    assert "Model: nanodet-g-416-int8" in shown["details"]


def test_the_source_decides_whether_the_badge_may_say_detecting() -> None:
    client = make_client(A)
    connected(client, {A: 10.0}, A)
    client.source_update("live", "camera")
    client.note_drawn(150.0, draw_ms=1.0, now_ms=160.0)
    assert json.loads(client.view(160.0))["badge"]["text"] == "Detecting on server node-a"
    client.source_update("failed", "camera", "NotAllowedError")
    shown = json.loads(client.view(170.0))
    assert shown["badge"] == {"kind": "none", "text": "Not detecting: camera access denied"}
    assert shown["source_problem"].startswith("Camera access was denied.")
    client.source_update("failed", "file", "EncodingError")
    assert json.loads(client.view(180.0))["source_problem"] == (
        "That file cannot be played here. Choose a video or image file."
    )
    with pytest.raises(ValueError, match="expected camera, file or url"):
        client.source_update("live", "microphone")


def test_an_insecure_page_without_a_camera_needs_https() -> None:
    page = {"protocol": "http:", "hostname": "box.lan", "port": "8000", "is_secure_context": False}
    client = make_client(A, page=page)
    client.source_update("failed", "camera", "SecurityError")
    shown = json.loads(client.view(0.0))
    assert shown["badge"] == {"kind": "none", "text": "Not detecting: the camera needs https"}
    assert shown["source_problem"] == ""  # the security line says what to do, once
    assert "needs https" in shown["security"]


def test_an_offline_token_failure_shows_nothing_and_no_status_code() -> None:
    client = make_client(A, token_url=TOKEN_URL)
    tick(client, 0.0)
    (event,) = client.dispatch(TokenFetched(0, ""), 10.0)
    assert event["type"] == "token_problem"
    assert event["text"] == ""
    # not shown, but a tester of the deployment can see it (the page API, issue 19)
    reason = "the web app could not be reached for a token"
    assert event["message"] == reason
    assert json.loads(client.api_state(10.0))["token_problem"] == reason
    tick(client, 10_000.0)
    (event,) = client.dispatch(TokenFetched(503, ""), 10_010.0)
    assert "503" not in event["text"]


def test_a_probe_that_meets_another_model_names_the_server_and_both_models() -> None:
    client = make_client(A)
    assert {"do": "probe", "url": A} in tick(client, 0.0)
    assert probe_reply(client, A, hello(sha256=OTHER_SHA), 20.0) == b""  # no PING
    assert refusal(client, 30.0).startswith(f"Server node-a runs another model ({CARD.name})")
    assert {"do": "connect", "url": A} not in tick(client, 600.0)
