"""pyodide_client.page_edge through BrowserClient's three calls, as static/app.js makes them:
JSON events in (with a fake clock), commands out; sockets by id, blobs taken once, one
timer, the periodic jobs and retries Python's."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import pytest

from pyodide_client.browser import BrowserClient
from pyodide_client.page_config import PageTiming
from pyodide_client.page_json import MAX_BLOBS
from pyodide_client.page_sockets import PROBE_GUARD_MS
from pyodide_client.protocol import Auth, Frame, Image, Ping, Pong, Result, Welcome, parse

from .test_browser import CARD, CARD_JSON, HEIGHT, RGBA, WELCOME, WIDTH, hello, local_outputs

A, B = "ws://a:8001/ws", "ws://b:8001/ws"
TIMING = PageTiming()
Command = dict[str, Any]


class Js:
    """app.js reduced to its bookkeeping: a ``Map<id, socket>``, the blobs it takes, the
    one timer; what it was told is kept in ``commands``."""

    def __init__(self, *urls: str, **config: Any) -> None:
        config_json = json.dumps({"node_urls": list(urls), **config})
        self.client = BrowserClient(config_json, CARD_JSON)
        self.now_ms = 0.0
        self.sockets: dict[int, Command] = {}  # id -> its open command
        self.sent: dict[int, list[bytes]] = defaultdict(list)
        self.blobs: dict[int, bytes] = {}  # blobs of commands other than send
        self.commands: list[Command] = []
        self.next_tick_ms = 0.0

    def handle(self, name: str, data: bytes | None = None, **fields: Any) -> list[Command]:
        if name == "socket_close":  # gone from the page's Map before it reports it
            self.sockets.pop(fields["socket"], None)
        event = json.dumps({"event": name, "now_ms": self.now_ms, **fields})
        reply = json.loads(self.client.handle(event, data))
        assert set(reply) == {"commands", "next_tick_ms"}
        self.next_tick_ms = reply["next_tick_ms"]
        assert self.next_tick_ms >= self.now_ms
        for command in reply["commands"]:
            if command["do"] == "open":
                assert command["socket"] not in self.sockets
                self.sockets[command["socket"]] = command
            elif command["do"] == "send":
                assert command["socket"] in self.sockets, command
                self.sent[command["socket"]].append(self.client.take(command["blob"]))
            elif command["do"] == "close":
                del self.sockets[command["socket"]]
            elif "blob" in command:
                self.blobs[command["blob"]] = self.client.take(command["blob"])
        self.commands += reply["commands"]
        return list(reply["commands"])

    def start(self) -> list[Command]:
        return self.handle(
            "start",
            webtransport=False,
            cross_origin_isolated=False,
            hardware_concurrency=4,
            time_origin_ms=0.0,
        )

    def timer(self) -> list[Command]:
        """The one timer fires when the last reply said."""
        self.now_ms = max(self.now_ms, self.next_tick_ms)
        return self.handle("timer")

    def socket(self, role: str, node: str = A) -> int:
        (found,) = [i for i, c in self.sockets.items() if c["role"] == role and c["node"] == node]
        return found

    def connect(self, url: str = A, welcome: Welcome = WELCOME) -> int:
        """Probe ``url``, connect to it, HELLO / AUTH / WELCOME: the link's id."""
        probe = self.socket("probe", url)
        self.now_ms += 5.0
        self.handle("socket_message", hello(), socket=probe)
        ping = parse(self.sent[probe][-1])
        assert isinstance(ping, Ping)
        self.now_ms += 10.0
        commands = self.handle(
            "socket_message", Pong(ping.nonce, ping.sent_ms).serialize(), socket=probe
        )
        assert {"do": "close", "socket": probe, "why": "probe_done", "node": url} in commands
        link = self.socket("link", url)
        self.handle("socket_open", socket=link)
        self.handle("socket_message", hello(), socket=link)
        assert isinstance(parse(self.sent[link][-1]), Auth)
        (ready,) = [
            c
            for c in self.handle("socket_message", welcome.serialize(), socket=link)
            if c["do"] == "ready"
        ]
        api = ready.pop("api")  # the page API's edgesight:server event
        assert ready == {"do": "ready", "node": url, "name": "node-a", "model": CARD.name}
        assert (api["name"], api["url"], api["transport"]) == ("node-a", url, "WebSocket")
        return link


def does(commands: list[Command], do: str) -> list[Command]:
    return [c for c in commands if c["do"] == do]


# -- start, sockets by id ----------------------------------------------------------------------
def test_start_renders_asks_for_the_camera_and_probes_each_node_on_a_socket_of_its_own() -> None:
    js = Js(A, B)
    commands = js.start()
    assert does(commands, "render")[0]["view"]["mode"] == "none"
    assert does(commands, "camera") == [{"do": "camera"}]
    probes = does(commands, "open")
    assert {c["node"] for c in probes} == {A, B}
    assert len({c["socket"] for c in probes}) == 2  # one id each
    assert all(c["role"] == "probe" and c["guard_ms"] == PROBE_GUARD_MS for c in probes)
    # nothing keeps a period of its own in JS: the next render is the next deadline at most
    assert js.next_tick_ms <= js.now_ms + TIMING.view_poll_ms


def test_a_probe_answer_connects_and_the_link_is_named_by_its_id_from_then_on() -> None:
    js = Js(A)
    js.start()
    link = js.connect()
    assert js.client.mode == "node"
    assert js.sockets[link]["url"] == A
    assert js.sockets[link]["why"] == "connect"


def test_a_listed_hostname_template_is_filled_by_python_not_by_the_page() -> None:
    config = {
        "page": {
            "protocol": "http:",
            "hostname": "kiosk.lan",
            "port": "8000",
            "is_secure_context": True,
        }
    }
    js = Js("ws://{hostname}:8001/ws", **config)
    (probe,) = does(js.start(), "open")
    assert probe["url"] == "ws://kiosk.lan:8001/ws"
    assert probe["node"] == "ws://{hostname}:8001/ws"


def test_a_frame_goes_grab_pixels_send_on_the_link_and_its_send_time_counts() -> None:
    js = Js(A, frame_encoding="raw")
    js.start()
    link = js.connect()
    js.now_ms += 10.0
    (grab,) = js.handle("frame", width=WIDTH, height=HEIGHT)
    assert grab["do"] == "grab"
    assert grab["to"] == "node"
    assert grab["encoding"] == "raw"
    (send,) = does(js.handle("pixels", RGBA, width=WIDTH, height=HEIGHT), "send")
    assert send["socket"] == link
    assert send["frame"] == {"capture_ms": js.now_ms, "width": WIDTH, "height": HEIGHT}
    frame = parse(js.sent[link][-1])
    assert isinstance(frame, Frame)
    js.now_ms += 2.0
    assert js.handle("sent", preprocess_ms=1.5) == []
    assert js.client.stream is not None
    assert js.client.stream.oldest_in_flight_ms() == js.now_ms  # counts from the send
    # the result: drawn, then reported drawn
    js.now_ms += 20.0
    answer = Result(frame.frame_id, frame.capture_ms, 1.0, 8.0, 1.0, 1, ()).serialize()
    (draw, *rest) = js.handle("socket_message", answer, socket=link)
    assert draw["do"] == "draw"
    assert draw["node"] == A
    assert draw["source"] == "node"
    assert rest == [{"do": "check_webgpu"}]  # a node result: the local engine loads now
    assert js.handle("drawn", capture_ms=frame.capture_ms, draw_ms=0.5) == []


def test_one_frame_at_a_time_through_the_encoder_and_none_for_a_link_left_meanwhile() -> None:
    js = Js(A, B, frame_encoding="jpeg")
    js.start()
    js.handle("encoders", names="jpeg,webp")
    link = js.connect(welcome=Welcome(0b111, 0, "anonymous"))
    (grab,) = js.handle("frame", width=WIDTH, height=HEIGHT)
    assert grab["encoding"] == "jpeg"
    assert js.handle("frame", width=WIDTH, height=HEIGHT) == []  # still encoding
    (send,) = does(js.handle("encoded", b"\xff\xd8jpeg"), "send")
    image = parse(js.sent[send["socket"]][-1])
    assert isinstance(image, Image)
    js.handle("sent", preprocess_ms=3.0)
    js.now_ms += 20.0
    answer = Result(image.frame_id, image.capture_ms, 1.0, 8.0, 1.0, 1, ()).serialize()
    commands = js.handle("socket_message", answer, socket=link)
    # the frame that came while encoding goes now; its encoding outlives its link
    assert [c["do"] for c in commands] == ["draw", "check_webgpu", "grab"]
    js.now_ms += 1.0
    js.handle("socket_close", socket=link, code=1006)
    assert link not in js.sockets
    assert does(js.handle("encoded", b"\xff\xd8jpeg"), "send") == []


def test_an_encoded_frame_whose_window_closed_meanwhile_is_dropped_not_an_error() -> None:
    js = Js(A, frame_encoding="jpeg")
    js.start()
    js.handle("encoders", names="jpeg")
    js.connect(welcome=Welcome(0b111, 0, "anonymous"))
    assert does(js.handle("frame", width=WIDTH, height=HEIGHT), "grab")
    stream = js.client.stream
    assert stream is not None
    stream.encode_frame(RGBA, WIDTH, HEIGHT, js.now_ms, js.now_ms)  # fills K = 1 meanwhile
    assert not stream.can_send()
    assert js.handle("encoded", b"\xff\xd8jpeg") == []


def test_a_skipped_grab_frees_the_encoder() -> None:
    js = Js(A, frame_encoding="jpeg")
    js.start()
    js.handle("encoders", names="jpeg")
    js.connect(welcome=Welcome(0b111, 0, "anonymous"))
    assert does(js.handle("frame", width=WIDTH, height=HEIGHT), "grab")
    js.handle("frame_skipped")
    assert does(js.handle("frame", width=WIDTH, height=HEIGHT), "grab")


def test_what_a_closed_or_unknown_socket_says_is_not_heard() -> None:
    js = Js(A)
    js.start()
    link = js.connect()
    js.handle("socket_close", socket=link, code=1006)
    assert js.client.mode == "none"
    assert js.handle("socket_message", WELCOME.serialize(), socket=link) == []
    assert js.handle("socket_close", socket=999, code=1006) == []


def test_a_failed_probe_starts_the_local_engine_and_the_failure_is_counted() -> None:
    js = Js(A)
    probe = does(js.start(), "open")[0]["socket"]
    js.now_ms += 5.0
    commands = js.handle("socket_close", socket=probe, code=1006)
    assert does(commands, "check_webgpu") == [{"do": "check_webgpu"}]
    assert js.client.router.label(A)  # still a candidate, now backing off
    assert does(js.handle("socket_close", socket=probe, code=1006), "check_webgpu") == []


# -- the periodic jobs -------------------------------------------------------------------------
def test_the_registry_poll_the_report_and_the_render_are_scheduled_by_python() -> None:
    js = Js(registry_url="/api/nodes", report_url="/api/report")
    commands = js.start()
    assert does(commands, "fetch") == [
        {"do": "fetch", "what": "nodes", "url": "/api/nodes", "method": "GET"}
    ]
    fetches, reports, renders = [js.now_ms], [], [js.now_ms]
    while js.now_ms < 20_000.0:
        commands = js.timer()
        fetches += [js.now_ms for _ in does(commands, "fetch")]
        reports += [js.now_ms for _ in does(commands, "post")]
        renders += [js.now_ms for _ in does(commands, "render")]
    assert fetches[:4] == [
        0.0,
        TIMING.registry_poll_ms,
        2 * TIMING.registry_poll_ms,
        3 * TIMING.registry_poll_ms,
    ]
    assert reports == [TIMING.report_period_ms, 2 * TIMING.report_period_ms]
    assert renders[:3] == [0.0, TIMING.view_poll_ms, 2 * TIMING.view_poll_ms]
    assert json.loads(does(commands, "post")[0]["body"]) == json.loads(js.client.report(js.now_ms))


def test_a_node_list_answer_is_an_event_and_a_failed_fetch_keeps_the_nodes_known() -> None:
    js = Js(registry_url="/api/nodes")
    js.start()
    listing = json.dumps({"nodes": [{"url": A}]})
    assert {
        c["node"]
        for c in does(js.handle("fetched", what="nodes", status=200, body=listing), "open")
    } == {A}
    assert js.handle("fetched", what="nodes", status=0, body="") == []
    (warning,) = js.handle("fetched", what="nodes", status=200, body="[1, 2")
    assert warning["do"] == "warn"
    assert warning["text"].startswith("the node list could not be used")


def test_a_token_is_fetched_when_python_says_and_its_answer_is_an_event() -> None:
    js = Js(A, token_url="/api/token")
    commands = js.start()
    assert {"do": "fetch", "what": "token", "url": "/api/token", "method": "POST"} in commands
    (problem, *_) = js.handle("fetched", what="token", status=0, body="")
    assert problem["do"] == "problem"
    assert problem["slot"] == "token"


def test_the_local_start_check_starts_the_engine_once_while_no_node_connection_is_open() -> None:
    js = Js()
    js.start()
    checks = []
    while js.now_ms < 3 * TIMING.local_start_check_ms:
        checks += [js.now_ms for _ in does(js.timer(), "check_webgpu")]
    assert checks == [TIMING.local_start_check_ms]


# -- the in-browser engine -----------------------------------------------------------------------
def test_the_local_engine_steps_then_frames_run_in_the_worker_and_are_drawn() -> None:
    js = Js(browser_backend="wasm")
    js.start()
    (load,) = js.handle("webgpu", problem="no GPU adapter")
    step = load["step"]
    assert step["do"] == "load"
    (check,) = js.handle("model_digest", sha256=CARD.sha256)
    assert check == {"do": "model_check", "refusal": ""}
    (digest,) = js.handle("digest", b"abc")
    assert digest["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    (sample,) = js.handle("sample", RGBA, width=WIDTH, height=HEIGHT)
    assert len(js.blobs[sample["blob"]]) == 3 * CARD.input_width_px * CARD.input_height_px
    (use,) = js.handle("local_loaded", key=step["key"], warmup_ms=80.0)
    assert use["step"]["do"] == "use"
    assert js.client.mode == "local"
    js.handle("local_next")
    (grab,) = js.handle("frame", width=WIDTH, height=HEIGHT)
    assert grab == {"do": "grab", "to": "local", "capture_ms": js.now_ms}
    (run,) = js.handle("pixels", RGBA, width=WIDTH, height=HEIGHT)
    assert run["do"] == "local_run"
    assert len(js.blobs[run["blob"]]) == 3 * CARD.input_width_px * CARD.input_height_px
    js.handle("sent", preprocess_ms=2.0)
    boxes, scores = local_outputs()
    js.now_ms += 30.0
    (draw,) = js.handle(
        "local_output", boxes + scores, id=run["id"], inference_ms=25.0, boxes_bytes=len(boxes)
    )
    assert draw["do"] == "draw"
    assert draw["source"] == "local"
    assert [box["label"] for box in draw["boxes"]] == [CARD.class_names[15]]


def test_a_local_output_split_outside_its_bytes_is_refused() -> None:
    js = Js()
    js.start()
    with pytest.raises(ValueError, match="boxes_bytes"):
        js.handle("local_output", b"1234", id=1, inference_ms=1.0, boxes_bytes=5)


# -- the frame source and the camera --------------------------------------------------------------
def test_a_camera_that_failed_is_asked_for_again_when_python_says_a_refusal_never() -> None:
    js = Js()
    js.start()
    js.handle("source", state="failed", kind="camera", error="NotReadableError", playing="none")
    assert js.next_tick_ms <= TIMING.camera_retry_ms
    cameras = []
    while js.now_ms < TIMING.camera_retry_ms + 1000.0:
        cameras += [js.now_ms for _ in does(js.timer(), "camera")]
    assert cameras == [TIMING.camera_retry_ms]
    js.handle("source", state="failed", kind="camera", error="NotAllowedError", playing="none")
    while js.now_ms < 10_000.0:
        assert does(js.timer(), "camera") == []
    assert js.client.source.state.value == "denied"


def test_a_kiosk_loops_its_source_and_retries_even_a_refused_camera() -> None:
    js = Js(kiosk=True, kiosk_source_url="/kiosk/loop.mp4")
    js.start()
    commands = js.handle(
        "source", state="failed", kind="camera", error="NotAllowedError", playing="none"
    )
    assert {"do": "play", "url": "/kiosk/loop.mp4"} in commands
    cameras = []
    while js.now_ms < TIMING.kiosk_camera_retry_ms + 100.0:
        cameras += [js.now_ms for _ in does(js.timer(), "camera")]
    assert cameras == [TIMING.kiosk_camera_retry_ms]
    # the loop plays meanwhile: a failing retry changes nothing shown
    js.handle("source", state="live", kind="url", playing="file")
    js.handle("source", state="failed", kind="camera", error="NotAllowedError", playing="file")
    assert does(js.commands[-3:], "play") == []
    assert js.client.source.state.value == "live"


def test_a_chosen_file_stops_the_camera_retries_until_the_user_wants_the_camera() -> None:
    js = Js()
    js.start()
    js.handle("source", state="failed", kind="camera", error="NotReadableError", playing="none")
    assert does(js.handle("source", state="starting", kind="file", playing="none"), "clear_overlay")
    assert {"do": "camera_button", "is_shown": True} in js.handle(
        "source", state="live", kind="file", playing="file"
    )
    while js.now_ms < 10_000.0:
        assert does(js.timer(), "camera") == []
    assert js.handle("source", state="live", kind="camera", playing="camera") == []  # too late
    assert js.handle("camera_wanted") == [{"do": "camera"}]
    commands = js.handle("source", state="live", kind="camera", playing="camera")
    assert {"do": "camera_button", "is_shown": False} in commands


# -- the edge's own checks ----------------------------------------------------------------------
def test_an_unknown_event_or_a_missing_field_is_named() -> None:
    js = Js(A)
    with pytest.raises(ValueError, match="got 'sockt_open'"):
        js.handle("sockt_open", socket=1)
    with pytest.raises(ValueError, match="'socket'"):
        js.handle("socket_open")
    with pytest.raises(ValueError, match="'code': expected a number"):
        js.handle("socket_close", socket=1, code="1006")
    probe = does(js.start(), "open")[0]["socket"]
    with pytest.raises(ValueError, match="expected its bytes"):
        js.handle("socket_message", socket=probe)
    with pytest.raises(ValueError, match="now_ms"):
        js.client.handle(json.dumps({"event": "timer"}))


def test_a_blob_is_taken_once_and_untaken_ones_are_bounded() -> None:
    js = Js()
    blobs = js.client.edge.blobs
    first = blobs.put(b"a")
    assert js.client.take(first) == b"a"
    with pytest.raises(ValueError, match="blob id"):
        js.client.take(first)
    for _ in range(MAX_BLOBS + 10):
        blobs.put(b"x")
    assert len(blobs) == MAX_BLOBS
