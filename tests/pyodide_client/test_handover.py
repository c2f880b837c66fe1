"""Handover: the joining and draining streams of a make-before-break move. The whole move
through BrowserClient is in test_browser.py; these are the rules on their own."""

from __future__ import annotations

from pyodide_client.handover import Failed, Handover, Waiting
from pyodide_client.protocol import Dtype, Error, ErrorCode, Hello
from pyodide_client.stream import NodeStream

A, B = "ws://a/ws", "ws://b/ws"
HELLO = Hello("node-b", "m", "ab" * 32, Dtype.UINT8, (3, 8, 8), ("cat",), 2)


def test_a_joining_node_the_router_no_longer_waits_for_is_left() -> None:
    handover = Handover()
    handover.begin(B, NodeStream())
    assert handover.expire(B, 0.0, 3000.0) == []  # still the router's pending node
    assert handover.expire(None, 5000.0, 3000.0) == [B]
    assert handover.joining is None


def test_a_refusal_at_capacity_fails_the_move_as_overloaded() -> None:
    handover = Handover()
    handover.begin(B, NodeStream())
    refusal = Error(ErrorCode.OVERLOADED, "full").serialize()
    assert handover.on_joining_data(refusal, 0.0) == Failed(is_overloaded=True)
    assert handover.joining is None


def test_a_hello_without_a_token_waits_for_nothing_and_joins() -> None:
    handover = Handover()
    handover.begin(B, NodeStream())
    outcome = handover.on_joining_data(HELLO.serialize(), 0.0)
    # an anonymous stream sends AUTH and waits for WELCOME, or is ready at once
    assert isinstance(outcome, Waiting) or handover.joining is None


def test_an_old_stream_with_nothing_in_flight_is_left_at_once() -> None:
    handover = Handover()
    assert handover.drain(A, NodeStream()) is False
    assert handover.draining == {}


def test_closed_says_which_socket_it_was() -> None:
    handover = Handover()
    handover.begin(B, NodeStream())
    assert handover.closed(A) is None
    assert handover.closed(B) == "joining"
    assert handover.closed(B) is None
