"""Which transport a node link takes (issue 16), driven as static/app.js drives the page.

Under the ``quic`` policy: QUIC where the browser has WebTransport and the node offers
it, else WebSocket; a QUIC link that fails or stays silent is replaced by the node's
WebSocket at once, and the node is not blamed for it. Under ``auto`` (the default) the
choice is measured per link: the WebSocket until the link's frames come back late, then
QUIC (and QUIC for new links to that node for a while); ``websocket`` never uses QUIC."""

from __future__ import annotations

import json

import pytest

from pyodide_client.browser import BrowserClient
from pyodide_client.page_events import NodeList, SocketClosed, SocketMessage
from pyodide_client.protocol import Auth, Ping, Result, Welcome, parse
from pyodide_client.stream import StreamError
from pyodide_client.transport import (
    LOSSY_MEMORY_MS,
    QUIC,
    WT_READY_DEADLINE_MS,
    WT_UPGRADE_DEADLINE_MS,
    TransportChoice,
    js_constants,
    offer_url,
)
from tests.pyodide_client.test_browser import (
    CARD_JSON,
    CAT_INPUT,
    WELCOME,
    A,
    handshake,
    hello,
    receive,
    result,
    send_frame,
    serve,
    tick,
)

HASH = "ab" * 32
WT_URL = "https://a:4433/wt"


def registry_client(
    has_webtransport: bool = True,
    frame_encoding: str = "auto",
    transport: str = "quic",
    **entry: object,
) -> BrowserClient:
    config = {"node_urls": [], "frame_encoding": frame_encoding, "transport": transport}
    client = BrowserClient(json.dumps(config), CARD_JSON)
    client.quic.set_webtransport(has_webtransport)
    node = {"url": A, "name": "node-a", "id": "n1", "wt_port": 4433, "wt_cert_sha256": HASH}
    node.update(entry)
    client.dispatch(NodeList(json.dumps([node])), 0.0)
    return client


def first_connect(client: BrowserClient) -> dict[str, object]:
    serve(client, tick(client, 0.0), 0.0, {A: 10.0})
    (action,) = tick(client, 100.0)
    return action  # type: ignore[return-value]


def test_a_node_offering_webtransport_is_opened_over_quic_with_its_hash() -> None:
    action = first_connect(registry_client())
    assert action == {
        "do": "connect",
        "url": A,
        "transport": QUIC,
        "wt_url": WT_URL,
        "wt_hashes": [HASH],
    }


@pytest.mark.parametrize(
    ("has_webtransport", "entry"),
    [(False, {}), (True, {"wt_port": 0}), (True, {"wt_port": None})],
)
def test_without_webtransport_or_an_offer_the_link_is_a_websocket(
    has_webtransport: bool, entry: dict[str, object]
) -> None:
    assert first_connect(registry_client(has_webtransport, **entry)) == {"do": "connect", "url": A}


def test_details_show_the_transport() -> None:
    client = registry_client()
    first_connect(client)
    handshake(client, A, 120.0)
    details = json.loads(client.view(130.0))["details"]
    assert "Transport: QUIC" in details


def test_a_quic_link_that_closes_before_its_hello_reopens_over_websocket_at_once() -> None:
    client = registry_client()
    first_connect(client)
    client.dispatch(
        SocketClosed(A, 1006), 150.0
    )  # UDP blocked, a closed port, a refused certificate
    assert tick(client, 151.0) == [{"do": "connect", "url": A}]  # no backoff: not the node's fault
    handshake(client, A, 170.0)
    assert "Transport: WebSocket" in json.loads(client.view(171.0))["details"]


def test_a_silent_quic_link_is_left_within_a_second_for_the_websocket() -> None:
    client = registry_client()
    first_connect(client)
    assert client.next_tick_ms(500.0) <= 100.0 + WT_READY_DEADLINE_MS
    assert [a["do"] for a in tick(client, 100.0 + WT_READY_DEADLINE_MS)] == [
        "abandon",
        "connect",
    ]
    assert client.node_url == A


def test_quic_is_tried_again_only_after_a_while() -> None:
    choice = TransportChoice("quic")
    choice.is_available = True
    choice.learn(A, 4433, "")
    assert choice.choose(A, 0.0) is not None
    choice.failed(A, 0.0)
    assert choice.quic_failures == 1
    assert choice.choose(A, 1000.0) is None
    assert choice.choose(A, 60_000.0) is not None


def test_a_welcome_offer_is_learnt_for_the_next_link() -> None:
    client = BrowserClient(json.dumps({"node_urls": [A], "transport": "quic"}), CARD_JSON)
    client.quic.set_webtransport(True)
    serve(client, tick(client, 0.0), 0.0, {A: 10.0})
    assert tick(client, 100.0) == [{"do": "connect", "url": A}]
    offer = Welcome(WELCOME.encodings, 0, "anonymous", wt_port=4433, wt_cert_sha256=HASH)
    handshake(client, A, 120.0, welcome=offer)
    chosen = client.quic.transport.choose(A, 130.0)
    assert chosen is not None
    assert (chosen.url, chosen.cert_sha256) == (WT_URL, HASH)


def test_a_frame_reset_on_the_wire_leaves_the_window() -> None:
    client = registry_client()
    first_connect(client)
    handshake(client, A, 120.0)
    assert client.stream is not None
    frame = client.encode_frame(bytes(64 * 48 * 4), 64, 48, 130.0, 130.0)
    assert client.stream.in_flight == 1
    client.quic.frame_abandoned(A, frame[:16], 140.0)
    assert client.stream.in_flight == 0
    client.quic.frame_abandoned(A, b"ES", 141.0)  # too short to name a frame: ignored


def test_an_answer_to_a_frame_reset_after_the_node_had_it_is_ignored() -> None:
    """A reset races the frame's FIN: at 50 ms and 1 % loss the page's QUIC stack still
    listed a frame as uploading when the node already had it whole, and the node's RESULT
    for it broke the link ("node answered frame 61, which is not in flight"; the page fell
    back to the browser, bench/browser_lossy_link.py)."""
    client = registry_client()
    first_connect(client)
    handshake(client, A, 120.0)
    assert client.stream is not None
    frame = client.encode_frame(bytes(64 * 48 * 4), 64, 48, 130.0, 130.0)
    frame_id = client.stream.abandon(frame[:16], 140.0)
    assert frame_id is not None
    assert receive(client, A, result(frame_id, 130.0), 190.0) == []  # neither drawn nor fatal
    assert client.stream is not None
    assert client.stream.in_flight == 0
    # remembered once: a second answer to it, or one to a frame never sent, still breaks it
    with pytest.raises(StreamError, match="not in flight"):
        client.stream.receive(result(frame_id, 130.0), 200.0)


@pytest.mark.parametrize(
    ("url", "port", "expected"),
    [
        ("wss://node.example:8001/ws", 8001, "https://node.example:8001/wt"),
        ("ws://[::1]:8001/ws", 4433, "https://[::1]:4433/wt"),
        ("ws://a:8001/ws", 0, None),
    ],
)
def test_the_offer_url_is_the_node_host_on_its_udp_port(
    url: str, port: int, expected: str | None
) -> None:
    assert offer_url(url, port) == expected


def test_the_js_gets_the_framing_constants() -> None:
    assert js_constants() == {"own_stream_types": [2, 3, 7, 10], "control_prefix_bytes": 4}


def test_raw_frames_stay_on_websockets() -> None:
    """A node's QUIC stack costs more than its inference per raw 519 KB frame
    (docs/benchmarks.md (r)): a QUIC link sends compressed frames, a page pinned to raw
    frames (or without an encoder) keeps the WebSocket."""
    client = registry_client()
    first_connect(client)
    handshake(client, A, 120.0, welcome=Welcome(0b111, 0, "anonymous"))
    assert client.stream is not None
    settings = client.stream.encoding.settings
    # auto, but never raw however fast the link, and blind to its measured rate (which
    # does not hold on QUIC); a lossy link's frame cap still applies
    assert (settings.mode, settings.allow_raw, settings.follow_rate) == ("auto", False, False)
    assert json.loads(client.plan_frame(640, 480, 130.0))["encoding"] == "jpeg"
    websocket = registry_client(has_webtransport=False)
    first_connect(websocket)
    assert websocket.stream is not None
    on_ws = websocket.stream.encoding.settings
    assert (on_ws.mode, on_ws.allow_raw, on_ws.follow_rate) == ("auto", True, True)
    assert first_connect(registry_client(frame_encoding="raw")) == {"do": "connect", "url": A}
    no_encoder = registry_client()
    no_encoder.set_encoders("")
    assert first_connect(no_encoder) == {"do": "connect", "url": A}


# -- a live WebSocket link moving to QUIC, make before break ----------------------------------


def upgrading_client() -> tuple[BrowserClient, dict[str, object]]:
    """A page on A's WebSocket whose WELCOME offered QUIC; the next tick starts the move."""
    client = BrowserClient(json.dumps({"node_urls": [A], "transport": "quic"}), CARD_JSON)
    client.quic.set_webtransport(True)
    serve(client, tick(client, 0.0), 0.0, {A: 10.0})
    assert tick(client, 100.0) == [{"do": "connect", "url": A}]
    offer = Welcome(0b111, 0, "anonymous", wt_port=4433, wt_cert_sha256=HASH)
    handshake(client, A, 120.0, welcome=offer)
    upgrade = [a for a in tick(client, 130.0) if a["do"] == "upgrade"]
    assert len(upgrade) == 1
    return client, upgrade[0]


def test_a_websocket_link_moves_to_quic_once_the_welcome_offers_it() -> None:
    client, action = upgrading_client()
    assert action == {
        "do": "upgrade",
        "url": A,
        "transport": QUIC,
        "wt_url": WT_URL,
        "wt_hashes": [HASH],
    }
    assert client.stream is not None
    old_stream = client.stream
    frame_id = send_frame(client, 140.0, 140.0)  # the WebSocket streams on meanwhile
    assert isinstance(parse(client.quic.opening(A, 150.0)), Ping)  # the QUIC link speaks first
    assert json.loads(client.quic.on_upgrade_message(A, hello(), 160.0)) == [
        {"type": "send_upgrade"}
    ]
    assert isinstance(parse(client.quic.take_upgrade_outgoing()), Auth)
    assert client.quic.take_upgrade_outgoing() == b""
    assert client.stream is old_stream  # still the WebSocket's until the QUIC WELCOME
    events = json.loads(client.quic.on_upgrade_message(A, WELCOME.serialize(), 170.0))
    assert events == [
        {"type": "upgraded", "url": A, "retired_key": A + "#websocket", "drain": True}
    ]
    assert client.link.transport == QUIC
    assert client.stream is not old_stream
    # the WebSocket answers the frame it held, then is left
    answer = result(frame_id, 140.0, CAT_INPUT)
    drained = client.dispatch(SocketMessage(A + "#websocket", answer), 180.0)
    assert drained[0]["type"] == "detections"
    assert drained[-1:] == [{"type": "leave", "url": A + "#websocket"}]
    assert not [a for a in tick(client, 200.0) if a["do"] == "upgrade"]  # moved once


def test_a_draining_links_result_is_reported_as_the_live_links_would_be() -> None:
    """The node the page moved away from answers the frame it held: its event keeps the
    node's decode time, the frame's encoding and size (a copied handler lost them)."""
    client, _ = upgrading_client()
    frame_id = send_frame(client, 140.0, 140.0)
    client.quic.opening(A, 150.0)
    client.quic.on_upgrade_message(A, hello(), 160.0)
    client.quic.on_upgrade_message(A, WELCOME.serialize(), 170.0)
    answer = Result(frame_id, 140.0, 2.0, 8.0, 1.0, 1, (), decode_ms=0.5).serialize()
    drained = client.dispatch(SocketMessage(A + "#websocket", answer), 180.0)
    event = drained[0]
    assert event["type"] == "detections"
    assert (event["decode_ms"], event["encoding"], event["frame_bytes"]) == (
        0.5,
        "raw",
        3 * 416 * 416 + 30,  # the FRAME header, then the tensor
    )
    assert event["round_trip_ms"] == 40.0
    # named by its HELLO as the live link's results are, not by its retired key
    assert event["api"]["server"] == "node-a"


def test_a_failed_upgrade_costs_nothing() -> None:
    client, _ = upgrading_client()
    old_stream = client.stream
    client.quic.on_upgrade_close(A, 150.0)  # UDP blocked
    assert client.stream is old_stream
    assert client.link.transport == "WebSocket"
    assert client.quic.transport.quic_failures == 1
    assert not [a for a in tick(client, 300.0) if a["do"] == "upgrade"]  # not again soon


def test_a_silent_upgrade_is_left_after_its_deadline() -> None:
    client, _ = upgrading_client()
    assert client.next_tick_ms(500.0) <= 130.0 + WT_UPGRADE_DEADLINE_MS
    assert {"do": "leave_upgrade"} not in tick(client, 130.0 + WT_READY_DEADLINE_MS)
    actions = tick(client, 130.0 + WT_UPGRADE_DEADLINE_MS)
    assert {"do": "leave_upgrade"} in actions
    assert client.link.transport == "WebSocket"
    assert client.is_node_ready()


def test_a_node_listed_on_the_pages_host_gets_its_quic_url_there_too() -> None:
    # Given a page opened as https://edgesight.test:8443/ whose node is listed as
    # wss://{hostname}:8001/ws (the web app's default with TLS), offering QUIC on 8001
    page = {"protocol": "https:", "hostname": "edgesight.test", "port": "8443"}
    config = {"node_urls": [], "page": page, "transport": "quic"}
    client = BrowserClient(json.dumps(config), CARD_JSON)
    client.quic.set_webtransport(True)
    node = {
        "url": "wss://{hostname}:8001/ws",
        "name": "n",
        "id": "n1",
        "wt_port": 8001,
        "wt_cert_sha256": "",
    }
    client.dispatch(NodeList(json.dumps([node])), 0.0)
    # when the page opens the link, then the QUIC URL names the page's host, not a template
    serve(client, tick(client, 0.0), 0.0, {"wss://{hostname}:8001/ws": 10.0})
    (action,) = tick(client, 100.0)
    assert action["wt_url"] == "https://edgesight.test:8001/wt"


# -- the measured choice (policy auto, the default) -------------------------------------------

OFFER = Welcome(0b111, 0, "anonymous", wt_port=4433, wt_cert_sha256=HASH)


def ws_client(transport: str | None = None) -> BrowserClient:
    """A page on A's WebSocket whose WELCOME offered QUIC, under ``transport`` (None: the
    default)."""
    config: dict[str, object] = {"node_urls": [A]}
    if transport is not None:
        config["transport"] = transport
    client = BrowserClient(json.dumps(config), CARD_JSON)
    client.quic.set_webtransport(True)
    serve(client, tick(client, 0.0), 0.0, {A: 10.0})
    assert tick(client, 100.0) == [{"do": "connect", "url": A}]
    handshake(client, A, 120.0, welcome=OFFER)
    return client


def stream_frames(client: BrowserClient, start_ms: float, round_trips_ms: list[float]) -> float:
    """One frame in flight at a time, each answered after its round trip; returns the
    time after the last answer."""
    now_ms = start_ms
    for round_trip_ms in round_trips_ms:
        frame_id = send_frame(client, now_ms, now_ms)
        now_ms += round_trip_ms
        receive(client, A, result(frame_id, now_ms - round_trip_ms), now_ms)
        now_ms += 33.0
    return now_ms


def upgrades(client: BrowserClient, now_ms: float) -> list[dict[str, object]]:
    return [a for a in tick(client, now_ms) if a["do"] == "upgrade"]


def test_by_default_a_clean_link_stays_on_its_websocket() -> None:
    """On a link without loss the WebSocket is as fast and costs the node half the CPU
    (docs/benchmarks.md (u)): QUIC is offered but not taken."""
    client = ws_client()
    assert client.quic.transport.policy == "auto"
    now_ms = stream_frames(client, 130.0, [15.0] * 60)
    assert upgrades(client, now_ms) == []
    assert client.link.transport == "WebSocket"
    assert client.stream is not None
    assert client.stream.in_flight_policy is not None
    assert not client.stream.in_flight_policy.is_lossy


def test_by_default_a_lossy_link_moves_to_quic_and_its_node_is_remembered() -> None:
    """Frames a round trip late (TCP's retransmission timeouts) mark the link lossy: the
    next tick moves it to QUIC, make before break, and a later link to the node opens
    over QUIC at once."""
    client = ws_client()
    now_ms = stream_frames(client, 130.0, [15.0] * 10)
    assert upgrades(client, now_ms) == []
    now_ms = stream_frames(client, now_ms, [230.0, 15.0, 15.0, 240.0, 15.0])
    assert client.stream is not None
    assert client.stream.in_flight_policy is not None
    assert client.stream.in_flight_policy.is_lossy
    assert upgrades(client, now_ms) == [
        {"do": "upgrade", "url": A, "transport": QUIC, "wt_url": WT_URL, "wt_hashes": [HASH]}
    ]
    assert client.quic.transport.lossy_upgrades == 1
    assert client.quic.transport.choose(A, now_ms + 1.0) is not None  # a new link: QUIC
    assert client.quic.transport.choose(A, now_ms + LOSSY_MEMORY_MS + 1.0) is None  # forgotten


def test_a_distant_lossy_link_moves_to_quic_too() -> None:
    """50 ms away with 1 % loss the page drew 25-27 fps over Chromium's QUIC and 9 over TCP
    (docs/benchmarks.md (u4)); it stayed on TCP until round 6 (a lab whose QUIC sender
    was aioquic): a distant lossy link moves as a near one does."""
    client = ws_client()
    far_ms = 60.0
    late_ms = 3 * far_ms + 60.0
    now_ms = stream_frames(client, 130.0, [far_ms] * 10 + [late_ms, far_ms, late_ms, far_ms])
    assert client.stream is not None
    assert client.stream.in_flight_policy is not None
    assert client.stream.in_flight_policy.is_lossy
    assert upgrades(client, now_ms) == [
        {"do": "upgrade", "url": A, "transport": QUIC, "wt_url": WT_URL, "wt_hashes": [HASH]}
    ]


def test_one_late_frame_is_not_a_lossy_link() -> None:
    client = ws_client()
    now_ms = stream_frames(client, 130.0, [15.0] * 5 + [260.0] + [15.0] * 30)
    assert upgrades(client, now_ms) == []


def test_pinned_websocket_never_moves_even_when_lossy() -> None:
    client = ws_client("websocket")
    now_ms = stream_frames(client, 130.0, [15.0] * 5 + [230.0, 240.0, 250.0])
    assert client.stream is not None
    assert client.stream.in_flight_policy is not None
    assert client.stream.in_flight_policy.is_lossy
    assert upgrades(client, now_ms) == []


def test_pinned_quic_moves_at_once() -> None:
    client = ws_client("quic")
    assert len(upgrades(client, 130.0)) == 1


def test_an_unknown_transport_policy_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="transport"):
        BrowserClient(json.dumps({"node_urls": [A], "transport": "udp"}), CARD_JSON)
    with pytest.raises(ValueError, match="transport policy"):
        TransportChoice("tcp")


def test_a_static_nodes_offer_survives_the_registry_polls() -> None:
    """The web app lists its configured nodes as static entries that know no offer: the
    registry poll (every 2 s) must not erase what the node's WELCOME said (it did, so a
    link measured lossy later never moved)."""
    client = ws_client()
    static = {"id": f"static:{A}", "url": A, "name": A, "static": True, "wt_port": None}
    client.dispatch(NodeList(json.dumps({"nodes": [static]})), 125.0)
    assert client.quic.transport.offer(A) is not None
    now_ms = stream_frames(client, 130.0, [15.0] * 10 + [230.0, 15.0, 240.0, 15.0])
    client.dispatch(NodeList(json.dumps({"nodes": [static]})), now_ms)
    assert len(upgrades(client, now_ms)) == 1


def test_a_registered_node_that_stops_offering_is_forgotten() -> None:
    client = registry_client()
    assert client.quic.transport.offer(A) is not None
    node = {"url": A, "name": "node-a", "id": "n1", "wt_port": 0}
    client.dispatch(NodeList(json.dumps([node])), 10.0)
    assert client.quic.transport.offer(A) is None
