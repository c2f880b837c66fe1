"""pyodide_client.page_sockets: which socket is which, by id (the bookkeeping app.js had)."""

from __future__ import annotations

import pytest

from pyodide_client.page_sockets import MAX_SOCKETS, Role, Socket, SocketBook
from pyodide_client.protocol import Pong, Result
from pyodide_client.transport import QUIC

A, B = "ws://a:8001/ws", "ws://b:8001/ws"


def book() -> SocketBook:
    return SocketBook(lambda url: url.replace("{hostname}", "page.example"))


def test_a_connect_replaces_the_link_the_joining_and_the_upgrading_socket() -> None:
    sockets = book()
    (first,) = sockets.act({"do": "connect", "url": A})
    (joining,) = sockets.act({"do": "join", "url": B})
    (upgrading,) = sockets.act(
        {
            "do": "upgrade",
            "url": A,
            "transport": "QUIC",
            "wt_url": "https://a:4433/wt",
            "wt_hashes": [],
        }
    )
    assert upgrading["constants"]["control_prefix_bytes"] > 0
    commands = sockets.act({"do": "switch", "url": B})
    closed = {c["socket"] for c in commands if c["do"] == "close"}
    assert closed == {first["socket"], joining["socket"], upgrading["socket"]}
    assert commands[-1]["do"] == "open"
    assert len(sockets) == 1


def test_a_promoted_joining_socket_carries_the_frames_and_the_old_link_drains_until_left() -> None:
    sockets = book()
    (old,) = sockets.act({"do": "connect", "url": A})
    (new,) = sockets.act({"do": "join", "url": B})
    sockets.promote()
    link = sockets.one(Role.LINK)
    assert link is not None
    assert link.id == new["socket"]
    draining = sockets.draining(A)
    assert draining is not None
    assert draining.id == old["socket"]
    assert sockets.leave(A) == [{"do": "close", "socket": old["socket"], "why": "leave", "node": A}]
    assert sockets.draining(A) is None


def test_an_upgrade_takes_over_and_the_websocket_answers_under_its_retired_key() -> None:
    sockets = book()
    (ws,) = sockets.act({"do": "connect", "url": A})
    (quic,) = sockets.act(
        {
            "do": "upgrade",
            "url": A,
            "transport": "QUIC",
            "wt_url": "https://a:4433/wt",
            "wt_hashes": ["ab"],
        }
    )
    assert sockets.upgraded(A + "#websocket", is_draining=True) == []
    link = sockets.one(Role.LINK)
    assert link is not None
    assert link.id == quic["socket"]
    retired = sockets.draining(A + "#websocket")
    assert retired is not None
    assert retired.id == ws["socket"]
    # nothing in flight on it: left at once
    sockets.act(
        {
            "do": "upgrade",
            "url": A,
            "transport": "QUIC",
            "wt_url": "https://a:4433/wt",
            "wt_hashes": [],
        }
    )
    assert sockets.upgraded(A + "#websocket", is_draining=False)[0]["socket"] == quic["socket"]


def test_the_hostname_template_is_filled_and_probes_carry_their_guard() -> None:
    (probe,) = book().act({"do": "probe", "url": "ws://{hostname}:8001/ws"})
    assert probe["url"] == "ws://page.example:8001/ws"
    assert probe["node"] == "ws://{hostname}:8001/ws"
    assert probe["guard_ms"] > 0


def test_sockets_are_bounded() -> None:
    sockets = book()
    for i in range(MAX_SOCKETS):
        sockets.act({"do": "probe", "url": f"ws://n{i}:8001/ws"})
    with pytest.raises(RuntimeError, match=f"at most {MAX_SOCKETS}"):
        sockets.act({"do": "probe", "url": A})


def test_a_quic_socket_takes_each_answer_once_a_websocket_every_message() -> None:
    """On QUIC a small answer comes as a datagram and on its stream (quic_framing): the
    second copy is not heard. A WebSocket never repeats one, so it is never filtered."""
    answer = Result(4, 0.0, 1.0, 2.0, 3.0, 1, ()).serialize()
    pong = Pong(1, 0.0).serialize()
    quic = Socket(1, A, A, Role.LINK, transport=QUIC)
    assert [quic.is_copy(answer), quic.is_copy(answer)] == [False, True]
    assert [quic.is_copy(pong), quic.is_copy(pong)] == [False, False]
    websocket = Socket(2, A, A, Role.LINK)
    assert [websocket.is_copy(answer), websocket.is_copy(answer)] == [False, False]
