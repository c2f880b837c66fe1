"""pyodide_client.page_events and PageCore.handle_event: the page core driven by typed
events with a fake clock; the routing decision runs again at once after the events that
call for it (the JSON edge JS calls, page_edge.py, goes through here)."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError
from typing import Any

import pytest

from pyodide_client.browser import BrowserClient
from pyodide_client.page_core import STALL_MAX_MS
from pyodide_client.page_events import (
    FrameGrabbed,
    NodeList,
    PageEvent,
    ProbeFailed,
    ProbeMessage,
    Reply,
    SocketClosed,
    SocketMessage,
    SocketOpened,
    TimerFired,
    TokenFetched,
    WorkerResult,
)
from pyodide_client.protocol import (
    CLOSE_TRY_AGAIN_LATER,
    Auth,
    Error,
    ErrorCode,
    Frame,
    Ping,
    Pong,
    Result,
    parse,
)

from .test_browser import (
    CARD,
    CARD_JSON,
    HEIGHT,
    RGBA,
    WELCOME,
    WIDTH,
    hello,
    local_outputs,
    make_local_ready,
)

A, B = "ws://a:8001/ws", "ws://b:8001/ws"


class FakeClock:
    def __init__(self) -> None:
        self.now_ms = 0.0

    def advance(self, ms: float) -> float:
        self.now_ms += ms
        return self.now_ms


class Page:
    """A page's JS reduced to its reports: each goes to ``handle`` at the fake clock's time."""

    def __init__(self, *urls: str, **config: Any) -> None:
        config_json = json.dumps({"node_urls": list(urls), **config})
        self.client = BrowserClient(config_json, CARD_JSON)
        self.clock = FakeClock()

    def report(self, event: PageEvent) -> Reply:
        return self.client.handle_event(event, self.clock.now_ms)

    def do(self, event: PageEvent) -> list[dict[str, Any]]:
        return list(self.report(event).commands)


def probe_answered(page: Page, url: str, rtt_ms: float) -> list[dict[str, Any]]:
    """HELLO on the probe socket -> the PING to send; the PONG -> close the probe (and,
    the probe being done, the routing decision's commands)."""
    (send,) = page.do(ProbeMessage(url, hello()))
    assert send["do"] == "probe_send"
    assert send["url"] == url
    ping = parse(send["data"])
    assert isinstance(ping, Ping)
    page.clock.advance(rtt_ms)
    commands = page.do(ProbeMessage(url, Pong(ping.nonce, ping.sent_ms).serialize()))
    assert commands[0] == {"do": "probe_close", "url": url}
    return commands[1:]


def connected(page: Page, url: str = A) -> None:
    commands = page.do(TimerFired())
    assert {c["url"] for c in commands if c["do"] == "probe"} == {url}
    page.clock.advance(20.0)
    assert probe_answered(page, url, 10.0) == [{"do": "connect", "url": url}]
    assert page.do(SocketOpened(url)) == []
    assert page.do(SocketMessage(url, hello())) == [{"type": "send"}]
    assert isinstance(parse(page.client.take_outgoing()), Auth)
    events = page.do(SocketMessage(url, WELCOME.serialize()))
    assert [{k: v for k, v in e.items() if k != "api"} for e in events] == [
        {"type": "ready", "node": "node-a", "model": CARD.name, "identity": "anonymous"}
    ]
    assert (events[0]["api"]["name"], events[0]["api"]["url"]) == ("node-a", url)


def test_events_are_frozen() -> None:
    event = SocketClosed(A, 1000)
    with pytest.raises(FrozenInstanceError):
        event.code = 1006  # type: ignore[misc]


def test_the_first_timer_probes_and_a_probe_answer_connects_at_once() -> None:
    page = Page(A)
    connected(page)
    assert page.client.mode == "node"


def test_every_reply_names_the_next_deadline_in_the_future_of_the_fake_clock() -> None:
    page = Page(A)
    reply = page.report(TimerFired())
    assert page.clock.now_ms < reply.next_tick_ms <= page.clock.now_ms + 1000.0
    assert reply.next_tick_ms == page.client.next_tick_ms(page.clock.now_ms)


def test_a_grabbed_frame_goes_to_the_node_and_a_stalled_one_is_abandoned_at_the_deadline() -> None:
    page = Page(A)
    connected(page)
    (frame,) = page.do(FrameGrabbed(WIDTH, HEIGHT, capture_ms=page.clock.now_ms))
    assert frame == {"do": "frame", "to": "node"}
    page.client.encode_frame(RGBA, WIDTH, HEIGHT, page.clock.now_ms, page.clock.now_ms)
    sent_ms = page.clock.now_ms
    deadline_ms = page.report(TimerFired()).next_tick_ms
    assert deadline_ms <= sent_ms + STALL_MAX_MS + 1.0
    page.clock.now_ms = sent_ms + STALL_MAX_MS + 1.0  # no result: the timer fires
    commands = page.do(TimerFired())
    assert {"do": "abandon", "reason": "stalled"} in commands
    assert page.client.mode == "none"


def test_a_closed_socket_decides_at_once_without_waiting_for_the_timer() -> None:
    page = Page(A, B)
    page.do(TimerFired())
    page.clock.advance(20.0)
    assert probe_answered(page, A, 10.0) == [{"do": "connect", "url": A}]
    probe_answered(page, B, 50.0)
    page.clock.advance(5.0)
    commands = page.do(SocketClosed(A, CLOSE_TRY_AGAIN_LATER))
    assert {"do": "connect", "url": B} in commands


def test_a_failed_probe_decides_again() -> None:
    page = Page(A)
    page.do(TimerFired())
    page.clock.advance(10.0)
    assert page.do(ProbeFailed(A)) == []  # nothing measured: no node to connect to


def test_the_node_list_and_a_token_answer_come_in_as_events() -> None:
    page = Page(token_url="/api/token")
    commands = page.do(TimerFired())
    assert {"do": "fetch_token", "url": "/api/token"} in commands
    commands = page.do(TokenFetched(0, ""))  # the web app cannot be reached
    assert commands[0]["type"] == "token_problem"
    commands = page.do(NodeList(json.dumps({"nodes": [{"url": A}]})))
    assert {"do": "probe", "url": A} in commands


def test_a_worker_result_is_drawn_when_no_node_is_ready() -> None:
    page = Page()
    make_local_ready(page.client)
    (frame,) = page.do(FrameGrabbed(WIDTH, HEIGHT, capture_ms=0.0))
    assert frame == {"do": "frame", "to": "local"}
    frame_id = page.client.local_steps.encode(RGBA, WIDTH, HEIGHT, 0.0, 0.0)
    boxes, scores = local_outputs()
    page.clock.advance(30.0)
    (drawn,) = page.do(WorkerResult(frame_id, boxes, scores, inference_ms=25.0))
    assert drawn["type"] == "detections"
    assert drawn["source"] == "local"
    assert drawn["round_trip_ms"] == 30.0


def test_a_node_refusal_decides_at_once_in_handle_and_dispatch_alone_does_not() -> None:
    """One rule for when routing runs again (no WAKING in app.js): a node's refusal
    changes the page's node, so ``handle_event`` decides at once; ``dispatch`` is the
    event alone."""
    busy = Error(ErrorCode.OVERLOADED, "node-a is at capacity (4 streams)").serialize()
    page = Page(A, B)
    page.do(TimerFired())
    page.clock.advance(20.0)
    assert probe_answered(page, A, 10.0) == [{"do": "connect", "url": A}]
    probe_answered(page, B, 50.0)
    page.clock.advance(5.0)
    commands = page.do(SocketMessage(A, busy))
    assert commands[0] == {"type": "refused", "message": "node-a is at capacity (4 streams)"}
    assert {"do": "connect", "url": B} in commands[1:]

    twin = Page(A, B)
    twin.do(TimerFired())
    twin.clock.advance(20.0)
    probe_answered(twin, A, 10.0)
    probe_answered(twin, B, 50.0)
    twin.clock.advance(5.0)
    assert twin.client.dispatch(SocketMessage(A, busy), twin.clock.now_ms) == [commands[0]]


def test_a_frame_result_does_not_wake_routing() -> None:
    page = Page(A)
    connected(page)
    capture_ms = page.clock.now_ms
    frame = parse(page.client.encode_frame(RGBA, WIDTH, HEIGHT, capture_ms, capture_ms))
    assert isinstance(frame, Frame)
    page.clock.advance(30.0)
    answer = Result(frame.frame_id, capture_ms, 1.0, 8.0, 1.0, 1, ()).serialize()
    events = page.do(SocketMessage(A, answer))
    assert [event["type"] for event in events] == ["detections"]
