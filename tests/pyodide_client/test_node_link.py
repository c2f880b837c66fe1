"""pyodide_client.node_link: the current node link's state, the stall deadline and the
refusal a full node sends in place of its HELLO."""

from __future__ import annotations

from pyodide_client.node_link import (
    STALL_MAX_MS,
    STALL_MIN_MS,
    NodeLink,
    overload_refusal,
    stall_deadline_ms,
)
from pyodide_client.protocol import Error, ErrorCode
from pyodide_client.stream import NodeStream, StreamState

A, B = "ws://a:8001/ws", "ws://b:8001/ws"


def test_the_stall_deadline_is_clamped() -> None:
    assert stall_deadline_ms(None) == STALL_MAX_MS
    assert stall_deadline_ms(1.0) == STALL_MIN_MS
    assert stall_deadline_ms(1e6) == STALL_MAX_MS


def test_only_an_overloaded_error_is_a_refusal() -> None:
    full = Error(ErrorCode.OVERLOADED, "full").serialize()
    assert overload_refusal(full) == "full"
    assert overload_refusal(Error(ErrorCode.INTERNAL, "boom").serialize()) is None
    assert overload_refusal(b"not a message") is None


def test_opening_another_link_loses_the_old_one_and_forgets_who_answered() -> None:
    link = NodeLink()
    first = NodeStream()
    link.open(A, first)
    link.name, link.model = "node-a", "m"
    link.outbox.append(b"auth")
    link.open(B, NodeStream())
    assert first.state is StreamState.CLOSED
    assert (link.url, link.name, link.model, link.outbox) == (B, None, None, [])


def test_a_dropped_link_is_empty_and_not_ready() -> None:
    link = NodeLink()
    link.open(A, NodeStream())
    link.drop()
    assert (link.stream, link.url, link.outbox) == (None, None, [])
    assert not link.is_ready
    assert not link.is_stalled(1e9, 1.0)


def test_with_send_adds_a_send_event_only_when_the_outbox_has_messages() -> None:
    link = NodeLink()
    assert link.with_send([{"type": "x"}]) == [{"type": "x"}]
    link.open(A, NodeStream())
    link.outbox.append(b"auth")
    assert link.with_send([]) == [{"type": "send"}]
